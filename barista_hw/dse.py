"""Design-space exploration: size an accelerator for a network under a resource budget.

The objective is modelled training throughput: images per second at the budget's
clock over one TRAIN iteration of every Convolution/InnerProduct pass, transfers
included (:func:`barista_hw.plan.plan_net`). Candidates must fit the budget by the
estimate of :mod:`barista_hw.resources`, within the shares of block RAM and logic the
budget lets a design plan (:attr:`Budget.bram_fill`, :attr:`Budget.lut_fill`: the
margin that lets a design picked here fit after synthesis and place and route). The
search is staged to stay fast (a few seconds for AlexNet); every evaluation is
deterministic and ties are broken by a fixed key, so the same inputs always give the
same design:

1. **Array shape**: every ``rows x cols`` (non-square allowed, up to 64 each) that
   uses the multipliers fully for its row or column count (where the logic runs out
   first, as on the iCE40, the largest smaller one that fits), plus square arrays of
   every smaller size (for the Pareto table), in the widest candidate format with
   equal A/B buffer depths as deep as the block RAM allows.
2. **Buffers**: for the best few shapes, A/B depths around that point (unequal
   too) and accumulator-memory depths of 4/16/64 tiles.
3. **Number format** (only when the caller does not fix one): narrower formats
   for the best design so far, each with the deepest buffers it affords. A
   narrower format is chosen only if it is more than :data:`FORMAT_SLACK` faster
   than the widest format's best: precision matters for training, and the model
   does not know about it. 8-bit formats are not tried unless asked for
   (``fmt``): plain 8-bit fixed point does not train these nets reliably.

4. **Another model's ranking** (only when the caller passes ``rank``, e.g. the device's
   time model, :func:`barista.device_net.device_design`): a shortlist of the fitting
   designs (:func:`shortlist`) is ranked by ``rank`` instead of the engine's cycles, the
   format rule of step 3 applying to its first figure.

The clock is the budget's for every candidate (no Fmax model yet). The Pareto front
(throughput against multipliers, block RAM and logic) is also where ``barista build``
steps down to when a build does not fit after all (:meth:`DseResult.step_down`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from barista_base.errors import InputError

from .config import MAX_ARRAY_DIM, AcceleratorConfig, EngineConfig, EngineFormat
from .mxformat import FloatGemmFormat
from .numfmt import PRESETS as FORMATS
from .plan import GemmLayer, NetPlan, dim_bits_needed, plan_net
from .resources import Resources, estimate, max_pes
from .targets import RESOURCES, Budget

#: Formats tried when the caller fixes none, widest first.
CANDIDATE_FORMATS = ("fx18", "fx16", "fx12")
FORMAT_SLACK = 0.02
DEPTHS = tuple(1 << i for i in range(6, 15))  # 64 .. 16384 words
ACC_TILES = (4, 16, 64)
TOP_SHAPES = 3
#: Array shapes whose designs a ``rank`` of :func:`explore` sees (each of them costly).
RANK_SHAPES = 2
# Counters are cheap: 16 bits leave room for the TEST net's batch, often larger than TRAIN's.
MIN_DIM_BITS = 16


@dataclass(frozen=True)
class Candidate:
    """One evaluated design: its configuration, cost and modelled performance."""

    config: AcceleratorConfig
    resources: Resources
    cycles: int  # one TRAIN iteration
    images_per_second: float
    utilisation: float

    def figures(self) -> tuple[int, int, int, int]:
        """What the Pareto front weighs: cycles, multipliers, block RAM, logic."""
        r = self.resources
        return (self.cycles, r.mults, r.bram_blocks, r.luts)

    @property
    def label(self) -> str:
        e = self.config.engine
        return (
            f"{e.rows}x{e.cols} {e.fmt.name} A{self.config.a_depth}/B{self.config.b_depth}"
            f"/acc{e.acc_depth}"
        )

    def sort_key(self) -> tuple:
        """Best first: fewest cycles, then wider format, then cheaper, then by shape."""
        c, e = self.config, self.config.engine
        r = self.resources
        return (
            self.cycles,
            -e.fmt.width,
            r.mults,
            r.bram_blocks,
            r.luts,
            e.rows,
            e.cols,
            c.a_depth,
            c.b_depth,
            e.acc_depth,
        )


@dataclass(frozen=True)
class DseResult:
    """The chosen design, every design that fitted, and their Pareto front."""

    best: Candidate
    plan: NetPlan
    candidates: tuple[Candidate, ...]
    pareto: tuple[Candidate, ...]
    budget: Budget

    def table(self) -> str:
        """The Pareto table (throughput vs multipliers vs block RAM vs logic), best marked
        ``*``."""
        b = self.budget
        head = (
            f"{'':1} {'design':34} {b.mult_kind:>10} {b.bram_kind:>11} {b.lut_kind:>7} "
            f"{'cycles/iter':>13} {'img/s':>10} {'PE util':>7}"
        )
        lines = [
            f"Pareto front of {len(self.candidates)} designs that fit {b.name} "
            f"({b.mults} mults, {b.bram_usable} BRAM, {b.luts_usable} LUT by the estimate, "
            f"{b.mhz:g} MHz):",
            head,
        ]
        for c in self.pareto:
            mark = "*" if c is self.best else " "
            lines.append(
                f"{mark} {c.label:34} {c.resources.mults:>10} {c.resources.bram_blocks:>11} "
                f"{c.resources.luts:>7} {c.cycles:>13} {c.images_per_second:>10.2f} "
                f"{c.utilisation:>7.1%}"
            )
        return "\n".join(lines)

    def step_down(
        self, tried: Collection[AcceleratorConfig], scale: Mapping[str, float]
    ) -> Candidate | None:
        """The fastest design of the Pareto front not in ``tried`` that is estimated to
        fit once each resource named in ``scale`` is multiplied by its factor (what a build
        measured over what was estimated for it), or None.

        ``barista build`` steps down with it when a design does not fit after synthesis
        and place and route: the factor carries what that build showed about the estimate
        over to the designs not yet built.
        """
        fitting = [
            c
            for c in self.pareto
            if c.config not in tried
            and all(
                getattr(c.resources, r) * scale.get(r, 1.0) <= self.budget.usable(r)
                for r in RESOURCES
            )
        ]
        return min(fitting, key=Candidate.sort_key, default=None)


#: Another model's figures of a candidate, smaller better, the first one a time (what the
#: format rule weighs); ties fall back to :meth:`Candidate.sort_key`.
Rank = Callable[[Candidate], tuple[float, ...]]


def shortlist(candidates: Sequence[Candidate]) -> list[Candidate]:
    """What a ``rank`` sees: for the :data:`RANK_SHAPES` best array shapes, one design per
    number format, the fewest cycles and then the deepest memories (accumulator, A, B:
    among designs the engine finds equally fast, the deeper one re-fetches operands less
    where memory traffic sets the time), in :meth:`Candidate.sort_key` order."""
    ordered = sorted(candidates, key=Candidate.sort_key)
    shapes = list(dict.fromkeys((c.config.engine.rows, c.config.engine.cols) for c in ordered))
    picked: dict[tuple, Candidate] = {}
    for c in ordered:
        e = c.config.engine
        if (e.rows, e.cols) not in shapes[:RANK_SHAPES]:
            continue
        key = (e.rows, e.cols, e.fmt)
        o = picked.get(key)
        if o is None or _deeper(c) < _deeper(o):
            picked[key] = c
    return sorted(picked.values(), key=Candidate.sort_key)


def _deeper(c: Candidate) -> tuple:
    cfg = c.config
    return (c.cycles, -cfg.engine.acc_depth, -cfg.a_depth, -cfg.b_depth, c.sort_key())


def choose(
    candidates: Sequence[Candidate],
    wide: EngineFormat,
    figures: Callable[[Candidate], tuple] = Candidate.sort_key,
) -> Candidate:
    """The best of ``candidates`` by ``figures`` (smaller better, ties by
    :meth:`Candidate.sort_key`), a format narrower than ``wide`` only if its first figure
    (the time) is more than :data:`FORMAT_SLACK` below that of the best in ``wide``."""

    def key(c: Candidate) -> tuple:
        return (*figures(c), c.sort_key())

    best = min(candidates, key=key)
    in_wide = [c for c in candidates if c.config.engine.fmt == wide]
    if best.config.engine.fmt == wide or not in_wide:
        return best
    best_wide = min(in_wide, key=key)
    return best if key(best)[0] < key(best_wide)[0] * (1 - FORMAT_SLACK) else best_wide


def _dominates(o: Candidate, c: Candidate) -> bool:
    a, b = o.figures(), c.figures()
    return a != b and all(x <= y for x, y in zip(a, b, strict=True))


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates no other one beats on throughput, multipliers, block RAM and logic at once.

    Sorted by multipliers, block RAM, then throughput (descending); among designs
    with identical figures the first by :meth:`Candidate.sort_key` represents them.
    """
    pts = sorted(candidates, key=Candidate.sort_key)
    front: list[Candidate] = []
    seen: set[tuple] = set()
    for c in pts:
        fig = c.figures()
        if fig in seen:
            continue
        if not any(_dominates(o, c) for o in pts):
            front.append(c)
            seen.add(fig)
    front.sort(key=lambda c: (c.resources.mults, c.resources.bram_blocks, c.cycles, c.sort_key()))
    return front


