"""What one iteration of a device program costs: traffic, time and energy, per section.

One table for ``barista compile``, ``barista train --backend device`` and the benchmark:
per section (``layer/pass``) the link and DRAM bytes, the MACs, the busiest unit and the
cycles the section spans; then the iteration's time and bound (roofline: the engine's
compute, the DRAM bus or the link) and its energy per image.
"""

from __future__ import annotations

from dataclasses import dataclass

from barista_hw.targets import get_target

from .energy import ENERGY, Actions, EnergyReport, energy
from .isa import Program
from .memory import DeviceConfig
from .timing import Timing, schedule
from .traffic import Counts, InstCounts


def actions(c: InstCounts) -> Actions:
    """The energy model's actions of some counts."""
    return Actions(
        macs=c.macs,
        bram_read_bits=c.spad_read_bits,
        bram_write_bits=c.spad_write_bits,
        vector_ops=c.vector_ops,
        dram_bytes=c.dram_bytes,
        dram_activates=c.dram_rows,
        link_bytes=c.link_bytes,
    )


@dataclass
class IterationCost:
    """One iteration of a program on a device: its counts, schedule and energy."""

    counts: Counts
    timing: Timing
    energy: EnergyReport
    images: int

    @property
    def mj_per_image(self) -> float:
        return self.energy.per_image_mj(self.images)

    def table(self) -> str:
        lines = [
            f"{'section':<24} {'link B':>9} {'DRAM B':>12} {'MACs':>12} {'cycles':>10} busiest",
        ]
        for name, c in self.counts.sections.items():
            t = self.timing.sections[name]
            lines.append(
                f"{name:<24} {c.link_bytes:>9,} {c.dram_bytes:>12,} {c.macs:>12,} "
                f"{t.cycles:>10,} {t.bottleneck}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        c, t = self.counts.total, self.timing
        bounds = ", ".join(f"{k} {v:,}" for k, v in t.bounds.items())
        return (
            f"per iteration: {c.link_bytes:,} link bytes, {c.dram_bytes:,} DRAM bytes, "
            f"{c.macs:,} MACs\n"
            f"time: {t.cycles:,} cycles = {t.seconds * 1e3:.2f} ms at {t.clock_mhz:g} MHz; "
            f"{t.bound}-bound (busy cycles: {bounds})\n"
            f"energy: {self.energy.total_j * 1e3:.2f} mJ per iteration "
            f"({self.energy.dynamic_j * 1e3:.2f} dynamic, {self.energy.static_j * 1e3:.2f} "
            f"static), {self.mj_per_image:.3f} mJ per image (coefficients are estimates)"
        )


def iteration_cost(program: Program, config: DeviceConfig, counts: Counts) -> IterationCost:
    """Schedule and price one run of ``program`` whose counts are ``counts``."""
    timing = schedule(program, counts, config.accelerator.clock_mhz)
    model = ENERGY[get_target(config.target).family]
    report = energy(actions(counts.total), timing.seconds, model)
    return IterationCost(counts, timing, report, int(program.meta["batch"]))
