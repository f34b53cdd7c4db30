"""Energy per MAC by format: the device model's coefficients applied to each format's PE."""

import pytest

from barista_hw.config import parse_engine_format
from barista_hw.device.energy import ENERGY
from barista_hw.mac_energy import hard_multiply_j, logic_cell_j, mac_energy
from barista_hw.resources import minifloat_pe_cost, pe_cost

PJ = 1e-12


@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_the_device_models_mac_is_a_dsp_multiply_and_a_32_bit_add(family: str) -> None:
    """Same coefficients as the device model: its MAC (an 18- or 16-bit DSP multiply and a
    32-bit fabric add) is a hard multiply plus 32 logic cells here."""
    width = {"ecp5": 18, "ice40": 16}[family]
    want = ENERGY[family].mac_j.value
    assert hard_multiply_j(width, family) + 32 * logic_cell_j(family) == pytest.approx(want)


def test_minifloat_macs_are_their_pes_logic_and_fixed_ones_add_a_multiply() -> None:
    e4m3, e5m2 = parse_engine_format("e4m3"), parse_engine_format("e5m2")
    assert mac_energy(e4m3).multiply_j == 0
    assert mac_energy(e4m3).total_j == minifloat_pe_cost(e4m3.arith).luts * logic_cell_j()
    assert mac_energy(e4m3).total_j < mac_energy(e5m2).total_j  # the wider accumulator
    fx16, fx8 = parse_engine_format("fx16"), parse_engine_format("fx8")
    assert mac_energy(fx16).multiply_j == pytest.approx(4 * mac_energy(fx8).multiply_j)
    assert 5 * PJ < mac_energy(fx8).total_j < mac_energy(fx16).total_j < 50 * PJ


def test_mx_macs_are_their_pes_logic_and_grow_with_the_scale_window() -> None:
    """An MX PE has no multiplier block; a narrower scale window makes a smaller PE."""
    whole, window = (
        parse_engine_format("mxfp8_e4m3"),
        parse_engine_format("mxfp8_e4m3k1024_wm16_16"),
    )
    assert mac_energy(whole).multiply_j == 0
    assert mac_energy(whole).total_j == pe_cost(whole.arith).luts * logic_cell_j()
    assert mac_energy(window).total_j < mac_energy(whole).total_j