def needed_dim_bits(layers: Sequence[GemmLayer]) -> int:
    """Command-field width that holds every GEMM dimension of ``layers`` (error if > 24)."""
    worst = None
    for layer in layers:
        for w in layer.workloads():
            for name, v in (("M", w.m), ("K", w.k), ("N", w.n), ("images", w.images)):
                if worst is None or v > worst[0]:
                    worst = (v, name, w)
    assert worst is not None
    bits = max(MIN_DIM_BITS, dim_bits_needed(worst[0]))
    if bits > 24:
        v, name, w = worst
        raise InputError(
            f"{w.label}: {name} = {v} needs a {bits}-bit command field; at most 24 bits are "
            "built (use a smaller batch)"
        )
    return bits


def check_reductions(layers: Sequence[GemmLayer], fmt: FloatGemmFormat) -> None:
    """Every pass's reduction (the weight gradient's over the batch too) within the ``k``
    terms a minifloat or MX engine's accumulators hold exactly, or an error naming the longest."""
    longest = max((w for layer in layers for w in layer.workloads()), key=lambda w: w.kt)
    if longest.kt > fmt.k:
        bigger = 1 << (longest.kt - 1).bit_length()
        raise InputError(
            f"{longest.label}: a reduction of {longest.kt} terms exceeds the {fmt.k} that "
            f"{fmt.name}'s accumulators hold exactly; use {replace(fmt, k=bigger).name}"
        )


