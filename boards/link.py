"""Gateware of the UART host link: frames in, accelerator streams, frames out.

:class:`HostLink` implements the board side of :mod:`boards.protocol` (the frame
format is documented there, once, for gateware and host driver alike) between a
byte stream from :class:`~boards.uart.UartRx`, a byte stream to
:class:`~boards.uart.UartTx` and the ``wr`` / ``cmd`` / ``o`` streams of an
:class:`~barista_hw.accelerator.Accelerator`. :class:`LinkedAccelerator` is the
whole thing behind two serial pins: what a board top instantiates and what the
Verilator model of the board simulates.

Result beats go into a ring of ``result_depth`` beats; ``o`` is held back while
the ring is full, so a slow line only stalls the engine.

Received bytes must be at least 3 clock cycles apart (header checks take two
cycles between the last header byte and the first payload byte); a UART byte takes
10 bit times of at least 4 cycles each, so the line always satisfies this.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.hdl import Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError
from barista_hw.accelerator import Accelerator, run_layout, write_layout
from barista_hw.config import AcceleratorConfig
from barista_hw.engine import CYCLE_BITS, output_layout
from barista_hw.memory import collision_free_memory
from barista_hw.pipeline import replicate
from barista_hw.targets import LINK_RESULT_DEPTH

from . import protocol as P
from .uart import UartRx, UartTx

#: Bits of a wide link register (a word or beat) per copy of its registered control:
#: about one block RAM's width, the ring's or the buffers', whose words pass through it.
GROUP_BITS = 36


def grouped_control(m: Module, ops: Value, width: int, name: str) -> list[tuple[int, int, Signal]]:
    """``ops`` registered once per :data:`GROUP_BITS` bits of a ``width``-bit register.

    Returns ``(lo, hi, copy)`` per group: bits ``lo:hi`` act on ``copy``, ``ops`` of the
    cycle before. A decode of the link's FSM used as the enable of a whole word or beat
    would be one net spanning the die, to block RAMs all over it (it was the critical
    path of a routed build, see ``docs/rtl-timing.md``); the copies sit beside their bits.
    """
    edges = [*range(0, width, GROUP_BITS), width]
    groups = list(zip(edges[:-1], edges[1:], strict=True))
    copies = replicate(m, ops, len(groups), name)
    return [(lo, hi, op) for (lo, hi), op in zip(groups, copies, strict=True)]


def crc16_step(crc: Value, byte: Value) -> Value:
    """CRC-16/CCITT-FALSE after one more byte (MSB first), as XOR logic."""
    c = [crc[i] for i in range(16)]
    for i in range(8):
        fb = c[15] ^ byte[7 - i]
        c = [fb] + c[:15]
        c[5] = c[5] ^ fb
        c[12] = c[12] ^ fb
    return Cat(*c)


def _bytes_const(data: bytes) -> Const:
    return Const(int.from_bytes(data, "little"), 8 * len(data))


@dataclass(frozen=True)
class _Ring:
    """The result ring as the responder sees it: its read side and its beat counters."""

    read: ReadPort
    ring_q: Signal  # the read port's data, registered
    written: Signal  # beats of the current chunk produced
    released: Signal  # beats the host confirmed (freed)
    dbits: int  # address bits of the ring


class _Request:
    """The request being received: header, payload assembly, checks and retry state."""

    def __init__(self, geo: P.LinkGeometry, wr_addr_bits: int, divisor: int) -> None:
        self.hdr = Signal(56)  # TYPE, SEQ, ADDR[3], COUNT[2] as they arrived (byte 0 lowest)
        self.r_type, self.r_seq = self.hdr[0:8], self.hdr[8:16]
        self.r_addr, self.r_count = self.hdr[16:40], self.hdr[40:56]
        self.crc = Signal(16)
        self.idx = Signal(4)  # header byte index
        self.wb_max = max(geo.a_word_bytes, geo.b_word_bytes, geo.run_bytes)
        self.shreg = Signal(8 * self.wb_max)  # payload bytes enter at the top
        self.in_word = Signal(range(self.wb_max + 1))
        self.word_idx = Signal(P.COUNT_BITS)
        self.pay_done = Signal()
        self.crc_cnt = Signal()
        self.last_seq = Signal(8)
        self.last_run = Signal()  # the last request executed was a RUN with SEQ last_seq
        self.is_a = self.r_type == P.Type.WRITE_A
        self.is_write = (self.r_type == P.Type.WRITE_A) | (self.r_type == P.Type.WRITE_B)
        self.byte_in = Signal(8)
        # shreg and wr_bits take a payload byte a cycle after the FSM has counted it
        # (grouped_control), with the byte as it was then.
        self.byte_q = Signal(8, reset_less=True)
        self.shifted = Cat(self.shreg[8:], self.byte_q)
        self.shift_in = Signal()  # the byte is part of the payload (shreg takes it)
        self.word_end = Signal()  # and ends a buffer word (wr_bits takes it, then it is written)
        # The select and address of the word being received (see HostLink._buffer_writes).
        self.wr_sel_d = Signal()
        self.wr_addr_d = Signal(wr_addr_bits)
        # ``cmd.valid`` is a register of its own, not a decode of the FSM state: its
        # acceptance loads registers all over the accelerator.
        self.cmd_valid = Signal()
        self.hdr_ok = Signal()
        self.wr_bad = Signal()
        self.rd_bad = Signal()
        # READ waits for its last beat through a registered compare (no adder in front of
        # the FSM); ``written`` only grows meanwhile, so a flag a cycle old is safe.
        self.rd_end = Signal(P.ADDR_BITS + 1)
        self.rd_have = Signal()
        # Cycles since the last byte arrived, up to ``timeout`` (the line is quiet).
        self.timeout = P.IDLE_BYTE_TIMES * 10 * divisor
        self.quiet = Signal(range(self.timeout + 1))


class _Response:
    """The response being sent: header fields, payload shift register and READ progress."""

    def __init__(self, geo: P.LinkGeometry) -> None:
        self.t_code = Signal(8)
        self.t_len = Signal(16)
        self.t_idx = Signal(16)  # header byte / payload byte index
        self.t_crc = Signal(16)
        pay_bytes = max(P.IDENT_LEN, P.STATUS_LEN, geo.beat_bytes)
        self.psh = Signal(8 * pay_bytes)  # the payload being sent, low byte first
        # What psh does next cycle (one-hot, set by the FSM): load the ident, the status
        # or the ring's beat, or shift out a byte (see HostLink._payload_shift_register).
        self.psh_op = Signal(4)
        self.load_ident, self.load_status, self.load_ring, self.shift_out = self.psh_op
        self.shifting = Signal()  # psh shifts this cycle
        self.t_read = Signal()  # the payload comes from the ring
        self.beat = Signal(P.COUNT_BITS)  # beats of a READ answer sent
        self.in_beat = Signal(range(geo.beat_bytes + 1))
        self.stop_wait = Signal(5)


class HostLink(wiring.Component):
    """The request parser, executor and responder of :mod:`boards.protocol`.

    Ports:

    * ``rx``: ``In(stream.Signature(8))``, bytes from the line; always ready.
    * ``tx``: ``Out(stream.Signature(8))``, bytes to the line.
    * ``wr``: ``Out(stream.Signature(write_layout(cfg)))``, buffer writes; the
      accelerator's ``wr`` is always ready, so ``wr.ready`` is not looked at.
    * ``cmd``: ``Out(stream.Signature(run_layout(cfg)))``, the RUN requests.
    * ``o``: ``In(stream.Signature(output_layout(cfg.engine)))``, result beats into the
      ring; not ready while the ring is full.
    * ``busy``: ``In(1)`` and ``cycles``: ``In(CYCLE_BITS)``, the accelerator's status,
      reported by STATUS; while ``busy``, a READ waits for its beats and ``idle`` is low.
    * ``idle``: ``Out(1)``, no request in progress, the line quiet for
      :data:`boards.protocol.IDLE_BYTE_TIMES` byte times and the accelerator idle.
    """

    def __init__(
        self, cfg: AcceleratorConfig, result_depth: int = LINK_RESULT_DEPTH, divisor: int = 16
    ) -> None:
        self.cfg = cfg
        self.geo = P.LinkGeometry.from_config(cfg, result_depth)
        if result_depth * self.geo.beat_bytes > 0xFFFF:
            raise InputError(
                f"result_depth {result_depth} x {self.geo.beat_bytes} bytes per beat exceeds "
                "the 16-bit response length"
            )
        self.divisor = divisor
        super().__init__(
            {
                "rx": In(stream.Signature(8)),
                "tx": Out(stream.Signature(8)),
                "wr": Out(stream.Signature(write_layout(cfg))),
                "cmd": Out(stream.Signature(run_layout(cfg))),
                "o": In(stream.Signature(output_layout(cfg.engine))),
                "busy": In(1),
                "cycles": In(CYCLE_BITS),
                "idle": Out(1),  # no request in progress and the accelerator idle
            }
        )

    def elaborate(self, platform: object) -> Module:
        """The datapaths (ring, payload, buffer writes, run command), then the protocol's
        FSM, one method per group of states, then the response payload register."""
        m = Module()
        ring = self._result_ring(m)
        req = _Request(self.geo, len(self.wr.payload.addr), self.divisor)
        self._receive(m, req)
        self._buffer_writes(m, req)
        self._run_command(m, req)
        rsp = _Response(self.geo)
        m.d.sync += rsp.shifting.eq(rsp.shift_out)
        m.d.comb += ring.read.addr.eq((ring.released + rsp.beat)[: ring.dbits])  # beat to send
        self._idle_timer(m, req)
        m.d.comb += self.tx.payload.eq(0)  # the send states drive it
        m.d.sync += req.rd_have.eq(ring.written >= req.rd_end)  # a READ's beats are all there
        with m.FSM() as fsm:
            self._header_states(m, req, rsp, ring)
            self._dispatch_state(m, req, rsp, ring)
            self._payload_states(m, req, rsp, ring)
            self._read_wait_state(m, req, rsp)
            self._send_header_state(m, req, rsp)
            self._send_payload_states(m, req, rsp)
        m.d.comb += self.idle.eq(fsm.ongoing("HUNT") & ~self.busy & (req.quiet == req.timeout))
        # crc_cnt starts at 0 for the response CRC: every path into RSP_* passes CHECK_HDR,
        # which clears it, or PAYLOAD, which leaves it 1 -> clear it on the way.
        with m.If(fsm.ongoing("CHECK_PAY") | fsm.ongoing("ISSUE") | fsm.ongoing("READ_WAIT")):
            m.d.sync += req.crc_cnt.eq(0)
        self._payload_shift_register(m, rsp, ring)
        return m

    # -- datapaths ---------------------------------------------------------------------------
    def _result_ring(self, m: Module) -> _Ring:
        """The ring of result beats, written from ``o``; ``o.ready`` while it has room.

        Reads (of beats written earlier, at most D - 1 behind the writer) never use the
        word being written: the read port may return anything then.
        """
        D, C, w = self.geo.result_depth, self.geo.cols, self.geo.lane_bits
        dbits = max(1, (D - 1).bit_length())
        ring = collision_free_memory(unsigned(C * w), D)
        m.submodules.ring = ring
        ring_w, ring_r = ring.write_port(), ring.read_port(domain="sync")
        # The block RAM's output (no output register: a slow clock-to-out) goes to one
        # register, which the placer can put beside it, before the payload's muxes.
        ring_q = Signal.like(ring_r.data, reset_less=True)
        m.d.sync += ring_q.eq(ring_r.data)
        written = Signal(P.ADDR_BITS)
        released = Signal(P.ADDR_BITS)
        # ``o.ready`` is a register, so no path runs from the ring's counters into the
        # engine: it looks one beat ahead (at most one beat arrives while it updates).
        o_ready = Signal()
        m.d.sync += o_ready.eq((written - released)[: dbits + 1] < D - 1)
        m.d.comb += [
            self.o.ready.eq(o_ready),
            ring_w.addr.eq(written[:dbits]),
            ring_w.data.eq(self.o.payload.data.as_value()),
            ring_w.en.eq(self.o.valid & o_ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += written.eq(written + 1)
        return _Ring(ring_r, ring_q, written, released, dbits)

    def _receive(self, m: Module, req: _Request) -> None:
        """Take every byte of ``rx`` into ``byte_in``, and a cycle later into ``byte_q``."""
        m.d.comb += [req.byte_in.eq(self.rx.payload), self.rx.ready.eq(1)]
        m.d.sync += req.byte_q.eq(req.byte_in)

    def _buffer_writes(self, m: Module, req: _Request) -> None:
        """Payload bytes into ``shreg``; each complete buffer word out on ``wr``.

        A word ends with the byte the FSM flags ``word_end``; ``wr_bits`` takes it a cycle
        later (with ``shreg``, see :func:`grouped_control`) and ``wr`` sends it the cycle
        after, with the select and address that waited with it. The accelerator's ``wr``
        is always ready.
        """
        geo = self.geo
        wr_valid = Signal()
        # Named as Amaranth names an untraced signal, as in the board builds measured so
        # far: names order the netlist, and synthesis and placement follow that order.
        wr_sel = Signal(name="$signal")
        wr_addr = Signal(len(self.wr.payload.addr))
        wr_bits = Signal(8 * req.wb_max)
        word_end_q = Signal()
        m.d.sync += [word_end_q.eq(req.word_end), wr_valid.eq(word_end_q)]
        with m.If(word_end_q):
            m.d.sync += [wr_sel.eq(req.wr_sel_d), wr_addr.eq(req.wr_addr_d)]
        shreg, shifted = req.shreg, req.shifted
        for lo, hi, op in grouped_control(m, Cat(req.shift_in, req.word_end), len(shreg), "pay_op"):
            with m.If(op[0]):
                m.d.sync += shreg[lo:hi].eq(shifted[lo:hi])
            with m.If(op[1]):
                m.d.sync += wr_bits[lo:hi].eq(shifted[lo:hi])
        off_a = 8 * (req.wb_max - geo.a_word_bytes)
        off_b = 8 * (req.wb_max - geo.b_word_bytes)
        data_a = wr_bits[off_a : off_a + geo.rows * geo.lane_bits]
        data_b = wr_bits[off_b : off_b + geo.cols * geo.lane_bits]
        data = self.wr.payload.data.as_value()
        m.d.comb += [
            self.wr.valid.eq(wr_valid),
            self.wr.payload.sel.eq(wr_sel),
            self.wr.payload.addr.eq(wr_addr),
            data.eq(Mux(wr_sel, data_b, data_a)),
        ]
        assert len(data) == max(geo.rows, geo.cols) * geo.lane_bits

    def _run_command(self, m: Module, req: _Request) -> None:
        """``cmd``: the run command as the payload left it in ``shreg``, valid from the FSM."""
        run_bits = run_layout(self.cfg).size
        off_run = 8 * (req.wb_max - self.geo.run_bytes)
        m.d.comb += [
            self.cmd.payload.as_value().eq(req.shreg[off_run : off_run + run_bits]),
            self.cmd.valid.eq(req.cmd_valid),
        ]

    def _idle_timer(self, m: Module, req: _Request) -> None:
        """``quiet`` counts the cycles since the last byte, up to ``timeout``."""
        with m.If(self.rx.valid):
            m.d.sync += req.quiet.eq(0)
        with m.Elif(req.quiet != req.timeout):
            m.d.sync += req.quiet.eq(req.quiet + 1)

    def _payload_shift_register(self, m: Module, rsp: _Response, ring: _Ring) -> None:
        """``psh``: loads the ident, the status or a ring beat, or shifts a byte out.

        psh acts a cycle after the FSM's decision (:func:`grouped_control`): the header
        goes out before a loaded payload, and the next byte is offered a cycle after the
        last (a UART takes it 10 bit times later anyway).
        """
        ident = _bytes_const(P.ident_payload(self.cfg, self.geo.result_depth))
        status = Cat(self.busy, Const(0, 7), self.cycles, Const(0, 40 - CYCLE_BITS), ring.written)
        psh = rsp.psh
        width = len(psh)
        sources = [Value.cast(v) for v in (ident, status, ring.ring_q, psh >> 8)]  # as psh_op
        sources = [Cat(v, Const(0, width - len(v))) if len(v) < width else v for v in sources]
        for lo, hi, op in grouped_control(m, rsp.psh_op, width, "psh_op"):
            for i, source in enumerate(sources):  # one-hot: at most one applies
                with m.If(op[i]):
                    m.d.sync += psh[lo:hi].eq(source[lo:hi])

    # -- the FSM -----------------------------------------------------------------------------
    def _respond(
        self, m: Module, rsp: _Response, code: int, length: Value | int, load: Value | None = None
    ) -> None:
        """Send a response header with ``code`` and ``length`` next (RSP_HDR)."""
        m.d.sync += [
            rsp.t_code.eq(code),
            rsp.t_len.eq(length),
            rsp.t_idx.eq(0),
            rsp.t_crc.eq(0xFFFF),
        ]
        if load is not None:  # psh loads the payload while the header goes out
            m.d.comb += load.eq(1)
        m.next = "RSP_HDR"

    def _ack(
        self,
        m: Module,
        req: _Request,
        rsp: _Response,
        length: Value | int = 0,
        load: Value | None = None,
    ) -> None:
        """ACK the request (executed): a retried RUN with its SEQ is not run again."""
        self._respond(m, rsp, P.Code.ACK, length, load)
        m.d.sync += [req.last_seq.eq(req.r_seq), req.last_run.eq(req.r_type == P.Type.RUN)]

    def _header_states(self, m: Module, req: _Request, rsp: _Response, ring: _Ring) -> None:
        """HUNT for SYNC, take the HEADER, CHECK_HDR: its CRC and ranges, registered."""
        cfg, D = self.cfg, self.geo.result_depth
        with m.State("HUNT"):
            with m.If(self.rx.valid & (req.byte_in == P.SYNC_REQ)):
                m.d.sync += [req.crc.eq(0xFFFF), req.idx.eq(0)]
                m.next = "HEADER"
        with m.State("HEADER"):
            with m.If(self.rx.valid):
                m.d.sync += [req.crc.eq(crc16_step(req.crc, req.byte_in)), req.idx.eq(req.idx + 1)]
                with m.If(req.idx < 7):
                    m.d.sync += req.hdr.eq(Cat(req.hdr[8:], req.byte_in))
                with m.If(req.idx == 8):
                    m.next = "CHECK_HDR"
            with m.Elif(req.quiet == req.timeout):
                m.next = "HUNT"
        with m.State("CHECK_HDR"):
            # The range checks are registered here and acted on in DISPATCH: a frame
            # costs one more cycle, and no path runs from an adder into the FSM.
            depth = Mux(req.is_a, cfg.a_depth, cfg.b_depth)
            r_addr, r_count = req.r_addr, req.r_count
            m.d.sync += [
                req.crc.eq(0xFFFF),
                req.in_word.eq(0),
                req.word_idx.eq(0),
                req.pay_done.eq(0),
                req.crc_cnt.eq(0),
                rsp.t_read.eq(0),
                req.hdr_ok.eq(req.crc == 0),
                req.rd_end.eq(r_addr + r_count),
                req.wr_bad.eq((r_count == 0) | (r_addr + r_count > depth)),
                req.rd_bad.eq(
                    (r_count == 0)
                    | (r_count > D)
                    | (r_addr < ring.released)
                    | (r_addr > ring.written)
                ),
            ]
            m.next = "DISPATCH"

    def _dispatch_state(self, m: Module, req: _Request, rsp: _Response, ring: _Ring) -> None:
        """DISPATCH on the type: to the payload, an answer, a READ's wait, or silence."""
        with m.State("DISPATCH"):
            with m.If(~req.hdr_ok):
                m.next = "HUNT"  # header unknown: stay silent, the host times out
            with m.Elif(req.is_write):
                with m.If(req.wr_bad):
                    self._respond(m, rsp, P.Code.NAK_BAD, 0)
                with m.Else():
                    m.next = "PAYLOAD"
            with m.Elif(req.r_type == P.Type.RUN):
                m.next = "PAYLOAD"
            with m.Elif(req.r_type == P.Type.IDENT):
                self._ack(m, req, rsp, P.IDENT_LEN, rsp.load_ident)
            with m.Elif(req.r_type == P.Type.STATUS):
                self._ack(m, req, rsp, P.STATUS_LEN, rsp.load_status)
            with m.Elif(req.r_type == P.Type.READ):
                with m.If(req.rd_bad):
                    self._respond(m, rsp, P.Code.NAK_BAD, 0)
                with m.Else():
                    m.d.sync += [ring.released.eq(req.r_addr), rsp.stop_wait.eq(0)]
                    m.next = "READ_WAIT"
            with m.Else():
                self._respond(m, rsp, P.Code.NAK_BAD, 0)

    def _payload_states(self, m: Module, req: _Request, rsp: _Response, ring: _Ring) -> None:
        """PAYLOAD bytes and their CRC, CHECK_PAY, and ISSUE a RUN to the accelerator."""
        with m.State("PAYLOAD"):
            with m.If(self.rx.valid):
                m.d.sync += req.crc.eq(crc16_step(req.crc, req.byte_in))
                with m.If(~req.pay_done):
                    self._payload_byte(m, req)
                with m.Else():
                    m.d.sync += req.crc_cnt.eq(1)
                    with m.If(req.crc_cnt):
                        m.next = "CHECK_PAY"
            with m.Elif(req.quiet == req.timeout):
                m.next = "HUNT"
        with m.State("CHECK_PAY"):
            with m.If(req.crc != 0):
                self._respond(m, rsp, P.Code.NAK_CRC, 0)
            with m.Elif(req.is_write):
                self._ack(m, req, rsp)
            with m.Elif(req.last_run & (req.last_seq == req.r_seq)):
                self._ack(m, req, rsp)  # a retried RUN whose ACK was lost: it ran already
            with m.Else():
                m.d.sync += req.cmd_valid.eq(1)
                m.next = "ISSUE"
        with m.State("ISSUE"):
            with m.If(self.cmd.ready):
                # A new chunk: number its result beats from 0 (all earlier ones were read).
                m.d.sync += [ring.written.eq(0), ring.released.eq(0), req.cmd_valid.eq(0)]
                self._ack(m, req, rsp)

    def _payload_byte(self, m: Module, req: _Request) -> None:
        """Count a payload byte (``shreg`` takes it); the last of a buffer word sends the word."""
        geo = self.geo
        m.d.comb += req.shift_in.eq(1)
        m.d.sync += req.in_word.eq(req.in_word + 1)
        with m.If(req.is_write):
            last_byte = Mux(req.is_a, geo.a_word_bytes - 1, geo.b_word_bytes - 1)
            with m.If(req.in_word == last_byte):
                m.d.comb += req.word_end.eq(1)
                m.d.sync += [
                    req.in_word.eq(0),
                    req.wr_sel_d.eq(~req.is_a),
                    req.wr_addr_d.eq(req.r_addr + req.word_idx),
                    req.word_idx.eq(req.word_idx + 1),
                ]
                with m.If(req.word_idx == req.r_count - 1):
                    m.d.sync += req.pay_done.eq(1)
        with m.Elif(req.in_word == geo.run_bytes - 1):
            m.d.sync += req.pay_done.eq(1)

    def _read_wait_state(self, m: Module, req: _Request, rsp: _Response) -> None:
        """READ_WAIT until the ring holds the beats asked for (NAK if the accelerator stops)."""
        with m.State("READ_WAIT"):
            with m.If(req.rd_have):
                m.d.sync += [rsp.beat.eq(0), rsp.in_beat.eq(0), rsp.t_read.eq(1)]
                # count * beat_bytes as shifted adds: a constant product would take a DSP
                bb = self.geo.beat_bytes
                length = sum(req.r_count << i for i in range(bb.bit_length()) if bb >> i & 1)
                self._ack(m, req, rsp, length)
            with m.Elif(self.busy | self.o.valid):
                m.d.sync += rsp.stop_wait.eq(0)
            with m.Elif(rsp.stop_wait == 31):
                # The accelerator stopped short of those beats.
                self._respond(m, rsp, P.Code.NAK_BAD, 0)
            with m.Else():
                m.d.sync += rsp.stop_wait.eq(rsp.stop_wait + 1)

    def _send_header_state(self, m: Module, req: _Request, rsp: _Response) -> None:
        """RSP_HDR: the response header's bytes, its CRC taken over bytes 1 to 5."""
        tx = self.tx
        t_len, t_crc, t_idx = rsp.t_len, rsp.t_crc, rsp.t_idx
        hdr_bytes = Cat(
            Const(P.SYNC_RSP, 8),
            rsp.t_code,
            req.r_type,
            req.r_seq,
            t_len[:8],
            t_len[8:],
            t_crc[8:],
            t_crc[:8],
        )
        with m.State("RSP_HDR"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(hdr_bytes.word_select(t_idx[:3], 8))]
            with m.If(tx.ready):
                m.d.sync += t_idx.eq(t_idx + 1)
                with m.If((t_idx >= 1) & (t_idx <= 5)):
                    m.d.sync += t_crc.eq(crc16_step(t_crc, tx.payload))
                with m.If(t_idx == 7):
                    m.d.sync += [t_idx.eq(0), t_crc.eq(0xFFFF)]
                    with m.If(t_len == 0):
                        m.next = "HUNT"
                    with m.Elif(rsp.t_read):
                        m.next = "RSP_LOAD"
                    with m.Else():
                        m.next = "RSP_PAY"

    def _send_payload_states(self, m: Module, req: _Request, rsp: _Response) -> None:
        """RSP_LOAD* fetch a ring beat into psh, RSP_PAY sends psh's bytes, RSP_CRC the CRC."""
        tx, t_crc, t_idx = self.tx, rsp.t_crc, rsp.t_idx
        with m.State("RSP_LOAD"):
            m.next = "RSP_LOAD2"  # the ring's read port answers the next cycle
        with m.State("RSP_LOAD2"):
            m.d.comb += rsp.load_ring.eq(1)  # ring_q holds it next cycle, and psh loads it
            m.next = "RSP_LOAD3"
        with m.State("RSP_LOAD3"):
            m.next = "RSP_PAY"
        with m.State("RSP_PAY"):
            # A byte is offered once psh has shifted the one before out.
            m.d.comb += [tx.valid.eq(~rsp.shifting), tx.payload.eq(rsp.psh[:8])]
            with m.If(tx.ready & ~rsp.shifting):
                m.d.comb += rsp.shift_out.eq(1)
                m.d.sync += [t_crc.eq(crc16_step(t_crc, tx.payload)), t_idx.eq(t_idx + 1)]
                with m.If(t_idx == rsp.t_len - 1):
                    m.next = "RSP_CRC"
                with m.Elif(rsp.t_read):
                    m.d.sync += rsp.in_beat.eq(rsp.in_beat + 1)
                    with m.If(rsp.in_beat == self.geo.beat_bytes - 1):
                        m.d.sync += [rsp.in_beat.eq(0), rsp.beat.eq(rsp.beat + 1)]
                        m.next = "RSP_LOAD"
        with m.State("RSP_CRC"):
            m.d.comb += [
                tx.valid.eq(1),
                tx.payload.eq(Mux(req.crc_cnt, t_crc[:8], t_crc[8:])),
            ]
            with m.If(tx.ready):
                m.d.sync += req.crc_cnt.eq(~req.crc_cnt)
                with m.If(req.crc_cnt):
                    m.next = "HUNT"


