"""The number format of a per-pass minifloat engine: E4M3 forward, E5M2 gradients on one array.

An accelerator has one engine for its three passes (:class:`~barista_hw.config.EngineConfig`
has one ``fmt``). A :class:`PassGemmFormat` gives that engine two operand formats, ``fwd``
(weights and activations) and ``grad`` (the incoming gradient dY), with the operands of each
pass as :func:`barista_hw.passformats.operand_formats` has them (forward ``fwd x fwd``,
backward-data ``fwd x grad``, weight gradient ``grad x fwd``), and two result formats,
``out_fwd`` for the forward pass and ``out_grad`` for the gradients (dX and dW). Each
command names its pass (the command field ``pass_id``, :data:`~barista_hw.command.PASS_IDS`);
the engine tags each operand code with its format (:class:`~barista_hw.passpe.PassPE`) and
picks the requantiser of the pass's output format
(:class:`~barista_hw.passrequant.PassRequantizer`). Pass ``p`` computes exactly what a
:class:`~barista_hw.fpformat.MinifloatGemmFormat` engine of :meth:`PassGemmFormat.for_pass`
computes: the same exact sum, rounded once, with the same random words.

Names (``barista generate --format``): ``fwd=e4m3,grad=e5m2`` (results in each pass's
operand format: forward E4M3, gradients E5M2); in full
``fwd=<f>[_<out>],grad=<g>[_<out>][k<K>][_nosat]``, e.g. ``fwd=e4m3_fp32,grad=e5m2_fp32_nosat``
(float32 results, what the ``rtl`` backend trains with). The name holds ``=`` and ``,``:
module names built from it go through :func:`barista_hw.rtl.identifier`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from amaranth.hdl import Shape, unsigned

from barista_base.errors import InputError

from .fpformat import DEFAULT_K, ArithShapes, MinifloatGemmFormat, element_format
from .minifloat import MinifloatFormat
from .passpe import PassArith

__all__ = ["PassGemmFormat", "is_per_pass", "parse_pass_engine", "pass_operands"]

#: ``pass_id`` of each pass's command (:data:`barista_hw.command.PASS_IDS`), by position.
FORWARD, BACKWARD_DATA, WEIGHT_GRAD = 0, 1, 2
_F = TypeVar("_F")

_PART = re.compile(r"^(?:(?P<key>\w+)=)?(?P<a>e\d+m\d+)(?:_(?P<out>e\d+m\d+|fp32))?$")
_TAIL = re.compile(r"(?:k(?P<k>\d+))?(?P<nosat>_nosat)?$")
_USAGE = "use fwd=<f>[_<out>],grad=<g>[_<out>][k<K>][_nosat] with minifloat f, g (e4m3, e5m2)"


def is_per_pass(spec: str) -> bool:
    """Whether ``spec`` names formats per pass (``fwd=...``, ``F,grad=G``)."""
    return "," in spec or "=" in spec


def pass_operands(fwd: _F, grad: _F, pass_id: int) -> tuple[_F, _F]:
    """The (A, B) operand formats of a pass: forward ``W x X`` in ``fwd x fwd``,
    backward-data ``W^T x dY`` in ``fwd x grad``, weight gradient ``dY x X^T`` in
    ``grad x fwd``."""
    return ((fwd, fwd), (fwd, grad), (grad, fwd))[pass_id]


@dataclass(frozen=True)
class PassGemmFormat(ArithShapes):
    """Operand formats ``fwd`` and ``grad``, results ``out_fwd`` (forward) and ``out_grad``
    (backward-data, weight gradient), exact sums of up to ``k`` products (module notes).

    Provides what the engine reads of a format (``name``, ``width``, ``operand_shape``: a
    code, ``acc_shape``, ``acc_width``, ``acc_exp``, ``output_shape``, ``arith``).
    """

    fwd: MinifloatFormat
    grad: MinifloatFormat
    out_fwd: MinifloatFormat
    out_grad: MinifloatFormat
    k: int = DEFAULT_K
    saturate: bool = True

    def __post_init__(self) -> None:
        for p in (FORWARD, BACKWARD_DATA, WEIGHT_GRAD):
            self.for_pass(p)  # each pass is a valid minifloat engine format
        self.arith  # noqa: B018 - PassArith checks the operands and k

    @classmethod
    def parse(cls, spec: str) -> PassGemmFormat:
        """Read a name of the module notes; MX formats per pass are refused."""
        key = spec.strip().lower()
        tail = _TAIL.search(key)
        assert tail is not None  # matches the empty string at the end at least
        head = key[: tail.start()]
        given: dict[str, tuple[MinifloatFormat, MinifloatFormat]] = {}
        for i, part in enumerate(head.split(",")):
            m = _PART.match(part.strip().removeprefix("fp8_"))
            name = (m["key"] or ("fwd" if i == 0 else "")) if m else ""
            if not m or name not in ("fwd", "grad") or name in given:
                raise InputError(f"per-pass engine format {spec!r}: {part.strip()!r}: {_USAGE}")
            a = element_format(m["a"])
            given[name] = (a, element_format(m["out"]) if m["out"] else a)
        if len(given) != 2:
            raise InputError(f"per-pass engine format {spec!r}: fwd and grad needed: {_USAGE}")
        (f, out_f), (g, out_g) = given["fwd"], given["grad"]
        k = int(tail["k"]) if tail["k"] else DEFAULT_K
        return cls(f, g, out_f, out_g, k, saturate=not tail["nosat"])

    @property
    def name(self) -> str:
        """Canonical name; :meth:`parse` reads it back."""

        def part(a: MinifloatFormat, out: MinifloatFormat) -> str:
            return a.name + ("" if out == a else f"_{out.name}")

        text = f"fwd={part(self.fwd, self.out_fwd)},grad={part(self.grad, self.out_grad)}"
        text += f"k{self.k}" if self.k != DEFAULT_K else ""
        return text + ("" if self.saturate else "_nosat")

    def for_pass(self, pass_id: int) -> MinifloatGemmFormat:
        """The one-format engine format whose results pass ``pass_id`` equals bit for bit."""
        a, b = pass_operands(self.fwd, self.grad, pass_id)
        out = self.out_fwd if pass_id == FORWARD else self.out_grad
        return MinifloatGemmFormat(a, b, out, self.k, self.saturate)

    @property
    def outs(self) -> tuple[MinifloatFormat, MinifloatFormat]:
        """Result formats by the requantiser's ``sel``: 0 forward, 1 gradients."""
        return self.out_fwd, self.out_grad

    @property
    def operand_shape(self) -> Shape:
        """An operand lane: a code of the wider format (the engine adds the tag)."""
        return unsigned(self.arith.code_bits)

    @property
    def output_shape(self) -> Shape:
        """A result lane: a code of the wider output format."""
        return unsigned(max(o.bits for o in self.outs))

    def to_dict(self) -> dict:
        """What the manifest records of the format (``number_format``)."""
        return {
            "kind": "per_pass",
            "name": self.name,
            "fwd": self.fwd.name,
            "grad": self.grad.name,
            "out_fwd": self.out_fwd.name,
            "out_grad": self.out_grad.name,
            "k": self.k,
            "acc_width": self.acc_width,
            "acc_lsb_exp": self.acc_exp,
            "saturate": self.saturate,
        }

    @cached_property
    def arith(self) -> PassArith:
        """The PEs' arithmetic (:class:`~barista_hw.array.SystolicArray` builds from it)."""
        return PassArith(self.fwd, self.grad, self.k)


def parse_pass_engine(spec: str) -> MinifloatGemmFormat | PassGemmFormat:
    """:meth:`PassGemmFormat.parse`; formats and results equal in every pass are that one
    minifloat engine format (``fwd=e4m3,grad=e4m3`` is ``e4m3``)."""
    fmt = PassGemmFormat.parse(spec)
    one = fmt.for_pass(FORWARD)
    if all(fmt.for_pass(p) == one for p in (BACKWARD_DATA, WEIGHT_GRAD)):
        return one
    return fmt
