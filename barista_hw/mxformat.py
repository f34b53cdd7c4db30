"""The number format of an MX GEMM engine: what :class:`~barista_hw.config.EngineConfig` holds
in ``fmt`` when the engine multiplies OCP MX operands (:mod:`barista_hw.mx`).

An engine in :class:`MXGemmFormat` streams words ``Cat(element, E8M0 scale)`` of ``a`` and
``b`` (:meth:`~barista_hw.mxpe.MXArith.pack`; blocks of ``block`` terms along K from each
command's first term, one scale per block), sums each block's exact products, adds the block's
partial shifted by its scales into an accumulator exact over reductions of up to ``k`` terms
whose scale sums ``X_a + X_b`` lie in ``[lo, hi]`` (:class:`~barista_hw.mxpe.MXPE`), and
requantises each exact sum once to a code of ``out``
(:class:`~barista_hw.fprequant.MinifloatRequantizer`): a minifloat, or ``fp32``.

Names (``barista generate --format``): an MX preset of :data:`barista_hw.mx.PRESETS`
(``mxfp8_e4m3``, ``mxfp6_e3m2``, ``mxfp4``, ``mxint8``) for both operands, results in its
element format (float32 for ``mxint8``), :data:`~barista_hw.fpformat.DEFAULT_K` and the full
scale range; in full ``<a>[x<b>][_<out>][k<K>][_w<lo>_<hi>][_nosat]``, e.g.
``mxfp8_e4m3_fp32k4096_wm64_16`` (``m`` is a minus sign: ``X_a + X_b`` in [-64, 16]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from barista_base.errors import InputError

from .fpformat import DEFAULT_K, ArithShapes, MinifloatGemmFormat
from .minifloat import FP32, MinifloatFormat
from .mx import PRESETS, MXFormat
from .mxpe import SCALE_SUM_MAX, SCALE_SUM_MIN, MXArith
from .passengine import PassGemmFormat

__all__ = ["FloatGemmFormat", "MXGemmFormat", "is_mx_spec"]

_TAIL = re.compile(
    r"^(?:_(?P<out>e\d+m\d+|fp32))?(?:k(?P<k>\d+))?(?:_w(?P<lo>m?\d+)_(?P<hi>m?\d+))?"
    r"(?P<nosat>_nosat)?$"
)
_BY_LENGTH = sorted(PRESETS, key=len, reverse=True)


def _preset(text: str) -> tuple[MXFormat, str] | None:
    """The longest MX preset name ``text`` starts with, and the rest."""
    for name in _BY_LENGTH:
        if text.startswith(name):
            return PRESETS[name], text[len(name) :]
    return None


def _int(text: str) -> int:
    return -int(text[1:]) if text.startswith("m") else int(text)


def _signed_text(v: int) -> str:
    return f"m{-v}" if v < 0 else str(v)


def is_mx_spec(spec: str) -> bool:
    """Whether ``spec`` names an MX engine format."""
    return spec.strip().lower().startswith("mx")


@dataclass(frozen=True)
class MXGemmFormat(ArithShapes):
    """MX operands ``a`` and ``b``, results in ``out``, exact sums of up to ``k`` products
    with scale sums in ``[lo, hi]``.

    Provides what the engine reads of a format (``name``, ``width``, ``operand_shape``,
    ``acc_shape``, ``acc_width``, ``acc_exp``, ``output_shape``, ``arith``, ``out``,
    ``saturate``), as :class:`~barista_hw.fpformat.MinifloatGemmFormat` does.
    """

    a: MXFormat
    b: MXFormat
    out: MinifloatFormat
    k: int = DEFAULT_K
    lo: int = SCALE_SUM_MIN
    hi: int = SCALE_SUM_MAX
    saturate: bool = True

    def __post_init__(self) -> None:
        if not self.out.signed:
            raise InputError(f"MX engine: results in {self.out.name} need a sign")
        self.arith  # noqa: B018 - MXArith checks the operands, k and the window

    @staticmethod
    def default_out(a: MXFormat) -> MinifloatFormat:
        """Results in the element format, float32 for integer elements."""
        return FP32 if a.is_int else a.element

    @classmethod
    def parse(cls, spec: str) -> MXGemmFormat:
        """Read a name of the module notes (``mxfp8_e4m3``, ``mxfp4_fp32k4096_wm64_16``)."""
        key = spec.strip().lower().replace("-", "_")
        head = _preset(key)
        tail = None
        if head:
            a, rest = head
            b = a
            if rest.startswith("x") and (other := _preset(rest[1:])):
                b, rest = other
            tail = _TAIL.match(rest)
        if not (head and tail):
            raise InputError(
                f"MX engine format {spec!r}: use <a>[x<b>][_<out>][k<K>][_w<lo>_<hi>][_nosat] "
                f"with a, b in {', '.join(PRESETS)} and out a minifloat or fp32"
            )
        out = cls.default_out(a)
        if tail["out"]:
            out = FP32 if tail["out"] == FP32.name else MinifloatFormat.parse(tail["out"])
        window = (_int(tail["lo"]), _int(tail["hi"])) if tail["lo"] else ()
        k = int(tail["k"]) if tail["k"] else DEFAULT_K
        return cls(a, b, out, k, *window, saturate=not tail["nosat"])

    @property
    def name(self) -> str:
        """Canonical name; :meth:`parse` reads it back."""
        text = self.a.name
        if self.b != self.a:
            text += f"x{self.b.name}"
        if self.out != self.default_out(self.a):
            text += f"_{self.out.name}"
        if self.k != DEFAULT_K:
            text += f"k{self.k}"
        if (self.lo, self.hi) != (SCALE_SUM_MIN, SCALE_SUM_MAX):
            text += f"_w{_signed_text(self.lo)}_{_signed_text(self.hi)}"
        return text + ("" if self.saturate else "_nosat")

    def to_dict(self) -> dict:
        """What the manifest records of the format (``number_format``)."""
        return self.describe("mx", block=self.a.block, scale_sum_window=[self.lo, self.hi])

    @cached_property
    def arith(self) -> MXArith:
        """The PEs' arithmetic (:class:`~barista_hw.array.SystolicArray` builds from it)."""
        return MXArith(self.a, self.b, self.k, self.lo, self.hi)


#: An engine format whose PEs sum exact products of codes and whose requantiser is the
#: minifloat one: a minifloat, an MX or a per-pass minifloat engine.
FloatGemmFormat = MinifloatGemmFormat | MXGemmFormat | PassGemmFormat
