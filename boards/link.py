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

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.hdl import Value
from amaranth.lib import stream, wiring
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
    cycle before. A decode of the link's FSM as the enable of a whole word or beat,
    which lies beside block RAMs all over the die, took 10.6 ns of routing on one net
    (the critical path of LeNet's first routed build); the copies sit beside their bits.
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


class HostLink(wiring.Component):
    """The request parser, executor and responder of :mod:`boards.protocol`."""

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

    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one FSM, read top-down
        m = Module()
        geo, cfg = self.geo, self.cfg
        R, C, w = geo.rows, geo.cols, geo.lane_bits
        D = geo.result_depth
        dbits = max(1, (D - 1).bit_length())
        rx, tx = self.rx, self.tx

        # -- result ring -------------------------------------------------------------
        # Reads (of beats written earlier, at most D - 1 behind the writer) never use
        # the word being written: the read port may return anything then.
        ring = collision_free_memory(unsigned(C * w), D)
        m.submodules.ring = ring
        ring_w, ring_r = ring.write_port(), ring.read_port(domain="sync")
        # The block RAM's output (no output register: ~6 ns clock-to-out on ECP5) goes to
        # one register, which the placer can put beside it, before the payload's muxes.
        ring_q = Signal.like(ring_r.data, reset_less=True)
        m.d.sync += ring_q.eq(ring_r.data)
        written = Signal(P.ADDR_BITS)  # beats of the current chunk produced
        released = Signal(P.ADDR_BITS)  # beats the host confirmed (freed)
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

        # -- request registers ---------------------------------------------------------
        hdr = Signal(56)  # TYPE, SEQ, ADDR[3], COUNT[2] as they arrived (byte 0 lowest)
        r_type, r_seq = hdr[0:8], hdr[8:16]
        r_addr, r_count = hdr[16:40], hdr[40:56]
        crc = Signal(16)
        idx = Signal(4)  # header byte index
        wb_max = max(geo.a_word_bytes, geo.b_word_bytes, geo.run_bytes)
        shreg = Signal(8 * wb_max)  # payload bytes enter at the top
        in_word = Signal(range(wb_max + 1))
        word_idx = Signal(P.COUNT_BITS)
        pay_done = Signal()
        crc_cnt = Signal()
        last_seq = Signal(8)
        last_run = Signal()  # the last request executed was a RUN with SEQ last_seq
        is_a = r_type == P.Type.WRITE_A
        is_write = (r_type == P.Type.WRITE_A) | (r_type == P.Type.WRITE_B)
        byte_in = Signal(8)
        m.d.comb += [byte_in.eq(rx.payload), rx.ready.eq(1)]
        # shreg and wr_bits take a payload byte a cycle after the FSM has counted it
        # (grouped_control), with the byte as it was then.
        byte_q = Signal(8, reset_less=True)
        m.d.sync += byte_q.eq(byte_in)
        shifted = Cat(shreg[8:], byte_q)
        shift_in = Signal()  # the byte is part of the payload (shreg takes it)
        word_end = Signal()  # and ends a buffer word (wr_bits takes it, then it is written)

        # -- buffer writes (the accelerator's wr is always ready) ------------------------
        # The word's select and address wait a cycle with it, in wr_sel_d and wr_addr_d.
        wr_valid = Signal()
        wr_sel, wr_sel_d = Signal(), Signal()
        wr_addr = Signal(len(self.wr.payload.addr))
        wr_addr_d = Signal.like(wr_addr)
        wr_bits = Signal(8 * wb_max)
        word_end_q = Signal()
        m.d.sync += [word_end_q.eq(word_end), wr_valid.eq(word_end_q)]
        with m.If(word_end_q):
            m.d.sync += [wr_sel.eq(wr_sel_d), wr_addr.eq(wr_addr_d)]
        for lo, hi, op in grouped_control(m, Cat(shift_in, word_end), len(shreg), "pay_op"):
            with m.If(op[0]):
                m.d.sync += shreg[lo:hi].eq(shifted[lo:hi])
            with m.If(op[1]):
                m.d.sync += wr_bits[lo:hi].eq(shifted[lo:hi])
        off_a = 8 * (wb_max - geo.a_word_bytes)
        off_b = 8 * (wb_max - geo.b_word_bytes)
        lanes = max(R, C)
        data_a = wr_bits[off_a : off_a + R * w]
        data_b = wr_bits[off_b : off_b + C * w]
        data = self.wr.payload.data.as_value()
        m.d.comb += [
            self.wr.valid.eq(wr_valid),
            self.wr.payload.sel.eq(wr_sel),
            self.wr.payload.addr.eq(wr_addr),
            data.eq(Mux(wr_sel, data_b, data_a)),
        ]
        assert len(data) == lanes * w

        # -- run command -------------------------------------------------------------------
        run_bits = run_layout(cfg).size
        off_run = 8 * (wb_max - geo.run_bytes)
        # ``cmd.valid`` is a register of its own, not a decode of the FSM state: its
        # acceptance loads registers all over the accelerator.
        cmd_valid = Signal()
        m.d.comb += [
            self.cmd.payload.as_value().eq(shreg[off_run : off_run + run_bits]),
            self.cmd.valid.eq(cmd_valid),
        ]

        # -- response registers --------------------------------------------------------------
        t_code = Signal(8)
        t_len = Signal(16)
        t_idx = Signal(16)  # header byte / payload byte index
        t_crc = Signal(16)
        pay_bytes = max(P.IDENT_LEN, P.STATUS_LEN, geo.beat_bytes)
        psh = Signal(8 * pay_bytes)  # the payload being sent, low byte first
        # What psh does next cycle (one-hot, set by the FSM): load the ident, the status
        # or the ring's beat, or shift out a byte. See "payload shift register" below.
        psh_op = Signal(4)
        load_ident, load_status, load_ring, shift_out = psh_op
        shifting = Signal()  # psh shifts this cycle
        m.d.sync += shifting.eq(shift_out)
        t_read = Signal()  # the payload comes from the ring
        beat = Signal(P.COUNT_BITS)  # beats of a READ answer sent
        in_beat = Signal(range(geo.beat_bytes + 1))
        m.d.comb += ring_r.addr.eq((released + beat)[:dbits])
        stop_wait = Signal(5)
        timeout = P.IDLE_BYTE_TIMES * 10 * self.divisor
        quiet = Signal(range(timeout + 1))
        with m.If(rx.valid):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != timeout):
            m.d.sync += quiet.eq(quiet + 1)

        hdr_bytes = Cat(
            Const(P.SYNC_RSP, 8), t_code, r_type, r_seq, t_len[:8], t_len[8:], t_crc[8:], t_crc[:8]
        )
        ident = _bytes_const(P.ident_payload(cfg, D))
        status = Cat(self.busy, Const(0, 7), self.cycles, Const(0, 40 - CYCLE_BITS), written)

        def respond(code: int, length: Value | int, load: Value | None = None) -> None:
            m.d.sync += [t_code.eq(code), t_len.eq(length), t_idx.eq(0), t_crc.eq(0xFFFF)]
            if load is not None:  # psh loads the payload while the header goes out
                m.d.comb += load.eq(1)
            m.next = "RSP_HDR"

        def ack(length: Value | int = 0, load: Value | None = None) -> None:
            respond(P.Code.ACK, length, load)
            m.d.sync += [last_seq.eq(r_seq), last_run.eq(r_type == P.Type.RUN)]

        m.d.comb += tx.payload.eq(0)
        hdr_ok = Signal()
        wr_bad = Signal()
        rd_bad = Signal()
        # READ waits for its last beat through a registered compare (no adder in front of
        # the FSM); ``written`` only grows meanwhile, so a flag a cycle old is safe.
        rd_end = Signal(P.ADDR_BITS + 1)
        rd_have = Signal()
        m.d.sync += rd_have.eq(written >= rd_end)
        with m.FSM() as fsm:
            with m.State("HUNT"):
                with m.If(rx.valid & (byte_in == P.SYNC_REQ)):
                    m.d.sync += [crc.eq(0xFFFF), idx.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(rx.valid):
                    m.d.sync += [crc.eq(crc16_step(crc, byte_in)), idx.eq(idx + 1)]
                    with m.If(idx < 7):
                        m.d.sync += hdr.eq(Cat(hdr[8:], byte_in))
                    with m.If(idx == 8):
                        m.next = "CHECK_HDR"
                with m.Elif(quiet == timeout):
                    m.next = "HUNT"
            with m.State("CHECK_HDR"):
                # The range checks are registered here and acted on in DISPATCH: a frame
                # costs one more cycle, and no path runs from an adder into the FSM.
                depth = Mux(is_a, cfg.a_depth, cfg.b_depth)
                m.d.sync += [
                    crc.eq(0xFFFF),
                    in_word.eq(0),
                    word_idx.eq(0),
                    pay_done.eq(0),
                    crc_cnt.eq(0),
                    t_read.eq(0),
                    hdr_ok.eq(crc == 0),
                    rd_end.eq(r_addr + r_count),
                    wr_bad.eq((r_count == 0) | (r_addr + r_count > depth)),
                    rd_bad.eq(
                        (r_count == 0) | (r_count > D) | (r_addr < released) | (r_addr > written)
                    ),
                ]
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(~hdr_ok):
                    m.next = "HUNT"  # header unknown: stay silent, the host times out
                with m.Elif(is_write):
                    with m.If(wr_bad):
                        respond(P.Code.NAK_BAD, 0)
                    with m.Else():
                        m.next = "PAYLOAD"
                with m.Elif(r_type == P.Type.RUN):
                    m.next = "PAYLOAD"
                with m.Elif(r_type == P.Type.IDENT):
                    ack(P.IDENT_LEN, load_ident)
                with m.Elif(r_type == P.Type.STATUS):
                    ack(P.STATUS_LEN, load_status)
                with m.Elif(r_type == P.Type.READ):
                    with m.If(rd_bad):
                        respond(P.Code.NAK_BAD, 0)
                    with m.Else():
                        m.d.sync += [released.eq(r_addr), stop_wait.eq(0)]
                        m.next = "READ_WAIT"
                with m.Else():
                    respond(P.Code.NAK_BAD, 0)
            with m.State("PAYLOAD"):
                with m.If(rx.valid):
                    m.d.sync += crc.eq(crc16_step(crc, byte_in))
                    with m.If(~pay_done):
                        m.d.comb += shift_in.eq(1)
                        m.d.sync += in_word.eq(in_word + 1)
                        with m.If(is_write):
                            last_byte = Mux(is_a, geo.a_word_bytes - 1, geo.b_word_bytes - 1)
                            with m.If(in_word == last_byte):
                                m.d.comb += word_end.eq(1)
                                m.d.sync += [
                                    in_word.eq(0),
                                    wr_sel_d.eq(~is_a),
                                    wr_addr_d.eq(r_addr + word_idx),
                                    word_idx.eq(word_idx + 1),
                                ]
                                with m.If(word_idx == r_count - 1):
                                    m.d.sync += pay_done.eq(1)
                        with m.Elif(in_word == geo.run_bytes - 1):
                            m.d.sync += pay_done.eq(1)
                    with m.Else():
                        m.d.sync += crc_cnt.eq(1)
                        with m.If(crc_cnt):
                            m.next = "CHECK_PAY"
                with m.Elif(quiet == timeout):
                    m.next = "HUNT"
            with m.State("CHECK_PAY"):
                with m.If(crc != 0):
                    respond(P.Code.NAK_CRC, 0)
                with m.Elif(is_write):
                    ack()
                with m.Elif(last_run & (last_seq == r_seq)):
                    ack()  # a retried RUN whose ACK was lost: it ran already
                with m.Else():
                    m.d.sync += cmd_valid.eq(1)
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(self.cmd.ready):
                    # A new chunk: number its result beats from 0 (all earlier ones were read).
                    m.d.sync += [written.eq(0), released.eq(0), cmd_valid.eq(0)]
                    ack()
            with m.State("READ_WAIT"):
                with m.If(rd_have):
                    m.d.sync += [beat.eq(0), in_beat.eq(0), t_read.eq(1)]
                    # count * beat_bytes as shifted adds: a constant product would take a DSP
                    bb = geo.beat_bytes
                    ack(sum(r_count << i for i in range(bb.bit_length()) if bb >> i & 1))
                with m.Elif(self.busy | self.o.valid):
                    m.d.sync += stop_wait.eq(0)
                with m.Elif(stop_wait == 31):
                    respond(P.Code.NAK_BAD, 0)  # the accelerator stopped short of those beats
                with m.Else():
                    m.d.sync += stop_wait.eq(stop_wait + 1)
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
                        with m.Elif(t_read):
                            m.next = "RSP_LOAD"
                        with m.Else():
                            m.next = "RSP_PAY"
            with m.State("RSP_LOAD"):
                m.next = "RSP_LOAD2"  # the ring's read port answers the next cycle
            with m.State("RSP_LOAD2"):
                m.d.comb += load_ring.eq(1)  # ring_q holds it next cycle, and psh loads it
                m.next = "RSP_LOAD3"
            with m.State("RSP_LOAD3"):
                m.next = "RSP_PAY"
            with m.State("RSP_PAY"):
                # A byte is offered once psh has shifted the one before out.
                m.d.comb += [tx.valid.eq(~shifting), tx.payload.eq(psh[:8])]
                with m.If(tx.ready & ~shifting):
                    m.d.comb += shift_out.eq(1)
                    m.d.sync += [t_crc.eq(crc16_step(t_crc, tx.payload)), t_idx.eq(t_idx + 1)]
                    with m.If(t_idx == t_len - 1):
                        m.next = "RSP_CRC"
                    with m.Elif(t_read):
                        m.d.sync += in_beat.eq(in_beat + 1)
                        with m.If(in_beat == geo.beat_bytes - 1):
                            m.d.sync += [in_beat.eq(0), beat.eq(beat + 1)]
                            m.next = "RSP_LOAD"
            with m.State("RSP_CRC"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(Mux(crc_cnt, t_crc[:8], t_crc[8:]))]
                with m.If(tx.ready):
                    m.d.sync += crc_cnt.eq(~crc_cnt)
                    with m.If(crc_cnt):
                        m.next = "HUNT"
        m.d.comb += self.idle.eq(fsm.ongoing("HUNT") & ~self.busy & (quiet == timeout))

        # crc_cnt starts at 0 for the response CRC: every path into RSP_* passes CHECK_HDR,
        # which clears it, or PAYLOAD, which leaves it 1 -> clear it on the way.
        with m.If(fsm.ongoing("CHECK_PAY") | fsm.ongoing("ISSUE") | fsm.ongoing("READ_WAIT")):
            m.d.sync += crc_cnt.eq(0)

        # -- payload shift register --------------------------------------------------------
        # psh acts a cycle after the FSM's decision (grouped_control): the header goes
        # out before a loaded payload, and the next byte is offered a cycle after the
        # last (a UART takes it 10 bit times later anyway).
        width = len(psh)
        sources = [Value.cast(v) for v in (ident, status, ring_q, psh >> 8)]  # as in psh_op
        sources = [Cat(v, Const(0, width - len(v))) if len(v) < width else v for v in sources]
        for lo, hi, op in grouped_control(m, psh_op, width, "psh_op"):
            for i, source in enumerate(sources):  # one-hot: at most one applies
                with m.If(op[i]):
                    m.d.sync += psh[lo:hi].eq(source[lo:hi])
        return m


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
