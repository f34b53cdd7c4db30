"""The program in DRAM: its image (the host's side) and the :class:`ProgramFetcher`.

**Image.** The host lays the program out once: each ``prog`` beat of a record
(:func:`~.device.prog_layout`: the record, its static command and decode fields, ``last``
and ``write`` clear) as :func:`beat_words` whole bus words, least significant word
first, beat after beat from a word address aligned to :data:`ALIGN` words, past every
tensor (:func:`program_base`). Nothing writes there, so the image serves every iteration.

**Start.** A host command on ``prog`` (a register write, :mod:`.decode`'s map):
``FETCH_ADDR`` sets the word address of the next beat to fetch, ``FETCH_RUN`` runs
``count`` beats from it (bits ``[0, 24)``; bit 31 marks the run's final beat ``last``)
and leaves the address after them, so consecutive runs continue the program.
:func:`start_writes` gives the two writes.

**Fetcher.** Reads ``count x beat_words`` bus words in bursts of up to ``burst`` words
through a FIFO of ``2 x burst`` (a burst is asked for only when the FIFO has room for it
and the words still in flight, so the fetcher never holds the memory) and shifts them into
a beat register, which is offered on ``beats`` once whole.

Ports: ``start`` (in, :func:`start_layout`: ``addr``, ``count``, ``last``; taken while
idle); ``port`` (memory port master, reads only); ``beats`` (out, :func:`beat_layout`:
``beat`` (``beat_bits``), ``last`` on the run's final beat if ``start`` asked);
``busy`` (out: from ``start`` taken until the run's final beat was taken).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from .decode import FETCH_ADDR, FETCH_RUN
from .port import ADDR_BITS, LEN_BITS, max_length, port_signature

__all__ = [
    "ALIGN",
    "COUNT_BITS",
    "ProgramFetcher",
    "beat_layout",
    "beat_words",
    "image",
    "program_base",
    "start_layout",
    "start_writes",
]

ALIGN = 16  # the image's first word: on a burst boundary
COUNT_BITS = 24  # beats a run
LAST_BIT = 31  # in FETCH_RUN's data: the run's final beat is the program's last


def beat_words(beat_bits: int, bus_bits: int = 16) -> int:
    """Bus words a beat of ``beat_bits`` takes in the image."""
    return -(-beat_bits // bus_bits)


def program_base(end_word: int) -> int:
    """The image's first word: the first :data:`ALIGN`-aligned word at or past ``end_word``
    (the end of every tensor's words)."""
    return -(-end_word // ALIGN) * ALIGN


def image(beats: Sequence[int], beat_bits: int, bus_bits: int = 16) -> np.ndarray:
    """The bus words of ``beats`` (``prog`` payloads of ``beat_bits``), least significant
    word first, beat after beat."""
    n, mask = beat_words(beat_bits, bus_bits), (1 << bus_bits) - 1
    out = np.zeros(n * len(beats), np.int64)
    for k, beat in enumerate(beats):
        if beat >> beat_bits:
            raise InputError(f"prog beat {k} has bits past its {beat_bits}")
        for i in range(n):
            out[k * n + i] = (beat >> (bus_bits * i)) & mask
    return out


def start_writes(
    base: int, first: int, count: int, words: int, *, last: bool = False
) -> list[tuple[int, int]]:
    """The register writes (address, value) running beats ``[first, first + count)`` of
    the image at word ``base`` (``words`` bus words a beat; ``last``: the final one is the
    program's last)."""
    if not 0 < count < 1 << COUNT_BITS:
        raise InputError(f"a fetch run of {count} beats: 1 to {(1 << COUNT_BITS) - 1}")
    at = base + first * words
    if at + count * words > 1 << ADDR_BITS:
        raise InputError(f"program beats up to word {at + count * words} are past the port")
    return [(FETCH_ADDR, at), (FETCH_RUN, count | int(last) << LAST_BIT)]


def start_layout() -> data.StructLayout:
    """The fetcher's ``start``: ``addr`` (bus word of the first beat), ``count``, ``last``."""
    return data.StructLayout(
        {"addr": unsigned(ADDR_BITS), "count": unsigned(COUNT_BITS), "last": 1}
    )


def beat_layout(beat_bits: int) -> data.StructLayout:
    """A fetched beat and whether it is the program's last."""
    return data.StructLayout({"beat": unsigned(beat_bits), "last": 1})


class ProgramFetcher(wiring.Component):
    """Runs of ``prog`` beats read from DRAM (module docstring: the ports)."""

    def __init__(self, beat_bits: int, bus_bits: int = 16, *, burst: int = 16) -> None:
        if not 1 <= burst <= max_length(LEN_BITS):
            raise InputError(f"fetch bursts of {burst} words: 1 to {max_length(LEN_BITS)}")
        self.beat_bits, self.bus_bits, self.burst = beat_bits, bus_bits, burst
        self.words = beat_words(beat_bits, bus_bits)
        super().__init__(
            {
                "start": In(stream.Signature(start_layout())),
                "port": Out(port_signature(bus_bits, ADDR_BITS, LEN_BITS)),
                "beats": Out(stream.Signature(beat_layout(beat_bits))),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        depth = 2 * self.burst
        m.submodules.buf = buf = fifo.SyncFIFO(width=self.bus_bits, depth=depth)
        total_bits = COUNT_BITS + self.words.bit_length()
        addr, left = Signal(ADDR_BITS), Signal(total_bits)  # words not yet asked for
        beats_left = Signal(COUNT_BITS)  # beats not yet taken on ``beats``
        flight = Signal(range(depth + 1))  # words asked for, not yet in the FIFO
        last, active = Signal(), Signal()
        st = self.start
        m.d.comb += [st.ready.eq(~active), self.busy.eq(active)]
        with m.If(st.valid & st.ready & (st.payload.count != 0)):
            m.d.sync += [
                active.eq(1),
                addr.eq(st.payload.addr),
                left.eq(st.payload.count * self.words),
                beats_left.eq(st.payload.count),
                last.eq(st.payload.last),
            ]
        # -- reads: a burst once the FIFO has room for it and the words in flight.
        n = Signal(range(self.burst + 1))
        m.d.comb += n.eq(Mux(left < self.burst, left, self.burst))
        pc = self.port.cmd
        room = depth - buf.level - flight
        m.d.comb += [
            pc.valid.eq(active & (left != 0) & (room >= n)),
            pc.payload.addr.eq(addr),
            pc.payload.length.eq(n),
            pc.payload.write.eq(0),
            self.port.w.valid.eq(0),
        ]
        asked = pc.valid & pc.ready
        r = self.port.r
        m.d.comb += [r.ready.eq(buf.w_rdy), buf.w_en.eq(r.valid), buf.w_data.eq(r.payload)]
        arrived = r.valid & r.ready
        with m.If(asked):
            m.d.sync += [addr.eq(addr + n), left.eq(left - n)]
        m.d.sync += flight.eq(flight + Mux(asked, n, 0) - arrived)
        # -- the beat register: words shift in from the top, the first ends at the bottom.
        acc = Signal(self.words * self.bus_bits)
        have = Signal(range(self.words + 1))
        out = self.beats
        full = have == self.words
        m.d.comb += [
            buf.r_en.eq(~full),
            out.valid.eq(full),
            out.payload.beat.eq(acc[: self.beat_bits]),
            out.payload.last.eq(last & (beats_left == 1)),
        ]
        with m.If(buf.r_rdy & ~full):
            m.d.sync += [acc.eq(Cat(acc[self.bus_bits :], buf.r_data)), have.eq(have + 1)]
        with m.If(out.valid & out.ready):
            m.d.sync += [have.eq(0), beats_left.eq(beats_left - 1)]
            with m.If(beats_left == 1):
                m.d.sync += active.eq(0)
        return m
