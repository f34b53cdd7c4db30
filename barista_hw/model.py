"""Bit-exact numpy model of the GEMM engines (vectorised; no loops over elements).

The model reproduces every output bit of :mod:`barista_hw.engine`, given the
same integer operands and command (``shift``, ``rounding``, ``seed``):

1. the exact integer product ``A @ B`` wrapped to the accumulator width (the
   RTL accumulator is modular), see :func:`accumulate`: one float BLAS call
   when a bound on the partial sums proves it exact and wrap-free (float32
   below ``2**24``, float64 below ``2**53``), else exact int64 chunks;
2. (the wrap, when the bound does not exclude it);
3. requantised with the rounding rule of :mod:`barista_hw.numfmt`, where the
   stochastic mode's random word of element ``(i, j)`` is the word of output
   lane ``j % cols`` at the beat that carries row ``i`` of column tile
   ``j // cols`` (see :func:`output_beats`).

The three passes of a layer map onto one GEMM each (see :mod:`barista_hw.engine`):

* forward:         ``Y  = W @ X``                    A = W,       B = X
* backward-data:   ``dX = W.T @ dY``                 A = W.T,     B = dY
* weight-gradient: ``dW = sum_b dY[b] @ X[b].T``     A = [dY[0] .. dY[B-1]] (M x B*P),
  B = [X[0].T; ..; X[B-1].T] (B*P x K): the batch is the reduction dimension,
  accumulated at full width and requantised once.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from barista_base.errors import InputError

from . import lfsr, schedule
from .command import GemmCommand
from .config import AcceleratorConfig, EngineConfig
from .numfmt import MAX_SHIFT, FixedFormat, Rounding

_EXACT_F64 = float(2**53 - 1)
_EXACT_F32 = float(2**24 - 1)


def _max_abs(x: np.ndarray) -> float:
    return float(max(x.max(), -x.min())) if x.size else 0.0


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` (int64, modulo 2**64) through floating-point BLAS."""
    return _chunked_matmul(
        np.asarray(a), np.asarray(b), _max_abs(np.asarray(a)) * _max_abs(np.asarray(b))
    )


