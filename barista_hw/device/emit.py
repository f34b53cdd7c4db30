"""Building a device program: the tensor table, descriptors, and instructions with their waits.

:class:`Builder` gives every instruction a token and derives the tokens it waits for
from what it reads and writes (tensors by name, scratchpad halves such as ``"A0"``).
Each unit runs its instructions in program order, so an instruction waits only for the
latest conflicting instruction of each *other* unit: a read after that unit's write, a
write after its read or write.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from barista_base.errors import InputError

from .isa import MAX_WAITS, Instruction, Op, Program
from .memory import packed_bytes

ALIGN_SLOTS = 16  # tensors start on a burst boundary
ALIGN_BYTES = 16  # in DRAM, where each is packed at its width: one burst of the ULX3S

#: The unit that runs each opcode (``docs/device.md``). LOADs and STOREs have a DMA
#: channel each, so a block's store overlaps the next block's loads.
UNIT = {
    Op.LOAD: "dma_in",
    Op.STORE: "dma_out",
    Op.GEMM: "engine",
    Op.VEC: "vector",
    Op.HOST_IN: "link",
    Op.HOST_OUT: "link",
    Op.SCALE: "sequencer",
    Op.SYNC: "sequencer",
}


class Builder:
    """A :class:`~barista_hw.device.isa.Program` under construction."""

    def __init__(self) -> None:
        self.program = Program()
        self.index: dict[str, int] = {}  # tensor name -> row of the tensor table
        self.slots = 0  # the model's DRAM slots allocated
        self.bytes = 0  # DRAM bytes allocated, each tensor packed at its width
        self._descs: dict[str, int] = {}
        self.cache: dict[object, Any] = {}  # the compiler's memo of costs it estimated
        # resource -> unit -> (token of the latest write, token of the latest read)
        self._last: dict[str, dict[str, list[int]]] = {}

    # -- tables -------------------------------------------------------------------
    def tensor(self, name: str, shape: tuple[int, ...], bits: int, role: str) -> dict[str, Any]:
        """Declare tensor ``name`` (the first time) and return its table entry, with its
        DRAM slot (the model's element address) and byte address ``addr`` (its elements
        packed at ``bits`` bits from there): tensors are placed in declaration order, each
        on a burst boundary."""
        if name not in self.index:
            self.index[name] = len(self.program.tensors)
            entry = {"name": name, "role": role, "space": "DRAM", "shape": list(shape)}
            entry.update(bits=bits, dram=self.slots, addr=self.bytes)
            self.program.tensors.append(entry)
            self.slots += -(-math.prod(shape) // ALIGN_SLOTS) * ALIGN_SLOTS
            self.bytes += -(-packed_bytes(math.prod(shape), bits) // ALIGN_BYTES) * ALIGN_BYTES
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
        **fields: int,
    ) -> int:
        """Append an instruction; returns its token."""
        unit = UNIT[op]
        reads, writes = list(reads), list(writes)
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
