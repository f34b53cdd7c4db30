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
   ``j // cols`` (see :func:`output_beats` and :func:`output_words`).

The numpy passes here are the definition. Where :mod:`barista_hw.native` is built,
the float path's rounding (with its random words) runs in one compiled pass, and
:func:`gemm_dequantized`, what the training backends use, forms the product a block
of columns at a time and rounds, measures and dequantises each block while it is in
cache. Where the CPU has AMX-INT8, products of operands up to 16 bits are formed
exactly from int8 tile products (:func:`native.exact_product`), and nearest-even and
floor results are rounded a 16x16 tile at a time as they are formed
(:func:`native.exact_rounded`); the tests hold every path to the same bits.

The three passes of a layer map onto one GEMM each (see :mod:`barista_hw.engine`):

* forward:         ``Y  = W @ X``                    A = W,       B = X
* backward-data:   ``dX = W.T @ dY``                 A = W.T,     B = dY
* weight-gradient: ``dW = sum_b dY[b] @ X[b].T``     A = [dY[0] .. dY[B-1]] (M x B*P),
  B = [X[0].T; ..; X[B-1].T] (B*P x K): the batch is the reduction dimension,
  accumulated at full width and requantised once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

import numpy as np

from barista_base.errors import InputError

from . import lfsr, native, schedule
from .command import GemmCommand
from .config import AcceleratorConfig, EngineConfig
from .fpgemm import engine_gemm
from .intmath import (
    _EXACT_F32,
    _EXACT_F64,
    _chunked_matmul,
    _max_abs,
    output_words,
)
from .intmath import exact_matmul as exact_matmul  # part of the model's public names
from .intmath import output_beats as output_beats
from .mxformat import FloatGemmFormat
from .numfmt import MAX_SHIFT, FixedFormat, Rounding
from .scaling import max_abs


def _exact_in_float(bound: float, k: int, acc_width: int) -> bool:
    """No partial sum of ``k`` products below ``bound`` can wrap the accumulator or lose
    bits in float64: one float BLAS call then gives the accumulator exactly."""
    return bound * k < min(_EXACT_F64, 2.0 ** (acc_width - 1))


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
    if _exact_in_float(bound, a.shape[1], acc_width):
        return _product(a, b, 0, bound * a.shape[1] <= _EXACT_F32)
    return wrap(_chunked_matmul(a, b, bound), acc_width)


def _product(
    a: np.ndarray, b: np.ndarray, shift: int, in_float32: bool, in_int16: bool = False
) -> np.ndarray:
    """``(a @ b) * 2**-shift`` as a new C-contiguous float64 array, for products the
    caller has proved exact. ``in_int16``: the operands are integers in [-2**15, 2**15),
    so the compiled helper's exact integer product may form it (same values).

    The power of two scales the smallest of ``a``, ``b`` and the product: every
    scaled value and partial sum is an integer times ``2**-shift`` with no more
    significant bits than before, so the BLAS call stays exact (in float32 when
    ``in_float32``: sums below ``2**24``).
    """
    if in_int16 and not in_float32:
        done = native.exact_product(a, b, 2.0**-shift)
        if done is not None:
            return done
    work = np.float32 if in_float32 else np.float64
    m, n = a.shape[0], b.shape[1]
    scale = work(2.0**-shift)
    if shift and a.size <= min(b.size, m * n):
        a, shift = np.multiply(a, scale, dtype=work), 0
    elif shift and b.size <= m * n:
        b, shift = np.multiply(b, scale, dtype=work), 0
    acc = np.matmul(a.astype(work, copy=False), b.astype(work, copy=False))
    if shift:
        acc *= scale
    return acc.astype(np.float64, copy=False)


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of int64 values to ``bits`` bits."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    sign = np.int64(1) << np.int64(bits - 1)
    mask = (np.int64(1) << np.int64(bits)) - np.int64(1)
    return ((x + sign) & mask) - sign


