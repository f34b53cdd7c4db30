"""Delayed scaling: how the device picks each tensor's exponent for the next iteration.

One definition, used by the model and later by the RTL's ``SCALE`` instruction. A
tensor of ``width`` bits holds ``q`` with value ``q * 2**-frac``. From the statistics
of an iteration's writes (:class:`~barista_hw.device.vector.Stats`) the next
iteration's ``frac`` is chosen so the peak lands in ``[2**(width-3), 2**(width-2))``:
one bit of headroom above it before saturation, and its top bit one below that.

* a peak ``p > 0`` that did not saturate: ``frac += width - 2 - p.bit_length()``;
* a tensor that saturated: ``frac -= overflow + 1``, with ``overflow`` the bits the
  largest magnitude before saturation needed beyond the format (at least 1): the same
  rule applied to the unsaturated peak;
* an all-zero tensor (it may have underflowed) grows by :data:`ZERO_GROWTH` bits a
  iteration: bounded, so a truly dead tensor drifts slowly, and one whose values all
  rounded away recovers in a few iterations;
* every frac is clamped to ``[MIN_FRAC, MAX_FRAC]``.

The *probe* (before iteration 0) applies the same target to an exact float peak
(:func:`probe_frac`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from barista_base.errors import InputError

from .vector import Stats

MIN_FRAC = -64
MAX_FRAC = 64
ZERO_GROWTH = 2


def _clamp(frac: int) -> int:
    return max(MIN_FRAC, min(MAX_FRAC, frac))


def next_frac(frac: int, peak: int, saturated: int, width: int, *, overflow: int = 0) -> int:
    """The exponent of the next iteration for a tensor written at ``frac`` with these
    statistics (``overflow``: see :class:`~barista_hw.device.vector.Stats`; a saturated
    tensor without it counts as overflowing by one bit)."""
    if saturated:
        return _clamp(frac - max(1, overflow) - 1)
    if peak == 0:
        return _clamp(frac + ZERO_GROWTH)
    return _clamp(frac + width - 2 - int(peak).bit_length())


def probe_frac(peak_value: float, width: int) -> int:
    """The probe's exponent for a tensor whose exact largest magnitude is ``peak_value``
    (a zero tensor gets the format's default split, ``width // 2``)."""
    if not math.isfinite(peak_value):
        raise InputError(f"the probe saw a non-finite peak {peak_value}: the net diverges")
    if peak_value == 0:
        return width // 2
    _, e = math.frexp(abs(peak_value))  # |peak| in [2**(e-1), 2**e)
    return _clamp(width - 2 - e)


@dataclass
class Entry:
    """A tensor's exponent and the statistics of its writes in the current iteration."""

    frac: int  # the exponent of the next write
    width: int
    peak: int = 0
    saturated: int = 0
    overflow: int = 0
    written: bool = False
    stored: int | None = None  # the exponent of what memory holds (None: frac)
    fixed: bool = False  # an exponent set once (the 32-bit masters and momentum)
    exact: float = 0.0  # the probe: the largest magnitude before rounding, as a value


class ScaleTable:
    """The device's scale table: one :class:`Entry` per tensor name.

    Several writes of one tensor in an iteration (tiles, chunks) combine: the peak and
    overflow are the largest, the saturation counts add up. :meth:`advance` applies
    :func:`next_frac` to every tensor written this iteration (the others keep their
    frac) and clears the statistics.
    """

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def add(self, name: str, frac: int, width: int, *, fixed: bool = False) -> None:
        if name in self.entries:
            raise ValueError(f"tensor {name!r} is already in the scale table")
        self.entries[name] = Entry(_clamp(frac), width, fixed=fixed)

    def frac(self, name: str) -> int:
        """The exponent the next write of ``name`` uses."""
        return self.entries[name].frac

    def stored(self, name: str) -> int:
        """The exponent of what memory holds for ``name`` (what a read of it uses)."""
        e = self.entries[name]
        return e.frac if e.stored is None else e.stored

    def wrote(self, name: str, frac: int, stats: Stats, exact: float | None = None) -> None:
        """A write of ``name`` at ``frac`` with ``stats`` (``exact``: the probe's peak value
        before rounding, where the writer knows it)."""
        e = self.entries[name]
        e.stored = frac
        if e.fixed:
            e.frac = frac
            return
        self.record(name, stats)
        if exact is not None:
            e.exact = max(e.exact, exact)

    def set_frac(self, name: str, frac: int) -> None:
        """Set an exponent directly (the probe's choice)."""
        self.entries[name].frac = _clamp(frac)

    def record(self, name: str, stats: Stats) -> None:
        e = self.entries[name]
        e.peak = max(e.peak, int(stats.peak))
        e.saturated += int(stats.saturated)
        e.overflow = max(e.overflow, int(stats.overflow))
        e.written = True

    def advance(self) -> None:
        for e in self.entries.values():
            if e.written and not e.fixed:
                base = e.frac if e.stored is None else e.stored
                e.frac = next_frac(base, e.peak, e.saturated, e.width, overflow=e.overflow)
            e.peak = e.saturated = e.overflow = 0
            e.written = False

    def probe_advance(self) -> bool:
        """The end of a probe pass: a tensor whose writer knew its exact peak takes
        :func:`probe_frac` of it, the others :meth:`advance`'s rule; True if an exponent
        changed."""
        before = {n: e.frac for n, e in self.entries.items()}
        exact = {n: e.exact for n, e in self.entries.items() if e.written and e.exact > 0}
        self.advance()
        for n, value in exact.items():
            self.entries[n].frac = probe_frac(value, self.entries[n].width)
        for e in self.entries.values():
            e.exact = 0.0
        return any(before[n] != e.frac for n, e in self.entries.items())

    def state_dict(self) -> dict[str, Any]:
        """The table as plain JSON-able data (for snapshots)."""
        return {name: vars(e).copy() for name, e in self.entries.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries = {name: Entry(**fields) for name, fields in state.items()}
