"""One GEMM pass as device instructions: tile loads, engine chunk commands, result stores.

The accelerator's own schedule (:func:`barista_hw.schedule.schedule_gemm`) cuts the GEMM
into chunks; each chunk becomes a LOAD of its A tile and of its B tile (when the chunk
needs new operands) into one half of the operand buffers, the GEMM command, and, after
the block's last reduction chunk, a STORE of the block from the C scratchpad. C is the
engine's result FIFO: the STORE channel drains a block as the engine emits its beats, so
C holds a few beats, not a block; its two halves name the blocks in flight. The STORE
of a block is emitted after the next chunk's loads, so both DMA channels and the engine
overlap (double buffering).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from barista_hw.config import AcceleratorConfig
from barista_hw.numfmt import Rounding
from barista_hw.schedule import Chunk, Tiling, chunk_limit, schedule_gemm, tiling

from .emit import Builder
from .geometry import Space
from .isa import ACC_FIRST, ACC_LAST, NONE, ON_C, Op, View
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
    nbytes: int = 0  # the DRAM bytes one read of the whole operand takes


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


def operand_reads(t: Tiling) -> tuple[int, int]:
    """How many times a GEMM cut as ``t`` reads its A and its B operand from DRAM: blocks
    run row of blocks by row of blocks, so A stays in its buffer along a row unless the
    reduction is split (each block then loads its own chunks)."""
    return (t.blocks_n if t.k_chunks > 1 else 1), t.blocks_m


def frugal_limit(g: GemmPass, acc_cfg: AcceleratorConfig) -> int:
    """The reduction chunk limit that moves the fewest operand bytes (:func:`operand_reads`);
    among equals the longest chunks, which take the fewest commands. Any limit gives the
    same bits: chunks accumulate at full width and each block keeps its seed."""
    most = chunk_limit(acc_cfg)
    candidates = {most} | {most >> s for s in range(1, 8) if most >> s >= 8}
    best: tuple[int, int] | None = None
    for limit in sorted(candidates, reverse=True):
        t = tiling(acc_cfg, g.m, g.k, g.n, g.images, limit=limit)
        reads_a, reads_b = operand_reads(t)
        cost = g.a.nbytes * reads_a + g.b.nbytes * reads_b
        if best is None or cost < best[0]:
            best = (cost, limit)
    assert best is not None
    return best[1]


def emit_gemm(b: Builder, g: GemmPass, acc_cfg: AcceleratorConfig, c_half: int) -> None:
    """Append the instructions of ``g`` on ``acc_cfg`` (``c_half``: the C address of the
    second block in flight)."""
    what = f"layer {g.layer} {g.kind}"
    limit = frugal_limit(g, acc_cfg)
    chunks = schedule_gemm(acc_cfg, g.m, g.k, g.n, g.images, what=what, limit=limit)
    a_half = acc_cfg.a_depth // 2
    b_half = acc_cfg.b_depth // 2
    desc = b.desc(
        kind="gemm",
        layer=g.layer,
        gemm=g.kind,
        a=g.a.tensor,
        b=g.b.tensor,
        out=g.out.tensor,
        limit=limit,
    )
    seed = zlib.crc32(f"{g.layer}/{g.kind}".encode())
    pending: tuple[Chunk, str, int] | None = None
    for c in chunks:
        ha, hb = f"A{c.a_base // a_half}", f"B{c.b_base // b_half}"
        if c.write_a:
            _tile(b, Op.LOAD, g.a, Space.A, c.a_base, (c.m0, c.m1), (c.kt0, c.kt1), ha)
        if c.write_b:
            _tile(b, Op.LOAD, g.b, Space.B, c.b_base, (c.kt0, c.kt1), (c.n0, c.n1), hb)
        hc = f"C{c.block % 2}"
        c_base = (c.block % 2) * c_half
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
            _store(b, g, *pending)
            pending = None
        if c.acc_last:
            _epilogue(b, g, c, hc, c_base)
            pending = (c, hc, c_base)
    if pending is not None:
        _store(b, g, *pending)


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


def _store(b: Builder, g: GemmPass, c: Chunk, hc: str, c_base: int) -> None:
    _tile(b, Op.STORE, g.out, Space.C, c_base, (c.m0, c.m1), (c.n0, c.n1), hc)


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
    fields = {
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
    if op is Op.LOAD:
        b.emit(op, int(v.view), reads=[v.tensor], writes=[half], **fields)
    else:
        b.emit(op, int(v.view), reads=[half], writes=[v.tensor], **fields)
