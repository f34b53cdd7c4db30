"""Gateware of the device host link: frames in, the device's streams and DRAM, frames out.

:class:`DeviceLink` is the board side of :mod:`boards.device_protocol` (the requests are
documented there, once, for gateware and host alike; the framing is
:mod:`boards.protocol`'s). It sits between a byte stream from a UART receiver, a byte
stream to a UART transmitter, a master of the device's memory port (the host's DRAM
reads and writes) and the device's ``prog``, ``host_in``, ``host_out`` and ``readback``
streams and status. :class:`LinkedDevice` is the whole device behind two serial pins
and a memory port: what the board top instantiates and what the tests simulate.

A request's payload goes into a staging memory first and is executed (written to DRAM
or queued for ``prog`` / ``host_in``) only once its CRC checks; the queues are FIFOs,
so the link never waits on the device (it always answers STATUS and HOST_OUT, which
the device may need to go on). A ``prog`` beat is assembled from its queued words in
a shift register, padded with zeros to the beat's width.

The link handles a payload byte in one cycle and needs at least 3 cycles between
bytes (a UART byte takes 10 bit times of at least 4 cycles each).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.hdl import Value
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from barista_hw.device.memory import DeviceConfig
from barista_hw.device.rtl.decode import REG_BITS, write_layout
from barista_hw.device.rtl.device import Device
from barista_hw.device.rtl.port import ADDR_BITS, LEN_BITS, port_signature
from barista_hw.device.rtl.sequencer import COUNT_BITS, UNITS

from . import device_protocol as D
from . import protocol as P
from .link import add_serial_link, crc16_step

#: Sources of a response payload: the info register, the staging memory, the out ring.
SRC_INFO, SRC_STAGING, SRC_RING = 0, 1, 2


def _const_bytes(data: bytes) -> Const:
    return Const(int.from_bytes(data, "little"), 8 * len(data))


def _u32(v: Value) -> Value:
    return Cat(v, Const(0, 32 - len(v))) if len(v) < 32 else v[:32]


class DeviceLink(wiring.Component):
    """The request parser, executor and responder of :mod:`boards.device_protocol`.

    Ports:

    * ``rx``: ``In(stream.Signature(8))``, bytes from the line (always ready);
      ``tx``: ``Out(stream.Signature(8))``, bytes to the line.
    * ``port``: ``Out(port_signature(16))``, the link's master of the memory port.
    * ``prog``: ``Out(stream.Signature(write_layout()))``, queued register writes;
      ``host_in``: ``Out(stream.Signature(16))``, queued words;
      ``host_out``: ``In(stream.Signature(16))``, into the ring (not ready while full);
      ``readback``: ``In(stream.Signature(32))``, taken by READBACK requests.
    * ``running``, ``cycles``, ``busy_<unit>`` (``In``): the device's status;
      ``mem_ready``: ``In(1)``, the SDRAM is initialised (a STATUS flag); ``scale``:
      ``In(1)``, high in a cycle a SCALE record is taken (counted for STATUS).
    * ``idle``: ``Out(1)``, no request in progress, the line quiet and the device idle.
    """

    def __init__(
        self,
        config: DeviceConfig,
        geo: D.DeviceGeometry,
        ident: bytes,
        divisor: int = 16,
    ) -> None:
        self.config, self.geo, self.ident, self.divisor = config, geo, ident, divisor
        ports = {
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "port": Out(port_signature(D.BUS_BITS)),
            "prog": Out(stream.Signature(write_layout())),
            "host_in": Out(stream.Signature(D.BUS_BITS)),
            "host_out": In(stream.Signature(D.BUS_BITS)),
            "readback": In(stream.Signature(REG_BITS)),
            "running": In(1),
            "cycles": In(COUNT_BITS),
            "mem_ready": In(1),
            "scale": In(1),
            "idle": Out(1),
        }
        ports.update({f"busy_{u}": In(COUNT_BITS) for u in UNITS})
        super().__init__(ports)

    # -- the datapaths -------------------------------------------------------------------------
    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one protocol machine
        m = Module()
        geo = self.geo
        s = _State(geo, self.divisor)
        m.submodules.staging = stg = Memory(shape=D.BUS_BITS, depth=geo.staging, init=[])
        stg_w, stg_r = stg.write_port(), stg.read_port(domain="sync")
        m.submodules.ring = ring = Memory(shape=D.BUS_BITS, depth=geo.out_ring, init=[])
        ring_w, ring_r = ring.write_port(), ring.read_port(domain="sync")
        m.submodules.prog_q = pq = fifo.SyncFIFOBuffered(width=D.BUS_BITS + 1, depth=geo.prog_fifo)
        m.submodules.host_in_q = hq = fifo.SyncFIFOBuffered(
            width=D.BUS_BITS, depth=geo.host_in_fifo
        )
        m.d.comb += [
            self.host_in.valid.eq(hq.r_rdy),
            self.host_in.payload.eq(hq.r_data),
            hq.r_en.eq(self.host_in.ready),
            stg_r.addr.eq(s.ra),
            ring_r.addr.eq(s.ra),
            self.rx.ready.eq(1),
        ]
        self._out_ring(m, s, ring_w)
        self._assembler(m, pq)
        self._idle_timer(m, s)
        with m.If(self.scale):
            m.d.sync += s.scales.eq(s.scales + 1)
        m.d.sync += s.wait1.eq(0)  # a state that moves ``ra`` sets it again
        # Room in the queue of a queued request, registered (the levels only fall meanwhile).
        room = Mux(
            s.r_type == D.DType.HOST_IN,
            hq.level + s.words <= geo.host_in_fifo,
            pq.level + s.words <= geo.prog_fifo,
        )
        m.d.sync += s.room.eq(room)
        status = self._status(s, pq, hq)
        with m.FSM() as fsm:
            self._header_states(m, s)
            self._dispatch(m, s, status)
            self._payload(m, s, stg_w)
            self._check_payload(m, s)
            self._dram_states(m, s, stg_r, stg_w)
            self._queue_state(m, s, stg_r, pq, hq)
            self._send_states(m, s, stg_r, ring_r)
        m.d.comb += self.idle.eq(fsm.ongoing("HUNT") & ~self.running & (s.quiet == s.timeout))
        return m

    def _out_ring(self, m: Module, s: _State, ring_w: object) -> None:
        """``host_out`` into the ring; ready (a register) while it has room for one more."""
        depth, bits = self.geo.out_ring, s.ring_bits
        ready = Signal()
        m.d.sync += ready.eq((s.produced - s.released)[: D.COUNTER_BITS] < depth - 1)
        take = self.host_out.valid & ready
        m.d.comb += [
            self.host_out.ready.eq(ready),
            ring_w.addr.eq(s.produced[:bits]),  # type: ignore[attr-defined]
            ring_w.data.eq(self.host_out.payload),  # type: ignore[attr-defined]
            ring_w.en.eq(take),  # type: ignore[attr-defined]
        ]
        with m.If(take):
            m.d.sync += s.produced.eq(s.produced + 1)

    def _assembler(self, m: Module, pq: fifo.SyncFIFOBuffered) -> None:
        """Queued words -> ``prog`` beats (register writes): shifted in, padded with zeros
        to the beat's words."""
        n = self.geo.beat_words
        beat = Signal(n * D.BUS_BITS)
        shifts = Signal(range(n + 1))
        padding, full = Signal(), Signal()
        word, end = pq.r_data[: D.BUS_BITS], pq.r_data[D.BUS_BITS]
        with m.If(full):
            with m.If(self.prog.ready):
                m.d.sync += [full.eq(0), shifts.eq(0)]
        with m.Elif(padding):
            with m.If(shifts == n):
                m.d.sync += [full.eq(1), padding.eq(0)]
            with m.Else():
                m.d.sync += [
                    beat.eq(Cat(beat[D.BUS_BITS :], Const(0, D.BUS_BITS))),
                    shifts.eq(shifts + 1),
                ]
        with m.Elif(pq.r_rdy):
            m.d.comb += pq.r_en.eq(1)
            m.d.sync += [beat.eq(Cat(beat[D.BUS_BITS :], word)), shifts.eq(shifts + 1)]
            with m.If(end):
                m.d.sync += padding.eq(1)
        payload = self.prog.payload.as_value()
        m.d.comb += [self.prog.valid.eq(full), payload.eq(beat[: len(payload)])]

    def _idle_timer(self, m: Module, s: _State) -> None:
        with m.If(self.rx.valid):
            m.d.sync += s.quiet.eq(0)
        with m.Elif(s.quiet != s.timeout):
            m.d.sync += s.quiet.eq(s.quiet + 1)

    def _status(self, s: _State, pq: fifo.SyncFIFOBuffered, hq: fifo.SyncFIFOBuffered) -> Value:
        """The STATUS payload (:data:`~boards.device_protocol.STATUS_FIELDS`)."""
        flags = Cat(self.running, self.readback.valid, self.mem_ready, Const(0, 13))
        busy = [_u32(getattr(self, f"busy_{u}")) for u in UNITS]
        counters = [s.produced, s.rb_taken, s.scales, pq.level, hq.level]
        value = Cat(flags, _u32(self.cycles), *busy, *(_u32(c) for c in counters))
        assert len(value) == 8 * D.STATUS_BYTES
        return value

    # -- the FSM ---------------------------------------------------------------------------
    def _respond(
        self,
        m: Module,
        s: _State,
        code: int,
        length: Value | int = 0,
        src: int = SRC_INFO,
        info: Value | None = None,
    ) -> None:
        """Send a response header with ``code`` and ``length`` next (RSP_HDR)."""
        m.d.sync += [
            s.t_code.eq(code),
            s.t_len.eq(length),
            s.t_idx.eq(0),
            s.t_crc.eq(0xFFFF),
            s.src.eq(src),
        ]
        if info is not None:
            m.d.sync += s.info.eq(info)
        m.next = "RSP_HDR"

    def _ack(
        self,
        m: Module,
        s: _State,
        length: Value | int = 0,
        src: int = SRC_INFO,
        info: Value | None = None,
    ) -> None:
        """ACK: remember the request, so a retry of it is answered, not executed again."""
        self._respond(m, s, P.Code.ACK, length, src, info)
        m.d.sync += [s.last_seq.eq(s.r_seq), s.last_type.eq(s.r_type), s.have_last.eq(1)]

    def _header_states(self, m: Module, s: _State) -> None:
        """HUNT for SYNC, take the HEADER, CHECK_HDR: CRC and ranges, registered."""
        geo = self.geo
        with m.State("HUNT"):
            with m.If(self.rx.valid & (self.rx.payload == P.SYNC_REQ)):
                m.d.sync += [s.crc.eq(0xFFFF), s.idx.eq(0)]
                m.next = "HEADER"
        with m.State("HEADER"):
            with m.If(self.rx.valid):
                m.d.sync += [s.crc.eq(crc16_step(s.crc, self.rx.payload)), s.idx.eq(s.idx + 1)]
                with m.If(s.idx < 7):
                    m.d.sync += s.hdr.eq(Cat(s.hdr[8:], self.rx.payload))
                with m.If(s.idx == 8):
                    m.next = "CHECK_HDR"
            with m.Elif(s.quiet == s.timeout):
                m.next = "HUNT"
        with m.State("CHECK_HDR"):
            t, count, addr = s.r_type, s.r_count, s.r_addr
            limit = Signal(17)
            known = Signal()
            for kind in D.DType:
                with m.If(t == kind):
                    m.d.comb += [limit.eq(geo.max_count(kind)), known.eq(1)]
            counted = (t != D.DType.IDENT) & (t != D.DType.STATUS) & (t != D.DType.READBACK)
            dram = (t == D.DType.WRITE_DRAM) | (t == D.DType.READ_DRAM)
            carries = (t == D.DType.WRITE_DRAM) | (t == D.DType.HOST_IN)
            c = D.COUNTER_BITS
            m.d.sync += [
                s.hdr_ok.eq(s.crc == 0),
                s.bad.eq(
                    ~known
                    | (counted & ((count == 0) | (count > limit)))
                    | (dram & (addr + count > 1 << ADDR_BITS))
                ),
                s.words.eq(Mux(t == D.DType.REG, (count << 1) + count, Mux(carries, count, 0))),
                s.retry.eq(s.have_last & (s.r_seq == s.last_seq) & (t == s.last_type)),
                s.out_ok.eq((addr - s.released)[:c] <= (s.produced - s.released)[:c]),
                s.out_have.eq((s.produced - addr)[:c]),
                s.rb_again.eq(s.rb_any & (addr == (s.rb_taken - 1)[:c])),
                s.rb_next.eq(addr == s.rb_taken),
                s.crc.eq(0xFFFF),
                s.pay_idx.eq(0),
                s.crc_cnt.eq(0),
            ]
            m.next = "DISPATCH"

    def _dispatch(self, m: Module, s: _State, status: Value) -> None:
        """DISPATCH on the type: a payload to take, or an answer now."""
        t = s.r_type
        ident = _const_bytes(self.ident)
        rb = self.readback
        with m.State("DISPATCH"):
            with m.If(~s.hdr_ok):
                m.next = "HUNT"  # header unknown: stay silent, the host times out
            with m.Elif(s.bad):
                self._respond(m, s, P.Code.NAK_BAD)
            with m.Elif(s.words != 0):
                m.next = "PAYLOAD"
            with m.Elif(t == D.DType.IDENT):
                self._ack(m, s, len(self.ident), SRC_INFO, ident)
            with m.Elif(t == D.DType.STATUS):
                self._ack(m, s, D.STATUS_BYTES, SRC_INFO, status)
            with m.Elif(t == D.DType.READ_DRAM):
                m.d.sync += s.wa.eq(0)
                m.next = "RD_CMD"
            with m.Elif(t == D.DType.HOST_OUT):
                with m.If(s.out_ok):
                    n = Mux(s.out_have < s.r_count, s.out_have, s.r_count)
                    m.d.sync += [s.released.eq(s.r_addr), s.ra.eq(s.r_addr), s.wait1.eq(1)]
                    self._ack(m, s, n << 1, SRC_RING)
                with m.Else():
                    self._respond(m, s, P.Code.NAK_BAD)
            with m.Else():  # READBACK
                with m.If(s.rb_again):
                    self._ack(m, s, 4, SRC_INFO, s.rb_last)
                with m.Elif(s.rb_next & rb.valid):
                    m.d.comb += rb.ready.eq(1)
                    m.d.sync += [
                        s.rb_last.eq(rb.payload),
                        s.rb_taken.eq(s.rb_taken + 1),
                        s.rb_any.eq(1),
                    ]
                    self._ack(m, s, 4, SRC_INFO, rb.payload)
                with m.Elif(s.rb_next):
                    self._ack(m, s, 0)  # no word yet
                with m.Else():
                    self._respond(m, s, P.Code.NAK_BAD)

    def _payload(self, m: Module, s: _State, stg_w: object) -> None:
        """PAYLOAD: bytes into the staging memory as words, then the payload's CRC."""
        with m.State("PAYLOAD"):
            with m.If(self.rx.valid):
                m.d.sync += s.crc.eq(crc16_step(s.crc, self.rx.payload))
                with m.If(s.pay_idx != s.words << 1):
                    m.d.sync += s.pay_idx.eq(s.pay_idx + 1)
                    with m.If(~s.pay_idx[0]):
                        m.d.sync += s.lo.eq(self.rx.payload)
                    with m.Else():
                        m.d.comb += [
                            stg_w.addr.eq(s.pay_idx[1:]),  # type: ignore[attr-defined]
                            stg_w.data.eq(Cat(s.lo, self.rx.payload)),  # type: ignore[attr-defined]
                            stg_w.en.eq(1),  # type: ignore[attr-defined]
                        ]
                with m.Else():
                    m.d.sync += s.crc_cnt.eq(1)
                    with m.If(s.crc_cnt):
                        m.next = "CHECK_PAY"
            with m.Elif(s.quiet == s.timeout):
                m.next = "HUNT"

    def _check_payload(self, m: Module, s: _State) -> None:
        """CHECK_PAY: NAK a bad CRC, answer a retry as before, else execute."""
        t = s.r_type
        queued = (t == D.DType.REG) | (t == D.DType.HOST_IN)
        with m.State("CHECK_PAY"):
            m.d.sync += [s.ra.eq(0), s.wait1.eq(1), s.k.eq(0)]
            with m.If(s.crc != 0):
                self._respond(m, s, P.Code.NAK_CRC)
            with m.Elif(s.retry & queued):
                self._ack(m, s, 2, SRC_INFO, s.last_ok)
            with m.Elif(s.retry):
                self._ack(m, s)  # a WRITE_DRAM whose ACK was lost: done already
            with m.Elif(queued & ~s.room):
                m.d.sync += s.last_ok.eq(0)
                self._ack(m, s, 2, SRC_INFO, 0)
            with m.Elif(queued):
                m.next = "QUEUE"
            with m.Else():
                m.next = "WR_CMD"

    def _dram_states(self, m: Module, s: _State, stg_r: object, stg_w: object) -> None:
        """WR_CMD, WR_DATA: a WRITE_DRAM's words from staging; RD_CMD, RD_DATA: a
        READ_DRAM's words into staging, then answered from it."""
        port = self.port
        m.d.comb += [
            port.cmd.payload.addr.eq(s.r_addr),
            port.cmd.payload.length.eq(s.r_count[:LEN_BITS]),
            port.w.payload.eq(stg_r.data),  # type: ignore[attr-defined]
        ]
        with m.State("WR_CMD"):
            m.d.comb += [port.cmd.valid.eq(1), port.cmd.payload.write.eq(1)]
            with m.If(port.cmd.ready):
                m.next = "WR_DATA"
        with m.State("WR_DATA"):
            m.d.comb += port.w.valid.eq(~s.wait1)
            with m.If(port.w.valid & port.w.ready):
                m.d.sync += [s.ra.eq(s.ra + 1), s.wait1.eq(1)]
                with m.If(s.ra == s.words - 1):
                    self._ack(m, s)
        with m.State("RD_CMD"):
            m.d.comb += [port.cmd.valid.eq(1), port.cmd.payload.write.eq(0)]
            with m.If(port.cmd.ready):
                m.next = "RD_DATA"
        with m.State("RD_DATA"):
            m.d.comb += [
                port.r.ready.eq(1),
                stg_w.addr.eq(s.wa),  # type: ignore[attr-defined]
                stg_w.data.eq(port.r.payload),  # type: ignore[attr-defined]
                stg_w.en.eq(port.r.valid),  # type: ignore[attr-defined]
            ]
            with m.If(port.r.valid):
                m.d.sync += s.wa.eq(s.wa + 1)
                with m.If(s.wa == s.r_count - 1):
                    m.d.sync += [s.ra.eq(0), s.wait1.eq(1)]
                    self._ack(m, s, s.r_count << 1, SRC_STAGING)

    def _queue_state(self, m: Module, s: _State, stg_r: object, pq: object, hq: object) -> None:
        """QUEUE: the staged words into the prog or host_in FIFO (room was checked)."""
        t = s.r_type
        word = stg_r.data  # type: ignore[attr-defined]
        is_reg = t == D.DType.REG
        end = Mux(is_reg, s.k == 2, s.ra == s.words - 1)
        with m.State("QUEUE"):
            with m.If(~s.wait1):
                m.d.sync += [s.ra.eq(s.ra + 1), s.wait1.eq(1), s.k.eq(Mux(s.k == 2, 0, s.k + 1))]
                with m.If(t == D.DType.HOST_IN):
                    m.d.comb += [hq.w_en.eq(1), hq.w_data.eq(word)]  # type: ignore[attr-defined]
                with m.Else():
                    m.d.comb += [pq.w_en.eq(1), pq.w_data.eq(Cat(word, end))]  # type: ignore[attr-defined]
                with m.If(s.ra == s.words - 1):
                    m.d.sync += s.last_ok.eq(1)
                    self._ack(m, s, 2, SRC_INFO, 1)

    def _send_states(self, m: Module, s: _State, stg_r: object, ring_r: object) -> None:
        """RSP_HDR, RSP_PAY (from info, staging or ring, a word a byte pair), RSP_CRC."""
        tx = self.tx
        hdr = Cat(
            Const(P.SYNC_RSP, 8),
            s.t_code,
            s.r_type,
            s.r_seq,
            s.t_len[:8],
            s.t_len[8:],
            s.t_crc[8:],
            s.t_crc[:8],
        )
        m.d.comb += tx.payload.eq(0)
        with m.State("RSP_HDR"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(hdr.word_select(s.t_idx[:3], 8))]
            with m.If(tx.ready):
                m.d.sync += s.t_idx.eq(s.t_idx + 1)
                with m.If((s.t_idx >= 1) & (s.t_idx <= 5)):
                    m.d.sync += s.t_crc.eq(crc16_step(s.t_crc, tx.payload))
                with m.If(s.t_idx == 7):
                    m.d.sync += [s.t_idx.eq(0), s.t_crc.eq(0xFFFF), s.crc_cnt.eq(0)]
                    m.next = "RSP_PAY"
                    with m.If(s.t_len == 0):
                        m.next = "HUNT"
        with m.State("RSP_PAY"):
            word = Mux(s.src == SRC_RING, ring_r.data, stg_r.data)  # type: ignore[attr-defined]
            byte = Mux(s.src == SRC_INFO, s.info[:8], Mux(s.t_idx[0], word[8:], word[:8]))
            m.d.comb += [tx.valid.eq(~s.wait1), tx.payload.eq(byte)]
            with m.If(tx.valid & tx.ready):
                m.d.sync += [
                    s.t_crc.eq(crc16_step(s.t_crc, byte)),
                    s.t_idx.eq(s.t_idx + 1),
                    s.info.eq(s.info >> 8),
                ]
                with m.If(s.t_idx[0]):
                    m.d.sync += [s.ra.eq(s.ra + 1), s.wait1.eq(1)]
                with m.If(s.t_idx == s.t_len - 1):
                    m.next = "RSP_CRC"
        with m.State("RSP_CRC"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(Mux(s.crc_cnt, s.t_crc[:8], s.t_crc[8:]))]
            with m.If(tx.ready):
                m.d.sync += s.crc_cnt.eq(~s.crc_cnt)
                with m.If(s.crc_cnt):
                    m.next = "HUNT"


