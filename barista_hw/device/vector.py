"""The device's vector unit: the ``VEC`` operations as integer arithmetic, bit-exact.

Every tensor is signed integers ``q`` with an exponent ``frac`` (value ``q * 2**-frac``,
see ``docs/device.md``). Each operation takes and returns int64 arrays and reports
:class:`Stats` of what it wrote, for the delayed scaling policy
(:mod:`barista_hw.device.scaling`).

Rounding is :func:`shift_round`, the engine's requantisation (:func:`barista_hw.model.
requantize`) generalised to any shift: nearest-even, floor, or stochastic (add the
random word's low ``shift`` bits, then floor). Element ``i`` of an operation's output
(C order) takes lane ``i % lanes``'s word at beat ``i // lanes`` from
:func:`barista_hw.lfsr.lane_words` with the operation's seed; lanes restart from the
seed at every instruction. Inputs stay below ``2**62`` in magnitude; intermediate
values are saturated to :data:`WIDE_BITS` bits, so nothing wraps.

The quantisation bound of each operation is stated in its docstring, in units of the
output's last bit (LSB): 1/2 for nearest-even, 1 for floor and stochastic.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from barista_base.errors import InputError

from .. import lfsr
from ..numfmt import Rounding
from .geometry import PoolGeometry

WIDE_BITS = 60  # intermediate sums: three of them still fit an int64
GUARD = 16  # extra fraction bits of the SGD's intermediate terms
SCALAR_BITS = 16  # mantissa of a host scalar (lr, momentum, decay) and of a ReLU slope
RECIP_BITS = 24  # the pooling reciprocal's mantissa: relative error <= 2**-RECIP_BITS
# Cycles a vector instruction takes beyond its beats, back to back on the RTL unit: a
# cycle to take the command, its register stages and output register, a cycle to report
# the statistics (measured: tests/barista_hw/device/rtl/test_vector.py).
LATENCY = 11
STREAM_KEY = 0x6A09E667  # seeds of an instruction's second and third rounded outputs
_MAX_IN = 1 << 62


class VecOp(enum.IntEnum):
    """The ``VEC`` instruction's subcodes (the ISA's encoding)."""

    BIAS_ADD = 0
    BIAS_GRAD = 1
    RELU = 2
    RELU_BACK = 3
    MAXPOOL = 4
    MAXPOOL_BACK = 5
    AVEPOOL = 6
    AVEPOOL_BACK = 7
    SGD = 8
    COPY = 9
    CONVERT = 10
    MEAN_SUB = 11


@dataclass(frozen=True)
class Stats:
    """What an operation wrote: ``peak`` = max ``|q|``, ``saturated`` = elements clipped,
    ``overflow`` = bits the largest magnitude before clipping needed beyond the format
    (0 unless something saturated)."""

    peak: int
    saturated: int
    overflow: int = 0


@dataclass(frozen=True)
class Rounder:
    """How an operation rounds: the mode, and for stochastic rounding the seed and lanes."""

    rounding: Rounding
    seed: int = 0
    lanes: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        if self.lanes < 1:
            raise ValueError(f"a vector unit has at least one lane, not {self.lanes}")

    def stream(self, k: int) -> Rounder:
        """The rounder of an instruction's ``k``-th rounded output (``k = 0``: itself)."""
        seed = (self.seed ^ (k * STREAM_KEY)) & 0xFFFFFFFF
        return Rounder(self.rounding, seed, self.lanes)


_NEAREST = Rounder(Rounding.NEAREST_EVEN)


def _check_bits(bits: int) -> None:
    if not 2 <= bits <= 62:
        raise ValueError(f"a vector result has 2..62 bits, not {bits}")


def _peak(q: np.ndarray) -> int:
    return max(-int(q.min()), int(q.max())) if q.size else 0


