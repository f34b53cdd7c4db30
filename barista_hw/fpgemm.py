"""Bit-exact model of GEMMs on minifloat and MX operands, and of the requantiser after them.

The arithmetic, stated once (the RTL matches it bit for bit for minifloats:
:mod:`barista_hw.fppe` and :mod:`barista_hw.fprequant`; MX: :mod:`barista_hw.mxpe`, whose
accumulator frame :func:`mx_engine_sum` models):

* **Minifloat operands.** Each code is an exact integer number of its format's ``unit``
  (:meth:`MinifloatFormat.to_units`); products of those integers are exact and are summed in a
  fixed-point accumulator of :meth:`MinifloatFormat.acc_width` bits (LSB weight
  ``unit_a * unit_b``), wide enough that no sum over ``K`` can overflow: the accumulator holds
  the exact dot product (a Kulisch accumulator for these tiny formats: 2*18 + log2(K) + 1 bits
  for E4M3, 2*32 + log2(K) + 1 for E5M2).
* **MX operands.** Within a block of ``block`` elements along K the element products are summed
  exactly as above (the block's partial sum, a few dozen bits); at each block boundary the
  partial sum is shifted by the sum of the two blocks' E8M0 exponents into an accumulator that
  again holds the exact sum (its width spans the scales' range; the model uses Python integers
  where int64 is too narrow). A NaN scale makes the results that read the block NaN.
* **Requantiser.** The exact sum is rounded once into the output format, a minifloat, an MX
  format (blocks along the result's last axis) or fixed point (``frac`` fraction bits, two's
  complement as :mod:`barista_hw.numfmt` rounds today), with nearest-even, floor or stochastic
  rounding. Stochastic rounding adds the low :data:`~barista_hw.minifloat.SR_BITS` bits of the
  element's 32-bit LFSR word just below the kept LSB (for minifloats to the magnitude, for fixed
  point to the two's-complement value), after truncating the bits further down.

The model reaches the exact sum as ``value = acc * 2**exp`` with integer ``acc``; to round it,
it first rounds ``acc`` to 53 bits *to odd* (truncate, then set the last bit if anything was
dropped): every output format keeps at most 11 + 16 significant bits, so rounding that float64
gives the same result as rounding the exact value (what the RTL does on the full accumulator).
"""

from __future__ import annotations

import math

import numpy as np

from barista_base.errors import InputError

from . import lfsr
from .command import GemmCommand
from .config import EngineConfig
from .intmath import exact_matmul, output_words
from .minifloat import SR_BITS, MinifloatFormat
from .mx import SCALE_NAN, MXFormat
from .mxformat import FloatGemmFormat, MXGemmFormat
from .numfmt import FixedFormat, Rounding
from .passengine import PassGemmFormat

#: Accumulator bits an int64 holds, and float64's exact-integer bits.
_INT64_BITS, _FLOAT64_BITS = 63, 53


