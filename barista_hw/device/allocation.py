"""DRAM allocation: tensors that are never live at the same time share memory.

A tensor has two addresses: ``addr``, its byte address in the DRAM, where its elements
are packed at its width (:func:`~barista_hw.device.memory.packed_bytes`), and ``dram``,
the model's slot address (one element a slot). Both are placed by the same rule.

Persistent tensors (weights, master weights, momentum, the col2im accumulators that
are cleared as they are read, the double-buffered input batch, constants) get their own
memory. Every other tensor is transient: it is first written and last read within one
iteration, and lives from the first instruction that touches it to the last. Transients
are packed greedily, largest first, each at the lowest address where it overlaps no
transient whose life overlaps its own (first fit, as register allocators and the memory
planners of inference compilers do). Sharing memory is a dependency: a tensor's writes
wait for the last use of every earlier tensor in its memory (:attr:`Placement.aliases`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .memory import packed_bytes

ALIGN_SLOTS = 16  # the model's tensors start on a multiple of 16 slots
ALIGN_BYTES = 16  # in DRAM, on a burst of the ULX3S's SDRAM

#: The roles of tensors written and then read within one iteration.
TRANSIENT_ROLES = ("activation", "gradient", "mask", "weight_grad")


def slots(entry: dict) -> int:
    """The model's slots tensor-table ``entry`` reserves."""
    return -(-math.prod(entry["shape"]) // ALIGN_SLOTS) * ALIGN_SLOTS


def reserved_bytes(entry: dict) -> int:
    """The DRAM bytes ``entry`` reserves: its elements packed, aligned to a burst."""
    nbytes = packed_bytes(math.prod(entry["shape"]), entry["bits"])
    return -(-nbytes // ALIGN_BYTES) * ALIGN_BYTES


@dataclass
class Placement:
    """Where each tensor lives: ``dram`` (slot) and ``addr`` (byte) by name, the
    footprints ``slots`` and ``nbytes``, and the tensors whose memory each transient
    reuses (it must wait for their last use)."""

    dram: dict[str, int] = field(default_factory=dict)
    addr: dict[str, int] = field(default_factory=dict)
    slots: int = 0
    nbytes: int = 0
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def place(self, entry: dict) -> None:
        """Put ``entry`` after everything placed so far."""
        self.dram[entry["name"]], self.addr[entry["name"]] = self.slots, self.nbytes
        self.slots += slots(entry)
        self.nbytes += reserved_bytes(entry)


def sequential(tensors: Sequence[dict]) -> Placement:
    """Every tensor in memory of its own, in table order (no sharing)."""
    placed = Placement()
    for t in tensors:
        placed.place(t)
    return placed


def plan(tensors: Sequence[dict], uses: dict[str, tuple[int, int]]) -> Placement:
    """Place ``tensors`` (tensor-table entries) with ``uses``: each tensor's first and last
    instruction. Persistent tensors come first, in table order; transients share."""
    transient = [t for t in tensors if t["role"] in TRANSIENT_ROLES and t["name"] in uses]
    names = {t["name"] for t in transient}
    placed = sequential([t for t in tensors if t["name"] not in names])
    placed.slots, slot_aliases = _pack(transient, uses, placed.slots, slots, placed.dram)
    placed.nbytes, byte_aliases = _pack(transient, uses, placed.nbytes, reserved_bytes, placed.addr)
    for name in names:
        both = set(slot_aliases.get(name, ())) | set(byte_aliases.get(name, ()))
        if both:
            placed.aliases[name] = tuple(sorted(both))
    return placed


def _pack(
    transient: Sequence[dict],
    uses: dict[str, tuple[int, int]],
    floor: int,
    size_of: Callable[[dict], int],
    base: dict[str, int],
) -> tuple[int, dict[str, tuple[str, ...]]]:
    """First fit of ``transient`` from address ``floor`` into ``base``; the end, and per
    tensor the earlier tensors whose memory it reuses."""
    spans: list[tuple[int, int, int, int, str]] = []  # (lo, hi, first, last, name)
    end = floor
    for t in sorted(transient, key=lambda t: (-size_of(t), uses[t["name"]][0])):
        size, (first, last) = size_of(t), uses[t["name"]]
        busy = sorted((lo, hi) for lo, hi, f, la, _ in spans if f <= last and first <= la)
        at = floor
        for lo, hi in busy:
            if at + size <= lo:
                break
            at = max(at, hi)
        spans.append((at, at + size, first, last, t["name"]))
        base[t["name"]] = at
        end = max(end, at + size)
    aliases = {}
    for lo, hi, first, _, name in spans:
        earlier = [n for lo2, hi2, _, la2, n in spans if la2 < first and lo < hi2 and lo2 < hi]
        if earlier:
            aliases[name] = tuple(earlier)
    return end, aliases