def _saturate(raw: np.ndarray, bits: int, raw_bits: int | None = None) -> tuple[np.ndarray, Stats]:
    """Clip ``raw`` to ``bits`` signed bits; ``raw_bits``: the bit length of its largest
    magnitude when ``raw`` itself was pre-clipped to stay in int64."""
    _check_bits(bits)
    q = np.clip(raw, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    saturated = int(np.count_nonzero(q != raw))
    overflow = 0
    if saturated:
        overflow = (raw_bits if raw_bits is not None else _peak(raw).bit_length()) - (bits - 1)
    return q, Stats(_peak(q), saturated, overflow)


def _words(rnd: Rounder, shape: tuple[int, ...], bits: int) -> np.ndarray:
    """The random words' low ``bits`` bits for an output of ``shape`` (C order)."""
    n = math.prod(shape)
    beats = -(-n // rnd.lanes)
    words = lfsr.lane_words(rnd.seed, rnd.lanes, beats, bits).reshape(-1)[:n]
    return words.astype(np.int64).reshape(shape)


def _shift_left(x: np.ndarray, k: int, bits: int) -> tuple[np.ndarray, Stats]:
    top = _peak(x)
    if top.bit_length() + k <= 62:
        return _saturate(x << k, bits)
    # Too wide for int64: clip to one beyond the saturation limits first (same result).
    lo, hi = -((1 << (bits - 1)) >> k) - 1, (((1 << (bits - 1)) - 1) >> k) + 1
    return _saturate(np.clip(x, lo, hi) << min(k, 62), bits, top.bit_length() + k)


def shift_round(x: np.ndarray, shift: int, bits: int, rnd: Rounder) -> tuple[np.ndarray, Stats]:
    """``x * 2**-shift``: rounded by ``rnd`` if ``shift > 0``, exact if ``shift <= 0``;
    then saturated to ``bits`` signed bits. ``|x| < 2**62``.

    Stochastic rounding with ``shift > 32`` adds the 32-bit word at the top of the
    dropped bits (the bits below it are truncated: a bias below ``2**-32`` LSB).
    """
    x = np.asarray(x, dtype=np.int64)
    if x.size and (int(x.min()) <= -_MAX_IN or int(x.max()) >= _MAX_IN):
        raise ValueError("shift_round: an input reaches 2**62 in magnitude")
    if shift <= 0:
        return _shift_left(x, -shift, bits)
    s = np.int64(min(shift, 63))
    if rnd.rounding is Rounding.NEAREST_EVEN:
        if shift >= 63:  # |x| < 2**62: below half of the last bit
            raw = np.zeros_like(x)
        else:
            raw = (x + ((np.int64(1) << (s - 1)) - 1) + ((x >> s) & 1)) >> s
    elif rnd.rounding is Rounding.FLOOR:
        raw = x >> s
    elif shift <= 32:
        raw = (x + _words(rnd, x.shape, shift)) >> s
    else:
        raw = ((x >> np.int64(min(shift - 32, 63))) + _words(rnd, x.shape, 32)) >> np.int64(32)
    return _saturate(raw, bits)


def convert(
    q: np.ndarray, frac_in: int, frac_out: int, bits: int, rnd: Rounder
) -> tuple[np.ndarray, Stats]:
    """``CONVERT``: a tensor moved from ``frac_in`` to ``frac_out`` and ``bits`` bits
    (bound: one rounding when ``frac_out < frac_in``, exact otherwise)."""
    return shift_round(q, frac_in - frac_out, bits, rnd)


def copy(q: np.ndarray, bits: int) -> tuple[np.ndarray, Stats]:
    """``COPY``: the tensor unchanged, saturated to ``bits`` bits."""
    return _saturate(np.asarray(q, dtype=np.int64), bits)


def encode_scalar(x: float, bits: int = SCALAR_BITS) -> tuple[int, int]:
    """A host scalar as ``(mantissa, exp)`` with value ``mantissa * 2**-exp``: a
    ``bits``-bit signed mantissa, nearest-even, normalised so ``|mantissa| >=
    2**(bits-2)`` (relative error ``<= 2**-(bits-1)``; powers of two are exact)."""
    if not math.isfinite(x):
        raise InputError(f"a device scalar must be finite, got {x}")
    if x == 0:
        return 0, 0
    _, e = math.frexp(x)  # |x| in [2**(e-1), 2**e)
    exp = bits - 1 - e
    mantissa = round(math.ldexp(x, exp))  # Python's round: ties to even
    if mantissa == 1 << (bits - 1):  # rounded up out of range: same value, one bit less
        mantissa, exp = mantissa >> 1, exp - 1
    return mantissa, exp


def scalar_param(x: float) -> int:
    """:func:`encode_scalar` of ``x`` packed in an instruction's 32-bit ``param``: the
    mantissa in the low 16 bits, the exponent in the high 16 (both two's complement), so
    the hardware reads a ReLU's slope as it multiplies with it."""
    mantissa, exp = encode_scalar(x)
    return (mantissa & 0xFFFF) | (exp & 0xFFFF) << 16


def scalar_from_param(param: int) -> float:
    """The value :func:`scalar_param` packed (exactly ``mantissa * 2**-exp``)."""

    def signed(v: int) -> int:
        return v - (1 << 16) if v & 0x8000 else v

    return math.ldexp(signed(param & 0xFFFF), -signed(param >> 16 & 0xFFFF))


def bias_add(
    y: np.ndarray, frac_y: int, bias: np.ndarray, frac_bias: int, bits: int, rnd: Rounder
) -> tuple[np.ndarray, Stats]:
    """``BIAS_ADD``: ``y`` ``(images, M, pixels)`` plus ``bias`` ``(M,)``, at ``frac_y``.

    The bias is aligned to ``frac_y`` per output element (so stochastic rounding draws
    each element's own word), then added, saturating. Bound: one rounding of the bias.
    """
    y = np.asarray(y, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    if y.ndim != 3 or bias.shape != (y.shape[1],):
        raise ValueError(f"bias_add: y {y.shape} and bias {bias.shape} do not match")
    full = np.broadcast_to(bias[None, :, None], y.shape)
    aligned, _ = shift_round(full, frac_bias - frac_y, WIDE_BITS, rnd)
    return _saturate(y + aligned, bits)


def mean_sub(
    x: np.ndarray,
    frac_x: int,
    mean: np.ndarray,
    frac_mean: int,
    frac_out: int,
    bits: int,
    rnd: Rounder,
) -> tuple[np.ndarray, Stats]:
    """``MEAN_SUB``: images ``x`` ``(images, ...)`` minus one ``mean`` image (the shape of
    one image), both aligned exactly to the finer exponent, then moved to ``frac_out``.
    Bound: one rounding."""
    x = np.asarray(x, dtype=np.int64)
    mean = np.asarray(mean, dtype=np.int64)
    if x.shape[1:] != mean.shape:
        raise ValueError(f"mean_sub: images {x.shape} and mean {mean.shape} do not match")
    fine = max(frac_x, frac_mean)
    diff = (x << (fine - frac_x)) - (mean << (fine - frac_mean))[None]
    return shift_round(diff, fine - frac_out, bits, rnd)


def bias_grad(
    dy: np.ndarray, frac_dy: int, frac_out: int, bits: int, rnd: Rounder
) -> tuple[np.ndarray, Stats]:
    """``BIAS_GRAD``: ``(M,)`` sums of ``dy`` ``(images, M, pixels)`` over images and
    pixels, exact, then one rounding to ``frac_out``."""
    dy = np.asarray(dy, dtype=np.int64)
    return shift_round(dy.sum(axis=(0, 2)), frac_dy - frac_out, bits, rnd)


def _leaky(
    x: np.ndarray, values: np.ndarray, bits: int, slope: float, rnd: Rounder
) -> tuple[np.ndarray, Stats]:
    """``values`` where ``x > 0``, else ``values * slope`` rounded (slope as a
    :data:`SCALAR_BITS`-bit :func:`encode_scalar`)."""
    if slope == 0:
        return _saturate(np.where(x > 0, values, 0), bits)
    mantissa, exp = encode_scalar(slope)
    scaled, _ = shift_round(values * mantissa, exp, WIDE_BITS, rnd)
    return _saturate(np.where(x > 0, values, scaled), bits)


def relu(
    x: np.ndarray, bits: int, negative_slope: float = 0.0, *, rnd: Rounder = _NEAREST
) -> tuple[np.ndarray, Stats]:
    """``RELU``: Caffe's ``max(x, 0) + slope * min(x, 0)``, at the input's frac.
    Exact for slope 0; otherwise one rounding of ``x * slope`` with the slope's
    relative error ``<= 2**-(SCALAR_BITS-1)``."""
    x = np.asarray(x, dtype=np.int64)
    return _leaky(x, x, bits, negative_slope, rnd)


def relu_back(
    dy: np.ndarray,
    x: np.ndarray,
    bits: int,
    negative_slope: float = 0.0,
    *,
    rnd: Rounder = _NEAREST,
) -> tuple[np.ndarray, Stats]:
    """``RELU_BACK``: Caffe's ``dy`` where ``x > 0``, ``dy * slope`` elsewhere, at
    ``dy``'s frac (bound as :func:`relu`)."""
    dy = np.asarray(dy, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    if dy.shape != x.shape:
        raise ValueError(f"relu_back: dy {dy.shape} and x {x.shape} differ")
    return _leaky(x, dy, bits, negative_slope, rnd)


# -- pooling -----------------------------------------------------------------
def window_starts(geom: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
    """First input row and column of every window (negative in the padding)."""
    hs = np.arange(geom.out_height) * geom.stride[0] - geom.pad[0]
    ws = np.arange(geom.out_width) * geom.stride[1] - geom.pad[1]
    return hs, ws


def _padded(x: np.ndarray, geom: PoolGeometry, fill: int) -> np.ndarray:
    """``x`` in a buffer covering every window (CEIL-mode windows may pass the pad)."""
    (kh, kw), (sh, sw), (ph, pw) = geom.kernel, geom.stride, geom.pad
    hp = max(geom.height + 2 * ph, (geom.out_height - 1) * sh + kh)
    wp = max(geom.width + 2 * pw, (geom.out_width - 1) * sw + kw)
    buf = np.full((*x.shape[:2], hp, wp), fill, dtype=np.int64)
    buf[:, :, ph : ph + geom.height, pw : pw + geom.width] = x
    return buf


def _window(a: np.ndarray, geom: PoolGeometry, k: int) -> np.ndarray:
    """The ``(images, C, out_h, out_w)`` strided view of padded ``a`` at kernel offset ``k``."""
    i, j = divmod(k, geom.kernel[1])
    (sh, sw), ho, wo = geom.stride, geom.out_height, geom.out_width
    return a[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]


def _unpad(a: np.ndarray, geom: PoolGeometry) -> np.ndarray:
    ph, pw = geom.pad
    return a[:, :, ph : ph + geom.height, pw : pw + geom.width]


def _check(t: np.ndarray, geom: PoolGeometry, out: bool, what: str) -> np.ndarray:
    t = np.asarray(t, dtype=np.int64)
    hw = (geom.out_height, geom.out_width) if out else (geom.height, geom.width)
    if t.ndim != 4 or t.shape[1:] != (geom.channels, *hw):
        raise ValueError(f"{what} has shape {t.shape}, the geometry wants (images, C, {hw})")
    return t


def mask_bits(geom: PoolGeometry) -> int:
    """The width of a MAX pooling's argmax mask: its window offsets, ``kh * kw`` of them."""
    return max(1, (geom.kernel[0] * geom.kernel[1] - 1).bit_length())


def argmax_plane_index(mask: np.ndarray, geom: PoolGeometry) -> np.ndarray:
    """The device's mask (window offsets) as Caffe's: ``h * W + w`` in the input plane."""
    hs, ws = window_starts(geom)
    rows = hs[:, None] + mask // geom.kernel[1]
    cols = ws[None, :] + mask % geom.kernel[1]
    return (rows * geom.width + cols).astype(np.int32)


def maxpool(x: np.ndarray, geom: PoolGeometry) -> tuple[np.ndarray, np.ndarray, Stats]:
    """``MAXPOOL``: Caffe's MAX pooling of ``x`` ``(images, C, H, W)`` and its argmax mask:
    the offset ``i * kw + j`` in its window of the first maximum in row-major window
    order (:func:`mask_bits` wide; padding never wins; :func:`argmax_plane_index` gives
    Caffe's mask). Exact."""
    x = _check(x, geom, False, "maxpool input")
    xp = _padded(x, geom, np.iinfo(np.int64).min)
    y = _window(xp, geom, 0).copy()
    arg = np.zeros(y.shape, dtype=np.int64)
    for k in range(1, geom.kernel[0] * geom.kernel[1]):
        win = _window(xp, geom, k)
        better = win > y  # strict: an equal later value does not replace the first
        np.copyto(y, win, where=better)
        arg[better] = k
    return y, arg, Stats(_peak(y), 0)


def maxpool_back(
    dy: np.ndarray, mask: np.ndarray, geom: PoolGeometry, bits: int
) -> tuple[np.ndarray, Stats]:
    """``MAXPOOL_BACK``: each ``dy`` added at its window's argmax (``mask``: window
    offsets), summed exactly, then saturated to ``bits``."""
    dy = _check(dy, geom, True, "maxpool_back dy")
    offset = np.asarray(mask, dtype=np.int64)
    if offset.shape != dy.shape:
        raise ValueError(f"maxpool_back: mask {offset.shape} and dy {dy.shape} differ")
    dxp = _padded(np.zeros((*dy.shape[:2], geom.height, geom.width), np.int64), geom, 0)
    for k in range(geom.kernel[0] * geom.kernel[1]):
        _window(dxp, geom, k)[...] += np.where(offset == k, dy, 0)
    return _saturate(_unpad(dxp, geom), bits)


def pool_sizes(geom: PoolGeometry) -> np.ndarray:
    """Caffe's AVE divisor per output pixel ``(out_h, out_w)``: the window clipped to the
    padded image (``H + pad``, ``W + pad``) before it is clipped to the image."""
    hs, ws = window_starts(geom)
    hsize = np.minimum(hs + geom.kernel[0], geom.height + geom.pad[0]) - hs
    wsize = np.minimum(ws + geom.kernel[1], geom.width + geom.pad[1]) - ws
    return np.outer(hsize, wsize).astype(np.int64)


def reciprocals(geom: PoolGeometry) -> tuple[np.ndarray, int]:
    """``(r, shift)``: ``r = round_even(2**shift / n)`` for every pool size ``n``, with
    ``shift = RECIP_BITS - 1 + ceil(log2(max n))``, so ``r >= 2**(RECIP_BITS-1)`` and
    ``r * 2**-shift`` is ``1/n`` within a relative ``2**-RECIP_BITS`` (exact for powers
    of two)."""
    n = pool_sizes(geom)
    shift = RECIP_BITS - 1 + (int(n.max()) - 1).bit_length()
    q, rem = np.divmod(np.int64(1) << np.int64(shift), n)
    up = (2 * rem > n) | ((2 * rem == n) & (q % 2 == 1))
    return q + up, shift


def _check_headroom(peak: int, shift: int, terms: int, what: str) -> None:
    if peak.bit_length() + shift + max(terms - 1, 0).bit_length() + 1 > 62:
        raise ValueError(f"{what}: inputs of {peak.bit_length()} bits overflow the model's int64")


def avepool(x: np.ndarray, geom: PoolGeometry, bits: int, rnd: Rounder) -> tuple[np.ndarray, Stats]:
    """``AVEPOOL``: Caffe's AVE pooling: the window's sum over the image (exact) times the
    reciprocal of :func:`pool_sizes` (:func:`reciprocals`), then one rounding. Bound:
    the rounding's plus ``|mean| * 2**-RECIP_BITS`` (``2**(bits-1-RECIP_BITS)`` LSB)."""
    x = _check(x, geom, False, "avepool input")
    r, shift = reciprocals(geom)
    _check_headroom(_peak(x), shift, 1, "avepool")  # |sum * r| <= max|x| 2**shift
    xp = _padded(x, geom, 0)
    total = _window(xp, geom, 0).copy()
    for k in range(1, geom.kernel[0] * geom.kernel[1]):
        total += _window(xp, geom, k)
    return shift_round(total * r, shift, bits, rnd)


def avepool_back(
    dy: np.ndarray, geom: PoolGeometry, bits: int, rnd: Rounder
) -> tuple[np.ndarray, Stats]:
    """``AVEPOOL_BACK``: every input gets ``dy / n`` of each window covering it: the
    products ``dy * r`` are summed exactly, then rounded once (bound as :func:`avepool`,
    with the sum of the covering ``|dy / n|`` in place of ``|mean|``)."""
    dy = _check(dy, geom, True, "avepool_back dy")
    r, shift = reciprocals(geom)
    (kh, kw), (sh, sw) = geom.kernel, geom.stride
    _check_headroom(_peak(dy), shift, -(-kh // sh) * -(-kw // sw), "avepool_back")
    dxp = _padded(np.zeros((*dy.shape[:2], geom.height, geom.width), np.int64), geom, 0)
    part = dy * r
    for k in range(kh * kw):
        _window(dxp, geom, k)[...] += part
    return shift_round(_unpad(dxp, geom), shift, bits, rnd)


# -- SGD ---------------------------------------------------------------------
@dataclass(frozen=True)
class SgdResult:
    """The updated master weights and momentum and the operand copy, with their stats."""

    master: np.ndarray
    momentum: np.ndarray
    operand: np.ndarray
    master_stats: Stats
    momentum_stats: Stats
    operand_stats: Stats


def _fits32(*arrays: np.ndarray) -> None:
    for a in arrays:
        if a.size and (int(a.min()) < -(1 << 31) or int(a.max()) >= 1 << 31):
            raise ValueError("sgd: master weights, momentum and gradients are 32-bit")


def sgd(
    master: np.ndarray,
    frac_master: int,
    momentum: np.ndarray,
    frac_mom: int,
    grad: np.ndarray,
    frac_grad: int,
    *,
    lr: tuple[int, int],
    mom: tuple[int, int],
    decay: tuple[int, int],
    operand_bits: int,
    frac_operand: int,
    rnd: Rounder,
    master_bits: int = 32,
) -> SgdResult:
    """``SGD``: Caffe's update ``v = mom v + lr (g + decay w); w = w - v`` on 32-bit
    master weights ``w`` and momentum ``v``, then the operand copy of ``w``.

    ``lr``, ``mom``, ``decay`` are :func:`encode_scalar` pairs (the caller folds in
    ``lr_mult``, ``decay_mult`` and the policy's rate). The three products
    ``mom*v``, ``lr*g``, ``(lr*decay)*w`` are exact, rounded to nearest-even at
    ``frac_mom + GUARD``, summed, and rounded once by ``rnd`` to ``frac_mom``: within
    the rounding's bound plus ``3 * 2**-(GUARD+1)`` LSB of ``v``. ``w - v`` is formed
    at ``frac_master + GUARD`` (``v`` rounded there if finer) and rounded once. The
    three outputs round with ``rnd.stream(0)`` (momentum), ``stream(1)`` (master),
    ``stream(2)`` (operand).
    """
    w, v, g = (np.asarray(a, dtype=np.int64) for a in (master, momentum, grad))
    if not w.shape == v.shape == g.shape:
        raise ValueError(f"sgd: shapes {w.shape}, {v.shape}, {g.shape} differ")
    _fits32(w, v, g)
    if master_bits > 32:
        raise ValueError(
            f"sgd: master weights and momentum have at most 32 bits, not {master_bits}"
        )
    (ml, el), (mm, em), (md, ed) = lr, mom, decay
    work = frac_mom + GUARD
    terms = [
        shift_round(v * mm, em + frac_mom - work, WIDE_BITS, _NEAREST)[0],
        shift_round(g * ml, el + frac_grad - work, WIDE_BITS, _NEAREST)[0],
        shift_round(w * (ml * md), el + ed + frac_master - work, WIDE_BITS, _NEAREST)[0],
    ]
    v_new, v_stats = shift_round(sum(terms), GUARD, master_bits, rnd.stream(0))
    v_aligned, _ = shift_round(v_new, frac_mom - frac_master - GUARD, WIDE_BITS, _NEAREST)
    w_new, w_stats = shift_round((w << GUARD) - v_aligned, GUARD, master_bits, rnd.stream(1))
    op, op_stats = shift_round(w_new, frac_master - frac_operand, operand_bits, rnd.stream(2))
    return SgdResult(w_new, v_new, op, w_stats, v_stats, op_stats)


# -- timing ------------------------------------------------------------------
def covering_windows(kernel: tuple[int, int], stride: tuple[int, int]) -> int:
    """The most pooling windows that cover one input pixel, ``ceil(kh/sh) * ceil(kw/sw)``:
    the candidate windows the backward pass visits for every pixel."""
    (kh, kw), (sh, sw) = kernel, stride
    return -(-kh // sh) * -(-kw // sw)


def cycles(
    op: VecOp, elements_in: int, elements_out: int, lanes: int, window: int = 1, cover: int = 1
) -> int:
    """Cycles of one ``VEC`` instruction on the RTL unit (``barista_hw.device.rtl.vector``).

    The unit computes ``lanes`` outputs side by side, each lane reducing its own group
    (the inputs of its output) one entry a cycle, with the groups of a beat of outputs
    the same length; then :data:`LATENCY` cycles of command, pipeline and statistics.
    Element operations and ``SGD`` (``elements_out`` weights; its three inputs and
    results stream side by side) take a beat per ``lanes`` elements. ``BIAS_GRAD``: a
    lane a channel, its ``elements_in / elements_out`` gradients in turn. Pooling
    forward: a lane an output, its ``window`` kernel offsets in turn; backward: a lane an
    input pixel, its ``cover`` candidate windows (:func:`covering_windows`) in turn.
    """
    op = VecOp(op)

    def beats(n: int) -> int:
        return -(-n // lanes)

    if op in (VecOp.MAXPOOL, VecOp.AVEPOOL):
        busy = window * beats(elements_out)
    elif op in (VecOp.MAXPOOL_BACK, VecOp.AVEPOOL_BACK):
        busy = cover * beats(elements_out)
    elif op is VecOp.BIAS_GRAD:
        busy = beats(elements_out) * (elements_in // max(elements_out, 1))
    elif op is VecOp.SGD:
        busy = beats(elements_out)
    else:
        busy = beats(max(elements_in, elements_out))
    return busy + LATENCY
