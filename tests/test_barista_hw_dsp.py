"""The PE multiplier's forms: which one a platform gets, and the ECP5 DSP's settings.

That the ECP5 form computes the same bits on the same cycles as the generic one is
shown by the cocotb engine suite (``tests/test_sim_engines.py``, designs ``*-ecp5``).
"""

from __future__ import annotations

import re

import pytest

from barista_hw import dsp
from barista_hw.array import SystolicArray
from barista_hw.numfmt import FixedFormat
from barista_hw.rtl import Family, to_verilog


def test_family_of_platforms() -> None:
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    assert dsp.family_of(ULX3S_85F_Platform()) == "ecp5"
    assert dsp.family_of(ICEBreakerPlatform()) is None  # Yosys packs SB_MAC16 registers itself
    assert dsp.family_of(None) is None
    assert dsp.family_of(Family("ecp5")) == "ecp5"


@pytest.mark.parametrize("width", [8, 16, 18])
def test_ecp5_mult_registers_inputs_and_output(width: int) -> None:
    text = to_verilog(SystolicArray(1, 1, FixedFormat(width, 4, 2 * width)), "t", Family("ecp5"))
    assert text.count("MULT18X18D #(") == 1
    params = dict(re.findall(r"\.(\w+)\(\"(\w+)\"\)", text))
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert params[reg] == "CLK0"
    assert params["REG_PIPELINE_CLK"] == "NONE"
    # Signed operands, sign-extended into the unused top bits of the 18-bit ports.
    assert re.search(r"\.SIGNEDA\(1'h1\)", text) and re.search(r"\.SIGNEDB\(1'h1\)", text)
    assert re.search(rf"\.A17\(a\[{width - 1}\]\)", text)
    # The product register is the DSP's: the fabric multiplies nothing.
    assert " * " not in text


def test_generic_without_an_ecp5_platform() -> None:
    for platform in (None, Family("ice40")):
        text = to_verilog(SystolicArray(1, 1, FixedFormat.parse("fx16")), "t", platform)
        assert "MULT18X18D" not in text
        assert " * " in text
