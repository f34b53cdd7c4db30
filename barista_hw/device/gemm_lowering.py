"""One GEMM pass as device instructions: tile loads, engine chunk commands, result stores.

The accelerator's own schedule (:func:`barista_hw.schedule.schedule_gemm`), with the
chunk limit, block shape and loop order that load the fewest DRAM bytes
(:func:`schedule_options`), cuts the GEMM into chunks; each chunk becomes a LOAD of its
A tile and of its B tile (when the chunk needs new operands) into its place in the
operand buffers, the GEMM command, and, after the block's last reduction chunk, a STORE
of the block from the C scratchpad. C is the engine's result FIFO: the STORE channel
drains a block as the engine emits its beats, so C holds a few beats, not a block; its
two halves name the blocks in flight. The STORE
of a block is emitted after the next chunk's loads, so both DMA channels and the engine
overlap (double buffering).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig
from barista_hw.numfmt import Rounding
from barista_hw.schedule import Chunk, ScheduleOptions, chunk_limit, schedule_gemm, tiling

from . import traffic
from .emit import Builder
from .geometry import Space
from .isa import ACC_FIRST, ACC_LAST, NONE, ON_C, Instruction, Op, View
from .memory import DeviceConfig
from .vector import VecOp


@dataclass(frozen=True)
class Operand:
    """A DRAM view a GEMM reads or writes: descriptor ``desc`` of ``view`` kind over tensor
    ``tensor`` at slot ``dram``; the GEMM's rows start at ``row0`` of the view (a group's
    channels); ``transpose``: the GEMM operand is the view transposed."""

    tensor: str
    view: View
    desc: int
    dram: int
    row0: int = 0
    group: int = 0
    transpose: bool = False


@dataclass(frozen=True)
class GemmPass:
    """``out (m x n) = a (m x images*k) @ b (images*k x n)`` of layer ``layer``'s ``kind`` pass."""

    layer: str
    kind: str
    a: Operand
    b: Operand
    out: Operand
    m: int
    k: int
    n: int
    images: int = 1
    rounding: Rounding = Rounding.NEAREST_EVEN
    # Vector operations on each result block in C before its STORE (bias, ReLU): an
    # operation, its second operand's tensor (or None), its parameter.
    epilogue: tuple[tuple[VecOp, str | None, int], ...] = ()


