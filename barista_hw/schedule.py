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
from dataclasses import dataclass

import numpy as np

from barista_base.errors import InputError

from .config import AcceleratorConfig


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


def reduction_chunks(kt: int, k: int, images: int, limit: int) -> list[tuple[int, int, int, int]]:
    """Cut ``Kt = images * k`` into pieces of at most ``limit``: (kt0, kt1, k, images) each.

    Whole images when one image fits (``images`` per command), else pieces of
    one image (``images = 1``).
    """
    if kt <= limit:
        return [(0, kt, k, images)]
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
        }


def dim_bits_needed(*dims: int) -> int:
    """Width of the command fields that holds every one of ``dims``."""
    return max(1, max(dims).bit_length())


@functools.lru_cache(maxsize=65536)
def reduction_pattern(kt: int, k: int, images: int, limit: int) -> tuple[tuple[int, ...], int]:
    """Reduction pieces of one block: (one period of piece lengths, number of periods).

    ``reduction_chunks`` yields either equal pieces of whole images (the last one
    maybe shorter) or the same per-image pieces repeated for every image.
    """
    pieces = reduction_chunks(kt, k, images, limit)
    if len(pieces) == 1 or k <= limit:
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
    limit: int | None = None,
) -> Tiling:
    """How a GEMM is cut on ``cfg`` (the one place that decides; :func:`schedule_gemm`
    lists the chunks of it). ``limit``: the longest reduction chunk (default, and at
    most, half the smaller operand buffer); a shorter one lets more tiles share a block.

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
    a_half, b_half = cfg.a_depth // 2, cfg.b_depth // 2
    kt = k * images
    limit = chunk_limit(cfg, limit)
    period, reps = reduction_pattern(kt, k, images, limit)
    n_chunks = len(period) * reps
    kc = max(period)
    tm_all, tn_all = -(-m // R), -(-n // C)
    tmc = min(tm_all, a_half // kc)
    tnc = min(tn_all, b_half // kc)
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
    return Tiling(
        block_m=tmc * R,
        block_n=tnc * C,
        blocks_m=-(-tm_all // tmc),
        blocks_n=-(-tn_all // tnc),
        k_chunks=n_chunks,
        chunk_kt=kc,
        a_words=tmc * kc,
        b_words=tnc * kc,
        acc_rows=acc_rows,
    )


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
    limit: int | None = None,
) -> list[Chunk]:
    """The chunk commands that compute an ``m x (images*k) x n`` GEMM on ``cfg``
    (``limit``: as for :func:`tiling`)."""
    t = tiling(cfg, m, k, n, images, what=what, limit=limit)
    a_half, b_half = cfg.a_depth // 2, cfg.b_depth // 2
    chunks_k = reduction_chunks(k * images, k, images, chunk_limit(cfg, limit))
    out: list[Chunk] = []
    half_a = half_b = 1  # toggled before first use, so the first chunk uses half 0
    last_a = last_b = None
    block = 0
    for m0 in range(0, m, t.block_m):
        m1 = min(m, m0 + t.block_m)
        for n0 in range(0, n, t.block_n):
            n1 = min(n, n0 + t.block_n)
            for i, (kt0, kt1, kk, imgs) in enumerate(chunks_k):
                key_a, key_b = (m0, kt0), (n0, kt0)
                write_a, write_b = key_a != last_a, key_b != last_b
                if write_a:
                    half_a ^= 1
                if write_b:
                    half_b ^= 1
                last_a, last_b = key_a, key_b
                out.append(
                    Chunk(
                        block,
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
                        half_a * a_half,
                        half_b * b_half,
                        write_a,
                        write_b,
                    )
                )
            block += 1
    return out


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
