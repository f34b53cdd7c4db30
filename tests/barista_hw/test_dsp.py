"""The PE multiplier's forms: which one a platform gets, and the ECP5 DSP's settings.

That the ECP5 form computes the same bits on the same cycles as the generic one is
shown by the cocotb engine suite (``tests/sim/test_engines.py``, designs ``*-ecp5*``).
"""

from __future__ import annotations

import re

import pytest

from barista_hw import dsp
from barista_hw.array import SystolicArray
from barista_hw.numfmt import FixedFormat
from barista_hw.pe import ProcessingElement
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


def test_b_chain_form_wiring() -> None:
    """ecp5chain (3 x 2, broken above row 2 of column 1): five PEs take b from the DSP
    chain or the column's input; the one below the break from a fabric delay line."""
    fmt = FixedFormat.parse("fx16")
    text = to_verilog(SystolicArray(3, 2, fmt), "t", Family.of("ecp5chain"))
    chained = re.findall(r"\.SOURCEB\(1'h1\)", text)
    from_fabric = re.findall(r"\.SOURCEB\(1'h0\)", text)
    assert len(chained) == 3 and len(from_fabric) == 3  # (1,0) (2,0) (1,1); row 0 and (2,1)
    # Row 2 of column 1: b skewed by one column, then delayed two rows.
    assert sorted(set(re.findall(r"b_tap1_2_d\d", text))) == ["b_tap1_2_d0", "b_tap1_2_d1"]
    # No PE keeps a fabric b register but the last one, whose b goes nowhere.
    assert len(re.findall(r"reg \[15:0\] b_o\b", text)) == 1


def test_b_chain_needs_an_ecp5_platform() -> None:
    chain_everywhere = lambda row, col: True  # noqa: E731
    assert not dsp.b_chain_of(Family("ice40", chain_everywhere))(1, 0)
    assert dsp.b_chain_of(Family("ecp5", chain_everywhere))(1, 0)
    assert not dsp.b_chain_of(Family("ecp5"))(1, 0)
    pe = ProcessingElement(FixedFormat.parse("fx16"), dsp.BRoute.CHAIN)
    with pytest.raises(ValueError, match="only in the ECP5 form"):
        to_verilog(pe, "t", None)
