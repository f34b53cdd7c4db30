"""Energy of one multiply-accumulate by number format: what a PE's modelled hardware switches.

The device model (:mod:`barista_hw.device.energy`) prices a MAC of the fixed-point engine
as one hard-DSP multiply and one 32-bit fabric add. Comparing formats needs the PE they
build, so here one MAC of an engine format costs

* **multiply**: a hard multiplier block's ``width``-bit multiply for fixed point, the
  device model's DSP energy scaled by ``(width / 8)**2`` (Horowitz's 8-bit 0.2 pJ, V^2,
  the hard-block factor); minifloat significand products are LUTs and counted below;
* **logic**: every logic cell of the PE (:func:`barista_hw.resources.fixed_pe_logic`,
  :func:`~barista_hw.resources.minifloat_pe_cost`: accumulator adder, alignment shifter,
  LUT significand product, multiplexers) switching once, at the energy of one bit of the
  device model's 32-bit fabric add (``vector_op_j / 32``: one logic cell per bit of a
  CCU2C carry chain).

Activity one is an upper bound for every format alike, so the ratios between formats are
the figure to read; absolute values are estimates as the coefficients they come from.
The requantiser (one per output, not per MAC) and stochastic rounding's LFSR words are
outside this figure. MX formats have no engine format yet, so no PE to price.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import EngineFormat
from .device.energy import ASIC_ADD32_J, ASIC_MULT8_J, ENERGY, FPGA_HARD_FACTOR, FPGA_LOGIC_FACTOR
from .mxformat import FloatGemmFormat
from .resources import fixed_pe_logic, pe_cost

#: Cells of fabric logic per bit of an add (one CCU2C carry cell holds two bits, two cells).
CELLS_PER_ADD_BIT = 1


@dataclass(frozen=True)
class MacEnergy:
    """One MAC's modelled energy in joules: the hard multiply and the PE's logic."""

    multiply_j: float
    logic_j: float

    @property
    def total_j(self) -> float:
        return self.multiply_j + self.logic_j


def logic_cell_j(family: str = "ecp5") -> float:
    """One logic cell switching: a bit of the family's 32-bit fabric add."""
    return ENERGY[family].vector_op_j.value / (32 * CELLS_PER_ADD_BIT)


def hard_multiply_j(width: int, family: str = "ecp5") -> float:
    """A ``width``-bit multiply in hard multiplier blocks on ``family``: Horowitz's 8-bit
    multiply scaled by width squared, the hard-block factor and the family's V^2 (the V^2
    taken from its fabric add, so both share one voltage)."""
    v2 = ENERGY[family].vector_op_j.value / (ASIC_ADD32_J * FPGA_LOGIC_FACTOR)
    return ASIC_MULT8_J * (width / 8) ** 2 * FPGA_HARD_FACTOR * v2


def mac_energy(fmt: EngineFormat, family: str = "ecp5") -> MacEnergy:
    """One MAC of an engine in ``fmt`` on ``family`` (see the module docstring)."""
    if isinstance(fmt, FloatGemmFormat):  # minifloat or MX: no multiplier block
        return MacEnergy(0.0, pe_cost(fmt.arith).luts * logic_cell_j(family))
    return MacEnergy(hard_multiply_j(fmt.width, family), fixed_pe_logic(fmt) * logic_cell_j(family))


__all__ = ["MacEnergy", "hard_multiply_j", "logic_cell_j", "mac_energy"]
