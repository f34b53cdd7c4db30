"""DRAM allocation: tensors that are never live at the same time share memory.

Addresses count *words* of the DRAM's 16-bit bus (``WORD_BYTES``); a tensor reserves
its bytes (``DeviceConfig.slot_bytes`` per element) rounded up to a burst boundary. The
device model keeps one element per addressed word from the tensor's base, inside its
reservation.

Persistent tensors (weights, master weights, momentum, the col2im accumulators that
are cleared as they are read, the double-buffered input batch) get their own memory.
Every other tensor is transient: it is first written and last read within one iteration,
and lives from the first instruction that touches it to the last. Transients are packed
greedily, largest first, each at the lowest address where it overlaps no transient whose
life overlaps its own (first fit, as register allocators and the memory planners of
inference compilers do). Sharing memory is a dependency: a tensor's writes wait for the
last use of every earlier tensor in its memory (:attr:`Placement.aliases`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .memory import DeviceConfig

WORD_BYTES = 2  # an address counts words of the 16-bit bus
ALIGN_WORDS = 16  # tensors start on a burst boundary (and a 32-bit element's word pair)

#: The roles of tensors written and then read within one iteration.
TRANSIENT_ROLES = ("activation", "gradient", "mask", "weight_grad")


def words(entry: dict) -> int:
    """The words tensor-table ``entry`` reserves: its bytes, aligned to a burst."""
    nbytes = math.prod(entry["shape"]) * DeviceConfig.slot_bytes(entry["bits"])
    return -(-nbytes // (WORD_BYTES * ALIGN_WORDS)) * ALIGN_WORDS


@dataclass
class Placement:
    """Where each tensor lives: ``base`` word by name, ``words`` the footprint, and the
    tensors whose memory each transient reuses (it must wait for their last use)."""

    base: dict[str, int]
    words: int
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return self.words * WORD_BYTES


def sequential(tensors: Sequence[dict]) -> Placement:
    """Every tensor in memory of its own, in table order (no sharing)."""
    base, end = {}, 0
    for t in tensors:
        base[t["name"]] = end
        end += words(t)
    return Placement(base, end)


def plan(tensors: Sequence[dict], uses: dict[str, tuple[int, int]]) -> Placement:
    """Place ``tensors`` (tensor-table entries) with ``uses``: each tensor's first and last
    instruction. Persistent tensors come first, in table order; transients share."""
    transient = [t for t in tensors if t["role"] in TRANSIENT_ROLES and t["name"] in uses]
    names = {t["name"] for t in transient}
    placed = sequential([t for t in tensors if t["name"] not in names])
    floor = placed.words
    spans: list[tuple[int, int, int, int, str]] = []  # (lo, hi, first, last, name)
    order = sorted(transient, key=lambda t: (-words(t), uses[t["name"]][0]))
    for t in order:
        size, (first, last) = words(t), uses[t["name"]]
        busy = sorted((lo, hi) for lo, hi, f, la, _ in spans if f <= last and first <= la)
        at = floor
        for lo, hi in busy:
            if at + size <= lo:
                break
            at = max(at, hi)
        spans.append((at, at + size, first, last, t["name"]))
        placed.base[t["name"]] = at
        placed.words = max(placed.words, at + size)
    for lo, hi, first, _, name in spans:
        earlier = [n for lo2, hi2, _, la2, n in spans if la2 < first and lo < hi2 and lo2 < hi]
        if earlier:
            placed.aliases[name] = tuple(sorted(earlier))
    return placed
