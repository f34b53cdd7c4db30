"""Workloads of a network's GEMM layers and how they map onto an accelerator, with a cycle model.

This module knows nothing of Caffe: a :class:`GemmLayer` is a neutral description
of a Convolution or InnerProduct layer (one GEMM per group and pass), which
:func:`GemmLayer.workloads` turns into the three :class:`Workload` s of a training
iteration, exactly as :class:`barista.backends.hardware.HardwareBackend` issues them:

=====================  =================  ==============  ===========================
pass                   A (M x K)          B (K x N)       command
=====================  =================  ==============  ===========================
forward                W (m x k)          X (k x B*P)     ``m, k, n = B*P``
backward-data          W^T (k x m)        dY (m x B*P)    ``m = k, k = m, n = B*P``
weight-gradient        dY (m x B*P)       X^T (B*P x k)   conv: ``k = P, images = B``;
                                                          fc: ``k = B, images = 1``
=====================  =================  ==============  ===========================

(``B`` the batch, ``P`` the output pixels per image, ``k`` the reduction length
``C_in/group * kh * kw`` or the input dimension; groups are separate GEMMs. An
InnerProduct layer folds the batch into the weight gradient's ``k``, as the
backend does.)

:func:`plan_pass` maps a workload onto an :class:`~barista_hw.config.AcceleratorConfig`
with the tiling of :func:`barista_hw.schedule.schedule_gemm` and predicts its cycles.

Cycle model (exact for the RTL of :mod:`barista_hw.accelerator` driven by the host
described here; checked against the Amaranth simulator in the tests). Times are
clock edges counted from the cycle in which the host presents its first write:

* One **engine command** (chunk) with ``Kt = k * images`` beats per tile, ``T`` tiles in
  row-major order, ``W = rows + cols + 2`` (:func:`barista_hw.engine.wave_latency`),
  ``r(t)`` the valid rows of tile ``t`` (one leaves the bank per cycle, also when the
  command adds partial sums from the accumulator memory), takes, from the edge that
  accepts it to the edge at which ``busy`` falls::

      F + (Kt - 1) + sum_{t < T-1} max(Kt, W + r(t)) + W + r(T-1) - 1 + emit

  where ``F`` is the controller's feed pipeline (:data:`barista_hw.accelerator.FEED_LATENCY`:
  address, buffer read, operand FIFO) and ``emit`` is
  :func:`barista_hw.engine.drain_latency` when the command emits results
  (``acc_last``: the last result beat is sent that many cycles after it leaves the
  bank), else 0. :func:`command_cycles` computes it; with the host
  keeping ``o`` ready, result transfer (one beat per output row per cycle) is inside it.
* **Transfers**: one buffer word per cycle on ``wr`` (A words of ``rows`` lanes, then
  B words of ``cols`` lanes, as :func:`barista_hw.schedule.pack_a` / ``pack_b`` lay
  them out), in chunk order, overlapped with computation (double buffering): a
  chunk's writes into a buffer half start once the last chunk that read that half
  has finished (``busy`` fell) - with both operands rewritten every chunk, that is
  the chunk two before it.
* A command is accepted at ``max(its last write, previous command's end + 1)``.
* Each GEMM (a group of a pass) starts with empty buffers: GEMMs do not overlap.

The host is assumed to write every cycle it may, to keep ``o`` ready, and to read the
results on a link separate from the writes; a board link that shares one channel
for both, or stalls, adds cycles the model does not count.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from barista_base.errors import InputError

from .accelerator import FEED_LATENCY
from .config import AcceleratorConfig, EngineConfig, Pass
from .engine import drain_latency, wave_latency
from .requant import Requantizer
from .schedule import (  # noqa: F401 - re-exported
    Chunk,
    Tiling,
    dim_bits_needed,
    reduction_pattern,
    schedule_gemm,
    share_blocks,
    share_images,
    tiling,
)

KINDS = ("conv", "fc")


@dataclass(frozen=True)
class Workload:
    """One pass of one layer: ``groups`` GEMMs ``(m x images*k) @ (images*k x n)``."""

    layer: str
    kind: Pass
    m: int
    k: int
    n: int
    images: int = 1
    groups: int = 1
    operand_bits: int = 16  # element width used for the byte counts

    @property
    def kt(self) -> int:
        """Reduction length of one GEMM (``images * k``)."""
        return self.k * self.images

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates of the pass (all groups)."""
        return self.m * self.kt * self.n * self.groups

    @property
    def a_elements(self) -> int:
        return self.m * self.kt * self.groups

    @property
    def b_elements(self) -> int:
        return self.kt * self.n * self.groups

    @property
    def c_elements(self) -> int:
        return self.m * self.n * self.groups

    def bytes_moved(self, bits: int | None = None) -> dict[str, int]:
        """Operand and result bytes of the pass at ``bits`` per element (packed)."""
        b = self.operand_bits if bits is None else bits
        return {
            "a": -(-self.a_elements * b // 8),
            "b": -(-self.b_elements * b // 8),
            "c": -(-self.c_elements * b // 8),
        }

    @property
    def label(self) -> str:
        return f"layer {self.layer}, {self.kind.value} pass"


@dataclass(frozen=True)
class GemmLayer:
    """A Convolution (``kind="conv"``) or InnerProduct (``"fc"``) layer, as GEMM dimensions.

    ``m``: output channels per group; ``k``: ``C_in/group * kh * kw`` (fc: input
    dimension); ``p``: output pixels per image (fc: 1). ``backward_data`` is False
    for a layer whose bottom needs no gradient (Caffe's first layer, unless
    ``force_backward``).
    """

    name: str
    kind: str
    batch: int
    m: int
    k: int
    p: int = 1
    group: int = 1
    backward_data: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"layer {self.name}: kind {self.kind!r} must be one of {KINDS}")
        for name in ("batch", "m", "k", "p", "group"):
            if getattr(self, name) < 1:
                raise InputError(f"layer {self.name}: {name} = {getattr(self, name)} must be >= 1")
        if self.kind == "fc" and (self.p != 1 or self.group != 1):
            raise InputError(f"layer {self.name}: an fc layer has p = 1 and group = 1")

    @property
    def n(self) -> int:
        """Columns of the forward and backward-data GEMMs: the batch folded into the pixels."""
        return self.batch * self.p

    def workloads(self, operand_bits: int = 16) -> list[Workload]:
        """The passes of one TRAIN iteration: forward, backward-data (if needed), gradient."""
        g, bits = self.group, operand_bits
        out = [Workload(self.name, Pass.FORWARD, self.m, self.k, self.n, 1, g, bits)]
        if self.backward_data:
            out.append(Workload(self.name, Pass.BACKWARD_DATA, self.k, self.m, self.n, 1, g, bits))
        if self.kind == "conv":
            grad = Workload(
                self.name, Pass.WEIGHT_GRAD, self.m, self.p, self.k, self.batch, g, bits
            )
        else:
            grad = Workload(self.name, Pass.WEIGHT_GRAD, self.m, self.batch, self.k, 1, g, bits)
        out.append(grad)
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "batch": self.batch,
            "m": self.m,
            "k": self.k,
            "p": self.p,
            "group": self.group,
            "backward_data": self.backward_data,
        }


# -- cycle model ----------------------------------------------------------------------


def command_cycles(
    e: EngineConfig, m: int, n: int, kt: int, *, acc_last: bool = True, raw: bool = False
) -> int:
    """Cycles of one accelerator run command, acceptance to ``busy`` low (module docstring).

    ``raw``: an accumulator read-out, whose rows are loaded ``raw_beats`` cycles apart and
    leave from the row register, not through the requantiser."""
    R, C = e.rows, e.cols
    w = wave_latency(e)
    tm, tn = -(-m // R), -(-n // C)
    r_last = m - (tm - 1) * R
    beats = e.raw_beats if raw and acc_last else 1

    def drain(rows: int) -> int:  # cycles from a tile's first row load to its last, plus one
        return (rows - 1) * beats + 1

    issue = (tm - 1) * tn * max(kt, w + drain(R)) + (tn - 1) * max(kt, w + drain(r_last))
    emit = drain_latency(e) if acc_last else 0
    if beats > 1:  # the last row's beats leave the row register, past the requantiser
        emit += beats - Requantizer.LATENCY
    return FEED_LATENCY + (kt - 1) + issue + w + drain(r_last) - 1 + emit


@dataclass
class _Host:
    """State of the double-buffered host (edge times; ``None``: never)."""

    write_end: int = 0  # edge of the latest write
    done: int | None = None  # edge at which the latest command's busy fell
    readers: list[list[int | None]] = field(default_factory=lambda: [[None, None], [None, None]])
    half: list[int] = field(default_factory=lambda: [1, 1])
    # Totals
    engine_cycles: int = 0
    chunks: int = 0
    words_a: int = 0
    words_b: int = 0
    beats_out: int = 0
    raw: bool = False  # the commands are accumulator read-outs

    def totals(self) -> tuple[int, ...]:
        return (self.engine_cycles, self.chunks, self.words_a, self.words_b, self.beats_out)

    def normalised(self) -> tuple:
        """The state relative to ``write_end``; reader times at or before it can no longer
        delay a write (writes start after ``write_end``), so they all compare equal."""
        ref = self.write_end
        done = None if self.done is None else self.done - ref
        readers = tuple(
            None if t is None or t <= ref else t - ref for pair in self.readers for t in pair
        )
        return (done, readers, tuple(self.half))

    def shift(self, dt: int, dtot: Sequence[int]) -> None:
        self.write_end += dt
        self.done = None if self.done is None else self.done + dt
        self.readers = [[None if t is None else t + dt for t in pair] for pair in self.readers]
        self.engine_cycles += dtot[0]
        self.chunks += dtot[1]
        self.words_a += dtot[2]
        self.words_b += dtot[3]
        self.beats_out += dtot[4]

    def run(self, e: EngineConfig, op: tuple) -> None:
        """One chunk: ``(m, n, kt, acc_first, acc_last, a_words, b_words)`` (0: no write)."""
        m, n, kt, first, last, wa, wb = op
        t = self.write_end
        last_write = None
        for buf, words in ((0, wa), (1, wb)):
            if not words:
                continue
            self.half[buf] ^= 1
            start = t + 1
            reader = self.readers[buf][self.half[buf]]
            if reader is not None:
                start = max(start, reader + 1)
            t = last_write = start + words - 1
        self.write_end = t
        accept = 0 if self.done is None else self.done + 1
        if last_write is not None:
            accept = max(accept, last_write)
        cyc = command_cycles(e, m, n, kt, acc_last=last, raw=self.raw)
        self.done = accept + cyc
        self.readers[0][self.half[0]] = self.done
        self.readers[1][self.half[1]] = self.done
        self.engine_cycles += cyc
        self.chunks += 1
        self.words_a += wa
        self.words_b += wb
        if last:
            self.beats_out += m * -(-n // e.cols) * (e.raw_beats if self.raw else 1)


def _execute(host: _Host, e: EngineConfig, node: object) -> None:
    """Run a program node: an op tuple, a list of nodes, or ``("rep", count, node)``.

    A repeat stops iterating once two iterations of its body shift the whole state
    uniformly (the host's recurrence is max-plus and shift-invariant, so it then
    keeps doing so) and jumps ahead; buffer halves alternate, hence period two.
    """
    if isinstance(node, list):
        for sub in node:
            _execute(host, e, sub)
        return
    if node[0] != "rep":
        host.run(e, node)
        return
    _, count, body = node
    history: list[tuple] = []
    i = 0
    while i < count:
        history.append((host.normalised(), host.write_end, host.totals()))
        if len(history) >= 3 and history[-1][0] == history[-3][0]:
            dt = history[-1][1] - history[-3][1]
            dtot = [a - b for a, b in zip(history[-1][2], history[-3][2], strict=True)]
            jumps = (count - i) // 2
            host.shift(dt * jumps, [d * jumps for d in dtot])
            i += 2 * jumps
            history.clear()
            if i >= count:
                break
        _execute(host, e, body)
        i += 1


def _program(cfg: AcceleratorConfig, w: Workload, t: Tiling) -> list:
    """The chunk sequence of ``schedule_gemm`` for one GEMM of ``w``, as a compact program."""
    R, C = cfg.engine.rows, cfg.engine.cols
    limit = min(cfg.a_depth // 2, cfg.b_depth // 2)
    period, reps = reduction_pattern(w.kt, w.k, w.images, limit)
    single = len(period) * reps == 1

    def block(mb: int, nb: int, bm: int, bn: int) -> list:
        tm, tn = -(-bm // R), -(-bn // C)
        # Writes, as schedule_gemm's keys decide: both operands every chunk when the
        # reduction is split; otherwise A once per block row, B unless it never changes.
        write_a = not single or nb == 0
        write_b = not single or not (t.blocks_n == 1 and mb > 0)

        def op(kt: int, first: bool, last: bool) -> tuple:
            return (bm, bn, kt, first, last, tm * kt if write_a else 0, tn * kt if write_b else 0)

        if single:
            return [op(period[0], True, True)]
        seq: list = []
        if reps == 1:  # pieces of whole images: equal, the last maybe shorter
            ps = list(period)
            seq.append(op(ps[0], True, len(ps) == 1))
            if len(ps) > 2:
                mids = ps[1:-1]
                same = mids.count(mids[0]) == len(mids)
                seq.append(
                    ("rep", len(mids), op(mids[0], False, False))
                    if same
                    else [op(p, False, False) for p in mids]
                )
            if len(ps) > 1:
                seq.append(op(ps[-1], False, True))
            return seq
        # The same pieces in every image.
        first_img = [op(period[0], True, False)] + [op(p, False, False) for p in period[1:]]
        mid_img = [op(p, False, False) for p in period]
        last_img = [op(p, False, False) for p in period[:-1]] + [op(period[-1], False, True)]
        seq.append(first_img)
        if reps > 2:
            seq.append(("rep", reps - 2, mid_img))
        seq.append(last_img)
        return seq

    def row(mb: int, bm: int) -> list:
        bn_last = w.n - (t.blocks_n - 1) * t.block_n
        seq: list = [block(mb, 0, bm, t.block_n if t.blocks_n > 1 else bn_last)]
        if t.blocks_n > 2:
            seq.append(("rep", t.blocks_n - 2, block(mb, 1, bm, t.block_n)))
        if t.blocks_n > 1:
            seq.append(block(mb, t.blocks_n - 1, bm, bn_last))
        return seq

    bm_last = w.m - (t.blocks_m - 1) * t.block_m
    prog: list = [row(0, t.block_m if t.blocks_m > 1 else bm_last)]
    if t.blocks_m > 2:
        prog.append(("rep", t.blocks_m - 2, row(1, t.block_m)))
    if t.blocks_m > 1:
        prog.append(row(t.blocks_m - 1, bm_last))
    return prog


def simulate_chunks(
    cfg: AcceleratorConfig, chunks: Sequence[Chunk], raw: bool = False
) -> dict[str, int]:
    """The cycle model run chunk by chunk over an explicit schedule (the reference);
    ``raw``: the commands are accumulator read-outs."""
    host = _Host(raw=raw)
    R, C = cfg.engine.rows, cfg.engine.cols
    for c in chunks:
        wa = -(-c.m // R) * c.kt if c.write_a else 0
        wb = -(-c.n // C) * c.kt if c.write_b else 0
        host.run(cfg.engine, (c.m, c.n, c.kt, c.acc_first, c.acc_last, wa, wb))
    return _host_result(host)


def _host_result(host: _Host) -> dict[str, int]:
    return {
        "cycles": host.done or 0,
        "engine_cycles": host.engine_cycles,
        "chunks": host.chunks,
        "words_a": host.words_a,
        "words_b": host.words_b,
        "beats_out": host.beats_out,
    }


@functools.lru_cache(maxsize=1024)
def batch_split(
    cfg: AcceleratorConfig, m: int, k: int, n: int, images: int, devices: int
) -> tuple[tuple[int, int], ...] | None:
    """How ``devices`` devices share a weight gradient (``k`` per image): the runs of
    images ``[i0, i1)`` each takes (:func:`~barista_hw.schedule.share_images`), each device
    reading out its partial sums, when that is faster by the cycle model than sharing the
    output blocks (:func:`~barista_hw.schedule.share_blocks`); None to share the blocks.

    Splitting the batch gives every device all the output tiles over its part of the
    reduction, each row leaving as ``raw_beats`` beats; sharing blocks gives a device some
    tiles over the whole reduction. So the split pays when the reduction is long and the
    blocks are few (conv1's gradient), not when the tiles are many and the reduction short
    (ip1's). Without the read-out (a minifloat or MX engine, an older build), or with
    fewer than two images, the blocks are shared.
    """
    if devices < 2 or images < 2 or not cfg.engine.readout:
        return None
    shares = share_blocks(tiling(cfg, m, k, n, images), devices)
    whole = [schedule_gemm(cfg, m, k, n, images, blocks=s) for s in shares if s]
    by_blocks = max(simulate_chunks(cfg, chunks)["cycles"] for chunks in whole)
    runs = tuple(share_images(images, devices))
    parts = [schedule_gemm(cfg, m, k, n, i1 - i0) for i0, i1 in runs]
    by_images = max(simulate_chunks(cfg, chunks, raw=True)["cycles"] for chunks in parts)
    return runs if by_images < by_blocks else None


def gemm_cycles(cfg: AcceleratorConfig, w: Workload, t: Tiling | None = None) -> dict[str, int]:
    """Cycle model of one GEMM (one group) of ``w`` on ``cfg``: see the module docstring."""
    t = tiling(cfg, w.m, w.k, w.n, w.images, what=w.label) if t is None else t
    host = _Host()
    _execute(host, cfg.engine, _program(cfg, w, t))
    return _host_result(host)


# -- plans ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PassPlan:
    """One workload mapped onto an accelerator: tiling, transfers, cycles, utilisation."""

    workload: Workload
    tiling: Tiling
    cycles: int  # all groups, transfers included
    engine_cycles: int  # sum of the commands' own cycles
    chunks: int
    words_a: int  # buffer words written (all groups)
    words_b: int
    beats_out: int  # result beats read
    pes: int
    lanes_a: int
    lanes_b: int

    @property
    def utilisation(self) -> float:
        """Useful MACs / (PEs x cycles)."""
        return self.workload.macs / (self.pes * self.cycles) if self.cycles else 0.0

    @property
    def transfer_bytes(self) -> dict[str, int]:
        """Bytes over the host link: buffer words (padded lanes) and result beats."""
        bits = self.workload.operand_bits
        return {
            "write": -(-(self.words_a * self.lanes_a + self.words_b * self.lanes_b) * bits // 8),
            "read": -(-self.beats_out * self.lanes_b * bits // 8),
        }

    def to_dict(self) -> dict:
        w = self.workload
        return {
            "pass": w.kind.value,
            "gemm": {"m": w.m, "k": w.k, "n": w.n, "images": w.images, "groups": w.groups},
            "macs": w.macs,
            "tiling": self.tiling.to_dict(),
            "chunks": self.chunks,
            "cycles": self.cycles,
            "engine_cycles": self.engine_cycles,
            "buffer_words": {"a": self.words_a, "b": self.words_b},
            "result_beats": self.beats_out,
            "bytes": {"operands": w.bytes_moved(), "link": self.transfer_bytes},
            "pe_utilisation": round(self.utilisation, 6),
        }


def plan_pass(cfg: AcceleratorConfig, w: Workload) -> PassPlan:
    """Map ``w`` onto ``cfg`` (raises :class:`InputError` naming the layer and pass)."""
    t = tiling(cfg, w.m, w.k, w.n, w.images, what=w.label)
    r = gemm_cycles(cfg, w, t)
    g = w.groups
    e = cfg.engine
    return PassPlan(
        w,
        t,
        r["cycles"] * g,
        r["engine_cycles"] * g,
        r["chunks"] * g,
        r["words_a"] * g,
        r["words_b"] * g,
        r["beats_out"] * g,
        e.pes,
        e.rows,
        e.cols,
    )


@dataclass(frozen=True)
class NetPlan:
    """Every pass of every layer of one TRAIN iteration on one accelerator."""

    config: AcceleratorConfig
    batch: int
    passes: tuple[PassPlan, ...]

    @property
    def cycles(self) -> int:
        return sum(p.cycles for p in self.passes)

    @property
    def macs(self) -> int:
        return sum(p.workload.macs for p in self.passes)

    @property
    def utilisation(self) -> float:
        return self.macs / (self.config.engine.pes * self.cycles) if self.cycles else 0.0

    @property
    def seconds(self) -> float:
        return self.cycles / (self.config.clock_mhz * 1e6)

    @property
    def images_per_second(self) -> float:
        return self.batch / self.seconds if self.cycles else 0.0


def plan_net(cfg: AcceleratorConfig, layers: Sequence[GemmLayer]) -> NetPlan:
    """Plan all passes of ``layers`` (one TRAIN iteration) on ``cfg``."""
    if not layers:
        raise InputError("the net has no Convolution or InnerProduct layer to plan")
    bits = cfg.engine.fmt.width
    passes = tuple(plan_pass(cfg, w) for layer in layers for w in layer.workloads(bits))
    return NetPlan(cfg, max(layer.batch for layer in layers), passes)
