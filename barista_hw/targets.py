"""FPGA targets and resource budgets, in the units nextpnr reports.

A :class:`Budget` is what the design-space exploration may spend: multipliers
(one per PE), block RAM (as blocks of the target's kind, with its aspect ratios),
logic (LUT4 / logic cells) and a clock. Each :class:`Target` carries its device's
budget and a default clock; the clocks are conservative defaults for these
arrays until real place-and-route results (issue "Boards") replace them.
"""

from __future__ import annotations

from dataclasses import dataclass

from barista_base.errors import InputError

#: Block RAM aspect ratios (depth, width) usable for a memory with one write and one
#: read port: ECP5 DP16KD (pseudo dual-port up to 36 bits wide) and iCE40 EBR (SB_RAM40_4K).
ECP5_DP16KD = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
ICE40_EBR = ((2048, 2), (1024, 4), (512, 8), (256, 16))


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

    def __post_init__(self) -> None:
        for field_name in ("mults", "bram_blocks", "luts"):
            if getattr(self, field_name) < 0:
                raise InputError(f"budget {field_name} = {getattr(self, field_name)} is negative")
        if self.mhz <= 0:
            raise InputError(f"budget clock {self.mhz} MHz must be positive")
        if not 0 < self.bram_fill <= 1:
            raise InputError(f"budget bram_fill {self.bram_fill} must be in (0, 1]")

    @property
    def bram_usable(self) -> int:
        """The block RAMs a design may use (``bram_fill`` of ``bram_blocks``)."""
        return int(self.bram_blocks * self.bram_fill)

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
            "lut_kind": self.lut_kind,
            "mhz": self.mhz,
        }


@dataclass(frozen=True)
class Target:
    """A board/device with its budget (``budget.name`` is the target name)."""

    name: str
    board: str  # amaranth-boards platform class
    device: str
    budget: Budget


#: Block RAM share the planner fills on ECP5, so that designs still route with nextpnr
#: 0.11's router2: LeNet's 10x15 fx16 accelerator with 207 of the 85F's 208 DP16KD
#: stalled at ~24,000 overused wires (DSP floorplan included); with 117 (56%) and the
#: same logic, router2 brought them down to a few hundred.
ECP5_BRAM_FILL = 0.6


def _ecp5(name: str, board: str, device: str, mults: int, brams: int, luts: int) -> Target:
    budget = Budget(mults, brams, luts, 50.0, name=name, bram_fill=ECP5_BRAM_FILL)
    return Target(name, board, device, budget)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        _ecp5("ulx3s-85f", "ULX3S_85F_Platform", "LFE5U-85F", 156, 208, 83640),
        _ecp5("ulx3s-45f", "ULX3S_45F_Platform", "LFE5U-45F", 72, 108, 43848),
        _ecp5("ulx3s-25f", "ULX3S_25F_Platform", "LFE5U-25F", 28, 56, 24288),
        # iCE40UP5K: SPRAM is single-ported, so the buffers (written while read) use EBR only.
        Target(
            "icebreaker",
            "ICEBreakerPlatform",
            "iCE40UP5K",
            Budget(8, 30, 5280, 24.0, ICE40_EBR, 16, "icebreaker", "SB_MAC16", "SB_RAM40_4K", "LC"),
        ),
    )
}


def get_target(name: str) -> Target:
    """The target called ``name`` (case-insensitive), or an error listing the known ones."""
    key = name.strip().lower()
    if key not in TARGETS:
        raise InputError(f"unknown target {name!r} (use {', '.join(TARGETS)})")
    return TARGETS[key]