class _Explorer:
    def __init__(
        self,
        layers: Sequence[GemmLayer],
        budget: Budget,
        dim_bits: int,
        name: str,
        target: str,
        im2col_stage: int = 0,
    ) -> None:
        self.layers, self.budget, self.dim_bits = list(layers), budget, dim_bits
        self.name, self.target, self.im2col_stage = name, target, im2col_stage
        self.cycle_cache: dict[tuple, NetPlan] = {}
        self.evaluated: dict[AcceleratorConfig, Candidate | None] = {}

    def config(
        self, rows: int, cols: int, fmt: EngineFormat, a: int, b: int, acc: int
    ) -> AcceleratorConfig:
        engine = EngineConfig(rows, cols, fmt, self.dim_bits, acc_depth=acc)
        return AcceleratorConfig(engine, a, b, self.budget.mhz, self.name, self.target)

    def estimate(self, cfg: AcceleratorConfig) -> Resources:
        return estimate(cfg, self.budget, im2col_stage=self.im2col_stage)

    def evaluate(self, cfg: AcceleratorConfig) -> Candidate | None:
        """The candidate of ``cfg``, or None when it exceeds the budget."""
        if cfg in self.evaluated:
            return self.evaluated[cfg]
        res = self.estimate(cfg)
        cand = None
        if res.fits(self.budget):
            e = cfg.engine
            # Cycles do not depend on the number format: share them across formats.
            key = (e.rows, e.cols, e.acc_depth, cfg.a_depth, cfg.b_depth)
            if key not in self.cycle_cache:
                self.cycle_cache[key] = plan_net(cfg, self.layers)
            p = self.cycle_cache[key]
            cand = Candidate(
                cfg, res, p.cycles, p.batch * self.budget.mhz * 1e6 / p.cycles, p.utilisation
            )
        self.evaluated[cfg] = cand
        return cand

    def deepest(self, rows: int, cols: int, fmt: EngineFormat, acc_tiles: int) -> Candidate | None:
        """Equal A/B depths, as deep as the budget allows (None if even the shallowest fails)."""
        best = None
        for d in DEPTHS:
            cfg = self.config(rows, cols, fmt, d, d, acc_tiles * rows)
            if not self.estimate(cfg).fits(self.budget):
                break
            best = cfg
        return None if best is None else self.evaluate(best)

    def largest_that_fits(
        self, rows: int, cols: int, fmt: EngineFormat, acc_tiles: int
    ) -> Candidate | None:
        """For an array that does not fit: the first smaller one that does (its deepest
        design), going down one row or column at a time along the longer side (columns on
        a tie), or None."""
        while rows > 1 or cols > 1:
            if cols >= rows:
                cols -= 1
            else:
                rows -= 1
            x = self.deepest(rows, cols, fmt, acc_tiles)
            if x is not None:
                return x
        return None