def schedule_options(
    g: GemmPass,
    acc_cfg: AcceleratorConfig,
    rate: Callable[[Operand, int, int, tuple[int, int]], float],
    c_words: int,
) -> ScheduleOptions:
    """The schedule of ``g`` that moves the fewest operand bytes: the reduction chunk limit,
    the block shape (``tiles_m``, ``tiles_n``; a result block fits ``c_words``, half the C
    scratchpad) and the loop order (which operand stays in its buffer while the other's
    blocks pass, :func:`~barista_hw.schedule.schedule_gemm` with ``reuse``), each operand
    read as often as the tiling says, at ``rate(operand, space, rows, cols, extent)`` bytes an
    element for tiles of its shape (:func:`load_rate`). Among equals the fewest commands,
    then the longest chunks. Any choice gives the same bits: chunks accumulate at full width
    and each block keeps its number, so its seed.

    Raises :class:`InputError` naming the layer when no block of one tile fits C."""
    most = chunk_limit(acc_cfg)
    limits = {most} | {most >> s for s in range(1, 8) if most >> s >= 8}
    e = acc_cfg.engine
    tm_all, tn_all = -(-g.m // e.rows), -(-g.n // e.cols)
    kt = g.k * g.images
    caps = _fitting_caps(tm_all, tn_all, e.rows, c_words)
    if not caps:
        raise InputError(
            f"layer {g.layer} {g.kind}: a result block of one tile ({e.rows} words) does not "
            f"fit half the C scratchpad ({c_words} words)"
        )
    best: tuple[tuple[float, int, int], ScheduleOptions] | None = None
    for limit in sorted(limits, reverse=True):
        for (tiles_m, tiles_n), stationary in itertools.product(caps, "ab"):
            opts = ScheduleOptions(limit, tiles_m, tiles_n, stationary, reuse=True)
            t = tiling(acc_cfg, g.m, g.k, g.n, g.images, options=opts)
            rows, cols = min(g.m, t.block_m), min(g.n, t.block_n)
            cost = t.reads_a * g.m * kt * rate(
                g.a, Space.A, rows, t.chunk_kt, (g.m, kt)
            ) + t.reads_b * kt * g.n * rate(g.b, Space.B, t.chunk_kt, cols, (kt, g.n))
            key = (round(cost), t.chunks, -limit)
            if best is None or key < best[0]:
                best = (key, opts)
    assert best is not None
    return best[1]


def _fitting_caps(
    tm_all: int, tn_all: int, rows: int, c_words: int
) -> list[tuple[int | None, int | None]]:
    """Block caps (``tiles_m``, ``tiles_n``; None: all) whose result block, ``tiles_m *
    rows`` rows of ``tiles_n`` C words, fits ``c_words``: for each cap along one dimension
    the largest along the other (a larger block re-reads less)."""

    def words(tm: int | None, tn: int | None) -> int:
        return min(tm or tm_all, tm_all) * rows * min(tn or tn_all, tn_all)

    caps_m, caps_n = [*_caps(tm_all), None], [*_caps(tn_all), None]
    out: set[tuple[int | None, int | None]] = set()
    for tm in caps_m:
        fit = [tn for tn in caps_n if words(tm, tn) <= c_words]
        if fit:
            out.add((tm, max(fit, key=lambda t: t or tn_all)))
    for tn in caps_n:
        fit = [tm for tm in caps_m if words(tm, tn) <= c_words]
        if fit:
            out.add((max(fit, key=lambda t: t or tm_all), tn))
    return sorted(out, key=lambda c: (c[0] or 0, c[1] or 0))


def _caps(tiles: int) -> list[int]:
    """The tile counts a block can take along a dimension of ``tiles`` tiles, one for each
    number of blocks (the largest that gives it)."""
    return sorted({-(-tiles // -(-tiles // t)) for t in range(1, tiles + 1)})


def emit_gemm(b: Builder, g: GemmPass, config: DeviceConfig) -> None:
    """Append the instructions of ``g`` on ``config``'s accelerator, scheduled to move the
    fewest DRAM bytes (:func:`schedule_options`)."""
    what = f"layer {g.layer} {g.kind}"
    acc_cfg = config.accelerator
    c_half = config.scratchpads.c_depth // 2
    rate = functools.partial(load_rate, b, config)
    opts = b.schedule((g.layer, g.kind), lambda: schedule_options(g, acc_cfg, rate, c_half))
    chunks = schedule_gemm(acc_cfg, g.m, g.k, g.n, g.images, what=what, options=opts)
    a_half = acc_cfg.a_depth // 2
    b_half = acc_cfg.b_depth // 2
    desc = b.desc(
        kind="gemm",
        layer=g.layer,
        gemm=g.kind,
        a=g.a.tensor,
        b=g.b.tensor,
        out=g.out.tensor,
        **dataclasses.asdict(opts),
    )
    seed = zlib.crc32(f"{g.layer}/{g.kind}".encode())
    pending: tuple[Chunk, str, int] | None = None
    blocks = -1  # blocks started, in the order they run: C's halves alternate between them
    for c in chunks:
        ha, hb = f"A{c.a_base // a_half}", f"B{c.b_base // b_half}"
        if c.write_a:
            _tile(b, Op.LOAD, g.a, Space.A, c.a_base, (c.m0, c.m1), (c.kt0, c.kt1), ha)
        if c.write_b:
            _tile(b, Op.LOAD, g.b, Space.B, c.b_base, (c.kt0, c.kt1), (c.n0, c.n1), hb)
        blocks += c.acc_first
        hc = f"C{blocks % 2}"
        c_base = (blocks % 2) * c_half
        b.emit(
            Op.GEMM,
            reads=[ha, hb] + ([] if c.acc_first else [hc]),
            writes=[hc],
            m=c.m,
            k=c.k,
            n=c.n,
            images=c.images,
            desc=desc,
            mode=int(g.rounding) | ACC_FIRST * c.acc_first | ACC_LAST * c.acc_last,
            seed=seed,
            block=c.block,
            a_base=c.a_base,
            b_base=c.b_base,
            c_base=c_base,
        )
        if pending is not None:
            _store(b, g, *pending, config)
            pending = None
        if c.acc_last:
            _epilogue(b, g, c, hc, c_base)
            pending = (c, hc, c_base)
    if pending is not None:
        _store(b, g, *pending, config)


def _epilogue(b: Builder, g: GemmPass, c: Chunk, hc: str, c_base: int) -> None:
    """``g``'s epilogue on the block in C: rows ``[m0, m1)`` of the result (channels
    ``row0 + m0`` on of the output tensor)."""
    for op, src2, param in g.epilogue:
        ix = b.index
        b.emit(
            Op.VEC,
            int(op),
            reads=[hc] + ([src2] if src2 else []),
            writes=[hc],
            src=c.n,
            src2=ix[src2] if src2 else NONE,
            dst=ix[g.out.tensor],
            dst2=c_base,
            desc=ON_C,
            rounding=int(g.rounding),
            i0=g.out.row0 + c.m0,
            images=c.m,
            seed=b.next_seed(),
            param=param,
        )


def _store(b: Builder, g: GemmPass, c: Chunk, hc: str, c_base: int, config: DeviceConfig) -> None:
    """The STORE of the block in C; a col2im STORE whose footprint (first to last DRAM
    element it adds into) exceeds the DMA's accumulator is cut into STOREs that fit."""
    rows, cols = (c.m0, c.m1), (c.n0, c.n1)
    limit = config.scratchpads.col2im_elements
    if (
        g.out.view != View.IM2COL
        or limit is None
        or _footprint(b, g.out, c_base, rows, cols) <= limit
    ):
        _tile(b, Op.STORE, g.out, Space.C, c_base, rows, cols, hc)
        return
    for spad, part_rows, part_cols in _col2im_parts(b, g.out, c_base, rows, cols, config):
        _tile(b, Op.STORE, g.out, Space.C, spad, part_rows, part_cols, hc)


def _footprint(
    b: Builder, v: Operand, spad: int, rows: tuple[int, int], cols: tuple[int, int]
) -> int:
    """The DRAM elements from the first to the last a col2im STORE of the tile adds into."""
    inst = Instruction(Op.STORE, int(v.view), fields=_fields(v, Space.C, spad, rows, cols))
    index = traffic.tile_index(inst, b.program)
    valid = index[index >= 0]
    return int(valid.max() - valid.min()) + 1 if valid.size else 0


def _col2im_parts(
    b: Builder,
    v: Operand,
    c_base: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    config: DeviceConfig,
) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
    """(scratchpad word, rows, columns) of STOREs covering the block whose footprints fit
    the accumulator. C holds column strips of ``lanes`` columns, each ``rows`` words (a
    row a word), so a part is whole rows of consecutive strips or rows of one strip: the
    longest that fits, greedily (a footprint only grows with the tile)."""
    lanes, limit = config.accelerator.engine.cols, config.scratchpads.col2im_elements
    height = rows[1] - rows[0]
    strips = -(-(cols[1] - cols[0]) // lanes)

    def span(s0: int, s1: int) -> tuple[int, int]:
        return cols[0] + s0 * lanes, min(cols[1], cols[0] + s1 * lanes)

    def fits(s0: int, s1: int, r0: int, r1: int) -> bool:
        return _footprint(b, v, 0, (r0, r1), span(s0, s1)) <= limit

    parts = []
    s = 0
    while s < strips:
        n = _longest(lambda k, s=s: fits(s, s + k, *rows), strips - s)
        if n:
            parts.append((c_base + s * height, rows, span(s, s + n)))
            s += n
            continue
        r = rows[0]
        while r < rows[1]:
            k = _longest(lambda k, s=s, r=r: fits(s, s + 1, r, r + k), rows[1] - r)
            if not k:
                c0, c1 = span(s, s + 1)
                raise InputError(
                    f"a col2im STORE into {v.tensor!r} of row {r}, columns [{c0}, {c1}) "
                    f"(one strip of C's {lanes} lanes) has a footprint larger than the "
                    f"DMA's accumulator of {limit} elements"
                )
            parts.append((c_base + s * height + r - rows[0], (r, r + k), span(s, s + 1)))
            r += k
        s += 1
    return parts


def _longest(ok: Callable[[int], bool], most: int) -> int:
    """The largest ``k`` in ``[0, most]`` with ``ok(k)`` (``ok`` holds up to some k)."""
    lo, hi = 0, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def load_rate(
    b: Builder,
    config: DeviceConfig,
    v: Operand,
    space: Space,
    rows: int,
    cols: int,
    extent: tuple[int, int],
) -> float:
    """DRAM bytes an element of a LOAD of a ``rows x cols`` tile of ``v`` (a GEMM operand
    of ``extent`` rows and columns) into ``space`` takes, as the traffic model counts them
    (the port's words: they depend on the scratchpad's lanes, and B's stage buffer); an
    im2col tile's depend on where it starts: the mean of tiles at the start, a third and
    two thirds of the way."""
    key = ("rate", v, space, rows, cols)
    if key not in b.cache:
        starts = [(0, 0)]
        if v.view == View.IM2COL:
            starts += [
                tuple(
                    size * (e // size * i // 3)
                    for size, e in zip((rows, cols), extent, strict=True)
                )
                for i in (1, 2)
            ]
        moved = elements = 0
        for r0, c0 in dict.fromkeys(starts):
            r1, c1 = min(extent[0], r0 + rows), min(extent[1], c0 + cols)
            fields = _fields(v, space, 0, (r0, r1), (c0, c1))
            inst = Instruction(Op.LOAD, int(v.view), fields=fields)
            moved += traffic.instruction_counts(inst, b.program, config).dram_read_bytes
            elements += (r1 - r0) * (c1 - c0)
        b.cache[key] = moved / elements
    return b.cache[key]


def _fields(
    v: Operand, space: Space, spad: int, rows: tuple[int, int], cols: tuple[int, int]
) -> dict[str, int]:
    """The fields of a LOAD or STORE of tile ``rows x cols`` of ``v``."""
    return {
        "space": int(space),
        "desc": v.desc,
        "group": v.group,
        "flags": int(v.transpose),
        "dram": v.dram,
        "spad": spad,
        "r0": v.row0 + rows[0],
        "rows": rows[1] - rows[0],
        "c0": cols[0],
        "cols": cols[1] - cols[0],
    }


def _tile(
    b: Builder,
    op: Op,
    v: Operand,
    space: Space,
    spad: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    half: str,
) -> None:
    """A LOAD of tile ``rows x cols`` of ``v`` into ``half`` or a STORE of it from there."""
    fields = _fields(v, space, spad, rows, cols)
    if op is Op.LOAD:
        b.emit(op, int(v.view), reads=[v.tensor], writes=[half], **fields)
    else:
        b.emit(op, int(v.view), reads=[half], writes=[v.tensor], **fields)
