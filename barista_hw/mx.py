"""OCP Microscaling (MX v1.0) block formats: ``block`` elements share one E8M0 scale.

A block of values ``v_i`` is stored as a scale code ``X`` (E8M0: ``2**X``, ``X`` in -127..127,
code 255 NaN) and element codes ``P_i`` with ``v_i ~ 2**X * P_i``. Quantisation follows the
spec's rule (section 6.3), with the choices it leaves open stated (docs/formats.md):

* ``X = floor(log2(max_i |v_i|)) - emax_elem``, clamped to -127..127;
* elements ``v_i / 2**X`` rounded to the element format with saturation to its largest finite
  value (nearest-even or stochastic, :mod:`barista_hw.minifloat`'s rules; MXINT8 elements are
  8-bit two's complement with 6 fraction bits, saturating to -128..127);
* a block of zeros gets ``X = -127`` (code 0) and zero elements;
* a block holding a NaN or an infinity gets the NaN scale (code 255) and zero elements: it
  decodes to NaN everywhere.

Blocks run along the last axis; its length must be a multiple of ``block`` (pad with zeros).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from barista_base.errors import InputError

from .minifloat import PRESETS as MINIFLOATS
from .minifloat import MinifloatFormat, round_significand
from .numfmt import FixedFormat, Rounding

#: The scale format of every MX format.
E8M0 = MINIFLOATS["e8m0"]
SCALE_NAN = 255
SCALE_MIN, SCALE_MAX = -127, 127

#: MXINT8's element: two's complement with 6 fraction bits (values -2 .. 1 63/64).
INT8_ELEMENT = FixedFormat(8, 6, 32)


@dataclass(frozen=True)
class MXFormat:
    """Element format (a minifloat, or :data:`INT8_ELEMENT`) with one E8M0 scale per block."""

    element: MinifloatFormat | FixedFormat
    block: int = 32
    label: str = ""

    def __post_init__(self) -> None:
        if self.block < 1:
            raise InputError(f"MX block size {self.block} must be positive")

    @property
    def name(self) -> str:
        return self.label or f"mx_{self.element.name}_b{self.block}"

    @classmethod
    def parse(cls, spec: str) -> MXFormat:
        """A preset name from :data:`PRESETS` (``mxfp8_e4m3``, ``mxfp4``, ``mxint8``...)."""
        key = spec.strip().lower().replace("-", "_")
        if key not in PRESETS:
            raise InputError(f"unknown MX format {spec!r} (use one of {', '.join(PRESETS)})")
        return PRESETS[key]

    @property
    def is_int(self) -> bool:
        return isinstance(self.element, FixedFormat)

    @property
    def emax_elem(self) -> int:
        """Exponent of the element's largest power of two (0 for MXINT8, 8 for E4M3)."""
        return 0 if isinstance(self.element, FixedFormat) else self.element.emax

    @property
    def element_bits(self) -> int:
        return self.element.width if isinstance(self.element, FixedFormat) else self.element.bits

    @property
    def elem_unit(self) -> float:
        """Value of one integer step of an element (before the block scale)."""
        el = self.element
        return el.scale if isinstance(el, FixedFormat) else el.unit

    @property
    def max_units(self) -> int:
        """Largest element magnitude in :attr:`elem_unit` steps (the multiplier's range)."""
        el = self.element
        return -el.min_int if isinstance(el, FixedFormat) else el.max_units

    def partial_width(self, other: MXFormat | None = None) -> int:
        """Signed bits of one block's exact partial sum of element products (with
        ``other``'s elements): what the PE sums before the block's scales apply."""
        other = other or self
        return (self.max_units * other.max_units * self.block).bit_length() + 1

    def bits_per_element(self) -> float:
        """Storage cost: element bits plus the scale's 8 bits shared by the block."""
        return self.element_bits + E8M0.bits / self.block

    # -- conversions -----------------------------------------------------------
    def _blocks(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 0 or x.shape[-1] % self.block:
            raise InputError(
                f"{self.name}: the last axis ({x.shape[-1:] or 'none'}) must be a multiple of "
                f"the block size {self.block}"
            )
        return x.reshape(*x.shape[:-1], x.shape[-1] // self.block, self.block)

    def scales(self, x: np.ndarray) -> np.ndarray:
        """Shared exponent ``X`` of each block (int64, :data:`SCALE_NAN` code excluded: a
        non-finite block reports 0 here, see :meth:`encode`)."""
        blocks = self._blocks(np.asarray(x, dtype=np.float64))
        with np.errstate(invalid="ignore"):
            peak = np.max(np.abs(blocks), axis=-1)
        good = np.isfinite(peak) & (peak > 0)
        e = np.frexp(np.where(good, peak, 1.0))[1] - 1  # floor(log2 peak), exact
        x_exp = np.clip(e - self.emax_elem, SCALE_MIN, SCALE_MAX)
        return np.where(good, x_exp, np.where(peak == 0, SCALE_MIN, 0)).astype(np.int64)

    def encode(
        self,
        x: np.ndarray,
        rounding: Rounding = Rounding.NEAREST_EVEN,
        *,
        words: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Float values -> (element codes, scale codes).

        Element codes have ``x``'s shape (uint8 minifloat codes, or int8 two's complement
        integers for MXINT8); scale codes one per block (uint8 E8M0). ``words``: one uint32
        random word per element (stochastic rounding).
        """
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise InputError(f"{self.name}: encode takes float values, got {x.dtype}")
        x64 = x.astype(np.float64)
        blocks = self._blocks(x64)
        finite = np.all(np.isfinite(blocks), axis=-1)
        x_exp = self.scales(x64)
        scaled = np.ldexp(blocks, -x_exp[..., None]).reshape(x.shape)  # exact
        scaled = np.where(np.repeat(finite, self.block, axis=-1), scaled, 0.0)
        el = self.element
        if isinstance(el, FixedFormat):
            q = round_significand(np.abs(scaled) / el.scale, rounding, words, x.shape)
            q = np.where(np.signbit(scaled), -q, q)
            elements = np.clip(q, el.min_int, el.max_int).astype(np.int8)
        else:
            elements = el.encode(scaled, rounding, saturate=True, words=words)
        scale_codes = np.where(finite, x_exp + E8M0.bias, SCALE_NAN).astype(np.uint8)
        return elements, scale_codes

    def element_values(self, elements: np.ndarray) -> np.ndarray:
        """Element codes -> their values before scaling (float64, exact)."""
        el = self.element
        if isinstance(el, FixedFormat):
            return np.asarray(elements, dtype=np.float64) * el.scale
        return el.table[np.asarray(elements, dtype=np.intp)]

    def element_units(self, elements: np.ndarray) -> np.ndarray:
        """Element codes -> exact integers in :attr:`elem_unit` steps (int64)."""
        el = self.element
        if isinstance(el, FixedFormat):
            return np.asarray(elements, dtype=np.int64)
        return el.to_units(elements)

    def decode(self, elements: np.ndarray, scale_codes: np.ndarray) -> np.ndarray:
        """(element codes, scale codes) -> float32 values (NaN for a NaN scale)."""
        values = self._blocks(self.element_values(elements))
        codes = np.asarray(scale_codes, dtype=np.int64)[..., None]
        out = np.ldexp(values, codes - E8M0.bias)
        out = np.where(codes == SCALE_NAN, np.nan, out)
        return out.reshape(np.shape(elements)).astype(np.float32)

    def quantize(
        self,
        x: np.ndarray,
        rounding: Rounding = Rounding.NEAREST_EVEN,
        *,
        words: np.ndarray | None = None,
    ) -> np.ndarray:
        """``decode(encode(x))``: float32 values rounded to the block format."""
        return self.decode(*self.encode(x, rounding, words=words))


#: Named MX formats (OCP MX v1.0 table 1), block 32.
PRESETS: dict[str, MXFormat] = {
    "mxfp8_e4m3": MXFormat(MINIFLOATS["e4m3"], label="mxfp8_e4m3"),
    "mxfp8_e5m2": MXFormat(MINIFLOATS["e5m2"], label="mxfp8_e5m2"),
    "mxfp6_e3m2": MXFormat(MINIFLOATS["e3m2"], label="mxfp6_e3m2"),
    "mxfp6_e2m3": MXFormat(MINIFLOATS["e2m3"], label="mxfp6_e2m3"),
    "mxfp4_e2m1": MXFormat(MINIFLOATS["e2m1"], label="mxfp4_e2m1"),
    "mxint8": MXFormat(INT8_ELEMENT, label="mxint8"),
}
PRESETS["mxfp8"] = PRESETS["mxfp8_e4m3"]
PRESETS["mxfp4"] = PRESETS["mxfp4_e2m1"]

#: Any number format Barista knows.
NumberFormat = FixedFormat | MinifloatFormat | MXFormat


def parse_format(spec: str) -> NumberFormat:
    """A fixed-point spec or preset (``fx16``, ``fx8.4a32``), a minifloat preset (``e4m3``)
    or an MX preset (``mxfp8_e4m3``): the one parser for ``--format``-style names."""
    key = spec.strip().lower().replace("-", "_")
    if key in PRESETS:
        return PRESETS[key]
    if key.removeprefix("fp8_").removeprefix("fp6_").removeprefix("fp4_") in MINIFLOATS:
        return MinifloatFormat.parse(key)
    try:
        return FixedFormat.parse(spec)
    except InputError:
        raise InputError(
            f"unknown number format {spec!r}: use a fixed-point spec (fx16, fx8.4a32), a "
            f"minifloat ({', '.join(MINIFLOATS)}) or an MX format ({', '.join(PRESETS)})"
        ) from None