class _State:
    """The link's registers: the request, its checks, the execution and the response."""

    def __init__(self, geo: D.DeviceGeometry, divisor: int) -> None:
        c = D.COUNTER_BITS
        self.hdr = Signal(56)  # TYPE, SEQ, ADDR[3], COUNT[2] as they arrived
        self.r_type, self.r_seq = self.hdr[0:8], self.hdr[8:16]
        self.r_addr, self.r_count = self.hdr[16:40], self.hdr[40:56]
        self.crc, self.idx = Signal(16), Signal(4)
        self.hdr_ok, self.bad, self.retry, self.room = Signal(), Signal(), Signal(), Signal()
        self.words = Signal(18)
        self.pay_idx = Signal(19)
        self.lo = Signal(8)
        self.crc_cnt = Signal()
        self.last_seq, self.last_type = Signal(8), Signal(8)
        self.have_last, self.last_ok = Signal(), Signal()
        self.ra = Signal(c)  # read address of staging and ring
        self.wait1 = Signal()  # ``ra`` moved: its word is read next cycle
        self.wa = Signal(16)
        self.k = Signal(2)  # word of a REG entry
        self.ring_bits = (geo.out_ring - 1).bit_length()
        self.produced, self.released = Signal(c), Signal(c)
        self.out_ok, self.out_have = Signal(), Signal(c)
        self.rb_taken, self.rb_last = Signal(c), Signal(REG_BITS)
        self.rb_any, self.rb_again, self.rb_next = Signal(), Signal(), Signal()
        self.t_code, self.t_len, self.t_idx, self.t_crc = (
            Signal(8),
            Signal(16),
            Signal(16),
            Signal(16),
        )
        self.scales = Signal(32)
        self.src = Signal(2)
        self.info = Signal(8 * max(D.STATUS_BYTES, D.IDENT_BYTES, 4))
        self.timeout = P.IDLE_BYTE_TIMES * 10 * divisor
        self.quiet = Signal(range(self.timeout + 1))


