"""The time model: a program's instructions scheduled on the device's units.

Each unit (:data:`~barista_hw.device.emit.UNIT`) runs its instructions in program order;
the input batch is double-buffered (it crosses the link during the previous iteration),
so the steady-state iteration takes the longer of the schedule and the link's work;
an instruction starts when its unit is free and the instructions it waits for have
finished, and one that moves DRAM data also waits for the DRAM bus (one bus, shared by
both DMA channels and the vector unit's streams). Its duration is its own cycle count
(:func:`~barista_hw.device.traffic.instruction_counts`). The result names, per section
and for the whole iteration, the busiest unit (the bottleneck) and the bounds a
roofline compares: engine cycles (compute), DRAM cycles, link cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .emit import UNIT
from .isa import PREFETCH, Instruction, Op, Program
from .traffic import Counts, InstCounts, section_names

_DRAM_OPS = (Op.LOAD, Op.STORE, Op.VEC, Op.FETCH)


@dataclass
class SectionTime:
    start: int = 0
    end: int = 0
    busy: dict[str, int] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return self.end - self.start

    @property
    def bottleneck(self) -> str:
        return max(self.busy, key=lambda u: self.busy[u]) if self.busy else "-"


@dataclass
class Timing:
    """A scheduled iteration: its cycles, each unit's busy cycles, per-section spans."""

    cycles: int
    clock_mhz: float
    busy: dict[str, int]
    sections: dict[str, SectionTime]

    @property
    def seconds(self) -> float:
        return self.cycles / (self.clock_mhz * 1e6)

    @property
    def bounds(self) -> dict[str, int]:
        """The roofline's bounds: cycles if only the engine, the DRAM bus or the link counted."""
        return {
            "compute": self.busy.get("engine", 0),
            "dram": self.busy.get("dram", 0),
            "link": self.busy.get("link", 0),
        }

    @property
    def bound(self) -> str:
        """The bound that applies (the largest)."""
        b = self.bounds
        return max(b, key=lambda k: b[k])

    @property
    def bottleneck(self) -> str:
        return max(self.busy, key=lambda u: self.busy[u])


def uses_dram_bus(inst: Instruction, c: InstCounts) -> bool:
    """Whether ``inst`` (with its counts ``c``) holds the DRAM bus while it runs: a DMA
    transfer, or a vector instruction that streams DRAM data."""
    return inst.op in _DRAM_OPS and (c.dram_bytes > 0 or inst.op is not Op.VEC)


def schedule(program: Program, counts: Counts, clock_mhz: float) -> Timing:
    """Schedule one run of ``program`` with its ``counts`` (one per instruction)."""
    free: dict[str, int] = {}
    busy: dict[str, int] = {}
    finish_by_token: dict[int, int] = {}
    sections: dict[str, SectionTime] = {}
    end = 0
    names = section_names(program)
    for inst, c, name in zip(program.instructions, counts.per_instruction, names, strict=True):
        unit = UNIT[inst.op]
        if inst.op is Op.HOST_IN and inst.sub & PREFETCH:
            # Double-buffered: it arrives during the previous iteration, on the link alone.
            busy["link"] = busy.get("link", 0) + c.cycles
            sections[name] = SectionTime(0, 0, {"link": c.cycles})
            continue
        start = max([free.get(unit, 0)] + [finish_by_token.get(w, 0) for w in inst.waits])
        if uses_dram_bus(inst, c):
            start = max(start, free.get("dram", 0))
            free["dram"] = start + c.cycles
            busy["dram"] = busy.get("dram", 0) + c.cycles
        done = start + c.cycles
        free[unit] = done
        busy[unit] = busy.get(unit, 0) + c.cycles
        finish_by_token[inst.token] = done
        end = max(end, done)
        s = sections.setdefault(name, SectionTime(start, done))
        s.end = max(s.end, done)
        s.busy[unit] = s.busy.get(unit, 0) + c.cycles
    return Timing(max(end, busy.get("link", 0)), clock_mhz, busy, sections)