def _check_shift(shift: int) -> None:
    if not 0 <= shift <= MAX_SHIFT:
        raise InputError(f"shift {shift} out of range 0..{MAX_SHIFT}")


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
    _check_shift(shift)
    rounding = Rounding(rounding)
    if rounding is Rounding.STOCHASTIC and shift > 0 and words is None:
        raise ValueError("stochastic rounding needs the random words")
    low = None if words is None else words & np.uint32((1 << shift) - 1)
    if acc.dtype.kind == "f":
        return _round_in_place(acc.astype(np.float64), fmt, shift, rounding, low, scaled=False)
    acc = wrap(acc, fmt.acc_width)
    s = np.int64(shift)
    if shift == 0:
        q = acc
    elif rounding is Rounding.NEAREST_EVEN:
        q = (acc + ((np.int64(1) << (s - 1)) - 1) + ((acc >> s) & 1)) >> s
    elif rounding is Rounding.FLOOR:
        q = acc >> s
    else:
        q = (acc + low.astype(np.int64)) >> s
    return np.clip(q, fmt.min_int, fmt.max_int)


def _round_in_place(
    acc: np.ndarray,
    fmt: FixedFormat,
    shift: int,
    rounding: Rounding,
    low_words: np.ndarray | None,
    *,
    scaled: bool,
) -> np.ndarray:
    """:func:`requantize` of float64 accumulator values, overwriting ``acc``.

    ``scaled``: ``acc`` already holds the values times ``2**-shift`` (nearest-even and
    floor only). ``low_words``: the random words' low ``shift`` bits (stochastic).
    """
    if shift and rounding is Rounding.STOCHASTIC:
        acc += low_words
        acc *= 2.0**-shift
        np.floor(acc, out=acc)
    elif shift:
        if not scaled:
            acc *= 2.0**-shift
        (np.rint if rounding is Rounding.NEAREST_EVEN else np.floor)(acc, out=acc)
    return np.clip(acc, float(fmt.min_int), float(fmt.max_int), out=acc)


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
    if isinstance(cfg.fmt, FloatGemmFormat):
        return engine_gemm(a, b, cfg, cmd)
    _check_shift(cmd.shift)
    if not _float_exact(a, cfg):
        return _integer_gemm(a, b, cfg, cmd)
    shift = 0 if _stochastic(cmd) else cmd.shift
    acc = _product(a, b, shift, _in_float32(a, cfg), _in_int16(a, cfg))
    n_tiles = -(-acc.shape[1] // cfg.cols)
    if _round_block(acc, cfg, cmd, (0, n_tiles), None, 1.0) is not None:
        return acc
    return _round_in_place(
        acc, cfg.fmt, cmd.shift, cmd.rounding, _words(acc, cfg, cmd), scaled=True
    )


_BLOCK = 1 << 18  # accumulators per block of gemm_dequantized: the block stays in cache


def gemm_dequantized(
    a: np.ndarray, b: np.ndarray, cfg: EngineConfig, cmd: GemmCommand, frac: int
) -> tuple[np.ndarray, float]:
    """``fmt.dequantize(gemm_quantized(a, b, cfg, cmd), frac)`` and ``max |q|`` of the integers.

    What a training backend keeps of a GEMM: the float32 values and the peak its
    scaling adapts from. Where the compiled helper serves, the product is formed a
    block of columns at a time (with AMX and no random words, a 16x16 tile at a time)
    and each block is rounded, measured and scaled while it is in cache; the integers
    are never stored.
    """
    _check_shift(cmd.shift)
    m, n = a.shape[0], b.shape[1]
    if not _float_exact(a, cfg) or native.library() is None or m == 0 or n == 0:
        q = gemm_quantized(a, b, cfg, cmd)
        return cfg.fmt.dequantize(q, frac), max_abs(q)
    # Nearest-even and floor: the rounding pass scales the exact products by 2**-shift.
    scale = 1.0 if _stochastic(cmd) else 2.0**-cmd.shift
    in32, in16 = _in_float32(a, cfg), _in_int16(a, cfg)
    out = np.empty((m, n), dtype=np.float32)
    if in16 and not in32 and not _stochastic(cmd):
        # Formed and rounded a tile at a time, in one compiled pass.
        peak = native.exact_rounded(a, b, _mode(cmd), scale, _bounds(cfg), out, 2.0**-frac)
        if peak is not None:
            return out, peak
    width = max(cfg.cols, _BLOCK // m // cfg.cols * cfg.cols)  # whole column tiles
    n_tiles = -(-n // cfg.cols)
    lanes = _lane_tables(cfg, cmd, m * n_tiles) if _stochastic(cmd) else None
    peak = 0.0
    for j0 in range(0, n, width):
        acc = _product(a, b[:, j0 : j0 + width], 0, in32, in16)
        tiles = (j0 // cfg.cols, n_tiles)
        block = out[:, j0 : j0 + width]
        block_peak = _round_block(acc, cfg, cmd, tiles, block, 2.0**-frac, lanes, scale)
        assert block_peak is not None  # the helper takes every float64 block
        peak = max(peak, block_peak)
    return out, peak


def _stochastic(cmd: GemmCommand) -> bool:
    return cmd.rounding is Rounding.STOCHASTIC and cmd.shift > 0


def _float_exact(a: np.ndarray, cfg: EngineConfig) -> bool:
    return _exact_in_float(float(cfg.fmt.min_int) ** 2, a.shape[1], cfg.fmt.acc_width)


def _in_float32(a: np.ndarray, cfg: EngineConfig) -> bool:
    return float(cfg.fmt.min_int) ** 2 * a.shape[1] <= _EXACT_F32


# Reductions shallower than this fill under half of an AMX tile's depth (64 bytes): the
# float64 product is faster there (conv1's forward pass, K = 25: 1.6 against 1.9 ms).
_MIN_TILE_DEPTH = 32


def _in_int16(a: np.ndarray, cfg: EngineConfig) -> bool:
    """The operands fit int16 and the reduction is deep enough for the compiled helper's
    exact tile products (:func:`native.exact_product`) to pay."""
    return cfg.fmt.width <= 16 and a.shape[1] >= _MIN_TILE_DEPTH


def _integer_gemm(a: np.ndarray, b: np.ndarray, cfg: EngineConfig, cmd: GemmCommand) -> np.ndarray:
    """The exact int64 path, for products a float matrix product could get wrong."""
    m, n = a.shape[0], b.shape[1]
    acc = accumulate(a, b, cfg.fmt.acc_width, bound=float(cfg.fmt.min_int) ** 2)
    low = output_words(cmd.seed, m, n, cfg.rows, cfg.cols, cmd.shift) if _stochastic(cmd) else None
    return requantize(acc, cfg.fmt, cmd.shift, cmd.rounding, low)


def _words(acc: np.ndarray, cfg: EngineConfig, cmd: GemmCommand) -> np.ndarray | None:
    if not _stochastic(cmd):
        return None
    return output_words(cmd.seed, acc.shape[0], acc.shape[1], cfg.rows, cfg.cols, cmd.shift)


def _round_block(
    acc: np.ndarray,
    cfg: EngineConfig,
    cmd: GemmCommand,
    tiles: tuple[int, int],
    out: np.ndarray | None,
    dequantize: float,
    lanes: tuple[np.ndarray, np.ndarray] | None = None,
    scale: float = 1.0,
) -> float | None:
    """:func:`_round_in_place` of a block of float accumulators (nearest-even and floor:
    already scaled, or scaled here by ``scale``, their ``2**-shift``) in one compiled
    pass, into ``acc`` or, dequantised, into ``out``; the block starts at column tile
    ``tiles[0]`` of ``tiles[1]``. ``lanes``: the stochastic lanes' :func:`_lane_tables`,
    when the caller has them. Returns ``max |q|``, or None without the helper."""
    bounds = _bounds(cfg)
    if not _stochastic(cmd):
        return native.round_accumulators(acc, _mode(cmd), bounds, out, dequantize, scale)
    tables, planes = lanes or _lane_tables(cfg, cmd, acc.shape[0] * tiles[1])
    return native.round_stochastic(
        acc, cfg.rows, cfg.cols, tiles, tables, planes, cmd.shift, bounds, out, dequantize
    )


def _bounds(cfg: EngineConfig) -> tuple[float, float]:
    return float(cfg.fmt.min_int), float(cfg.fmt.max_int)


def _mode(cmd: GemmCommand) -> str:
    """The compiled rounding pass's mode for a nearest-even or floor command."""
    if cmd.shift == 0:
        return "none"
    return "floor" if cmd.rounding is Rounding.FLOOR else "rint"


def _lane_tables(cfg: EngineConfig, cmd: GemmCommand, beats: int) -> tuple[np.ndarray, np.ndarray]:
    """The lanes' product tables for ``cmd`` and the byte planes of ``beats`` beat powers."""
    seeds = [lfsr.lane_seed(cmd.seed, c) for c in range(cfg.cols)]
    return lfsr.product_tables(seeds, cmd.shift), lfsr.power_planes(beats)


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    cfg: EngineConfig,
    *,
    shift: int,
    rounding: Rounding = Rounding.NEAREST_EVEN,
    seed: int = 0,
) -> np.ndarray:
    """What the GEMM engine returns for ``A (M, K) @ B (K, N)``: int64 ``(M, N)`` (codes of
    the output format for a minifloat engine, whose ``shift`` must be 0)."""
    if isinstance(cfg.fmt, FloatGemmFormat):
        if shift:
            raise InputError(f"a {cfg.fmt.name} engine takes no shift (got {shift})")
    else:
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
    a: np.ndarray,
    b: np.ndarray,
    acc: AcceleratorConfig,
    cmd: GemmCommand,
    options: schedule.ScheduleOptions = schedule.DEFAULT_OPTIONS,
    blocks: Collection[int] | None = None,
) -> np.ndarray:
    """What an accelerator returns for ``a @ b`` run by :func:`schedule.schedule_gemm`.

    Reduction chunks accumulate at full width, so only the output blocks
    matter: each is one engine GEMM with its own seed (and beat order).
    ``a``/``b`` may be float arrays of integers (see :func:`gemm_quantized`);
    the result has their kind (int64 or float64). ``options``: the schedule's
    (:func:`schedule.schedule_gemm`); ``blocks``: compute only these output blocks
    (:func:`schedule.share_blocks`), the rest of the result is 0.
    """
    m, kt = a.shape
    n = b.shape[1]
    chunks = schedule.schedule_gemm(
        acc, m, kt // cmd.images, n, cmd.images, options=options, blocks=blocks
    )
    if cmd.raw:
        check_raw_readout(acc.engine)
    out = None
    for c in chunks:
        if not c.acc_last:
            continue
        block = replace(cmd, seed=schedule.block_seed(cmd.seed, c.block))
        if cmd.raw:
            q = accumulators(a[c.m0 : c.m1], b[:, c.n0 : c.n1], acc.engine)
        else:
            q = gemm_quantized(a[c.m0 : c.m1], b[:, c.n0 : c.n1], acc.engine, block)
        if out is None:
            out = (np.empty if blocks is None else np.zeros)((m, n), dtype=q.dtype)
        out[c.m0 : c.m1, c.n0 : c.n1] = q
    if out is None:  # no block asked for
        out = np.zeros((m, n), dtype=np.int64)
    return out


def check_raw_readout(cfg: EngineConfig) -> None:
    """An :class:`InputError` unless ``cfg``'s engine has the accumulator read-out."""
    if not cfg.readout:
        raise InputError(
            f"the {cfg.rows}x{cfg.cols} {cfg.fmt.name} engine was built without the "
            "accumulator read-out (raw_readout): regenerate the accelerator"
        )


def accumulators(a: np.ndarray, b: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """What an accumulator read-out (a ``raw`` command) returns for ``a @ b``: the engine's
    accumulators, int64, wrapped to the accumulator width (any reduction chunking gives
    these, the accumulator memory being full width)."""
    bound = float(cfg.fmt.min_int) ** 2
    return wrap(accumulate(a, b, cfg.fmt.acc_width, bound=bound), cfg.fmt.acc_width)


def requantize_on_accelerator(
    acc: np.ndarray, accel: AcceleratorConfig, k: int, cmd: GemmCommand
) -> np.ndarray:
    """The result of the GEMM ``cmd`` (``k`` per image, ``cmd.images`` images) from its
    accumulators ``acc`` (``(m, n)`` int64, any wrap: e.g. the sum of several devices'
    read-outs), requantised as :func:`gemm_on_accelerator` does: each output block of the
    schedule with its own seed and beat order."""
    m, n = acc.shape
    e = accel.engine
    out = np.empty((m, n), dtype=np.int64)
    for c in schedule.schedule_gemm(accel, m, k, n, cmd.images):
        if not c.acc_last:
            continue
        low = None
        if _stochastic(cmd):
            seed = schedule.block_seed(cmd.seed, c.block)
            low = output_words(seed, c.m, c.n, e.rows, e.cols, cmd.shift)
        block = acc[c.m0 : c.m1, c.n0 : c.n1]
        out[c.m0 : c.m1, c.n0 : c.n1] = requantize(block, e.fmt, cmd.shift, cmd.rounding, low)
    return out
