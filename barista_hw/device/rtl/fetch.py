"""The program in DRAM: its image (the host's side) and the :class:`ProgramFetcher`.

**Image.** The host lays the program out once: each record's beat
(:func:`~.device.record_layout`: the record, its decode fields and static command) in
whole bus words, least significant word first, beat after beat
from a word address aligned to :data:`ALIGN` words, past every tensor
(:func:`program_base`). A beat takes the words its opcode needs (``lengths``, opcode ->
words, :func:`~.device.beat_lengths`: the record, the decode fields and the part of the
static command its unit reads; the beat's bits above are zero), else all
:func:`beat_words`. Nothing writes there, so the image serves every iteration.

**Start.** A host command on ``prog`` (register writes, :mod:`.decode`'s map):
``FETCH_ADDR`` sets the word address of the first beat, ``FETCH_RUN`` fetches ``words``
bus words from it (bits ``[0, 24)``, whole beats; bit 31 marks the run's final beat
``last``): the top then dispatches the fetched beats (records come from here only), and
``prog`` waits until the run's final beat was taken. :func:`start_writes` gives the two writes; a
host sends them for the whole program, or for the records between its own beats (an
exponent written before a HOST_IN, a read-back after a HOST_OUT).

**Fetcher.** Reads the run's words in bursts of up to ``burst`` words through a FIFO of
``2 x burst`` (a burst is asked for only when the FIFO has room for it and the words in
flight, so the fetcher never holds the memory) and writes them into a beat register,
word ``i`` of a beat at bits ``[i x bus_bits, ...)``; the first word's low byte (the
opcode) gives the beat's length. A whole beat is offered on ``beats``; once taken the
register is cleared (a shorter beat's high bits are zero).

Ports: ``start`` (in, :func:`start_layout`: ``addr``, ``words``, ``last``; taken while
idle); ``port`` (memory port master, reads only); ``beats`` (out, :func:`beat_layout`:
``beat`` (``beat_bits``), ``last`` on the run's final beat if ``start`` asked);
``busy`` (out: from ``start`` taken until the run's final beat was taken).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from .decode import FETCH_ADDR, FETCH_RUN
from .port import ADDR_BITS, LEN_BITS, max_length, port_signature

__all__ = [
    "ALIGN",
    "BURST",
    "WORDS_BITS",
    "ProgramFetcher",
    "beat_layout",
    "beat_words",
    "image",
    "program_base",
    "start_layout",
    "start_writes",
]

ALIGN = 16  # the image's first word: on a burst boundary
BURST = 16  # words a read command (the FIFO holds two)
WORDS_BITS = 24  # bus words a run
LAST_BIT = 31  # in FETCH_RUN's data: the run's final beat is the program's last


def beat_words(beat_bits: int, bus_bits: int = 16) -> int:
    """Bus words a whole beat of ``beat_bits`` takes."""
    return -(-beat_bits // bus_bits)


def program_base(end_word: int) -> int:
    """The image's first word: the first :data:`ALIGN`-aligned word at or past ``end_word``
    (the end of every tensor's words)."""
    return -(-end_word // ALIGN) * ALIGN


def image(
    beats: Sequence[int], beat_bits: int, lengths: Mapping[int, int], bus_bits: int = 16
) -> tuple[np.ndarray, list[int]]:
    """The bus words of ``beats`` (record beats of ``beat_bits``, the opcode in the low
    byte), each its ``lengths[opcode]`` words (else all), and each beat's first word
    (one more entry: the end)."""
    whole, mask = beat_words(beat_bits, bus_bits), (1 << bus_bits) - 1
    out, offsets = [], [0]
    for k, beat in enumerate(beats):
        n = lengths.get(beat & 0xFF, whole)
        if beat >> min(beat_bits, n * bus_bits):
            raise InputError(
                f"record beat {k} (opcode {beat & 0xFF}) has bits past its {n} bus words"
            )
        out += [(beat >> (bus_bits * i)) & mask for i in range(n)]
        offsets.append(len(out))
    return np.array(out, np.int64), offsets


def start_writes(addr: int, words: int, *, last: bool = False) -> list[tuple[int, int]]:
    """The register writes (address, value) fetching and running the beats in the
    ``words`` bus words from ``addr`` (``last``: the final one is the program's last)."""
    if not 0 < words < 1 << WORDS_BITS:
        raise InputError(f"a fetch run of {words} words: 1 to {(1 << WORDS_BITS) - 1}")
    if addr + words > 1 << ADDR_BITS:
        raise InputError(f"program words up to {addr + words} are past the memory port")
    return [(FETCH_ADDR, addr), (FETCH_RUN, words | int(last) << LAST_BIT)]


def start_layout() -> data.StructLayout:
    """The fetcher's ``start``: ``addr`` (bus word of the first beat), ``words``, ``last``."""
    return data.StructLayout(
        {"addr": unsigned(ADDR_BITS), "words": unsigned(WORDS_BITS), "last": 1}
    )


def beat_layout(beat_bits: int) -> data.StructLayout:
    """A fetched beat and whether it is the program's last."""
    return data.StructLayout({"beat": unsigned(beat_bits), "last": 1})


class ProgramFetcher(wiring.Component):
    """Runs of record beats read from DRAM (module docstring: the ports); ``lengths``:
    opcode -> bus words of its beats."""

    def __init__(
        self,
        beat_bits: int,
        bus_bits: int = 16,
        *,
        lengths: Mapping[int, int] | None = None,
        burst: int = BURST,
    ) -> None:
        if not 1 <= burst <= max_length(LEN_BITS):
            raise InputError(f"fetch bursts of {burst} words: 1 to {max_length(LEN_BITS)}")
        self.beat_bits, self.bus_bits, self.burst = beat_bits, bus_bits, burst
        self.words = beat_words(beat_bits, bus_bits)
        self.lengths = dict(lengths or {})
        if any(not 1 <= n <= self.words for n in self.lengths.values()):
            raise InputError(f"beat lengths {self.lengths}: 1 to {self.words} words")
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
        addr, left = Signal(ADDR_BITS), Signal(WORDS_BITS)  # words not yet asked for
        flight = Signal(range(depth + 1))  # words asked for, not yet in the FIFO
        last, active = Signal(), Signal()
        st = self.start
        m.d.comb += [st.ready.eq(~active), self.busy.eq(active)]
        with m.If(st.valid & st.ready & (st.payload.words != 0)):
            m.d.sync += [
                active.eq(1),
                addr.eq(st.payload.addr),
                left.eq(st.payload.words),
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
        self._assemble(m, buf, last, active, drained=(left == 0) & (flight == 0) & ~buf.r_rdy)
        return m

    def _assemble(self, m: Module, buf: fifo.SyncFIFO, last, active, drained) -> None:  # noqa: ANN001
        """The beat register: word ``have`` of the beat from the FIFO's head until the
        beat's length (its opcode's, from the first word); offered once whole."""
        acc = Signal(self.words * self.bus_bits)
        have, need = Signal(range(self.words + 1)), Signal(range(self.words + 1))
        length = Signal(range(self.words + 1))
        with m.Switch(buf.r_data[:8]):
            for op, words in self.lengths.items():
                with m.Case(op):
                    m.d.comb += length.eq(words)
            with m.Default():
                m.d.comb += length.eq(self.words)
        out = self.beats
        full = (have != 0) & (have == need)
        m.d.comb += [
            buf.r_en.eq(~full),
            out.valid.eq(full),
            out.payload.beat.eq(acc[: self.beat_bits]),
            out.payload.last.eq(last & drained),  # nothing after it: the run's final beat
        ]
        with m.If(buf.r_rdy & ~full):
            m.d.sync += have.eq(have + 1)
            for i in range(self.words):  # a compare a word, no case over ``have``
                with m.If(have == i):
                    m.d.sync += acc[i * self.bus_bits :][: self.bus_bits].eq(buf.r_data)
            with m.If(have == 0):
                m.d.sync += need.eq(length)
        with m.If(out.valid & out.ready):
            m.d.sync += [have.eq(0), acc.eq(0)]
            with m.If(drained):
                m.d.sync += active.eq(0)
