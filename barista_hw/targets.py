"""The one registry of FPGA targets: each board's device, budget, platform and preset.

A :class:`Target` holds everything Barista knows about one board: its FPGA (device
and family), the :class:`Budget` the design-space exploration may spend (with the
clock designs are planned at), the amaranth-boards platform, board clock, synthesis
options and bitstream file the board flow (:mod:`boards`) builds with, and a preset
design that fits the budget. :data:`TARGETS` lists them; every other table of boards
is derived from it (the presets of :mod:`barista_hw.presets`,
:data:`boards.platforms.BOARDS`, the command lines' choices). The data is plain
(names and numbers), so this package needs neither amaranth-boards nor :mod:`boards`.

A :class:`Budget` is what the design-space exploration may spend: multipliers
(one per PE), block RAM (as blocks of the target's kind, with its aspect ratios),
logic (LUT4 / logic cells) and a clock. The clocks are conservative defaults for
these arrays, below what the board builds reach (docs/boards.md). Of the block RAM
and the logic a budget names only a share may be planned (``bram_fill``,
``lut_fill``): the rest is the room that routing needs and the margin for the
resource model's error, so that a design estimated to fit still fits after synthesis
and place and route. Multipliers and block RAMs are counted exactly by the model;
logic is estimated (:data:`LUT_FILL`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from barista_base.errors import InputError

from .config import DEFAULT_ACCELERATOR, AcceleratorConfig

#: Block RAM aspect ratios (depth, width) usable for a memory with one write and one
#: read port: ECP5 DP16KD (pseudo dual-port up to 36 bits wide) and iCE40 EBR (SB_RAM40_4K).
ECP5_DP16KD = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
ICE40_EBR = ((2048, 2), (1024, 4), (512, 8), (256, 16))


#: The resources a budget limits, as :class:`~barista_hw.resources.Resources` names them.
RESOURCES = ("mults", "bram_blocks", "luts")
#: nextpnr's cell type for each of :data:`RESOURCES`, per FPGA family (the names of its
#: utilisation report).
PNR_CELLS = {
    "ecp5": {"mults": "MULT18X18D", "bram_blocks": "DP16KD", "luts": "TRELLIS_COMB"},
    "ice40": {"mults": "ICESTORM_DSP", "bram_blocks": "ICESTORM_RAM", "luts": "ICESTORM_LC"},
}


@dataclass(frozen=True)
class Budget:
    """Resources a design may use, and the clock it is expected to run at."""

    mults: int
    bram_blocks: int
    luts: int
    mhz: float
    bram_aspects: tuple[tuple[int, int], ...] = ECP5_DP16KD
    mult_width: int = 18  # widest operand one multiplier block takes
    name: str = "custom"
    mult_kind: str = "MULT18X18D"
    bram_kind: str = "DP16KD"
    lut_kind: str = "LUT4"
    # Share of the block RAMs a design may fill: the rest is left so that it still routes.
    bram_fill: float = 1.0
    # Share of the logic a design may be planned up to: the rest is the resource model's
    # margin of error (:data:`LUT_FILL`).
    lut_fill: float = 1.0

    def __post_init__(self) -> None:
        for field_name in ("mults", "bram_blocks", "luts"):
            if getattr(self, field_name) < 0:
                raise InputError(f"budget {field_name} = {getattr(self, field_name)} is negative")
        if self.mhz <= 0:
            raise InputError(f"budget clock {self.mhz} MHz must be positive")
        for field_name in ("bram_fill", "lut_fill"):
            if not 0 < getattr(self, field_name) <= 1:
                raise InputError(
                    f"budget {field_name} {getattr(self, field_name)} must be in (0, 1]"
                )

    @property
    def bram_usable(self) -> int:
        """The block RAMs a design may use (``bram_fill`` of ``bram_blocks``)."""
        return int(self.bram_blocks * self.bram_fill)

    @property
    def luts_usable(self) -> int:
        """The logic a design may be planned up to (``lut_fill`` of ``luts``)."""
        return int(self.luts * self.lut_fill)

    def usable(self, resource: str) -> int:
        """What a design may plan of ``resource`` (one of :data:`RESOURCES`)."""
        return {
            "mults": self.mults,
            "bram_blocks": self.bram_usable,
            "luts": self.luts_usable,
        }[resource]

    @property
    def bram_block_bits(self) -> int:
        return max(depth * width for depth, width in self.bram_aspects)

    @property
    def bram_kbits(self) -> float:
        return self.bram_blocks * self.bram_block_bits / 1024

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"mults=100,bram_kbits=2000,luts=40000,mhz=80"`` (ECP5-like 18 Kbit blocks).

        ``bram_blocks=N`` may replace ``bram_kbits``; all four quantities are required.
        """
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, val = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in ("mults", "bram_kbits", "bram_blocks", "luts", "mhz"):
                raise InputError(
                    f"budget item {part.strip()!r}: use mults=N,bram_kbits=N,luts=N,mhz=F"
                )
            try:
                values[key] = float(val)
            except ValueError:
                raise InputError(f"budget item {part.strip()!r}: {val!r} is not a number") from None
        if "bram_kbits" in values and "bram_blocks" in values:
            raise InputError("budget: give bram_kbits or bram_blocks, not both")
        block_kbits = 18
        if "bram_kbits" in values:
            values["bram_blocks"] = values.pop("bram_kbits") // block_kbits
        missing = [k for k in ("mults", "bram_blocks", "luts", "mhz") if k not in values]
        if missing:
            raise InputError(f"budget {text!r} lacks {', '.join(missing)}")
        return cls(
            mults=int(values["mults"]),
            bram_blocks=int(values["bram_blocks"]),
            luts=int(values["luts"]),
            mhz=values["mhz"],
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "mults": self.mults,
            "mult_kind": self.mult_kind,
            "bram_blocks": self.bram_blocks,
            "bram_kind": self.bram_kind,
            "bram_block_bits": self.bram_block_bits,
            "bram_fill": self.bram_fill,
            "luts": self.luts,
            "lut_fill": self.lut_fill,
            "lut_kind": self.lut_kind,
            "mhz": self.mhz,
        }


