"""How one GEMM runs on an accelerator: blocks, reduction chunks, buffer addresses.

A pass ``C = A @ B`` (``A``: M x Kt, ``Kt = images * k`` image-major) becomes a
list of :class:`Chunk` commands. Output blocks of ``Mc x Nc`` (whole tiles)
keep their operands inside one half of each buffer, so the host can write the
next chunk's operands into the other half while the engine computes
(double buffering). When ``Kt`` does not fit, the reduction is cut into
chunks that accumulate at full width in the engine's accumulator memory and
requantise once, with the last chunk (bit-identical to one long command).

Every backend that claims the accelerator's bits (the golden model given an
``AcceleratorConfig``, the RTL, the board) follows this schedule; stochastic
rounding makes it matter, because each block restarts the LFSR lanes with its
own seed (:func:`block_seed`) and its own beat order.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from barista_base.errors import InputError

from .config import AcceleratorConfig
from .mxformat import MXGemmFormat


@dataclass(frozen=True)
class ScheduleOptions:
    """The choices of how a GEMM is cut and ordered, which move operand words but never a
    result bit (:func:`tiling`, :func:`schedule_gemm`).

    ``limit``: the longest reduction chunk (default, and at most, half the smaller operand
    buffer); a shorter one lets more tiles share a block. ``tiles_m``, ``tiles_n``: at most
    so many tiles a block along M and N (default: as many as fit). ``stationary``: the
    operand that stays in its buffer while the other's blocks pass (``"a"``: blocks run row
    by row, ``"b"``: column by column). ``reuse``: keep blocks resident for reuse.
    """

    limit: int | None = None
    tiles_m: int | None = None
    tiles_n: int | None = None
    stationary: str = "a"
    reuse: bool = False


DEFAULT_OPTIONS = ScheduleOptions()


@dataclass(frozen=True)
class Chunk:
    """One accelerator run command and the buffer writes it needs before it."""

    block: int  # index of the (m, n) output block
    m0: int
    m1: int
    n0: int
    n1: int
    kt0: int  # reduction range [kt0, kt1) of Kt = images * k
    kt1: int
    k: int  # the command's k and images: (kt1 - kt0) == k * images
    images: int
    acc_first: bool
    acc_last: bool
    a_base: int
    b_base: int
    write_a: bool  # the A words of this chunk must be written first
    write_b: bool

    @property
    def m(self) -> int:
        return self.m1 - self.m0

    @property
    def n(self) -> int:
        return self.n1 - self.n0

    @property
    def kt(self) -> int:
        return self.kt1 - self.kt0


def block_seed(seed: int, block: int) -> int:
    """Seed of output block ``block`` of a GEMM whose command seed is ``seed``."""
    return seed if block == 0 else zlib.crc32(f"{seed}:{block}".encode())


def reduction_chunks(
    kt: int, k: int, images: int, limit: int, align: int = 1
) -> list[tuple[int, int, int, int]]:
    """Cut ``Kt = images * k`` into pieces of at most ``limit``: (kt0, kt1, k, images) each.

    Whole images when one image fits (``images`` per command), else pieces of
    one image (``images = 1``). With ``align > 1`` (an MX engine's block: it counts
    blocks from each command's first term) every piece starts at a multiple of ``align``
    of the flattened reduction, pieces of ``limit`` rounded down to it (``images = 1``).
    """
    if kt <= limit:
        return [(0, kt, k, images)]
    if align > 1:
        step = limit // align * align
        if not step:
            raise InputError(
                f"reduction chunks of at most {limit} terms cannot start at multiples of the "
                f"MX block ({align}): larger operand buffers are needed"
            )
        return [(lo, min(kt, lo + step), min(kt, lo + step) - lo, 1) for lo in range(0, kt, step)]
    if k <= limit:
        per = limit // k
        out = []
        for i0 in range(0, images, per):
            n_img = min(per, images - i0)
            out.append((i0 * k, (i0 + n_img) * k, k, n_img))
        return out
    pieces = -(-k // limit)
    bounds = np.linspace(0, k, pieces + 1).round().astype(int)
    out = []
    for img in range(images):
        for j in range(pieces):
            lo, hi = int(bounds[j]), int(bounds[j + 1])
            out.append((img * k + lo, img * k + hi, hi - lo, 1))
    return out


@dataclass(frozen=True)
class Tiling:
    """How :func:`schedule_gemm` cuts one GEMM: output blocks and reduction chunks."""

    block_m: int  # output block: rows (whole tiles) and columns
    block_n: int
    blocks_m: int
    blocks_n: int
    k_chunks: int  # reduction chunks per block
    chunk_kt: int  # the longest chunk's reduction length
    a_words: int  # words of one buffer-A half used by a block (occupancy)
    b_words: int
    acc_rows: int  # accumulator-memory rows used (0 when the reduction is not split)
    # Which operand stays in its buffer while the other's blocks pass ("a": blocks run row
    # of blocks by row, "b": column by column), and whether blocks are kept for reuse
    # (:func:`schedule_gemm`).
    stationary: str = "a"
    reuse: bool = False
    reads_a: int = 1  # how many times the schedule loads each word of A (and of B)
    reads_b: int = 1

    @property
    def chunks(self) -> int:
        return self.blocks_m * self.blocks_n * self.k_chunks

    def to_dict(self) -> dict:
        return {
            "block_m": self.block_m,
            "block_n": self.block_n,
            "blocks_m": self.blocks_m,
            "blocks_n": self.blocks_n,
            "k_chunks": self.k_chunks,
            "chunk_kt": self.chunk_kt,
            "a_words": self.a_words,
            "b_words": self.b_words,
            "acc_rows": self.acc_rows,
            "chunks": self.chunks,
            "stationary": self.stationary,
            "reuse": self.reuse,
            "reads_a": self.reads_a,
            "reads_b": self.reads_b,
        }


def dim_bits_needed(*dims: int) -> int:
    """Width of the command fields that holds every one of ``dims``."""
    return max(1, max(dims).bit_length())


@functools.lru_cache(maxsize=65536)
def reduction_pattern(
    kt: int, k: int, images: int, limit: int, align: int = 1
) -> tuple[tuple[int, ...], int]:
    """Reduction pieces of one block: (one period of piece lengths, number of periods).

    ``reduction_chunks`` yields either equal pieces of whole images or of the flattened
    reduction (the last one maybe shorter) or the same per-image pieces repeated for every
    image.
    """
    pieces = reduction_chunks(kt, k, images, limit, align)
    if len(pieces) == 1 or k <= limit or align > 1:
        return tuple(p[1] - p[0] for p in pieces), 1
    per_image = len(pieces) // images
    return tuple(p[1] - p[0] for p in pieces[:per_image]), images


def tiling(
    cfg: AcceleratorConfig,
    m: int,
    k: int,
    n: int,
    images: int = 1,
    *,
    what: str = "GEMM",
    options: ScheduleOptions = DEFAULT_OPTIONS,
) -> Tiling:
    """How a GEMM is cut on ``cfg`` with ``options`` (the one place that decides;
    :func:`schedule_gemm` lists the chunks of it). The block shape, loop order and
    operand residency give how often each operand is loaded (``reads_a``, ``reads_b``).

    Raises :class:`InputError` naming ``what`` and what would be needed when the
    GEMM cannot run on ``cfg``.
    """
    e = cfg.engine
    R, C = e.rows, e.cols
    for name, v in (("M", m), ("K", k), ("N", n), ("images", images)):
        if v < 1:
            raise InputError(f"{what}: {name} = {v} must be at least 1")
        if v > e.max_dim:
            raise InputError(
                f"{what}: {name} = {v} exceeds the {e.dim_bits}-bit command field "
                f"(needs dim_bits >= {dim_bits_needed(v)})"
            )
    stationary, reuse = options.stationary, options.reuse
    if stationary not in ("a", "b"):
        raise InputError(f"{what}: stationary operand {stationary!r} is not 'a' or 'b'")
    for name, cap in (("tiles_m", options.tiles_m), ("tiles_n", options.tiles_n)):
        if cap is not None and cap < 1:
            raise InputError(f"{what}: {name} = {cap} must be at least 1")
    a_half, b_half = cfg.a_depth // 2, cfg.b_depth // 2
    kt = k * images
    limit = chunk_limit(cfg, options.limit)
    period, reps = reduction_pattern(kt, k, images, limit, reduction_align(cfg))
    n_chunks = len(period) * reps
    kc = max(period)
    tm_all, tn_all = -(-m // R), -(-n // C)
    tmc = min(tm_all, a_half // kc, options.tiles_m or tm_all)
    tnc = min(tn_all, b_half // kc, options.tiles_n or tn_all)
    acc_rows = 0
    if n_chunks > 1:
        if not e.acc_depth:
            raise InputError(
                f"{what}: a reduction of {kt} does not fit half the operand buffers "
                f"({a_half}/{b_half} words) and the engine has no accumulator memory "
                f"(needs a_depth, b_depth >= {2 * kt} or acc_depth >= {R})"
            )
        tmc = min(tmc, max(1, e.acc_depth // R))
        tnc = min(tnc, max(1, e.acc_depth // (R * tmc)))
        acc_rows = tmc * tnc * R
    blocks_m, blocks_n = -(-tm_all // tmc), -(-tn_all // tnc)
    split = n_chunks > 1
    a_mode, b_mode = _modes(
        stationary == "a", reuse, tmc * kt <= a_half, tnc * kt <= b_half, blocks_m, blocks_n
    )
    return Tiling(
        block_m=tmc * R,
        block_n=tnc * C,
        blocks_m=blocks_m,
        blocks_n=blocks_n,
        k_chunks=n_chunks,
        chunk_kt=kc,
        a_words=tmc * kc,
        b_words=tnc * kc,
        acc_rows=acc_rows,
        stationary=stationary,
        reuse=reuse,
        reads_a=_reads(a_mode, stationary == "a", split, blocks_m, blocks_n),
        reads_b=_reads(b_mode, stationary == "b", split, blocks_n, blocks_m),
    )


# How an operand's pieces (a block's part of one reduction chunk) sit in its buffer:
STREAM = "stream"  # each piece in the half the last one did not use, reloaded when it changes
RESIDENT = "resident"  # a block's whole reduction in one half, loaded once per visit
PINNED = "pinned"  # block j in half j for the whole GEMM (at most two blocks)


def _modes(
    a_outer: bool, reuse: bool, fits_a: bool, fits_b: bool, blocks_m: int, blocks_n: int
) -> tuple[str, str]:
    """The placement of A's and B's pieces. Without ``reuse`` both stream (which keeps an
    unsplit block across the blocks that share it). With it the stationary operand's block
    stays for all its reduction (when that fits half its buffer), and the moving operand's
    blocks stay in the two halves when there are at most two of them (and they fit)."""
    stat_fits, mov_fits = (fits_a, fits_b) if a_outer else (fits_b, fits_a)
    mov_blocks = blocks_n if a_outer else blocks_m
    stat = RESIDENT if reuse and stat_fits else STREAM
    mov = PINNED if reuse and mov_fits and mov_blocks <= 2 else STREAM
    return (stat, mov) if a_outer else (mov, stat)


def _reads(mode: str, outer: bool, split: bool, own_blocks: int, other_blocks: int) -> int:
    """How often :func:`schedule_gemm` loads each word of an operand placed as ``mode``
    (``outer``: it is the stationary operand; ``own_blocks``: its blocks along M for A, N
    for B; ``other_blocks``: the other operand's)."""
    if mode == PINNED:
        return 1
    if split and mode == STREAM:  # every block loads its own pieces
        return other_blocks
    return 1 if outer or own_blocks == 1 else other_blocks


def reduction_align(cfg: AcceleratorConfig) -> int:
    """Where reduction chunks may start: multiples of an MX engine's block, else anywhere."""
    fmt = cfg.engine.fmt
    return fmt.arith.block if isinstance(fmt, MXGemmFormat) else 1


def chunk_limit(cfg: AcceleratorConfig, limit: int | None = None) -> int:
    """The longest reduction chunk: ``limit``, at most half the smaller operand buffer."""
    most = min(cfg.a_depth, cfg.b_depth) // 2
    if limit is None:
        return most
    if not 1 <= limit <= most:
        raise InputError(f"reduction chunk limit {limit} outside 1..{most}")
    return limit


def schedule_gemm(
    cfg: AcceleratorConfig,
    m: int,
    k: int,
    n: int,
    images: int = 1,
    *,
    what: str = "GEMM",
    options: ScheduleOptions = DEFAULT_OPTIONS,
    blocks: Collection[int] | None = None,
) -> list[Chunk]:
    """The chunk commands that compute an ``m x (images*k) x n`` GEMM on ``cfg`` with
    ``options`` (:class:`ScheduleOptions`); with ``blocks``, only those output blocks'
    (numbered as in the whole GEMM, so with the same seeds; :func:`share_blocks`).

    Blocks run row by row (``stationary="a"``: A's block stays while B's blocks of the
    row pass) or column by column (``"b"``); within a block the reduction chunks run in
    order. Blocks are numbered row-major whatever the order (the number seeds the
    block's rounding, :func:`block_seed`), so the order and the placement of the operands
    never change a result bit. With ``reuse`` the stationary operand's block keeps its
    whole reduction in one buffer half when it fits (its chunks side by side), so a split
    reduction loads it once, and a moving operand of at most two blocks keeps them in the
    two halves for the whole GEMM. ``write_a``/``write_b`` mark the chunks whose operand
    piece must be loaded first.
    """
    t = tiling(cfg, m, k, n, images, what=what, options=options)
    a_half, b_half = cfg.a_depth // 2, cfg.b_depth // 2
    kt = k * images
    limit = chunk_limit(cfg, options.limit)
    chunks_k = reduction_chunks(kt, k, images, limit, reduction_align(cfg))
    a_outer = options.stationary == "a"
    a_mode, b_mode = _modes(
        a_outer,
        options.reuse,
        t.a_words // t.chunk_kt * kt <= a_half,
        t.b_words // t.chunk_kt * kt <= b_half,
        t.blocks_m,
        t.blocks_n,
    )
    buf_a, buf_b = _Buffer(a_half, a_mode), _Buffer(b_half, b_mode)
    order = [(i, j) for i in range(t.blocks_m) for j in range(t.blocks_n)]
    if not a_outer:
        order.sort(key=lambda ij: (ij[1], ij[0]))
    if blocks is not None:
        wanted = frozenset(blocks)
        order = [(i, j) for i, j in order if i * t.blocks_n + j in wanted]
    out: list[Chunk] = []
    for bi, bj in order:
        m0, n0 = bi * t.block_m, bj * t.block_n
        m1, n1 = min(m, m0 + t.block_m), min(n, n0 + t.block_n)
        tiles_a, tiles_b = -(-(m1 - m0) // cfg.engine.rows), -(-(n1 - n0) // cfg.engine.cols)
        for i, (kt0, kt1, kk, imgs) in enumerate(chunks_k):
            a_base, write_a = buf_a.place(bi, kt0, tiles_a)
            b_base, write_b = buf_b.place(bj, kt0, tiles_b)
            out.append(
                Chunk(
                    bi * t.blocks_n + bj,
                    m0,
                    m1,
                    n0,
                    n1,
                    kt0,
                    kt1,
                    kk,
                    imgs,
                    i == 0,
                    i == len(chunks_k) - 1,
                    a_base,
                    b_base,
                    write_a,
                    write_b,
                )
            )
    return out


def block_rects(
    cfg: AcceleratorConfig, m: int, k: int, n: int, images: int, blocks: Collection[int]
) -> list[tuple[int, int, int, int]]:
    """``(m0, m1, n0, n1)`` of each of ``blocks`` of an ``m x (images*k) x n`` GEMM's
    schedule on ``cfg``, in the order the schedule runs them."""
    chunks = schedule_gemm(cfg, m, k, n, images, blocks=blocks)
    return [(c.m0, c.m1, c.n0, c.n1) for c in chunks if c.acc_last]


def share_blocks(t: Tiling, parts: int) -> list[list[int]]:
    """The output blocks of a GEMM tiled as ``t`` cut into ``parts`` shares of nearly equal
    size, one per device of a data-parallel run.

    Blocks are taken column of blocks by column of blocks, so for the forward and
    backward-data passes (``N = images * pixels``, image-major) each share is a run of
    whole blocks of consecutive images: the batch split, at block boundaries. A block is
    never cut: its rounding words follow its seed and its beat order
    (:func:`block_seed`), so a share's blocks are the bits one device computes.
    """
    if parts < 1:
        raise InputError(f"cannot share a GEMM's blocks among {parts} devices")
    order = [i * t.blocks_n + j for j in range(t.blocks_n) for i in range(t.blocks_m)]
    bounds = _even_cuts(len(order), parts)
    return [order[bounds[d] : bounds[d + 1]] for d in range(parts)]


def share_images(images: int, parts: int) -> list[tuple[int, int]]:
    """A batch of ``images`` cut into at most ``parts`` contiguous runs ``[i0, i1)`` of
    nearly equal size, none empty: each device's part of a weight gradient's reduction
    when the batch is split (:func:`barista_hw.plan.batch_split`)."""
    if parts < 1:
        raise InputError(f"cannot share a batch among {parts} devices")
    bounds = _even_cuts(images, min(parts, images))
    return [(int(bounds[d]), int(bounds[d + 1])) for d in range(len(bounds) - 1)]


def _even_cuts(n: int, parts: int) -> np.ndarray:
    """``parts + 1`` bounds cutting ``0..n`` into runs of nearly equal length."""
    return np.linspace(0, n, parts + 1).round().astype(int)


class _Buffer:
    """Where an operand buffer puts each piece (block ``block``'s part of the reduction
    chunk that starts at ``kt0``), by its placement mode (:func:`_modes`)."""

    def __init__(self, half: int, mode: str) -> None:
        self.half, self.mode = half, mode
        self.cur = 1  # toggled before first use, so the first piece goes to half 0
        self.last: object = None
        self.loaded: set[tuple[int, int]] = set()

    def place(self, block: int, kt0: int, tiles: int) -> tuple[int, bool]:
        """The piece's first buffer word and whether it must be loaded first."""
        if self.mode == STREAM:
            key = (block, kt0)
            write = key != self.last
            if write:
                self.cur ^= 1
            self.last = key
            return self.cur * self.half, write
        if self.mode == PINNED:
            base = block * self.half + tiles * kt0
            write = (block, kt0) not in self.loaded
            self.loaded.add((block, kt0))
            return base, write
        if block != self.last:  # RESIDENT: a new block takes the other half
            self.cur ^= 1
            self.last = block
            self.loaded = set()
        write = kt0 not in self.loaded
        self.loaded.add(kt0)
        return self.cur * self.half + tiles * kt0, write


def pack_a(a: np.ndarray, rows: int) -> np.ndarray:
    """Buffer-A words of an operand block: (TM*Kt, rows), word ``tm*Kt + kk`` = A[tm*R.., kk]."""
    m, kt = a.shape
    tm = -(-m // rows)
    padded = np.zeros((tm * rows, kt), dtype=a.dtype)
    padded[:m] = a
    return padded.reshape(tm, rows, kt).transpose(0, 2, 1).reshape(tm * kt, rows)


def pack_b(b: np.ndarray, cols: int) -> np.ndarray:
    """Buffer-B words of an operand block: (TN*Kt, cols), word ``tn*Kt + kk`` = B[kk, tn*C..]."""
    kt, n = b.shape
    tn = -(-n // cols)
    padded = np.zeros((kt, tn * cols), dtype=b.dtype)
    padded[:, :n] = b
    return padded.reshape(kt, tn, cols).transpose(1, 0, 2).reshape(tn * kt, cols)