def _chunked_matmul(a: np.ndarray, b: np.ndarray, bound: float) -> np.ndarray:
    m, k = a.shape
    n = b.shape[1]
    if k == 0 or bound == 0:
        return np.zeros((m, n), dtype=np.int64)
    if bound * k <= _EXACT_F32:
        return np.matmul(a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)).astype(
            np.int64
        )
    chunk = max(1, int(_EXACT_F64 // bound))
    af = a.astype(np.float64, copy=False)
    bf = b.astype(np.float64, copy=False)
    out = np.zeros((m, n), dtype=np.int64)
    for k0 in range(0, k, chunk):  # a handful of chunks, each one BLAS call
        out += np.matmul(af[:, k0 : k0 + chunk], bf[k0 : k0 + chunk]).astype(np.int64)
    return out


def accumulate(
    a: np.ndarray, b: np.ndarray, acc_width: int, bound: float | None = None
) -> np.ndarray:
    """The engine's accumulator values for ``a @ b``, wrapped to ``acc_width`` bits.

    Fast path: when no partial sum can reach ``2**(acc_width-1)`` (nor ``2**53``),
    nothing wraps and one float BLAS call is exact; the result stays float64
    (integer-valued). Otherwise exact int64 chunks, then the wrap. ``bound`` is
    a known bound of ``|a_ik * b_kj|`` (e.g. from the number format), saving
    the scan for it.
    """
    if bound is None:
        bound = _max_abs(a) * _max_abs(b)
    k = a.shape[1]
    if bound * k < min(_EXACT_F64, 2.0 ** (acc_width - 1)):
        if bound * k <= _EXACT_F32:
            acc = np.matmul(a.astype(np.float32, copy=False), b.astype(np.float32, copy=False))
            return acc.astype(np.float64)
        return np.matmul(a.astype(np.float64, copy=False), b.astype(np.float64, copy=False))
    return wrap(_chunked_matmul(a, b, bound), acc_width)


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of int64 values to ``bits`` bits."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    sign = np.int64(1) << np.int64(bits - 1)
    mask = (np.int64(1) << np.int64(bits)) - np.int64(1)
    return ((x + sign) & mask) - sign


def requantize(
    acc: np.ndarray,
    fmt: FixedFormat,
    shift: int,
    rounding: Rounding,
    words: np.ndarray | None = None,
) -> np.ndarray:
    """Accumulator values -> saturated operand-format integers (see :mod:`numfmt`).

    ``acc`` is int64 (wrapped here) or float64 holding integers below 2**53 that
    need no wrap (from :func:`accumulate`); the result has the same dtype.
    Float arithmetic is exact here: scaling by a power of two, then ``rint``
    (ties to even), ``floor``, or adding the random bits first.
    """
    if not 0 <= shift <= MAX_SHIFT:
        raise InputError(f"shift {shift} out of range 0..{MAX_SHIFT}")
    rounding = Rounding(rounding)
    if rounding is Rounding.STOCHASTIC and shift > 0 and words is None:
        raise ValueError("stochastic rounding needs the random words")
    if acc.dtype.kind == "f":
        scale = 2.0**-shift
        if shift == 0:
            q = acc.copy()
        elif rounding is Rounding.NEAREST_EVEN:
            q = np.rint(acc * scale)
        elif rounding is Rounding.FLOOR:
            q = np.floor(acc * scale)
        else:
            q = np.floor((acc + (words & np.uint32((1 << shift) - 1))) * scale)
        return np.clip(q, fmt.min_int, fmt.max_int, out=q)
    acc = wrap(acc, fmt.acc_width)
    s = np.int64(shift)
    if shift == 0:
        q = acc
    elif rounding is Rounding.NEAREST_EVEN:
        q = (acc + ((np.int64(1) << (s - 1)) - 1) + ((acc >> s) & 1)) >> s
    elif rounding is Rounding.FLOOR:
        q = acc >> s
    else:
        q = (acc + (words.astype(np.int64) & ((np.int64(1) << s) - 1))) >> s
    return np.clip(q, fmt.min_int, fmt.max_int)


def output_beats(m: int, n: int, rows: int, cols: int) -> np.ndarray:
    """Index of the output beat that carries element ``(i, j)``: shape ``(m, n)``.

    The engine emits tiles in row-major tile order (``tm`` outer, ``tn``
    inner); a tile emits its valid rows, one beat each, ``cols`` lanes wide.
    """
    tn_count = -(-n // cols)
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    tm, r = np.divmod(i, rows)
    rows_valid = np.minimum(rows, m - tm * rows)
    return tm * tn_count * rows + (j // cols) * rows_valid + r


def check_operands(name: str, x: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    """Integer operand array within the format's range, or an error naming it."""
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise InputError(f"operand {name} must be integers (quantise it first), got {x.dtype}")
    if x.size and (x.min() < fmt.min_int or x.max() > fmt.max_int):
        raise InputError(
            f"operand {name} has values in [{x.min()}, {x.max()}], outside the "
            f"{fmt.name} range [{fmt.min_int}, {fmt.max_int}]"
        )
    return x.astype(np.int64, copy=False)


def gemm_quantized(a: np.ndarray, b: np.ndarray, cfg: EngineConfig, cmd: GemmCommand) -> np.ndarray:
    """:func:`gemm` for operands already known to be in range (not re-checked).

    One engine command: ``cmd.images`` only orders the operand beats, so it does not
    change the result. ``a`` and ``b`` may be integer arrays or float arrays holding
    integers (as produced by rounding and clipping); the result is then float64
    holding the engine's integers, which saves the training backends conversions.
    """
    m, n = a.shape[0], b.shape[1]
    acc = accumulate(a, b, cfg.fmt.acc_width, bound=float(cfg.fmt.min_int) ** 2)
    words = None
    if cmd.rounding is Rounding.STOCHASTIC and cmd.shift > 0:
        beats = output_beats(m, n, cfg.rows, cfg.cols)
        table = lfsr.lane_words(cmd.seed, cfg.cols, -(-n // cfg.cols) * m)
        words = table[beats, np.arange(n)[None, :] % cfg.cols]
    return requantize(acc, cfg.fmt, cmd.shift, cmd.rounding, words)


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    cfg: EngineConfig,
    *,
    shift: int,
    rounding: Rounding = Rounding.NEAREST_EVEN,
    seed: int = 0,
) -> np.ndarray:
    """What the GEMM engine returns for ``A (M, K) @ B (K, N)``: int64 ``(M, N)``."""
    a = check_operands("A", a, cfg.fmt)
    b = check_operands("B", b, cfg.fmt)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise InputError(f"GEMM operand shapes {a.shape} and {b.shape} do not chain")
    q = gemm_quantized(a, b, cfg, GemmCommand(shift, rounding, seed))
    return q.astype(np.int64, copy=False)


def forward(
    w: np.ndarray,
    x: np.ndarray,
    cfg: EngineConfig,
    *,
    shift: int,
    rounding: Rounding = Rounding.NEAREST_EVEN,
    seed: int = 0,
) -> np.ndarray:
    """Forward pass ``Y = W @ X`` (W: M x K weights, X: K x N im2col columns)."""
    return gemm(w, x, cfg, shift=shift, rounding=rounding, seed=seed)


def backward_data(
    w: np.ndarray,
    dy: np.ndarray,
    cfg: EngineConfig,
    *,
    shift: int,
    rounding: Rounding = Rounding.NEAREST_EVEN,
    seed: int = 0,
) -> np.ndarray:
    """Backward-data pass ``dX = W.T @ dY`` (W: M x K, dY: M x N) -> K x N."""
    return gemm(np.asarray(w).T, dy, cfg, shift=shift, rounding=rounding, seed=seed)


def weight_grad_operands(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The GEMM operands of ``sum_b dY[b] @ X[b].T`` with the batch in the reduction dimension.

    ``dy``: (B, M, P), ``x``: (B, K, P) -> A: (M, B*P), B: (B*P, K).
    """
    dy = np.asarray(dy)
    x = np.asarray(x)
    if dy.ndim != 3 or x.ndim != 3 or dy.shape[0] != x.shape[0] or dy.shape[2] != x.shape[2]:
        raise InputError(f"weight-gradient operand shapes {dy.shape} and {x.shape} do not match")
    bsz, m, p = dy.shape
    k = x.shape[1]
    return dy.transpose(1, 0, 2).reshape(m, bsz * p), x.transpose(0, 2, 1).reshape(bsz * p, k)


def weight_grad(
    dy: np.ndarray,
    x: np.ndarray,
    cfg: EngineConfig,
    *,
    shift: int,
    rounding: Rounding = Rounding.NEAREST_EVEN,
    seed: int = 0,
) -> np.ndarray:
    """Weight-gradient pass ``dW = sum_b dY[b] @ X[b].T`` -> M x K, requantised once."""
    a, b = weight_grad_operands(dy, x)
    return gemm(a, b, cfg, shift=shift, rounding=rounding, seed=seed)


def gemm_float32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The float32 reference path: what Caffe's CPU computes."""
    return np.matmul(np.asarray(a, np.float32), np.asarray(b, np.float32))


def gemm_on_accelerator(
    a: np.ndarray, b: np.ndarray, acc: AcceleratorConfig, cmd: GemmCommand
) -> np.ndarray:
    """What an accelerator returns for ``a @ b`` run by :func:`schedule.schedule_gemm`.

    Reduction chunks accumulate at full width, so only the output blocks
    matter: each is one engine GEMM with its own seed (and beat order).
    ``a``/``b`` may be float arrays of integers (see :func:`gemm_quantized`);
    the result has their kind (int64 or float64).
    """
    m, kt = a.shape
    n = b.shape[1]
    chunks = schedule.schedule_gemm(acc, m, kt // cmd.images, n, cmd.images)
    out = None
    for c in chunks:
        if not c.acc_last:
            continue
        block = replace(cmd, seed=schedule.block_seed(cmd.seed, c.block))
        q = gemm_quantized(a[c.m0 : c.m1], b[:, c.n0 : c.n1], acc.engine, block)
        if out is None:
            out = np.empty((m, n), dtype=q.dtype)
        out[c.m0 : c.m1, c.n0 : c.n1] = q
    assert out is not None
    return out
