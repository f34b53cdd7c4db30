"""Number formats: the one definition of the arithmetic, read by the RTL and the numpy model.

A :class:`FixedFormat` is a signed two's-complement fixed-point format for the
operands of a GEMM engine (``width`` bits, ``frac`` of them fractional), with
the width of the accumulator the products are summed in. It yields the
Amaranth shapes the engines are built from (:attr:`FixedFormat.operand_shape`,
:attr:`FixedFormat.acc_shape`, ...) and the integer ranges the numpy model
saturates to, so hardware and model cannot disagree about a width.

Arithmetic of an engine, stated once:

* products ``a * b`` are exact (``2 * width`` bits, ``2 * frac`` fraction bits);
* the accumulator adds them modulo ``2**acc_width`` (two's complement wrap,
  like a DSP accumulator; choose ``acc_width >= 2*width + log2(K)`` and it
  never wraps);
* at the end of a dot product the accumulator is *requantised*: shifted right
  by a run-time ``shift`` (``frac`` to come back to the operand format) with a
  :class:`Rounding` mode, then saturated to the operand range.

Requantisation as integer arithmetic (``acc`` is the wrapped accumulator,
``s`` the shift, ``r`` a 32-bit random word, see :mod:`barista_hw.lfsr`)::

    NEAREST_EVEN: q = (acc + (2**(s-1) - 1) + ((acc >> s) & 1)) >> s   (s > 0; q = acc if s == 0)
    FLOOR:        q = acc >> s                  (truncation toward minus infinity)
    STOCHASTIC:   q = (acc + (r mod 2**s)) >> s
    result        = min(max(q, -2**(width-1)), 2**(width-1) - 1)
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape, signed, unsigned

from barista_base.errors import InputError

MIN_WIDTH = 2
MAX_WIDTH = 18  # one product must map onto one 18x18 DSP multiplier
MAX_SHIFT = 31  # stochastic rounding draws at most 32 random bits per element
SHIFT_BITS = 5
MAX_ACC_WIDTH = 56  # keeps the model's int64 rounding arithmetic free of overflow


class Rounding(enum.IntEnum):
    """Requantisation rounding modes (the value is the RTL command encoding)."""

    NEAREST_EVEN = 0
    FLOOR = 1
    STOCHASTIC = 2

    @classmethod
    def parse(cls, text: str) -> Rounding:
        """Accept ``nearest-even``/``rne``, ``floor``/``truncate``, ``stochastic``/``sr``."""
        key = text.strip().lower().replace("_", "-")
        aliases = {
            "nearest-even": cls.NEAREST_EVEN,
            "rne": cls.NEAREST_EVEN,
            "nearest": cls.NEAREST_EVEN,
            "floor": cls.FLOOR,
            "truncate": cls.FLOOR,
            "trunc": cls.FLOOR,
            "stochastic": cls.STOCHASTIC,
            "sr": cls.STOCHASTIC,
        }
        if key not in aliases:
            raise InputError(
                f"unknown rounding mode {text!r} (use nearest-even, floor or stochastic)"
            )
        return aliases[key]

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


_SPEC = re.compile(r"^fx(?P<w>\d+)(?:\.(?P<f>\d+))?(?:a(?P<a>\d+))?$")


@dataclass(frozen=True)
class FixedFormat:
    """Signed fixed point: ``width`` bits with ``frac`` fraction bits, ``acc_width`` accumulator.

    The field defaults are the default format, :data:`DEFAULT_FORMAT`.
    """

    width: int = 16
    frac: int = 8
    acc_width: int = 48

    def __post_init__(self) -> None:
        if not MIN_WIDTH <= self.width <= MAX_WIDTH:
            raise InputError(
                f"operand width {self.width} out of range {MIN_WIDTH}..{MAX_WIDTH} "
                "(one product must fit one 18x18 DSP multiplier)"
            )
        if not 0 <= self.frac < self.width:
            raise InputError(f"fraction bits {self.frac} must be in 0..{self.width - 1}")
        if not 2 * self.width <= self.acc_width <= MAX_ACC_WIDTH:
            raise InputError(
                f"accumulator width {self.acc_width} must be in {2 * self.width}..{MAX_ACC_WIDTH} "
                f"(at least one full product of two {self.width}-bit operands)"
            )

    # -- names ---------------------------------------------------------------
    @property
    def name(self) -> str:
        """Canonical spec string, e.g. ``fx16.8a48``; :meth:`parse` reads it back."""
        return f"fx{self.width}.{self.frac}a{self.acc_width}"

    @classmethod
    def parse(cls, spec: str) -> FixedFormat:
        """Read ``fx<width>[.<frac>][a<acc_width>]`` or a preset name (see :data:`PRESETS`).

        Defaults: ``frac = width // 2``, ``acc_width = 2 * width + 16``.
        """
        text = spec.strip().lower()
        if text in PRESETS:
            return PRESETS[text]
        m = _SPEC.match(text)
        if not m:
            presets = ", ".join(PRESETS)
            raise InputError(
                f"unknown number format {spec!r}: use fx<width>[.<frac>][a<acc>] "
                f"(e.g. fx16.8, fx8.4a32) or a preset ({presets})"
            )
        width = int(m["w"])
        frac = int(m["f"]) if m["f"] is not None else width // 2
        acc = int(m["a"]) if m["a"] is not None else min(2 * width + 16, MAX_ACC_WIDTH)
        return cls(width, frac, acc)

    # -- Amaranth shapes ----------------------------------------------------
    @property
    def operand_shape(self) -> Shape:
        return signed(self.width)

    @property
    def product_shape(self) -> Shape:
        return signed(2 * self.width)

    @property
    def acc_shape(self) -> Shape:
        return signed(self.acc_width)

    @property
    def shift_shape(self) -> Shape:
        return unsigned(SHIFT_BITS)

    # -- integer ranges -----------------------------------------------------
    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1))

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1

    @property
    def scale(self) -> float:
        """Value of one least significant bit of an operand."""
        return 2.0**-self.frac

    # -- conversions (the float32 reference side) ---------------------------
    def quantize(
        self,
        x: np.ndarray,
        frac: int | None = None,
        rounding: Rounding = Rounding.NEAREST_EVEN,
        rng: np.random.Generator | None = None,
        *,
        dtype: type[np.generic] = np.int64,
    ) -> np.ndarray:
        """Float array -> saturated integers with ``frac`` fraction bits (default ``self.frac``).

        The result is a C-ordered array of ``dtype``: int64, or float64 for operands that go
        into float matrix products (BLAS) and the model, which takes float arrays of integers.
        Float32 input rounded to nearest even is scaled and rounded in float32, the fast
        path of every training step: scaling by a normal power of two is exact, and what
        overflows saturates and what underflows rounds to zero as in float64. Everything
        else is computed in float64. Stochastic rounding here draws from ``rng``
        (software-side operand quantisation); the engines' own requantisation uses the
        LFSR lanes.
        """
        f = self.frac if frac is None else frac
        x = np.asarray(x)
        fast = x.dtype == np.float32 and rounding is Rounding.NEAREST_EVEN and -126 <= f <= 127
        work = np.float32 if fast else np.float64
        with np.errstate(over="ignore"):  # beyond float32: inf, saturated below
            scaled = np.asarray(np.multiply(x, work(2.0**f), dtype=work))  # 0-d: still an array
        if rounding is Rounding.NEAREST_EVEN:
            np.rint(scaled, out=scaled)  # IEEE round-half-to-even
        elif rounding is Rounding.FLOOR:
            np.floor(scaled, out=scaled)
        else:
            gen = rng if rng is not None else np.random.default_rng(0)
            scaled = np.asarray(np.floor(scaled + gen.random(scaled.shape)))
        np.clip(scaled, self.min_int, self.max_int, out=scaled)
        q = scaled.astype(dtype, order="C")
        return q[()] if q.ndim == 0 else q

    def dequantize(self, q: np.ndarray, frac: int | None = None) -> np.ndarray:
        """Integers with ``frac`` fraction bits -> float32."""
        f = self.frac if frac is None else frac
        return (np.asarray(q, dtype=np.float64) * (2.0**-f)).astype(np.float32)

    def random_operands(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform random integers over the whole operand range (test stimulus)."""
        return rng.integers(self.min_int, self.max_int, size=shape, endpoint=True, dtype=np.int64)


#: The number format wherever none is given (backends, command lines, engines):
#: FixedFormat's field defaults, 16-bit operands with 8 fraction bits and a 48-bit
#: accumulator, the preset ``fx16``.
DEFAULT_FORMAT = FixedFormat()

#: Named formats for the command line and sweeps.
PRESETS: dict[str, FixedFormat] = {
    "fx16": DEFAULT_FORMAT,
    "fx12": FixedFormat(12, 6, 40),
    "fx8": FixedFormat(8, 4, 32),
    "int8": FixedFormat(8, 0, 32),
    "fx18": FixedFormat(18, 9, 52),
}
