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
from types import EllipsisType

import numpy as np
from amaranth.hdl import Shape, signed, unsigned

from barista_base.errors import InputError

from . import native

MIN_WIDTH = 2
MAX_WIDTH = 18  # one product must map onto one 18x18 DSP multiplier
MAX_SHIFT = 31  # stochastic rounding draws at most 32 random bits per element
SHIFT_BITS = 5
MAX_ACC_WIDTH = 56  # keeps the model's int64 rounding arithmetic free of overflow


def _row_blocks(x: np.ndarray, size: int = 1 << 15) -> list[slice | EllipsisType]:
    """Indices splitting ``x`` along its first axis into blocks of about ``size`` elements.

    Several passes over one block run while it is in cache, instead of each pass
    streaming the whole array through memory. A 0-d array is one block (``...``).
    """
    if x.ndim == 0 or x.shape[0] == 0:
        return [...]
    step = max(1, size * x.shape[0] // max(1, x.size))
    return [slice(i, i + step) for i in range(0, x.shape[0], step)]


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

    def to_dict(self) -> dict:
        """What the manifest records of the format (``number_format``)."""
        return {
            "kind": "fixed",
            "name": self.name,
            "width": self.width,
            "frac": self.frac,
            "acc_width": self.acc_width,
        }

    # -- Amaranth shapes ----------------------------------------------------
    @property
    def operand_shape(self) -> Shape:
        return signed(self.width)

    @property
    def output_shape(self) -> Shape:
        """A result lane: results are requantised to the operand format."""
        return self.operand_shape

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
        peak: float | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Float array -> saturated integers with ``frac`` fraction bits (default ``self.frac``).

        The result is a C-ordered array of ``dtype``: int64, or float64 for operands that go
        into float matrix products (BLAS) and the model, which takes float arrays of integers.
        The arithmetic is float64's: scale by ``2**frac``, round, saturate. Float32 input
        rounded to nearest even into int64 is scaled and rounded in float32, which gives
        the same integers: scaling by a normal power of two is exact, and what overflows
        saturates and what underflows rounds to zero as in float64. Stochastic rounding
        here draws from ``rng`` (software-side operand quantisation); the engines' own
        requantisation uses the LFSR lanes.

        ``peak``, when the caller knows ``max |x|`` (it chose ``frac`` from it), lets the
        saturation pass be skipped when rounding cannot take any value out of range.
        ``out``, a C-contiguous float64 array of ``x``'s shape, receives the result
        (``dtype`` float64) instead of a new array: a caller quantising tensors of the
        same sizes again and again reuses its memory.
        """
        f = self.frac if frac is None else frac
        x = np.asarray(x)
        fast = (
            dtype != np.float64
            and x.dtype == np.float32
            and rounding is Rounding.NEAREST_EVEN
            and -126 <= f <= 127
        )
        work = np.float32 if fast else np.float64
        if out is not None and (out.dtype != np.float64 or dtype != np.float64):
            raise ValueError("quantize: out must be float64, with dtype float64")
        scaled = np.empty(x.shape, dtype=work) if out is None else out
        if rounding is Rounding.STOCHASTIC:
            gen = rng if rng is not None else np.random.default_rng(0)
            np.multiply(x, work(2.0**f), out=scaled)
            scaled += gen.random(scaled.shape)
            np.floor(scaled, out=scaled)
            np.clip(scaled, work(self.min_int), work(self.max_int), out=scaled)
        else:
            floor = rounding is Rounding.FLOOR
            clip = peak is None or self._may_saturate(peak, f)
            bounds = (float(self.min_int), float(self.max_int)) if clip else None
            fused = native.quantize(x, 2.0**f, floor, bounds, out)
            if fused is not None:
                q = fused[0].astype(dtype, copy=False)
                return q[()] if q.ndim == 0 else q
            round_ = np.floor if floor else np.rint  # rint: IEEE round-half-to-even
            lo, hi, scale = work(self.min_int), work(self.max_int), work(2.0**f)
            for block in _row_blocks(scaled):
                with np.errstate(over="ignore"):  # beyond float32: inf, saturated below
                    np.multiply(x[block], scale, out=scaled[block])
                round_(scaled[block], out=scaled[block])
                if clip:
                    np.clip(scaled[block], lo, hi, out=scaled[block])
        q = scaled.astype(dtype, copy=False)
        return q[()] if q.ndim == 0 else q

    def _may_saturate(self, peak: float, frac: int) -> bool:
        """Whether rounding values within ``[-peak, peak]`` times ``2**frac`` (to nearest or
        down: both monotonic) can leave the integer range (true for a nan ``peak``)."""
        with np.errstate(over="ignore"):
            top = np.float64(peak) * np.float64(2.0**frac)
        return not (np.floor(-top) >= self.min_int and np.rint(top) <= self.max_int)

    def dequantize(self, q: np.ndarray, frac: int | None = None) -> np.ndarray:
        """Integers with ``frac`` fraction bits -> float32 (the exact value, rounded once)."""
        f = self.frac if frac is None else frac
        q = np.asarray(q)
        out = np.empty(q.shape, dtype=np.float32)
        # One pass: the product is exact in float64, then rounded to float32 on the way out.
        np.multiply(q, np.float64(2.0**-f), out=out, dtype=np.float64, casting="same_kind")
        return out

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
