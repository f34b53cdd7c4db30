"""Energy of a device program: the count of each action times its energy, plus static power.

An :class:`EnergyModel` holds one :class:`Coefficient` per action for a device family
(:data:`ENERGY`: ``"ecp5"``, the ULX3S 85F's LFE5U-85F; ``"ice40"``, the UP5K), each
with its value, unit, source and whether it is an estimate. :func:`energy` turns a
program's :class:`Actions` and its run time into an :class:`EnergyReport`;
:func:`coefficient_table` prints the coefficients with their sources.

Lattice publishes no energy per operation for ECP5 or iCE40 (its Power Calculator
models a whole design), so the on-chip coefficients are estimates carried over from
an ASIC process: the 45 nm, 0.9 V energies of Horowitz ("Computing's energy problem
(and what we can do about it)", ISSCC 2014, keynote figures), scaled by the square of
the FPGA's core voltage over 0.9 V (both are 40-45 nm class; no other process scaling)
and by the FPGA-over-ASIC dynamic power of Kuon and Rose ("Measuring the Gap Between
FPGAs and ASICs", IEEE TCAD 26(2), 2007: about 14x for LUT logic, smaller with hard
blocks; we take 7x for hard DSP and block RAM, an estimate). The board's SDRAM and
USB UART coefficients come from their datasheet currents and voltages. Each
coefficient says which of these it is; replace an estimate by a measurement (board
power at a known action count) when one exists.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .memory import ULX3S_SDRAM, DramConfig, LinkConfig

PJ = 1e-12

# Horowitz, ISSCC 2014 (45 nm, 0.9 V): energies of the ASIC operations we scale.
ASIC_VDD = 0.9
ASIC_MULT8_J = 0.2 * PJ  # 8-bit integer multiply; multiply energy grows with width squared
ASIC_ADD32_J = 0.1 * PJ  # 32-bit integer add
ASIC_SRAM_BIT_J = 10.0 * PJ / 64  # a 64-bit read of an 8 KB SRAM, per bit
ASIC_SOURCE = "Horowitz, ISSCC 2014 (45 nm, 0.9 V)"
# Kuon and Rose, IEEE TCAD 2007: FPGA/ASIC dynamic power for LUT logic (measured, 90 nm)
# and our estimate for hard blocks (the paper: "generally becomes smaller").
FPGA_LOGIC_FACTOR = 14.0
FPGA_HARD_FACTOR = 7.0
FPGA_SOURCE = "Kuon & Rose, IEEE TCAD 26(2) 2007 (FPGA/ASIC dynamic power)"

# The ULX3S's SDRAM, IS42S16160G-7 (memory.ULX3S_SDRAM). VDD 3.3 V is its datasheet's.
# The IDD currents are stand-ins (estimates): the D.C. characteristics of a comparable
# 3.3 V x16 SDR SDRAM at 143 MHz, TM Technology T4312816B-7 (datasheet p. 15); the
# IS42S16160G's own IDD table should replace them.
SDRAM_VDD = 3.3
SDRAM_IDD1_A = 0.110  # operating, one bank active and precharged every tRC
SDRAM_IDD3N_A = 0.030  # active standby, CKE high
SDRAM_IDD4_A = 0.130  # burst operating
SDRAM_IDD5_A = 0.210  # auto refresh, back to back
SDRAM_IDD_TCK_S = 7e-9  # the clock the IDD figures hold at (-7 grade, 143 MHz)
SDRAM_IDD_SOURCE = "T4312816B-7 datasheet D.C. characteristics (stand-in for IS42S16160G-7)"
# DQ line load: an FPGA pin and a short trace (an estimate); random data charges a line
# on a quarter of its beats (0 -> 1).
SDRAM_DQ_LOAD_F = 10e-12
SDRAM_DQ_ACTIVITY = 0.25

# FTDI FT231X (the ULX3S's USB UART): operating supply current, typical (Icc1, normal
# operation), drawn from the USB 5 V VCC.
FT231X_ICC_A = 0.008
FT231X_VCC = 5.0


@dataclass(frozen=True)
class Coefficient:
    """One energy coefficient, where it comes from, and whether it is an estimate."""

    value: float
    unit: str
    source: str
    estimate: bool
    note: str = ""

    def __post_init__(self) -> None:
        if not self.value > 0 or not self.source:
            raise ValueError(f"coefficient {self.value} {self.unit}: positive value and a source")


@dataclass(frozen=True)
class EnergyModel:
    """Energy per action on one device family, the board's SDRAM and link, and static power."""

    family: str
    mac_j: Coefficient  # one multiply-accumulate of a PE (DSP multiply, fabric accumulate)
    bram_read_j_per_bit: Coefficient
    bram_write_j_per_bit: Coefficient
    vector_op_j: Coefficient  # one lane-operation of the vector unit, in fabric
    dram_j_per_byte: Coefficient  # SDRAM read or write, with its I/O
    dram_activate_j: Coefficient  # one activate and precharge
    link_j_per_byte: Coefficient
    static_w: Coefficient  # FPGA static and the SDRAM's standby (see its note)

    def coefficients(self) -> dict[str, Coefficient]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "family"}


