"""Packed DRAM elements: an adapter from a memory port of elements to one of bus words.

In DRAM every tensor is packed at its width (:func:`barista_hw.device.memory.pack_stream`):
element ``e`` of a tensor is bits ``[first_bit + e bits, first_bit + (e+1) bits)`` of the
bit stream, least significant bit first, bus word ``w`` its bits ``[w B, (w+1) B)`` for a
``B``-bit bus. :class:`PackedPort` sits between a master that speaks elements (the DMA:
a command's ``addr`` and ``length`` count ``bits``-bit elements from ``first_bit``) and
the memory port of ``B``-bit words (:mod:`.port`):

* a read of elements ``[a, a + n)`` reads the words holding their bits, in one command,
  and unpacks them (the bits before the first element and after the last are dropped);
* a write packs the elements into those words. A word it covers only in part (a
  neighbour's bits share it) is read first and merged (the model's ``merged`` words,
  :func:`barista_hw.device.dma.transfer`): one read a part-covered end, then the write.

Commands are performed in order, so a part-covered word written by one command and read
by the next is merged with the written word (the port's rule). ``first_bit`` is an input
held for the master's command (the DMA's current tensor).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from ..memory import PortConfig
from .port import ADDR_BITS, LEN_BITS, max_length, port_signature

OLD, UP = 0, 1  # what a word read is for: a part-covered word to merge, the master's data


class PackedPort(wiring.Component):
    """``up``: the memory side of an element port (``bits``-bit data, commands of up to
    ``max_elements`` elements); ``port``: the master side of a ``bus_bits`` word port;
    ``first_bit``: the bit address of element 0 (module docstring); ``busy``: a command
    or its data is still in the adapter."""

    def __init__(
        self,
        bits: int,
        *,
        bus_bits: int = PortConfig.bits,
        max_elements: int = PortConfig.dma_burst,
        addr_bits: int = ADDR_BITS,
        len_bits: int = LEN_BITS,
        queue: int = 4,
    ) -> None:
        if bus_bits < 2 or bus_bits & (bus_bits - 1) or not 1 <= bits <= 4 * bus_bits:
            raise InputError(
                f"packed port of {bits}-bit elements on a {bus_bits}-bit bus: the bus a "
                "power of two, elements 1 to four bus words"
            )
        words = (max_elements * bits + bus_bits - 2) // bus_bits + 1
        if not 1 <= max_elements <= max_length(len_bits) or words > max_length(len_bits):
            raise InputError(
                f"packed port: commands of {max_elements} elements of {bits} bits take "
                f"{words} words; a command moves 1 to {max_length(len_bits)}"
            )
        self.bits, self.bus_bits, self.queue = bits, bus_bits, queue
        self.addr_bits, self.len_bits = addr_bits, len_bits
        self.shift = bus_bits.bit_length() - 1
        super().__init__(
            {
                "up": In(port_signature(bits, addr_bits, len_bits)),
                "port": Out(port_signature(bus_bits, addr_bits, len_bits)),
                "first_bit": In(addr_bits + self.shift),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        bus, sh, lb = self.bus_bits, self.shift, self.len_bits
        # Tags: a word read's purpose and the master command's start offset and length.
        m.submodules.rtags = rtags = fifo.SyncFIFO(width=1 + sh + lb, depth=2 * self.queue + 2)
        m.submodules.wtags = wtags = fifo.SyncFIFO(width=sh + lb + 2, depth=self.queue)
        m.submodules.olds = olds = fifo.SyncFIFO(width=bus, depth=2 * self.queue + 2)
        writing = self._writes(m, wtags, olds)
        self._commands(m, rtags, wtags, writing)
        self._reads(m, rtags, olds)
        return m

    def _commands(
        self, m: Module, rtags: fifo.SyncFIFO, wtags: fifo.SyncFIFO, writing: Signal
    ) -> None:
        """Each master command becomes its word commands: the reads of its part-covered
        words (a write), then the command itself. The next master command is taken in the
        cycle the current one's last word command goes out, so commands flow one a cycle."""
        bits, sh, lb = self.bits, self.shift, self.len_bits
        up, pc = self.up.cmd, self.port.cmd
        b0 = Signal(self.addr_bits + sh + 8)
        b1 = Signal(self.addr_bits + sh + 8)
        m.d.comb += [
            b0.eq(self.first_bit + up.payload.addr * bits),
            b1.eq(b0 + up.payload.length * bits),
        ]
        off, end = b0[:sh], b1[:sh]
        w0, wl = b0[sh:], (b1 - 1)[sh:]
        # The command in progress: its word range and which word commands are still due.
        c_w0, c_wl = Signal(self.addr_bits), Signal(self.addr_bits)
        c_off, c_len, c_write = Signal(sh), Signal(lb), Signal()
        due_first, due_last, due_main = Signal(), Signal(), Signal()
        idle = ~(due_first | due_last | due_main)
        sent = pc.valid & pc.ready
        finishing = sent & ~due_first & ~due_last  # the main command goes out
        # Room: a command pushes at most two OLD tags and one UP tag (and the finishing
        # command one more this cycle), and a write's tag.
        room = (rtags.level <= rtags.depth - 4) & wtags.w_rdy
        m.d.comb += [
            up.ready.eq((idle | finishing) & room),
            self.busy.eq(~idle | rtags.r_rdy | wtags.r_rdy | writing),
        ]
        with m.If(sent):
            with m.If(due_first):
                m.d.sync += due_first.eq(0)
            with m.Elif(due_last):
                m.d.sync += due_last.eq(0)
            with m.Else():
                m.d.sync += due_main.eq(0)
        with m.If(up.valid & up.ready):
            write = up.payload.write
            first = write & (off != 0)
            single = w0 == wl
            m.d.sync += [
                c_w0.eq(w0),
                c_wl.eq(wl),
                c_off.eq(off),
                c_len.eq(up.payload.length),
                c_write.eq(write),
                due_first.eq(first),
                due_last.eq(write & (end != 0) & ~(single & first)),
                due_main.eq(1),
            ]
        # One word command at a time, in the order first, last, main.
        addr = Mux(due_first, c_w0, Mux(due_last, c_wl, c_w0))
        length = Mux(due_first | due_last, 1, c_wl - c_w0 + 1)
        m.d.comb += [
            pc.valid.eq(~idle),
            pc.payload.addr.eq(addr),
            pc.payload.length.eq(length),
            pc.payload.write.eq(c_write & ~due_first & ~due_last),
        ]
        reading = due_first | due_last | ~c_write
        m.d.comb += [
            rtags.w_en.eq(sent & reading),
            rtags.w_data.eq(Cat(Mux(due_first | due_last, OLD, UP), c_off, c_len)),
            # A write's tag: offset, length, first and last word part-covered.
            wtags.w_en.eq(up.valid & up.ready & up.payload.write),
            wtags.w_data.eq(
                Cat(off, up.payload.length, off != 0, end != 0),
            ),
        ]

    def _reads(self, m: Module, rtags: fifo.SyncFIFO, olds: fifo.SyncFIFO) -> None:
        """Read words: a part-covered one into ``olds``; the master's unpacked into elements.

        A word is taken while the bits held cannot make an element, and an element is
        offered from the bits held and the word arriving in the same cycle, so elements
        flow one a cycle across command boundaries (no bubble at a command's first word).
        """
        bits, bus, sh, lb = self.bits, self.bus_bits, self.shift, self.len_bits
        r, ur = self.port.r, self.up.r
        kind = rtags.r_data[0]
        t_off, t_len = rtags.r_data[1 : 1 + sh], rtags.r_data[1 + sh : 1 + sh + lb]
        buf = Signal(bits + bus)  # the bits held (zero above ``have``)
        have = Signal(range(bits + bus + 1))
        left = Signal(lb)
        started = Signal()
        hb = Mux(started, have, 0)
        n_left = Mux(started, left, t_len)
        is_up = rtags.r_rdy & (kind == UP)
        need = is_up & (n_left != 0) & (hb < bits)
        m.d.comb += r.ready.eq(Mux(kind == OLD, rtags.r_rdy & olds.w_rdy, need))
        got = r.valid & r.ready
        got_up = got & (kind == UP)
        m.d.comb += [olds.w_en.eq(got & (kind == OLD)), olds.w_data.eq(r.payload)]
        # The word arriving, aligned: a command's first word drops the bits below its offset.
        word = Mux(started, r.payload, r.payload >> t_off)
        total = Signal(bits + bus)
        avail = Signal(range(bits + bus + 1))
        m.d.comb += [
            total.eq(Mux(started, buf, 0) | Mux(got_up, word << hb, 0)),
            avail.eq(hb + Mux(got_up, Mux(started, bus, bus - t_off), 0)),
            ur.valid.eq(is_up & (n_left != 0) & (avail >= bits)),
            ur.payload.eq(total[:bits]),
        ]
        emit = ur.valid & ur.ready
        done_up = emit & (n_left == 1)
        m.d.comb += rtags.r_en.eq((got & (kind == OLD)) | done_up)
        with m.If(done_up):
            m.d.sync += [started.eq(0), have.eq(0), buf.eq(0)]
        with m.Elif(got_up | emit):
            m.d.sync += [
                started.eq(1),
                left.eq(n_left - emit),
                buf.eq(Mux(emit, total >> bits, total)),
                have.eq(avail - Mux(emit, bits, 0)),
            ]

    def _writes(self, m: Module, wtags: fifo.SyncFIFO, olds: fifo.SyncFIFO) -> Signal:
        """The master's elements packed into words; part-covered end words merged.

        A command's tag is copied into registers as it starts (and popped), so the next
        command can start in the cycle the current one sends its last word. Returns the
        signal that a command is being written."""
        bits, bus, sh, lb = self.bits, self.bus_bits, self.shift, self.len_bits
        w, uw = self.port.w, self.up.w
        t_off = wtags.r_data[:sh]
        t_len = wtags.r_data[sh : sh + lb]
        t_first, t_last = wtags.r_data[sh + lb], wtags.r_data[sh + lb + 1]
        buf = Signal(bits + bus)
        have = Signal(range(bits + bus + 1))
        left = Signal(lb)
        started = Signal()
        c_last = Signal()  # the running command's last word is part-covered
        old = Signal(bus)  # the first word's old bits, kept for a word part-covered twice
        last_single = Signal()  # one word covered at both ends: its old value is ``old``

        # A whole word out; the final, part-covered word merges the old bits above.
        whole = started & (have >= bus)
        tail = started & (left == 0) & (have != 0) & (have < bus)
        tail_old = Mux(last_single, old, olds.r_data)
        tail_ok = ~c_last | last_single | olds.r_rdy
        mask = (Const(1, bus + 1) << have) - 1
        merged = (buf[:bus] & mask) | (tail_old & ~mask[:bus])
        m.d.comb += [
            w.valid.eq(whole | (tail & tail_ok)),
            w.payload.eq(Mux(whole, buf[:bus], Mux(c_last, merged, buf[:bus]))),
        ]
        out = w.valid & w.ready
        emit = out & whole
        h1 = Signal.like(have)
        b1 = Signal.like(buf)
        m.d.comb += [h1.eq(have - Mux(emit, bus, 0)), b1.eq(Mux(emit, buf >> bus, buf))]
        take = started & (left != 0) & (h1 < bus) & uw.valid
        m.d.comb += uw.ready.eq(take)
        finish_tail = out & tail
        tail_pop = finish_tail & c_last & ~last_single
        finish = (
            finish_tail | (emit & (left == 0) & (h1 == 0)) | (started & (left == 0) & (have == 0))
        )
        # Start: the first word's bits below the offset come from its old value (not in a
        # cycle whose tail takes an old word: the FIFO gives one a cycle, in order).
        start = wtags.r_rdy & (~started | (finish & ~tail_pop)) & (~t_first | olds.r_rdy)
        with m.If(start):
            keep = Mux(t_first, olds.r_data & ((Const(1, bus + 1) << t_off) - 1), 0)
            m.d.sync += [
                buf.eq(keep),
                have.eq(Mux(t_first, t_off, 0)),
                left.eq(t_len),
                started.eq(1),
                c_last.eq(t_last),
                old.eq(olds.r_data),
                last_single.eq(t_first & (t_off + t_len * bits < bus)),
            ]
        with m.Elif(finish):
            m.d.sync += [started.eq(0), have.eq(0), last_single.eq(0)]
        with m.Else():
            m.d.sync += [
                buf.eq(b1 | Mux(take, uw.payload << h1, 0)),
                have.eq(h1 + Mux(take, bits, 0)),
            ]
        with m.If(take):
            m.d.sync += left.eq(left - 1)
        m.d.comb += [
            wtags.r_en.eq(start),
            olds.r_en.eq((start & t_first) | tail_pop),
        ]
        return started
