"""Formats per pass: the spellings, their canonical name and the errors naming the part."""

import pytest

from barista_base.errors import InputError
from barista_hw.config import Pass
from barista_hw.minifloat import PRESETS as MF
from barista_hw.mx import PRESETS as MX
from barista_hw.numfmt import FixedFormat
from barista_hw.passformats import PassFormats, operand_formats, parse_training_format


@pytest.mark.parametrize(
    "spec",
    ["fwd=e4m3,grad=e5m2", "e4m3,grad=e5m2", "grad=E5M2, fwd=e4m3", "FWD=fp8_e4m3,grad=e5m2"],
)
def test_spellings_of_e4m3_forward_and_e5m2_gradients(spec: str) -> None:
    fmt = parse_training_format(spec)
    assert fmt == PassFormats(MF["e4m3"], MF["e5m2"])
    assert fmt.name == "fwd=e4m3,grad=e5m2"
    assert parse_training_format(fmt.name) == fmt  # the canonical name reads back


def test_one_format_is_a_format() -> None:
    assert parse_training_format("e4m3") is MF["e4m3"]
    assert parse_training_format("fwd=e5m2,grad=e5m2") is MF["e5m2"]
    assert parse_training_format("mxfp8,grad=mxfp8_e5m2") == PassFormats(
        MX["mxfp8_e4m3"], MX["mxfp8_e5m2"]
    )
    assert isinstance(parse_training_format("fx16"), FixedFormat)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fwd=e4m3,grad=e9m9", r"format 'fwd=e4m3,grad=e9m9': grad: unknown number format"),
        ("fwd=e4m3", "grad missing"),
        ("grad=e5m2", "fwd missing"),
        ("e4m3,e5m2", r"'e5m2': name each format fwd= .* or grad="),
        ("fwd=e4m3,bwd=e5m2", r"'bwd=e5m2': name each format"),
        ("e4m3,fwd=e4m3,grad=e5m2", "fwd is given twice"),
        ("fwd=fx16,grad=e5m2", "fwd: fx16.* is fixed point; formats per pass are minifloat"),
        ("fwd=,grad=e5m2", "fwd: unknown number format ''"),
    ],
)
def test_bad_specs_name_the_parameter_and_the_part(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_training_format(spec)


def test_operand_formats_put_gradients_where_dy_is() -> None:
    e4m3, e5m2 = MF["e4m3"], MF["e5m2"]
    ops = operand_formats(parse_training_format("e4m3,grad=e5m2"))
    assert ops == {
        Pass.FORWARD: (e4m3, e4m3),  # W x X
        Pass.BACKWARD_DATA: (e4m3, e5m2),  # W^T x dY
        Pass.WEIGHT_GRAD: (e5m2, e4m3),  # dY x X^T
    }
    assert set(operand_formats(e5m2).values()) == {(e5m2, e5m2)}
