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

A device that fetches its program from DRAM (the RTL top, ``rtl/fetch.py``) is scheduled
with a :class:`Fetch`: its beats are read in program order in the port cycles the units
leave free, a beat is taken once the one before it was and its unit's queue has room, and
an instruction starts only after its beat was taken (:class:`_Fetcher`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


@dataclass(frozen=True)
class Fetch:
    """How a device fetches its program (the RTL top: ``rtl/device.py``'s
    ``fetch_model``). ``words``: bus words of each instruction's beat, in program order;
    ``queue``: records a unit's intake holds taken and not yet issued (a unit not named:
    no bound); ``held``: units whose intake keeps an entry until its instruction is done
    (VecMem runs from its FIFO's head); ``window``: instructions in flight (taken, not
    all before them done); ``fifo``: words the fetcher reads ahead of its beat register;
    ``latency``: the memory's read latency; ``beat_gap``: cycles a beat's register takes
    besides its words; ``decode``: cycles from a whole beat to its record taken (the
    decoder's reads); ``issue``: cycles from a record taken to its instruction's start;
    ``word_bytes``: a port word's."""

    words: Sequence[int]
    queue: Mapping[str, int]
    held: frozenset[str] = frozenset()
    window: int = 64
    fifo: int = 32
    latency: int = 3
    beat_gap: int = 1
    decode: int = 6
    issue: int = 1
    word_bytes: int = 2


class _Fetcher:
    """The fetch's state as :func:`schedule` goes through the program: the port's busy
    spans (start, end, share of the port the instruction's words take), the read
    cursor, each beat's taking. The port moves a word a cycle; the fetcher reads in the
    share the units leave (over a span: ``1 - share``; between spans: all of it)."""

    def __init__(self, fetch: Fetch) -> None:
        self.f = fetch
        self.spans: list[tuple[float, float, float]] = []
        self.at = 0  # the first span that may end after the read cursor
        self.read = 0.0  # the fetcher's reads so far end here
        self.taken = -math.inf  # the previous beat left the register
        self.filling, self.prev = (
            -math.inf,
            0,
        )  # when and of how many words the previous beat filled
        self.starts: dict[str, list[float]] = {}
        self.dones: dict[str, list[float]] = {}
        self.retired: list[float] = []  # every instruction up to each one done

    def _consume(self, t: float, words: float) -> float:
        """When reads of ``words`` from ``t`` end, in the port's free share."""
        while words > 0:
            while self.at < len(self.spans) and self.spans[self.at][1] <= t:
                self.at += 1
            if self.at == len(self.spans):
                return t + words
            s, e, share = self.spans[self.at]
            if t < s:  # the port is free until the span
                step = min(words, s - t)
                t, words = t + step, words - step
                continue
            free = 1.0 - share
            if free > 0 and (e - t) * free >= words:
                return t + words / free
            words -= (e - t) * free
            t = e
        return t

    def take(self, k: int, unit: str) -> float:
        """When beat ``k`` (of ``unit``'s instruction) is taken by the sequencer."""
        f, n = self.f, self.f.words[k]
        # The FIFO holds ``fifo`` words read and not yet in the register, which fills a
        # word a cycle from the previous beat's taking: so many of this beat's words are
        # read before the previous beat leaves the register, the rest after.
        ahead = min(f.fifo, n)
        drained = self.filling + max(0, self.prev - f.fifo)  # room for the first of them
        t = self._consume(max(self.read, drained), ahead)
        self.read = self._consume(max(t, self.taken), n - ahead)
        self.filling, self.prev = self.taken, n
        whole = max(self.read + f.latency, self.taken + n) + f.beat_gap + f.decode
        room = self.dones if unit in f.held else self.starts
        past = room.get(unit, [])
        depth = 1 if unit in f.held else f.queue.get(unit, 0)
        free = past[-depth] if depth and len(past) >= depth else -math.inf
        slot = self.retired[k - f.window] if k >= f.window else -math.inf
        self.taken = max(whole, self.taken + 1, free + 1, slot + 1)
        return self.taken

    def issued(self, unit: str, start: float, done: float, words: int) -> None:
        """Record an instruction of ``unit`` over ``[start, done)`` that moved ``words``
        port words (on the port over its span if any)."""
        self.starts.setdefault(unit, []).append(start)
        self.dones.setdefault(unit, []).append(done)
        self.retired.append(max(done, self.retired[-1] if self.retired else -math.inf))
        if words and done > start:
            self.spans.append((start, done, min(1.0, words / (done - start))))


def uses_dram_bus(inst: Instruction, c: InstCounts) -> bool:
    """Whether ``inst`` (with its counts ``c``) holds the DRAM bus while it runs: a DMA
    transfer, or a vector instruction that streams DRAM data."""
    return inst.op in _DRAM_OPS and (c.dram_bytes > 0 or inst.op is not Op.VEC)


def schedule(
    program: Program, counts: Counts, clock_mhz: float, fetch: Fetch | None = None
) -> Timing:
    """Schedule one run of ``program`` with its ``counts`` (one per instruction);
    ``fetch``: its records fetched from DRAM so (module docstring), else they wait for
    nothing."""
    free: dict[str, float] = {}
    busy: dict[str, int] = {}
    finish_by_token: dict[int, float] = {}
    sections: dict[str, SectionTime] = {}
    end = 0.0
    fetcher = _Fetcher(fetch) if fetch is not None else None
    if fetch is not None and len(fetch.words) != len(program.instructions):
        raise ValueError(f"{len(fetch.words)} beats for {len(program.instructions)} instructions")
    names = section_names(program)
    items = zip(program.instructions, counts.per_instruction, names, strict=True)
    for k, (inst, c, name) in enumerate(items):
        unit = UNIT[inst.op]
        taken = fetcher.take(k, unit) + fetch.issue if fetcher else 0.0
        if inst.op is Op.HOST_IN and inst.sub & PREFETCH:
            # Double-buffered: it arrives during the previous iteration, on the link alone.
            busy["link"] = busy.get("link", 0) + c.cycles
            sections[name] = SectionTime(0, 0, {"link": c.cycles})
            if fetcher:
                fetcher.issued(unit, taken, taken + 1, 0)
            continue
        waits = [finish_by_token.get(w, 0) for w in inst.waits]
        start = max([free.get(unit, 0), taken, *waits])
        bus = uses_dram_bus(inst, c)
        if bus:
            start = max(start, free.get("dram", 0))
            free["dram"] = start + c.cycles
            busy["dram"] = busy.get("dram", 0) + c.cycles
        done = start + c.cycles
        if fetcher:
            fetcher.issued(unit, start, done, c.port_words)
        free[unit] = done
        busy[unit] = busy.get(unit, 0) + c.cycles
        finish_by_token[inst.token] = done
        end = max(end, done)
        s = sections.setdefault(name, SectionTime(math.ceil(start), math.ceil(done)))
        s.end = max(s.end, math.ceil(done))
        s.busy[unit] = s.busy.get(unit, 0) + c.cycles
    return Timing(max(math.ceil(end), busy.get("link", 0)), clock_mhz, busy, sections)