def _shapes(max_pes: int) -> list[tuple[int, int]]:
    """Shapes using the multipliers fully for their row or column count, plus squares."""
    out = set()
    for r in range(1, MAX_ARRAY_DIM + 1):
        c = min(MAX_ARRAY_DIM, max_pes // r)
        if c >= 1:
            out.add((r, c))
            out.add((c, r))
    for s in range(1, MAX_ARRAY_DIM + 1):
        if s * s <= max_pes:
            out.add((s, s))
    return sorted(out)


def explore(
    layers: Sequence[GemmLayer],
    budget: Budget,
    *,
    fmt: EngineFormat | None = None,
    array: tuple[int, int] | None = None,
    name: str = "custom",
    target: str | None = None,
    im2col_stage: int = 0,
    rank: Rank | None = None,
) -> DseResult:
    """Find the design of highest modelled throughput for ``layers`` within ``budget``.

    ``fmt`` and ``array`` fix the number format / the array shape; ``im2col_stage``: a
    device build's im2col stage buffer, elements a lane of B (its block RAM counted:
    :func:`~barista_hw.resources.estimate`; 0, the host-driven accelerator: none);
    ``rank``: another model's figures, which choose among the :func:`shortlist` of the
    designs that fit (called once for each of them, in sort-key order).
    Raises :class:`InputError` when nothing fits (naming what the smallest design needs).
    """
    if not layers:
        raise InputError("the net has no Convolution or InnerProduct layer to plan")
    target = budget.name if target is None else target
    dim_bits = needed_dim_bits(layers)
    if isinstance(fmt, FloatGemmFormat):
        check_reductions(layers, fmt)
    ex = _Explorer(layers, budget, dim_bits, name, target, im2col_stage)
    formats = (
        [fmt]
        if fmt is not None
        else [FORMATS[f] for f in CANDIDATE_FORMATS if FORMATS[f].width <= budget.mult_width]
    )
    wide = formats[0]
    if array is not None:
        rows, cols = array
        EngineConfig(rows, cols)  # range check with the usual message
        shapes = [(rows, cols)]
    else:
        shapes = _shapes(max_pes(wide, budget))

    # 1. shapes
    stage1 = []
    for r, c in shapes:
        x = ex.deepest(r, c, wide, ACC_TILES[1])
        if x is None and array is None:
            x = ex.largest_that_fits(r, c, wide, ACC_TILES[1])
        if x is not None:
            stage1.append(x)
    if not stage1:
        smallest = ex.config(
            *(array or (1, 1)), wide, DEPTHS[0], DEPTHS[0], ACC_TILES[0] * (array or (1, 1))[0]
        )
        need = ", ".join(ex.estimate(smallest).shortfall(budget)) or "nothing"
        raise InputError(
            f"no accelerator fits the budget of {budget.name}: the smallest candidate "
            f"({smallest.engine.rows}x{smallest.engine.cols} {wide.name}, {DEPTHS[0]}-word "
            f"buffers) needs {need}"
        )
    stage1.sort(key=Candidate.sort_key)

    # 2. buffers around the best shapes
    for cand in stage1[:TOP_SHAPES]:
        e = cand.config.engine
        d = cand.config.a_depth
        for a in (d // 2, d, d * 2):
            for b in (d // 2, d, d * 2):
                for tiles in ACC_TILES:
                    if a in DEPTHS and b in DEPTHS:
                        ex.evaluate(ex.config(e.rows, e.cols, wide, a, b, tiles * e.rows))

    fitted = [c for c in ex.evaluated.values() if c is not None]
    best_wide = min(fitted, key=Candidate.sort_key)

    # 3. narrower formats for the best design (their buffers can be deeper)
    if fmt is None:
        e, c = best_wide.config.engine, best_wide.config
        for f in formats[1:]:
            ex.evaluate(ex.config(e.rows, e.cols, f, c.a_depth, c.b_depth, e.acc_depth))
            for tiles in ACC_TILES:
                ex.deepest(e.rows, e.cols, f, tiles)
        fitted = [c for c in ex.evaluated.values() if c is not None]
    fitted.sort(key=Candidate.sort_key)
    best = choose(fitted, wide)
    # 4. another model's ranking of a shortlist
    if rank is not None:
        short = shortlist(fitted)
        figures = [rank(c) for c in short]
        best = choose(short, wide, lambda c: figures[short.index(c)])
    plan = ex.cycle_cache[
        (
            best.config.engine.rows,
            best.config.engine.cols,
            best.config.engine.acc_depth,
            best.config.a_depth,
            best.config.b_depth,
        )
    ]
    plan = replace(plan, config=best.config)
    front = pareto_front(fitted)
    if best not in front:
        # A wider format preferred over a faster-per-BRAM narrow one: show it anyway.
        front.append(best)
        front.sort(
            key=lambda c: (c.resources.mults, c.resources.bram_blocks, c.cycles, c.sort_key())
        )
    return DseResult(best, plan, tuple(fitted), tuple(front), budget)