def check_codes(name: str, codes: np.ndarray, fmt: MinifloatFormat) -> np.ndarray:
    """Operand codes of ``fmt`` that are finite numbers, or an error naming the operand."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu" or (
        codes.size and (codes.min() < 0 or codes.max() >> fmt.bits)
    ):
        raise InputError(f"operand {name} must hold {fmt.name} codes (0..{(1 << fmt.bits) - 1})")
    if codes.size and not np.all(np.isfinite(fmt.table[codes.astype(np.intp)])):
        raise InputError(
            f"operand {name} holds {fmt.name} inf or NaN codes (quantise with saturation)"
        )
    return codes


def _int_matmul(a: np.ndarray, b: np.ndarray, acc_bits: int) -> np.ndarray:
    """Exact integer ``a @ b`` for sums known to fit ``acc_bits`` signed bits: float64 BLAS
    below 2**53, int64 chunks below 2**63, else Python integers (object array)."""
    if acc_bits - 1 <= _FLOAT64_BITS:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    if acc_bits <= _INT64_BITS:
        return exact_matmul(a, b)
    return np.matmul(a.astype(object), b.astype(object))


def minifloat_gemm(
    a: np.ndarray, fa: MinifloatFormat, b: np.ndarray, fb: MinifloatFormat
) -> tuple[np.ndarray, int]:
    """Exact ``A @ B`` of minifloat codes: (accumulator integers, ``exp``), value ``acc * 2**exp``.

    The accumulator is :meth:`MinifloatFormat.acc_width` bits (int64, or Python integers when
    wider than 63 bits, e.g. E5M2 x E5M2).
    """
    a, b = check_codes("A", a, fa), check_codes("B", b, fb)
    if a.shape[1] != b.shape[0]:
        raise InputError(f"GEMM shapes {a.shape} @ {b.shape} do not agree")
    bits = fa.acc_width(a.shape[1], fb)
    acc = _int_matmul(fa.to_units(a), fb.to_units(b), bits)
    return acc, fa.unit_exp + fb.unit_exp


def mx_gemm(
    a: tuple[np.ndarray, np.ndarray],
    fa: MXFormat,
    bt: tuple[np.ndarray, np.ndarray],
    fb: MXFormat,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Exact ``A @ B`` of MX operands: (accumulator integers, ``exp``, NaN mask).

    ``a`` = (elements, scale codes) of A (M x K, blocks along K); ``bt`` the same for B
    transposed (N x K, blocks along K), as :meth:`MXFormat.encode` makes them. The value of
    result ``(i, j)`` is ``acc * 2**exp`` unless the mask says NaN. ``acc`` is an object array
    of Python integers (the sum spans the scales' range).
    """
    part, shift, nan = mx_partials(a, fa, bt, fb)
    shift = np.where(nan[..., None], 0, shift)
    low = int(shift.min()) if shift.size else 0
    acc = np.left_shift(part, (shift - low).astype(object)).sum(axis=-1)
    exp = low - 2 * 127 + _unit_exp(fa) + _unit_exp(fb)
    return acc, exp, nan