class LinkedAccelerator(wiring.Component):
    """An :class:`Accelerator` behind the UART host link: ports ``rx``, ``tx`` (and ``idle``).

    ``divisor``: clock cycles per UART bit (clock frequency / baud rate).
    """

    def __init__(
        self, cfg: AcceleratorConfig, divisor: int, result_depth: int = LINK_RESULT_DEPTH
    ) -> None:
        self.cfg = cfg
        self.divisor = divisor
        self.result_depth = result_depth
        P.LinkGeometry.from_config(cfg, result_depth)  # early errors
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "idle": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        link = HostLink(self.cfg, self.result_depth, self.divisor)
        add_serial_link(m, link, self.divisor, self)
        m.submodules.accelerator = acc = Accelerator(self.cfg)
        connect_accelerator(m, link, acc)
        return m


def connect_accelerator(m: Module, link: HostLink, acc: Accelerator) -> None:
    """The link's accelerator side to ``acc``: buffer writes, commands, results, status."""
    wiring.connect(m, link.wr, acc.wr)
    wiring.connect(m, link.cmd, acc.cmd)
    wiring.connect(m, acc.o, link.o)
    m.d.comb += [link.busy.eq(acc.busy), link.cycles.eq(acc.cycles)]


def add_serial_link(m: Module, link: HostLink, divisor: int, pins: object) -> None:
    """``link`` and a UART receiver and transmitter as submodules of ``m``, wired to
    ``pins`` (a component with ``rx``, ``tx`` and ``idle``); the caller connects the
    link's accelerator side (``wr``, ``cmd``, ``o``, ``busy``, ``cycles``)."""
    m.submodules.uart_rx = urx = UartRx(divisor)
    m.submodules.uart_tx = utx = UartTx(divisor)
    m.submodules.link = link
    wiring.connect(m, urx.o, link.rx)
    wiring.connect(m, link.tx, utx.i)
    m.d.comb += [
        urx.rx.eq(pins.rx),  # type: ignore[attr-defined]
        pins.tx.eq(utx.tx),  # type: ignore[attr-defined]
        pins.idle.eq(link.idle),  # type: ignore[attr-defined]
    ]