@dataclass(frozen=True)
class Target:
    """One board (see the module docstring); its budget and preset carry its name."""

    name: str
    device: str  # the FPGA part, as nextpnr reports it
    family: str  # "ecp5" or "ice40": Yosys's synth_<family>, nextpnr-<family>
    budget: Budget  # budget.mhz is the clock designs for this target are planned at
    platform: str  # amaranth-boards platform class, "module:Class"
    clk: str  # the board clock resource the PLL starts from
    clk_mhz: float
    preset: AcceleratorConfig  # a fixed design that fits the budget
    synth_opts: str = ""  # extra options of synth_<family>
    pnr_opts: str = ""  # extra nextpnr options
    bitstream: str = "top.bit"  # the file the build writes

    def __post_init__(self) -> None:
        if not self.name == self.budget.name == self.preset.name == self.preset.target:
            raise ValueError(f"target {self.name}: its budget and preset must carry its name")


#: Result beats the board host link (:class:`boards.link.HostLink`) keeps in its ring on
#: every board; the resource model counts the block RAM it takes.
LINK_RESULT_DEPTH = 256

#: Block RAM share the planner fills on ECP5: a design that fills nearly all of them
#: does not route (nextpnr stalls on the congestion around the blocks; docs/boards.md).
ECP5_BRAM_FILL = 0.6
#: Share of the logic the planner plans up to, per family: at most ``1 / (1 + e)`` for
#: the resource model's error bound ``e`` on that family
#: (:data:`barista_hw.resources.CALIBRATION_TOLERANCE`, tested), so that a design at
#: the limit by the estimate still fits the device by nextpnr's count.
LUT_FILL = {"ecp5": 0.92, "ice40": 0.93}
#: The clock ECP5 designs are planned at.
ECP5_MHZ = 50.0


def _target(*, name: str, budget: Budget, design: AcceleratorConfig, **board: Any) -> Target:
    """A :class:`Target` called ``name``: the budget takes the name, the preset (``design``)
    the name and the budget's clock."""
    return Target(
        name=name,
        budget=replace(budget, name=name),
        preset=design.derive(name=name, target=name, clock_mhz=budget.mhz),
        **board,
    )


def _ulx3s(
    size: str, *, mults: int, bram_blocks: int, luts: int, design: AcceleratorConfig
) -> Target:
    """ULX3S with an ECP5 LFE5U-``size`` and a 25 MHz oscillator. Routed with nextpnr's
    default router, router1: router2 did not route the large designs, congested beside
    the DSP rows (docs/boards.md)."""
    return _target(
        name=f"ulx3s-{size}",
        device=f"LFE5U-{size.upper()}",
        family="ecp5",
        budget=Budget(
            mults=mults,
            bram_blocks=bram_blocks,
            luts=luts,
            mhz=ECP5_MHZ,
            bram_fill=ECP5_BRAM_FILL,
            lut_fill=LUT_FILL["ecp5"],
        ),
        platform=f"amaranth_boards.ulx3s:ULX3S_{size.upper()}_Platform",
        clk="clk25",
        clk_mhz=25.0,
        design=design,
    )


#: Every target, by name (see the module docstring).
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        _ulx3s(
            "85f",
            mults=156,
            bram_blocks=208,
            luts=83640,
            design=DEFAULT_ACCELERATOR.derive(rows=12, cols=12, acc_depth=96),
        ),
        _ulx3s(
            "45f",
            mults=72,
            bram_blocks=108,
            luts=43848,
            design=DEFAULT_ACCELERATOR.derive(rows=8, cols=8),
        ),
        _ulx3s(
            "25f",
            mults=28,
            bram_blocks=56,
            luts=24288,
            design=DEFAULT_ACCELERATOR.derive(rows=5, cols=5, acc_depth=40),
        ),
        _target(
            name="icebreaker",
            device="iCE40UP5K",
            family="ice40",
            # SPRAM is single-ported, so the buffers (written while read) use EBR only.
            budget=Budget(
                mults=8,
                bram_blocks=30,
                luts=5280,
                mhz=24.0,
                bram_aspects=ICE40_EBR,
                mult_width=16,
                mult_kind="SB_MAC16",
                bram_kind="SB_RAM40_4K",
                lut_kind="LC",
                lut_fill=LUT_FILL["ice40"],
            ),
            platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
            clk="clk12",
            clk_mhz=12.0,
            synth_opts="-dsp",  # multipliers become SB_MAC16
            bitstream="top.bin",
            # The UP5K's logic cells are the limit: larger arrays in the default format
            # do not fit beside the fixed logic and the host link (docs/boards.md). The
            # accumulator memory lets a reduction span buffer loads (LeNet's conv1
            # gradient: 36,864), so the preset runs every pass of LeNet.
            design=DEFAULT_ACCELERATOR.derive(rows=2, cols=1, acc_depth=32, depth=1024),
        ),
    )
}

#: The target of ``barista generate`` and :func:`barista_hw.generate.generate` when none is given.
DEFAULT_TARGET = "ulx3s-85f"


def get_target(name: str) -> Target:
    """The target called ``name`` (case-insensitive), or an error listing the known ones."""
    key = name.strip().lower()
    if key not in TARGETS:
        raise InputError(f"unknown target {name!r} (use {', '.join(TARGETS)})")
    return TARGETS[key]
