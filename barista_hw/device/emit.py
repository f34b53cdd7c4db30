"""Building a device program: the tensor table, descriptors, and instructions with their waits.

:class:`Builder` gives every instruction a token and derives the tokens it waits for
from what it reads and writes (tensors by name, scratchpad halves such as ``"A0"``).
Each unit runs its instructions in program order, so an instruction waits only for the
latest conflicting instruction of each *other* unit: a read after that unit's write, a
write after its read or write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from barista_base.errors import InputError
from barista_hw.schedule import ScheduleOptions

from .allocation import Placement
from .isa import MAX_WAITS, Instruction, Op, Program

#: The unit that runs each opcode (``docs/device.md``). LOADs and STOREs have a DMA
#: channel each, so a block's store overlaps the next block's loads.
UNIT = {
    Op.LOAD: "dma_in",
    Op.STORE: "dma_out",
    Op.GEMM: "engine",
    Op.VEC: "vector",
    Op.HOST_IN: "link",
    Op.HOST_OUT: "link",
    Op.FETCH: "dma_in",
    Op.SCALE: "sequencer",
    Op.SYNC: "sequencer",
}


class Builder:
    """A :class:`~barista_hw.device.isa.Program` under construction."""

    def __init__(
        self,
        placement: Placement | None = None,
        schedules: list[tuple[tuple[str, str], ScheduleOptions]] | None = None,
    ) -> None:
        self.program = Program()
        self.index: dict[str, int] = {}  # tensor name -> row of the tensor table
        self.placement = placement
        self._sequential = Placement()  # where tensors go without a placement
        self.uses: dict[str, tuple[int, int]] = {}  # tensor -> first and last instruction
        self._seeds = 0
        self._descs: dict[str, int] = {}
        self.cache: dict[object, Any] = {}  # the compiler's memo of costs it estimated
        # Each GEMM pass's schedule, in emission order; given, they are replayed.
        self.schedules = [] if schedules is None else schedules
        self._replay = 0 if schedules is not None else None
        # resource -> unit -> (token of the latest write, token of the latest read)
        self._last: dict[str, dict[str, list[int]]] = {}

    # -- tables -------------------------------------------------------------------
    def tensor(self, name: str, shape: tuple[int, ...], bits: int, role: str) -> dict[str, Any]:
        """Declare tensor ``name`` (the first time) and return its table entry, with its
        DRAM slot (the model's element address) and byte address ``addr`` (its elements
        packed at ``bits`` bits from there): the placement's, or in declaration order
        without one."""
        if name not in self.index:
            self.index[name] = len(self.program.tensors)
            entry = {"name": name, "role": role, "space": "DRAM", "shape": list(shape)}
            entry["bits"] = bits
            place = self.placement
            if place is None:
                place = self._sequential
                place.place(entry)
            entry.update(dram=place.dram[name], addr=place.addr[name])
            self.program.tensors.append(entry)
        return self.program.tensors[self.index[name]]

    def desc(self, **entry: Any) -> int:
        """The index of a descriptor, shared by every instruction that uses the same one."""
        key = json.dumps(entry, sort_keys=True)
        if key not in self._descs:
            if len(self._descs) >= 0xFF:
                raise InputError("the program needs more than 255 descriptors")
            self._descs[key] = len(self.program.descriptors)
            self.program.descriptors.append(entry)
        return self._descs[key]

    def mark(self, section: str) -> None:
        """The instructions from here on belong to ``section`` (``layer/pass``, for reports)."""
        self.program.meta.setdefault("sections", []).append(
            [len(self.program.instructions), section]
        )

    def schedule(
        self, key: tuple[str, str], choose: Callable[[], ScheduleOptions]
    ) -> ScheduleOptions:
        """The schedule of the next GEMM pass (``key``: its layer and pass): ``choose()``'s,
        or, replaying an earlier lowering's, that lowering's (so both emit one program)."""
        if self._replay is None:
            self.schedules.append((key, choose()))
            return self.schedules[-1][1]
        done, opts = self.schedules[self._replay]
        if done != key:
            raise ValueError(f"replayed schedule of {done} for {key}")
        self._replay += 1
        return opts

    def next_seed(self) -> int:
        """A vector instruction's seed: its rank among the program's vector instructions,
        so the waits and SYNCs a placement adds do not change the random words."""
        self._seeds += 1
        return self._seeds

    def scalar(self, name: str) -> int:
        if name not in self.program.scalars:
            self.program.scalars.append(name)
        return self.program.scalars.index(name)

    # -- instructions ---------------------------------------------------------------
    def emit(
        self,
        op: Op,
        sub: int = 0,
        *,
        reads: Iterable[str] = (),
        writes: Iterable[str] = (),
        after_all: bool = False,
        **fields: int,
    ) -> int:
        """Append an instruction; returns its token. ``after_all``: it waits for every
        earlier instruction (a barrier, such as the end-of-iteration SCALE, which reads the
        statistics every write records)."""
        unit = UNIT[op]
        reads, writes = list(reads), list(writes)
        touched = [res for res in reads + writes if res in self.index]
        aliases = self.placement.aliases if self.placement else {}
        writes += [a for w in writes for a in aliases.get(w, ())]  # memory it reuses
        if after_all:  # as if it wrote everything touched so far: after every read and write
            writes += [res for res in self._last if res not in writes]
        after: dict[str, int] = {}
        for res in reads + writes:
            for other, (w, r) in self._last.get(res, {}).items():
                if other != unit:
                    hit = max(w, r) if res in writes else w
                    if hit:
                        after[other] = max(after.get(other, 0), hit)
        waits = sorted(after.values())
        while len(waits) > MAX_WAITS:  # a SYNC takes the oldest waits
            self._append(Instruction(Op.SYNC, 0, self._token(), tuple(waits[:MAX_WAITS])))
            waits = [self._token() - 1, *waits[MAX_WAITS:]]
        token = self._token()
        at = len(self.program.instructions)
        for res in touched:
            self.uses[res] = (self.uses.get(res, (at, at))[0], at)
        self._append(Instruction(op, sub, token, tuple(waits), fields))
        for res in reads:
            self._last.setdefault(res, {}).setdefault(unit, [0, 0])[1] = token
        for res in writes:
            self._last.setdefault(res, {}).setdefault(unit, [0, 0])[0] = token
        return token

    def _token(self) -> int:
        """The next instruction's token: its position, counted from 1, modulo 2**16 (0 is
        "no wait"); waits name recent instructions, so a wrap cannot confuse them."""
        return len(self.program.instructions) % 0xFFFF + 1

    def _append(self, inst: Instruction) -> None:
        self.program.instructions.append(inst)
