"""The number format of a minifloat GEMM engine: what :class:`~barista_hw.config.EngineConfig`
holds in ``fmt`` when the engine multiplies minifloat codes instead of fixed-point integers.

An engine in :class:`MinifloatGemmFormat` streams codes of ``a`` and ``b``, sums their exact
products in accumulators of :meth:`~barista_hw.minifloat.MinifloatFormat.acc_width` bits for
reductions of up to ``k`` terms (the accumulator memory carries them across chunks, so ``k``
bounds a whole pass's reduction, the weight gradient's batch included), and requantises each
exact sum once to a code of ``out`` (:class:`~barista_hw.fprequant.MinifloatRequantizer`), with
the command's rounding mode and no shift: the value of the result is the code's value times
``2**-(scale of A + scale of B)`` chosen by the host.

Names (``barista generate --format``): ``e4m3`` is E4M3 operands and results with
:data:`DEFAULT_K`; in full ``<a>[x<b>][_<out>][k<K>][_nosat]``, e.g. ``e2m3xe3m2_e2m1k64``
(``_nosat``: overflow gives inf/NaN, :meth:`MinifloatFormat.overflow_code`). ``out`` may be
``fp32`` (:data:`~barista_hw.minifloat.FP32`): results are float32, rounded once from the
exact sum, which is what training on the ``rtl`` backend needs (``e4m3_fp32_nosat``: the
float32 overflow to inf). Names contain no ``.``, so they are Verilog identifiers as they
stand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from amaranth.hdl import Shape

from barista_base.errors import InputError

from .fppe import MinifloatArith
from .minifloat import FP32, PRESETS, TABLE_BITS, MinifloatFormat

if TYPE_CHECKING:
    from .mxpe import MXArith

__all__ = [
    "DEFAULT_K",
    "ArithShapes",
    "MinifloatGemmFormat",
    "element_format",
    "is_minifloat_spec",
]

#: The reduction length the accumulators hold exactly unless the name says otherwise.
DEFAULT_K = 1 << 16

_ELEMENT = r"e\d+m\d+"
_SPEC = re.compile(
    rf"^(?P<a>{_ELEMENT})(?:x(?P<b>{_ELEMENT}))?(?:_(?P<out>{_ELEMENT}|fp32))?"
    r"(?:k(?P<k>\d+))?(?P<nosat>_nosat)?$"
)


def element_format(name: str) -> MinifloatFormat:
    """An operand or result format of a minifloat engine by name (``e4m3``, ``fp32``)."""
    fmt = FP32 if name == FP32.name else MinifloatFormat.parse(name)
    if not fmt.signed:
        raise InputError(f"minifloat engine: {name} has no sign and cannot be an operand")
    return fmt


def is_minifloat_spec(spec: str) -> bool:
    """Whether ``spec`` is a minifloat engine format's name (else it is fixed point or MX)."""
    key = spec.strip().lower().removeprefix("fp8_").removeprefix("fp6_").removeprefix("fp4_")
    return _SPEC.match(key) is not None


class ArithShapes:
    """What the engine reads of a format whose PEs are built from ``self.arith`` and whose
    results are codes of ``self.out``: lane widths and accumulator shape (shared by the
    minifloat and the MX engine formats)."""

    arith: MinifloatArith | MXArith
    out: MinifloatFormat
    k: int
    saturate: bool
    name: str

    def describe(self, kind: str, **extra: object) -> dict:
        """The manifest's ``number_format``: kind, operands, results, ``k``, ``extra``, the
        accumulator and saturation."""
        arith = self.arith
        head = {"kind": kind, "name": self.name, "a": arith.a.name, "b": arith.b.name}
        tail = {"acc_width": self.acc_width, "acc_lsb_exp": self.acc_exp}
        return {
            **head,
            "out": self.out.name,
            "k": self.k,
            **extra,
            **tail,
            "saturate": self.saturate,
        }

    @property
    def width(self) -> int:
        """Bits of an operand lane (the wider code or word; buffers and streams carry this)."""
        return self.operand_shape.width

    @property
    def operand_shape(self) -> Shape:
        return self.arith.operand_shape

    @property
    def acc_width(self) -> int:
        return self.arith.acc_width

    @property
    def acc_shape(self) -> Shape:
        return self.arith.acc_shape

    @property
    def acc_exp(self) -> int:
        return self.arith.acc_exp

    @property
    def output_shape(self) -> Shape:
        """A result lane: a code of ``out``."""
        return self.out.code_shape


@dataclass(frozen=True)
class MinifloatGemmFormat(ArithShapes):
    """Operand formats ``a`` and ``b``, results in ``out``, exact sums of up to ``k`` products.

    Provides what the engine reads of a format (``name``, ``width``, ``operand_shape``,
    ``acc_shape``, ``acc_width``, ``output_shape``), as :class:`~barista_hw.numfmt.FixedFormat`.
    """

    a: MinifloatFormat
    b: MinifloatFormat
    out: MinifloatFormat
    k: int = DEFAULT_K
    saturate: bool = True

    def __post_init__(self) -> None:
        if not self.out.signed:
            raise InputError(f"minifloat engine: results in {self.out.name} need a sign")
        for fmt in (self.a, self.b):
            if fmt.bits > TABLE_BITS:
                raise InputError(f"minifloat engine: {fmt.name} is a result format only")
        self.arith  # noqa: B018 - MinifloatArith checks the operands and k

    @classmethod
    def of(cls, fmt: MinifloatFormat | str) -> MinifloatGemmFormat:
        """One minifloat for operands and results, :data:`DEFAULT_K`."""
        fmt = element_format(fmt) if isinstance(fmt, str) else fmt
        return cls(fmt, fmt, fmt)

    @classmethod
    def parse(cls, spec: str) -> MinifloatGemmFormat:
        """Read a name of the module notes (``e4m3``, ``fp8_e5m2``, ``e2m3xe3m2_e2m1k64``)."""
        key = spec.strip().lower().removeprefix("fp8_").removeprefix("fp6_").removeprefix("fp4_")
        m = _SPEC.match(key)
        if not m:
            raise InputError(
                f"minifloat engine format {spec!r}: use <a>[x<b>][_<out>][k<K>][_nosat] with "
                f"a, b, out in {', '.join(n for n, f in PRESETS.items() if f.signed)}"
            )
        a = element_format(m["a"])
        b = element_format(m["b"]) if m["b"] else a
        out = element_format(m["out"]) if m["out"] else a
        k = int(m["k"]) if m["k"] else DEFAULT_K
        return cls(a, b, out, k, saturate=not m["nosat"])

    @property
    def name(self) -> str:
        """Canonical name; :meth:`parse` reads it back."""
        text = self.a.name
        if self.b != self.a:
            text += f"x{self.b.name}"
        if self.out != self.a:
            text += f"_{self.out.name}"
        if self.k != DEFAULT_K:
            text += f"k{self.k}"
        return text + ("" if self.saturate else "_nosat")

    def to_dict(self) -> dict:
        """What the manifest records of the format (``number_format``)."""
        return self.describe("minifloat")

    @cached_property
    def arith(self) -> MinifloatArith:
        """The PEs' arithmetic (:class:`~barista_hw.array.SystolicArray` builds from it)."""
        return MinifloatArith(self.a, self.b, self.k)
