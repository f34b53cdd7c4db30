"""Formats per tensor kind for training: E4M3 forward, E5M2 gradients (FP8 "hybrid").

Micikevicius et al. (2022) train with E4M3 weights and activations and E5M2 gradients:
gradients need range more than precision. In Barista's three GEMM passes the tensors are

* forward ``Y = W * X``: W and X are forward tensors;
* backward-data ``dX = W^T * dY``: W is forward, dY a gradient;
* weight gradient ``dW = dY * X^T``: dY a gradient, X forward.

So a :class:`PassFormats` names two formats, ``fwd`` (weights and activations, in every
pass) and ``grad`` (the incoming gradient dY, in backward-data and the weight gradient);
results are float32 as with one format. It is spelt ``fwd=e4m3,grad=e5m2`` or, with the
first format unnamed, ``e4m3,grad=e5m2`` (:func:`parse_training_format`, the parser every
``--format`` of a training run and every sweep ``format`` axis goes through).
"""

from __future__ import annotations

from dataclasses import dataclass

from barista_base.errors import InputError

from .command import PASS_IDS
from .config import Pass
from .minifloat import MinifloatFormat
from .mx import MXFormat, NumberFormat, parse_format
from .passengine import is_per_pass, pass_operands

#: The tensor kinds a per-pass spec names, in the canonical spelling's order.
KINDS = ("fwd", "grad")

FloatFormat = MinifloatFormat | MXFormat


@dataclass(frozen=True)
class PassFormats:
    """Minifloat or MX formats per tensor kind: ``fwd`` for weights and activations,
    ``grad`` for the gradients dY (see the module docstring)."""

    fwd: FloatFormat
    grad: FloatFormat

    @property
    def name(self) -> str:
        """The canonical spelling (``fwd=e4m3,grad=e5m2``): one spelling, one sweep point."""
        return f"fwd={self.fwd.name},grad={self.grad.name}"

    def __str__(self) -> str:
        return self.name


def operand_formats(fmt: FloatFormat | PassFormats) -> dict[Pass, tuple[FloatFormat, FloatFormat]]:
    """The (A, B) operand formats of each pass (:func:`~barista_hw.passengine.pass_operands`);
    one format is every operand's."""
    f, g = (fmt.fwd, fmt.grad) if isinstance(fmt, PassFormats) else (fmt, fmt)
    return {p: pass_operands(f, g, i) for p, i in PASS_IDS.items()}


def parse_training_format(spec: str) -> NumberFormat | PassFormats:
    """A ``--format`` value of a training run: one format for every tensor
    (:func:`barista_hw.mx.parse_format`), or a per-pass spec ``fwd=F,grad=G`` / ``F,grad=G``.

    A per-pass spec whose two formats are equal is that one format. Errors name the
    parameter: ``format 'fwd=e4m3,grad=e9m9': grad: unknown number format ...``.
    """
    if not is_per_pass(spec):
        return parse_format(spec)
    where = f"format {spec!r}"
    given: dict[str, FloatFormat] = {}
    for i, part in enumerate(spec.split(",")):
        key, sep, value = part.partition("=")
        key, value = (key.strip().lower(), value) if sep else ("fwd" if i == 0 else "", key)
        if key not in KINDS:
            raise InputError(
                f"{where}: {part.strip()!r}: name each format fwd= (weights and activations) "
                "or grad= (gradients), e.g. fwd=e4m3,grad=e5m2 or e4m3,grad=e5m2"
            )
        if key in given:
            raise InputError(f"{where}: {key} is given twice")
        given[key] = _float_format(where, key, value)
    missing = [k for k in KINDS if k not in given]
    if missing:
        raise InputError(f"{where}: {' and '.join(missing)} missing (e.g. fwd=e4m3,grad=e5m2)")
    if given["fwd"] == given["grad"]:
        return given["fwd"]
    return PassFormats(given["fwd"], given["grad"])


def _float_format(where: str, key: str, value: str) -> FloatFormat:
    try:
        fmt = parse_format(value)
    except InputError as exc:
        raise InputError(f"{where}: {key}: {exc}") from None
    if not isinstance(fmt, MinifloatFormat | MXFormat):
        raise InputError(
            f"{where}: {key}: {fmt.name} is fixed point; formats per pass are minifloat or MX "
            "formats (a fixed-point format is one for all passes)"
        )
    return fmt


__all__ = ["KINDS", "PassFormats", "is_per_pass", "operand_formats", "parse_training_format"]