def _fabric(asic_j: float, vdd: float, factor: float) -> float:
    """An ASIC energy at 0.9 V carried to an FPGA at ``vdd`` (V squared, then ``factor``)."""
    return asic_j * (vdd / ASIC_VDD) ** 2 * factor


def _mac(vdd: float, width: int) -> float:
    multiply = _fabric(ASIC_MULT8_J * (width / 8) ** 2, vdd, FPGA_HARD_FACTOR)
    return multiply + _fabric(ASIC_ADD32_J, vdd, FPGA_LOGIC_FACTOR)


def dram_byte_j(dram: DramConfig = ULX3S_SDRAM) -> float:
    """SDRAM energy per byte moved: the burst current above active standby for one beat
    (per byte of the beat; the IDD figures are at their own clock, and that energy per
    beat does not change with the clock) plus the DQ lines' switching."""
    core = (SDRAM_IDD4_A - SDRAM_IDD3N_A) * SDRAM_VDD * SDRAM_IDD_TCK_S / (dram.bus_bits // 8)
    return core + 8 * SDRAM_DQ_ACTIVITY * SDRAM_DQ_LOAD_F * SDRAM_VDD**2


def dram_activate_j(dram: DramConfig = ULX3S_SDRAM) -> float:
    """One activate and precharge: the IDD1 current above standby for a row cycle tRC
    (Micron TN-46-03's activate power, per activate)."""
    return (SDRAM_IDD1_A - SDRAM_IDD3N_A) * SDRAM_VDD * dram.t_rc_ns * 1e-9


def dram_standby_w(dram: DramConfig = ULX3S_SDRAM) -> float:
    """Active standby plus the average of auto refresh (tRFC of every tREFI)."""
    refresh = (SDRAM_IDD5_A - SDRAM_IDD3N_A) * SDRAM_VDD * dram.t_rfc_ns / dram.t_refi_ns
    return SDRAM_IDD3N_A * SDRAM_VDD + refresh


def link_coefficient(link: LinkConfig) -> Coefficient:
    """The USB UART's operating power over one byte's time on the line at ``link``'s rate."""
    return Coefficient(
        FT231X_ICC_A * FT231X_VCC * link.seconds(1),
        "J/byte",
        "FTDI FT231X datasheet (FT_000565): Icc1 8 mA typical at VCC 5 V",
        estimate=True,
        note=f"the chip's whole operating current charged to the byte on the line, "
        f"at {link.baud:,} baud, {link.bits_per_byte} bits a byte",
    )


def _dram_coefficients() -> dict[str, Coefficient]:
    method = "IDD currents x VDD x time (Micron TN-46-03 method)"
    return {
        "dram_j_per_byte": Coefficient(
            dram_byte_j(),
            "J/byte",
            f"{SDRAM_IDD_SOURCE}; {method}",
            estimate=True,
            note="(IDD4 - IDD3N) x 3.3 V x 7 ns per 2-byte beat, plus DQ switching of an "
            "estimated 10 pF a line at activity 1/4",
        ),
        "dram_activate_j": Coefficient(
            dram_activate_j(),
            "J",
            f"{SDRAM_IDD_SOURCE}; {method}",
            estimate=True,
            note="(IDD1 - IDD3N) x 3.3 V x tRC 60 ns",
        ),
    }


def _family_model(
    family: str, device: str, vdd: float, width: int, static_fpga_w: float, static_note: str
) -> EnergyModel:
    src = f"{ASIC_SOURCE}; {FPGA_SOURCE}; {device} core at {vdd} V"
    bram = _fabric(ASIC_SRAM_BIT_J, vdd, FPGA_HARD_FACTOR)
    bram_note = "8 KB SRAM read per bit, x (V/0.9)^2 x 7 (hard block)"
    return EnergyModel(
        family=family,
        mac_j=Coefficient(
            _mac(vdd, width),
            "J",
            src,
            estimate=True,
            note=f"{width}-bit multiply (8-bit 0.2 pJ x ({width}/8)^2) x 7 (hard DSP) + "
            "32-bit add x 14 (fabric accumulator), both x (V/0.9)^2",
        ),
        bram_read_j_per_bit=Coefficient(bram, "J/bit", src, estimate=True, note=bram_note),
        bram_write_j_per_bit=Coefficient(
            bram, "J/bit", src, estimate=True, note=bram_note + "; a write taken as a read"
        ),
        vector_op_j=Coefficient(
            _fabric(ASIC_ADD32_J, vdd, FPGA_LOGIC_FACTOR),
            "J",
            src,
            estimate=True,
            note="a 32-bit add in LUT logic: x (V/0.9)^2 x 14",
        ),
        **_dram_coefficients(),
        link_j_per_byte=link_coefficient(LinkConfig()),
        static_w=Coefficient(
            static_fpga_w + dram_standby_w(),
            "W",
            f"{device} static ({static_note}); SDRAM IDD3N x 3.3 V + refresh average "
            f"({SDRAM_IDD_SOURCE})",
            estimate=True,
            note=f"FPGA {static_fpga_w:g} W + SDRAM standby {dram_standby_w():.4f} W; "
            "excludes the board's regulators and other chips (the link is priced per byte)",
        ),
    )


#: Energy models by FPGA family (the :class:`~barista_hw.targets.Target` ``family``).
ENERGY: dict[str, EnergyModel] = {
    # ECP5 core 1.1 V, MULT18X18D. Static: of the order of the LFE5U-85F's standby
    # supply currents (ECP5 family data sheet FPGA-DS-02012; TN1266 and the Power
    # Calculator give a design's figure), taken as 0.1 W: an estimate.
    "ecp5": _family_model(
        "ecp5", "LFE5U-85F", 1.1, 18, 0.1, "0.1 W, the order of its standby supply currents"
    ),
    # iCE40 UltraPlus core 1.2 V, SB_MAC16. Static: the ~100 uA class core current of the
    # iCE40 UltraPlus family data sheet (FPGA-DS-02008) at 1.2 V. No iCE40 board here has
    # SDRAM: the DRAM figures (and its standby in static_w) are those of an attached
    # ULX3S-class SDRAM; the link figure is the FT231X's (the iCEBreaker has an FT2232H).
    "ice40": _family_model(
        "ice40", "iCE40UP5K", 1.2, 16, 100e-6 * 1.2, "100 uA x 1.2 V core static"
    ),
}


@dataclass(frozen=True)
class Actions:
    """What a program does, as counts of the actions an :class:`EnergyModel` prices."""

    macs: int = 0
    bram_read_bits: int = 0
    bram_write_bits: int = 0
    vector_ops: int = 0
    dram_bytes: int = 0
    dram_activates: int = 0
    link_bytes: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"action count {f.name} = {getattr(self, f.name)} is negative")

    def __add__(self, other: Actions) -> Actions:
        if not isinstance(other, Actions):
            return NotImplemented
        return Actions(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


#: Which coefficient prices each action.
PRICE = {
    "macs": "mac_j",
    "bram_read_bits": "bram_read_j_per_bit",
    "bram_write_bits": "bram_write_j_per_bit",
    "vector_ops": "vector_op_j",
    "dram_bytes": "dram_j_per_byte",
    "dram_activates": "dram_activate_j",
    "link_bytes": "link_j_per_byte",
}


@dataclass(frozen=True)
class EnergyReport:
    """Joules of each action (keyed as :class:`Actions`), their sum, static, total."""

    per_action_j: dict[str, float]
    dynamic_j: float
    static_j: float
    total_j: float

    def per_image_mj(self, images: int) -> float:
        if images <= 0:
            raise ValueError(f"images = {images} must be positive")
        return self.total_j / images * 1e3


def energy(actions: Actions, seconds: float, model: EnergyModel) -> EnergyReport:
    """Each action count times its coefficient, plus static power times ``seconds``."""
    if seconds < 0:
        raise ValueError(f"seconds = {seconds} is negative")
    per = {a: getattr(actions, a) * getattr(model, c).value for a, c in PRICE.items()}
    dynamic = sum(per.values())
    static = model.static_w.value * seconds
    return EnergyReport(per, dynamic, static, dynamic + static)


def coefficient_table(model: EnergyModel) -> str:
    """The coefficients of ``model``, one a line: name, value, unit, estimate or datasheet,
    source, and the note on how the value was derived."""
    lines = [f"energy coefficients ({model.family})"]
    for name, c in model.coefficients().items():
        kind = "estimate" if c.estimate else "datasheet"
        lines.append(f"{name:22s} {c.value:11.4g} {c.unit:7s} {kind:9s} {c.source}")
        if c.note:
            lines.append(f"{'':53s}{c.note}")
    return "\n".join(lines)