class LinkedDevice(wiring.Component):
    """The :class:`~barista_hw.device.rtl.device.Device` behind the host link on two
    serial pins: ports ``rx``, ``tx``, ``idle``, ``mem_ready`` (In) and ``port`` (the
    memory port master: the device's and the link's commands, round robin through a
    :class:`~barista_hw.device.rtl.arbiter.PortArbiter`, link first).

    ``make``: builds the :class:`Device` (its sizes); ``divisor``: cycles per UART bit.
    """

    def __init__(self, device: Device, geo: D.DeviceGeometry, ident: bytes, divisor: int) -> None:
        self.device, self.geo, self.ident, self.divisor = device, geo, ident, divisor
        super().__init__(
            {
                "rx": In(1, init=1),
                "tx": Out(1, init=1),
                "idle": Out(1),
                "mem_ready": In(1),
                "port": Out(port_signature(D.BUS_BITS)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        from barista_hw.device.rtl.arbiter import PortArbiter

        m = Module()
        dev = self.device
        link = DeviceLink(dev.config, self.geo, self.ident, self.divisor)
        add_serial_link(m, link, self.divisor, self)
        m.submodules.device = dev
        m.submodules.mem_arb = arb = PortArbiter(2, D.BUS_BITS)
        wiring.connect(m, link.port, arb.m0)
        wiring.connect(m, dev.port, arb.m1)
        wiring.connect(m, arb.port, wiring.flipped(self.port))
        wiring.connect(m, link.prog, dev.prog)
        wiring.connect(m, link.host_in, dev.host_in)
        wiring.connect(m, dev.host_out, link.host_out)
        wiring.connect(m, dev.readback, link.readback)
        # The iteration's end: taken at once, counted for STATUS.
        m.d.comb += [dev.scale.ready.eq(1), link.scale.eq(dev.scale.valid)]
        m.d.comb += [
            link.running.eq(dev.running),
            link.cycles.eq(dev.cycles),
            link.mem_ready.eq(self.mem_ready),
        ]
        for u in UNITS:
            m.d.comb += getattr(link, f"busy_{u}").eq(getattr(dev, f"busy_{u}"))
        return m


assert LEN_BITS == 8  # DeviceGeometry.max_count: one port command per DRAM request
