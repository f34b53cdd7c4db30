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
        bus_bits: int = 16,
        max_elements: int = 16,
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
        self._commands(m, rtags, wtags)
        self._reads(m, rtags, olds)
        self._writes(m, wtags, olds)
        return m

    def _commands(self, m: Module, rtags: fifo.SyncFIFO, wtags: fifo.SyncFIFO) -> None:
        """Each master command becomes its word commands: the reads of its part-covered
        words (a write), then the command itself."""
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
        # Room: a command pushes at most two OLD tags and one UP tag, and a write's tag.
        room = (rtags.level <= rtags.depth - 3) & wtags.w_rdy
        m.d.comb += [
            up.ready.eq(idle & room),
            self.busy.eq(~idle | rtags.r_rdy | wtags.r_rdy),
        ]
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
        sent = pc.valid & pc.ready
        with m.If(sent):
            with m.If(due_first):
                m.d.sync += due_first.eq(0)
            with m.Elif(due_last):
                m.d.sync += due_last.eq(0)
            with m.Else():
                m.d.sync += due_main.eq(0)
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
        """Read words: a part-covered one into ``olds``; the master's unpacked into elements."""
        bits, bus, sh, lb = self.bits, self.bus_bits, self.shift, self.len_bits
        r, ur = self.port.r, self.up.r
        kind = rtags.r_data[0]
        t_off, t_len = rtags.r_data[1 : 1 + sh], rtags.r_data[1 + sh : 1 + sh + lb]
        buf = Signal(bits + bus)
        have = Signal(range(bits + bus + 1))
        left = Signal(lb)
        started = Signal()
        n_left = Mux(started, left, t_len)
        is_up = rtags.r_rdy & (kind == UP)
        # Offer an element once its bits are in.
        m.d.comb += [
            ur.valid.eq(is_up & started & (have >= bits)),
            ur.payload.eq(buf[:bits]),
        ]
        emit = ur.valid & ur.ready
        h1 = Signal.like(have)
        b1 = Signal.like(buf)
        m.d.comb += [h1.eq(have - Mux(emit, bits, 0)), b1.eq(Mux(emit, buf >> bits, buf))]
        n1 = n_left - emit
        want = is_up & (n1 != 0) & (~started | (h1 < bits))
        m.d.comb += r.ready.eq(Mux(kind == OLD, rtags.r_rdy & olds.w_rdy, want))
        got = r.valid & r.ready
        m.d.comb += [olds.w_en.eq(got & (kind == OLD)), olds.w_data.eq(r.payload)]
        with m.If(got & (kind == UP)):
            with m.If(~started):
                m.d.sync += [buf.eq(r.payload >> t_off), have.eq(bus - t_off)]
            with m.Else():
                m.d.sync += [buf.eq(b1 | (r.payload << h1)), have.eq(h1 + bus)]
        with m.Elif(emit):
            m.d.sync += [buf.eq(b1), have.eq(h1)]
        with m.If(got & (kind == UP) & ~started):
            m.d.sync += [started.eq(1), left.eq(t_len)]
        with m.If(emit):
            m.d.sync += left.eq(left - 1)
        done_up = emit & (left == 1)
        m.d.comb += rtags.r_en.eq((got & (kind == OLD)) | done_up)
        with m.If(done_up):
            m.d.sync += [started.eq(0), have.eq(0)]

    def _writes(self, m: Module, wtags: fifo.SyncFIFO, olds: fifo.SyncFIFO) -> None:
        """The master's elements packed into words; part-covered end words merged."""
        bits, bus, sh, lb = self.bits, self.bus_bits, self.shift, self.len_bits
        w, uw = self.port.w, self.up.w
        t_off = wtags.r_data[:sh]
        t_len = wtags.r_data[sh : sh + lb]
        t_first, t_last = wtags.r_data[sh + lb], wtags.r_data[sh + lb + 1]
        buf = Signal(bits + bus)
        have = Signal(range(bits + bus + 1))
        left = Signal(lb)
        started = Signal()
        old = Signal(bus)  # the first word's old bits, kept for a word part-covered twice
        old_kept = Signal()

        # Start: the first word's bits below the offset come from its old value.
        start = wtags.r_rdy & ~started & (~t_first | olds.r_rdy)
        with m.If(start):
            keep = Mux(t_first, olds.r_data & ((Const(1, bus + 1) << t_off) - 1), 0)
            m.d.sync += [buf.eq(keep), have.eq(Mux(t_first, t_off, 0)), left.eq(t_len)]
            m.d.sync += [started.eq(1), old.eq(olds.r_data), old_kept.eq(t_first)]
        # A whole word out; the final, part-covered word merges the old bits above.
        whole = started & (have >= bus)
        tail = started & (left == 0) & (have != 0) & (have < bus)
        # The last word's old value: its own read, or the first word's (one word, both ends).
        last_single = old_kept & (t_off + t_len * bits < bus)
        tail_old = Mux(last_single, old, olds.r_data)
        tail_ok = ~t_last | last_single | olds.r_rdy
        mask = (Const(1, bus + 1) << have) - 1
        merged = (buf[:bus] & mask) | (tail_old & ~mask[:bus])
        m.d.comb += [
            w.valid.eq(whole | (tail & tail_ok)),
            w.payload.eq(Mux(whole, buf[:bus], Mux(t_last, merged, buf[:bus]))),
        ]
        out = w.valid & w.ready
        emit = out & whole
        h1 = Signal.like(have)
        b1 = Signal.like(buf)
        m.d.comb += [h1.eq(have - Mux(emit, bus, 0)), b1.eq(Mux(emit, buf >> bus, buf))]
        take = started & (left != 0) & (h1 < bus) & uw.valid
        m.d.comb += uw.ready.eq(take)
        with m.If(~start):
            m.d.sync += [
                buf.eq(b1 | Mux(take, uw.payload << h1, 0)),
                have.eq(h1 + Mux(take, bits, 0)),
            ]
        with m.If(take):
            m.d.sync += left.eq(left - 1)
        finish_tail = out & tail
        finish_even = started & (left == 0) & (have == 0)
        with m.If(finish_tail | finish_even):
            m.d.sync += [started.eq(0), have.eq(0), old_kept.eq(0)]
        m.d.comb += [
            wtags.r_en.eq(finish_tail | finish_even),
            olds.r_en.eq((start & t_first) | (finish_tail & t_last & ~last_single)),
        ]
