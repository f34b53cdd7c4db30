"""Minifloat number formats (FP8, FP6, FP4, E8M0): the one definition of their codes and rounding.

A :class:`MinifloatFormat` plays the role :class:`~barista_hw.numfmt.FixedFormat` plays for
fixed point: it states the field widths an Amaranth PE is built from (:meth:`fields`,
:attr:`code_shape`, :meth:`acc_width`) and the numpy conversions the model and training use.

Codes are unsigned integers ``sign | exponent field | mantissa field`` (``bits`` wide, uint8
arrays for every preset). A finite code is ``n * 2**(e - mant)`` with ``n`` the significand
(hidden bit included) and ``e`` the unbiased exponent (``emin`` for subnormals), so every finite
value is an integer number of :attr:`unit` = ``2**(emin - mant)``: that integer is what the exact
GEMM multiplies (:meth:`to_units`).

Special values (:class:`Special`): ``IEEE`` reserves the all-ones exponent for inf and NaNs
(E5M2); ``FN`` has no inf and one NaN pattern per sign, all ones (OCP E4M3 ``S.1111.111``,
and E8M0's ``0xFF``); ``FINITE`` has neither (OCP E3M2, E2M3, E2M1).

Conversion from float (:meth:`MinifloatFormat.encode`), on the exact value ``x`` (float32 or
float64 input, computed in float64 with no rounding but the one stated):

* ``s = |x| / 2**(e - mant)`` with ``e = max(floor(log2|x|), emin)``;
* nearest-even: ``n = rint(s)`` (ties to the even significand; with no mantissa bits the kept
  LSB is the hidden bit, so ties go up, as in E8M0);
* stochastic: ``n = (floor(s * 2**R) + r) >> R`` with ``R = SR_BITS`` and ``r`` the low ``R``
  bits of a 32-bit LFSR word (:mod:`barista_hw.lfsr`): the random bits are added to the ``R``
  bits just below the kept LSB; bits further down are truncated first;
* ``n = 2**(mant+1)`` after rounding carries into the next binade;
* overflow (beyond the largest finite value, after rounding): with ``saturate`` the largest
  finite value; without, inf (``IEEE``), NaN (``FN``) or the largest finite value (``FINITE``:
  nothing else exists). Infinite input follows the same rule; NaN input gives NaN, and for
  ``FINITE`` formats zero with the sign bit inverted (what ml_dtypes does: OCP leaves it
  implementation-defined). Unsigned formats (E8M0) give NaN for negative input and zero.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from amaranth.hdl import Shape, unsigned

from barista_base.errors import InputError

from . import lfsr
from .numfmt import Rounding

#: Random bits stochastic rounding adds below the kept LSB (low bits of each LFSR word).
SR_BITS = 16
#: Mantissa bits at most (float32's): :meth:`MinifloatFormat.encode` keeps ``MAX_MANT + 1 +
#: SR_BITS`` bits of a float64 significand, all exact.
MAX_MANT = 23
#: Codes of at most this many bits have a table of values (:attr:`MinifloatFormat.table`),
#: which decoding and the GEMM's operands need; wider formats (FP32) are results only.
TABLE_BITS = 16


class Special(enum.Enum):
    """Which codes are inf and NaN (see the module notes)."""

    IEEE = "ieee"
    FN = "fn"
    FINITE = "finite"


@dataclass(frozen=True)
class MinifloatFormat:
    """Sign (if ``signed``), ``exp`` exponent bits with ``bias``, ``mant`` mantissa bits.

    ``subnormals=False`` (E8M0 only) makes exponent field 0 a normal binade: there is then no
    zero, and values below the smallest one round to it.
    """

    exp: int
    mant: int
    bias: int
    special: Special
    signed: bool = True
    subnormals: bool = True
    label: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.exp <= 8 or not 0 <= self.mant <= MAX_MANT:
            raise InputError(
                f"minifloat e{self.exp}m{self.mant}: exponent bits must be in 1..8 and "
                f"mantissa bits in 0..{MAX_MANT}"
            )
        if not self.subnormals and (self.signed or self.mant):
            raise InputError("only an unsigned format without mantissa (E8M0) may drop zero")

    # -- names and fields ----------------------------------------------------
    @property
    def name(self) -> str:
        """Preset name (``e4m3``) or ``e<exp>m<mant>``."""
        return self.label or f"e{self.exp}m{self.mant}"

    @classmethod
    def parse(cls, spec: str) -> MinifloatFormat:
        """A preset name from :data:`PRESETS` (``e4m3``, ``fp8_e5m2``, ``e2m1``, ``e8m0``...)."""
        key = spec.strip().lower().removeprefix("fp8_").removeprefix("fp6_").removeprefix("fp4_")
        if key not in PRESETS:
            raise InputError(f"unknown minifloat format {spec!r} (use one of {', '.join(PRESETS)})")
        return PRESETS[key]

    @property
    def bits(self) -> int:
        return int(self.signed) + self.exp + self.mant

    def fields(self) -> tuple[int, int, int]:
        """``(sign, exponent, mantissa)`` field widths, LSB last (the PE's decoder)."""
        return int(self.signed), self.exp, self.mant

    @property
    def code_shape(self) -> Shape:
        return unsigned(self.bits)

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest binade (normal; subnormals share it)."""
        return (1 if self.subnormals else 0) - self.bias

    @property
    def unit_exp(self) -> int:
        """``log2(unit)``: the exponent of the LSB of :meth:`to_units` (and of an accumulator)."""
        return self.emin - self.mant

    @property
    def top_field(self) -> int:
        """The all-ones exponent field (inf/NaN for ``IEEE``, a normal binade otherwise)."""
        return (1 << self.exp) - 1

    @property
    def unit(self) -> float:
        """Value of the smallest step, ``2**(emin - mant)``: every finite value is a multiple."""
        return math.ldexp(1.0, self.unit_exp)

    @cached_property
    def max_code(self) -> int:
        """Code of the largest finite positive value."""
        top = self.top_field
        if self.special is Special.IEEE:
            return ((top - 1) << self.mant) | ((1 << self.mant) - 1)
        if self.special is Special.FN:
            return (top << self.mant) | ((1 << self.mant) - 2) if self.mant else (top - 1)
        return (top << self.mant) | ((1 << self.mant) - 1)

    @cached_property
    def max_value(self) -> float:
        field, frac = self.max_code >> self.mant, self.max_code & ((1 << self.mant) - 1)
        return math.ldexp(frac + (1 << self.mant), field - self.bias - self.mant)

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite value (the MX spec's ``emax_elem``)."""
        return math.frexp(self.max_value)[1] - 1

    @property
    def max_units(self) -> int:
        """Largest finite magnitude in :attr:`unit` steps (the multiplier's operand range)."""
        return int(self.max_value / self.unit)

    def acc_width(self, k: int, other: MinifloatFormat | None = None) -> int:
        """Signed accumulator bits that sum ``k`` exact products (with ``other``'s operands)
        in units of ``unit * other.unit`` without ever overflowing."""
        other = other or self
        bound = self.max_units * other.max_units * max(1, k)
        return bound.bit_length() + 1

    # -- codes ---------------------------------------------------------------
    @cached_property
    def nan_code(self) -> int | None:
        """The positive NaN code (ml_dtypes' choice for IEEE: quiet, top mantissa bit)."""
        top = self.top_field
        if self.special is Special.IEEE:
            return (top << self.mant) | (1 << (self.mant - 1))
        if self.special is Special.FN:
            return (1 << (self.exp + self.mant)) - 1
        return None

    @cached_property
    def table(self) -> np.ndarray:
        """Value of every code (float64, ``2**bits`` entries): the decoder."""
        if self.bits > TABLE_BITS:
            raise InputError(f"{self.name}: a {self.bits}-bit format has no table of values")
        codes = np.arange(1 << self.bits)
        mag = codes & ((1 << (self.exp + self.mant)) - 1)
        field, frac = mag >> self.mant, mag & ((1 << self.mant) - 1)
        normal = (field > 0) | (not self.subnormals)
        n = np.where(normal, frac + (1 << self.mant), frac)
        e = np.where(normal, field - self.bias, self.emin)
        values = np.ldexp(n.astype(np.float64), (e - self.mant).astype(np.int64))
        top = self.top_field
        if self.special is Special.IEEE:
            values[(field == top) & (frac == 0)] = np.inf
            values[(field == top) & (frac != 0)] = np.nan
        elif self.special is Special.FN:
            values[mag == (1 << (self.exp + self.mant)) - 1] = np.nan
        if self.signed:
            values = np.where(codes >> (self.exp + self.mant), -values, values)
        return values

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> float32 values (exact: every value of these formats is a float32)."""
        return self.table.astype(np.float32)[np.asarray(codes, dtype=np.intp)]

    def to_units(self, codes: np.ndarray) -> np.ndarray:
        """Finite codes -> exact signed integers, the values in :attr:`unit` steps (int64)."""
        units = np.nan_to_num(self.table / self.unit, nan=0, posinf=0, neginf=0)
        return units.astype(np.int64)[np.asarray(codes, dtype=np.intp)]

    def encode(
        self,
        x: np.ndarray,
        rounding: Rounding = Rounding.NEAREST_EVEN,
        *,
        saturate: bool = False,
        words: np.ndarray | None = None,
    ) -> np.ndarray:
        """Float values -> codes (uint8 for up to 8 bits), rounded as in the module notes.

        ``words``: uint32 random words, one per element (stochastic rounding).
        """
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise InputError(f"{self.name}: encode takes float values, got {x.dtype}")
        with np.errstate(invalid="ignore"):  # signalling NaN payloads
            a = np.abs(x.astype(np.float64))
        negative = np.signbit(x)
        finite = np.isfinite(a)
        live = finite & (a > 0)
        safe = np.where(live, a, 1.0)
        e = np.maximum(np.frexp(safe)[1] - 1, self.emin)
        s = np.ldexp(safe, self.mant - e)  # exact: scaling by a power of two
        n = round_significand(s, rounding, words, x.shape)
        carry = n >> (self.mant + 1) > 0
        n = np.where(carry, n >> 1, n)
        e = e + carry
        if not self.subnormals:
            n = np.maximum(n, 1)  # no zero: below the smallest value rounds to it
        normal = n >> self.mant > 0
        field = np.where(normal, e + self.bias, 0)
        code = (np.clip(field, 0, self.top_field) << self.mant) | (n & ((1 << self.mant) - 1))
        big = ~finite | (field > self.top_field) | (code > self.max_code)
        code = np.where(live & ~big, code, 0)
        code = np.where(big, self.overflow_code(saturate), code)
        nan = np.isnan(a)
        code = np.where(nan, 0 if self.nan_code is None else self.nan_code, code)
        code = code.astype(np.int64)
        if self.signed:
            sign = negative ^ (nan & (self.nan_code is None))  # ml_dtypes: NaN -> -0
            code |= sign.astype(np.int64) << (self.exp + self.mant)
        elif self.nan_code is not None:
            code = np.where(negative | (a == 0), self.nan_code, code)
        return code.astype(
            np.uint8 if self.bits <= 8 else np.uint16 if self.bits <= 16 else np.uint32
        )

    def overflow_code(self, saturate: bool) -> int:
        """The code of a positive value too large for the format (see the module notes)."""
        if saturate or self.special is Special.FINITE:
            return self.max_code
        if self.special is Special.IEEE:
            return self.max_code + 1  # infinity: all-ones exponent, zero mantissa
        return self.nan_code  # type: ignore[return-value]

    def quantize(
        self,
        x: np.ndarray,
        rounding: Rounding = Rounding.NEAREST_EVEN,
        *,
        saturate: bool = True,
        words: np.ndarray | None = None,
    ) -> np.ndarray:
        """``decode(encode(x))``: float32 values rounded to the format (training's operands)."""
        return self.decode(self.encode(x, rounding, saturate=saturate, words=words))


def round_significand(
    s: np.ndarray, rounding: Rounding, words: np.ndarray | None, shape: tuple[int, ...]
) -> np.ndarray:
    """The significand ``s`` (float64, below ``2**12``) rounded to an integer (int64)."""
    rounding = Rounding(rounding)
    if rounding is Rounding.NEAREST_EVEN:
        return np.rint(s).astype(np.int64)
    if rounding is Rounding.FLOOR:
        return np.floor(s).astype(np.int64)
    if words is None or np.shape(words) != shape:
        raise ValueError(f"stochastic rounding needs one random word per element {shape}")
    low = np.asarray(words, dtype=np.int64) & ((1 << SR_BITS) - 1)
    return (np.floor(np.ldexp(s, SR_BITS)).astype(np.int64) + low) >> SR_BITS


def random_words(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """LFSR words for an array: element ``(..., j)`` of row ``t`` (the leading axes flattened)
    takes lane ``j``'s word at beat ``t`` (:func:`barista_hw.lfsr.lane_words`)."""
    lanes = shape[-1] if shape else 1
    beats = math.prod(shape[:-1]) if shape else 1
    return lfsr.lane_words(seed, lanes, beats).reshape(shape)


#: Named formats (OCP 8-bit floating point and MX v1.0 element and scale formats).
PRESETS: dict[str, MinifloatFormat] = {
    "e4m3": MinifloatFormat(4, 3, 7, Special.FN, label="e4m3"),
    "e5m2": MinifloatFormat(5, 2, 15, Special.IEEE, label="e5m2"),
    "e3m2": MinifloatFormat(3, 2, 3, Special.FINITE, label="e3m2"),
    "e2m3": MinifloatFormat(2, 3, 1, Special.FINITE, label="e2m3"),
    "e2m1": MinifloatFormat(2, 1, 1, Special.FINITE, label="e2m1"),
    "e8m0": MinifloatFormat(8, 0, 127, Special.FN, signed=False, subnormals=False, label="e8m0"),
}

#: IEEE binary32 as a minifloat: an engine's result format when results are float32 (the
#: golden training backend's), never an operand (no table of 2**32 values).
FP32 = MinifloatFormat(8, 23, 127, Special.IEEE, label="fp32")