def mx_partials(
    a: tuple[np.ndarray, np.ndarray],
    fa: MXFormat,
    bt: tuple[np.ndarray, np.ndarray],
    fb: MXFormat,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each block's exact partial sum of element products, (M, N, blocks) Python integers;
    the biased scale sums ``c_a + c_b`` of the blocks (int64, same shape); the NaN mask
    (M, N). Arguments as :func:`mx_gemm`'s."""
    (ea, sa), (eb, sb) = a, bt
    if ea.shape[1] != eb.shape[1] or fa.block != fb.block or ea.shape[1] % fa.block:
        raise InputError(
            f"MX GEMM: A {ea.shape} and B.T {eb.shape} need the same K, a multiple of one "
            "block size"
        )
    for name, codes, fmt in (("A", ea, fa), ("B", eb, fb)):
        if isinstance(fmt.element, MinifloatFormat):
            check_codes(name, codes, fmt.element)
    nb, blk = ea.shape[1] // fa.block, fa.block
    ua = fa.element_units(ea).reshape(ea.shape[0], nb, blk)
    ub = fb.element_units(eb).reshape(eb.shape[0], nb, blk)
    if fa.partial_width(fb) - 1 <= _FLOAT64_BITS:  # each block's partial sum exact in float64
        part = np.einsum("ibk,jbk->ijb", ua.astype(np.float64), ub.astype(np.float64))
        part = part.astype(np.int64).astype(object)
    else:
        part = np.einsum("ibk,jbk->ijb", ua.astype(object), ub.astype(object))
    sa64, sb64 = sa.astype(np.int64), sb.astype(np.int64)
    nan = ((sa64 == SCALE_NAN).any(axis=1)[:, None]) | ((sb64 == SCALE_NAN).any(axis=1)[None, :])
    return part, sa64[:, None, :] + sb64[None, :, :], nan


def _unit_exp(fmt: MXFormat) -> int:
    return int(math.log2(fmt.elem_unit))


def to_odd_float(acc: np.ndarray, exp: int, nan: np.ndarray | None = None) -> np.ndarray:
    """``acc * 2**exp`` as float64, rounded to 53 bits to odd (exact when it fits); NaN where
    ``nan`` (from :func:`mx_gemm`) is set."""
    if acc.dtype != object and (acc.size == 0 or np.abs(acc).max() < 2**_FLOAT64_BITS):
        value = np.ldexp(acc.astype(np.float64), exp)
    else:
        flat = [_odd(int(v), exp) for v in np.asarray(acc, dtype=object).ravel()]
        value = np.array(flat, dtype=np.float64).reshape(acc.shape)
    return value if nan is None else np.where(nan, np.nan, value)


def _odd(v: int, exp: int) -> float:
    mag, sh = abs(v), max(0, abs(v).bit_length() - _FLOAT64_BITS)
    top = (mag >> sh) | (1 if mag & ((1 << sh) - 1) else 0)
    return math.copysign(math.ldexp(float(top), sh + exp), v)


def requantize(
    value: np.ndarray,
    out: MinifloatFormat | MXFormat | FixedFormat,
    rounding: Rounding = Rounding.NEAREST_EVEN,
    *,
    words: np.ndarray | None = None,
    frac: int | None = None,
    saturate: bool = True,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Exact results (float64 from :func:`to_odd_float`, NaN where NaN) -> the output format.

    Minifloat: codes; MX: (element codes, scale codes), blocks along the last axis; fixed:
    saturated integers (int64) with ``frac`` fraction bits (default ``out.frac``).
    """
    if isinstance(out, MinifloatFormat):
        return out.encode(value, rounding, saturate=saturate, words=words)
    if isinstance(out, MXFormat):
        return out.encode(value, rounding, words=words)
    return _to_fixed(value, out, out.frac if frac is None else frac, rounding, words)


def _to_fixed(
    value: np.ndarray, fmt: FixedFormat, frac: int, rounding: Rounding, words: np.ndarray | None
) -> np.ndarray:
    """Two's-complement rounding of ``value * 2**frac``, saturated (NaN saturates to 0)."""
    limit = 2.0 ** (fmt.width + 1)  # beyond this everything saturates: keep int64 safe
    s = np.clip(np.nan_to_num(np.ldexp(value, frac), nan=0.0), -limit, limit)
    rounding = Rounding(rounding)
    if rounding is Rounding.NEAREST_EVEN:
        q = np.rint(s).astype(np.int64)
    elif rounding is Rounding.FLOOR:
        q = np.floor(s).astype(np.int64)
    else:
        if words is None or np.shape(words) != s.shape:
            raise ValueError(f"stochastic rounding needs one random word per element {s.shape}")
        low = np.asarray(words, dtype=np.int64) & ((1 << SR_BITS) - 1)
        q = (np.floor(np.ldexp(s, SR_BITS)).astype(np.int64) + low) >> SR_BITS
    return np.clip(q, fmt.min_int, fmt.max_int)


def engine_gemm(a: np.ndarray, b: np.ndarray, cfg: EngineConfig, cmd: GemmCommand) -> np.ndarray:
    """What a minifloat or MX engine (``cfg.fmt`` a :class:`MinifloatGemmFormat` or an
    :class:`MXGemmFormat`) returns for one command on ``a (M, K) @ b (K, N)``: codes of
    ``cfg.fmt.out`` (int64). Operands are codes, or MX words (:func:`mx_engine_sum`). A
    :class:`PassGemmFormat` engine computes as its :meth:`~PassGemmFormat.for_pass` of the
    command's ``pass_id``.

    The exact sum (:func:`minifloat_gemm`, :func:`mx_engine_sum`), rounded once by
    :func:`requantize` with the command's rounding; stochastic rounding takes element
    ``(i, j)``'s word from the lane and beat that carries it
    (:func:`barista_hw.intmath.output_words`, all 32 bits).
    """
    fmt = cfg.fmt
    if not isinstance(fmt, FloatGemmFormat):
        raise InputError(f"engine_gemm: {fmt.name} is not a minifloat or MX engine format")
    if isinstance(fmt, PassGemmFormat):  # the command's pass picks the formats
        fmt = fmt.for_pass(cmd.pass_id)
    if a.shape[1] > fmt.k:
        raise InputError(
            f"a reduction of {a.shape[1]} terms exceeds the {fmt.k} the {fmt.name} engine's "
            "accumulators hold exactly (give a larger k in the format's name)"
        )
    a, b = _as_codes(a), _as_codes(b)
    if isinstance(fmt, MXGemmFormat):
        acc, exp = mx_engine_sum(a, b, fmt)
    else:
        acc, exp = minifloat_gemm(a, fmt.a, b, fmt.b)
    rounding = Rounding(cmd.rounding)
    words = None
    if rounding is Rounding.STOCHASTIC:
        m, n = acc.shape
        words = output_words(cmd.seed, m, n, cfg.rows, cfg.cols, lfsr.STATE_BITS)
    value = to_odd_float(acc, exp)
    codes = requantize(value, fmt.out, rounding, words=words, saturate=fmt.saturate)
    return np.asarray(codes, dtype=np.int64)


def mx_engine_sum(a: np.ndarray, b: np.ndarray, fmt: MXGemmFormat) -> tuple[np.ndarray, int]:
    """The MX engine's exact sums of words ``a (M, K) @ b (K, N)``: (accumulator integers in
    the PEs' frame, ``fmt.acc_exp``), as :class:`~barista_hw.mxpe.MXPE` forms them.

    Blocks run along K from term 0 (the last may be short); the words of a block must carry
    one scale, no scale may be NaN, and every block whose partial sum is not zero must have
    ``X_a + X_b`` within the format's window: anything else is refused.
    """
    arith = fmt.arith
    (ea, sa), (eb, sb) = arith.unpack(a), arith.unpack(np.asarray(b).T)
    ea, eb = _signed_elements(ea, fmt.a), _signed_elements(eb, fmt.b)
    pad = -a.shape[1] % arith.block
    blocks = []
    for name, codes, scales in (("A", ea, sa), ("B", eb, sb)):
        if (scales == SCALE_NAN).any():
            raise InputError(f"operand {name} of {fmt.name}: NaN scales (quantise finite values)")
        scales = np.pad(scales, ((0, 0), (0, pad)), mode="edge")
        per_block = scales.reshape(scales.shape[0], -1, arith.block)
        if (per_block != per_block[..., :1]).any():
            raise InputError(
                f"operand {name} of {fmt.name}: the words of a block of {arith.block} along K "
                "carry different scales"
            )
        blocks.append((np.pad(codes, ((0, 0), (0, pad))), per_block[..., 0]))
    part, shift, _ = mx_partials(blocks[0], fmt.a, blocks[1], fmt.b)
    amount = shift - arith.base
    outside = (part != 0) & ((amount < 0) | (amount > arith.hi - arith.lo))
    if outside.any():
        raise InputError(
            f"{fmt.name}: a block's scale sum X_a + X_b lies outside the accumulator's window "
            f"[{arith.lo}, {arith.hi}] (use a wider _w window in the format's name)"
        )
    acc = np.left_shift(part, np.maximum(amount, 0).astype(object)).sum(axis=-1)
    acc = np.asarray(acc, dtype=object).reshape(part.shape[:2])
    return acc, fmt.acc_exp


def _signed_elements(codes: np.ndarray, fmt: MXFormat) -> np.ndarray:
    """MXINT8 elements from their unsigned word field to two's-complement integers."""
    if not fmt.is_int:
        return codes
    top = 1 << (fmt.element_bits - 1)
    return np.where(codes & top, codes - 2 * top, codes)


def _as_codes(x: np.ndarray) -> np.ndarray:
    """Codes as integers (the training backends hand them over as float arrays)."""
    x = np.asarray(x)
    return x.astype(np.int64) if x.dtype.kind == "f" else x
