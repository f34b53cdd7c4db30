"""SDR SDRAM controller (the ULX3S's IS42S16160G): bursts, open rows, refresh.

Every timing rule comes from one place, :meth:`DramConfig.timing_cycles
<barista_hw.device.memory.DramConfig.timing_cycles>`, at the controller's clock
(:attr:`~barista_hw.device.memory.DramConfig.clock_mhz`; the SDRAM runs on the same clock).

**Ports** of :class:`SdramController` (the contract):

* ``cmd`` (in, ``lib.stream`` of :func:`command_layout`): one burst of ``burst_length``
  words. ``addr`` is the *burst* address (bus-word address // burst_length), ``write``
  the direction, ``first``..``last`` the words of the burst that move (``first <=
  last``; the others are masked by DQM on a write and dropped on a read). ``ready``
  rises in the cycle the READ or WRITE is issued.
* ``w`` (in, stream of bus words): the ``last - first + 1`` words of each write burst, in
  command order. A WRITE is issued only once all of its words wait in the write FIFO,
  so a write burst never stalls on the SDRAM side.
* ``r`` (out, stream of bus words): the ``last - first + 1`` words of each read burst,
  in command order. A READ is issued only if the read FIFO has room for its words
  besides those in flight, so ``r`` may be stalled at any time without losing data.
* ``pins`` (:func:`pins_signature`): the SDRAM's ``cke``, ``cs_n``, ``ras_n``,
  ``cas_n``, ``we_n``, ``ba``, ``a``, ``dqm`` and the DQ bus as ``dq_o`` / ``dq_oe``
  (out) and ``dq_i`` (in); the board's top joins them in a tristate buffer. All
  outputs are registered and ``dq_i`` is registered on entry (I/O registers).
* ``ready`` (out): the power-up sequence is done; commands are taken from then on.

**Power-up**: NOPs for ``init`` cycles (tINIT), PRECHARGE ALL, two AUTO REFRESH, LOAD
MODE REGISTER (burst length ``burst_length``, sequential, the configured CAS latency,
programmed-length write bursts), then tMRD.

**Policy: open row.** A bank's row stays open after a burst, and a burst to the open row
of its bank is a READ or WRITE without ACTIVATE. The DMA streams tiles at consecutive
addresses, so most bursts hit the open row and follow each other with no gap (one burst
every ``burst_length`` cycles), which is what :meth:`DramConfig.transfer_cycles` assumes;
auto-precharge would pay tRP + tRCD on every burst. The burst address maps as
``row | bank | column`` (:func:`split_address`): a stream crossing a row's end moves to
the next bank, whose row may still be open, and each of the four banks keeps its own
row, so up to four streams (e.g. a DMA's operands and results) share the SDRAM
without closing each other's rows. Commands are served in order, one at a time
(no reordering, no early activates).

**Refresh**: a timer started at each AUTO REFRESH raises a request ``refi - margin``
cycles later (:func:`refresh_period`); from then on no new burst is started: the open
banks are closed once their bursts and write recovery are over (PRECHARGE ALL) and the
refresh is issued, so two refreshes are never more than tREFI apart whatever the
traffic, and no burst is cut short.

**DQ bus**: ``dq_oe`` is high exactly in the cycles of write data; a WRITE after a READ
waits until the read's data has left the bus plus one turnaround cycle.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from ..memory import DramConfig, SdramCycles
from .port import ADDR_BITS, LEN_BITS, port_signature

# Command pins (cs_n, ras_n, cas_n, we_n) of each command, as the datasheet's truth table.
NOP = 0b0111
ACTIVE = 0b0011
READ = 0b0101
WRITE = 0b0100
PRECHARGE = 0b0010
REFRESH = 0b0001
MODE = 0b0000
#: Address pin that selects all banks on PRECHARGE (and auto-precharge on READ/WRITE).
A10 = 10
_BURST_CODE = {1: 0, 2: 1, 4: 2, 8: 3}
_STATES = ("POWER_UP", "INIT_REFRESH_1", "INIT_REFRESH_2", "INIT_MODE", "RUN")


class Geometry:
    """Bit widths of an SDRAM's addresses (rows, banks, columns, bursts)."""

    def __init__(self, dram: DramConfig) -> None:
        if dram.burst_length not in _BURST_CODE:
            raise InputError(
                f"DRAM burst_length {dram.burst_length}: the controller uses 1, 2, 4 or 8"
            )
        word_bytes = dram.bus_bits // 8
        self.columns = dram.row_bytes // word_bytes
        self.rows = dram.size_bytes // (dram.banks * dram.row_bytes)
        for what, n in (("banks", dram.banks), ("columns", self.columns), ("rows", self.rows)):
            if n & (n - 1):
                raise InputError(f"DRAM {what} = {n} must be a power of two")
        self.burst_length = dram.burst_length
        self.col_bits = (self.columns - 1).bit_length()
        self.bank_bits = max(1, (dram.banks - 1).bit_length())
        self.row_bits = (self.rows - 1).bit_length()
        self.beat_bits = max(1, (dram.burst_length - 1).bit_length())
        self.col_burst_bits = self.col_bits - (dram.burst_length - 1).bit_length()
        self.addr_bits = self.col_burst_bits + (dram.banks - 1).bit_length() + self.row_bits
        # Row address and column (with A10 as the auto-precharge / all-banks pin) share A.
        self.a_bits = max(self.row_bits, A10 + 1)


def split_address(dram: DramConfig, burst_addr: int) -> tuple[int, int, int]:
    """``(bank, row, column)`` of a burst address (the column of its first word)."""
    g = Geometry(dram)
    bursts_per_row = 1 << g.col_burst_bits
    col = (burst_addr % bursts_per_row) * g.burst_length
    rest = burst_addr >> g.col_burst_bits
    return rest % dram.banks, rest // dram.banks, col


def mode_register(dram: DramConfig) -> int:
    """The LOAD MODE REGISTER value: burst length, sequential, CAS latency, burst writes."""
    if dram.cas_latency not in (2, 3):
        raise InputError(f"DRAM cas_latency {dram.cas_latency}: the SDRAM supports 2 or 3")
    return _BURST_CODE[dram.burst_length] | dram.cas_latency << 4


def refresh_period(t: SdramCycles) -> int:
    """Cycles from a refresh to the next request: tREFI less the longest wait to serve it.

    A request waits at most for the bursts and rows just started (a write's data and
    recovery, tRAS after an activate), a PRECHARGE ALL and tRP, and a possible
    tRFC/tMRD; the margin adds them all, so a refresh is never later than tREFI.
    """
    margin = 2 * t.burst_length + t.wr + t.ras + t.rcd + t.rp + t.rfc + t.mrd + 4
    if t.refi <= margin:
        raise InputError(f"refresh interval {t.refi} cycles leaves no time for traffic")
    return t.refi - margin


def command_layout(dram: DramConfig) -> data.StructLayout:
    """A ``cmd`` record: burst address, direction, first and last word moved."""
    g = Geometry(dram)
    return data.StructLayout(
        {
            "addr": unsigned(g.addr_bits),
            "write": unsigned(1),
            "first": unsigned(g.beat_bits),
            "last": unsigned(g.beat_bits),
        }
    )


def pins_signature(dram: DramConfig) -> wiring.Signature:
    """The SDRAM's pins seen from the controller (DQ split into out, enable and in)."""
    g = Geometry(dram)
    return wiring.Signature(
        {
            # The command pins reset to COMMAND INHIBIT (all high), never to a command.
            "cke": Out(1),
            "cs_n": Out(1, init=1),
            "ras_n": Out(1, init=1),
            "cas_n": Out(1, init=1),
            "we_n": Out(1, init=1),
            "ba": Out(g.bank_bits),
            "a": Out(g.a_bits),
            "dqm": Out(dram.bus_bits // 8),
            "dq_o": Out(dram.bus_bits),
            "dq_oe": Out(1),
            "dq_i": In(dram.bus_bits),
        }
    )


class _Wait:
    """A down-counter: a rule that allows a command ``n`` cycles after another one."""

    def __init__(self, m: Module, limit: int, name: str) -> None:
        self.m = m
        self.top = max(limit, 2) - 1
        self.ctr = Signal(range(self.top + 1), name=name)
        m.d.sync += self.ctr.eq(Mux(self.ctr == 0, 0, self.ctr - 1))

    @property
    def done(self):  # noqa: ANN201 - an Amaranth value
        return self.ctr == 0

    def at_least(self, n: int) -> None:
        """From this cycle, the next command it guards waits ``n`` cycles or more."""
        if n - 1 >= self.top:  # no later deadline can be pending: no comparison
            self.m.d.sync += self.ctr.eq(n - 1)
        elif n > 1:
            self.m.d.sync += self.ctr.eq(Mux(self.ctr > n - 1, self.ctr - 1, n - 1))


class SdramController(wiring.Component):
    """SDR SDRAM controller; see the module docstring for the ports and the policy."""

    def __init__(self, dram: DramConfig, *, fifo_depth: int = 16) -> None:
        self.dram = dram
        self.timing = dram.timing_cycles()
        self.geometry = Geometry(dram)
        mode_register(dram)  # checks the CAS latency
        refresh_period(self.timing)  # checks tREFI
        if fifo_depth < dram.burst_length:
            raise InputError(f"SDRAM fifo_depth {fifo_depth} < burst {dram.burst_length}")
        self.fifo_depth = fifo_depth
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(dram))),
                "w": In(stream.Signature(dram.bus_bits)),
                "r": Out(stream.Signature(dram.bus_bits)),
                "pins": Out(pins_signature(dram)),
                "ready": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one state machine
        m = Module()
        t, g, dram = self.timing, self.geometry, self.dram
        bl, cl = t.burst_length, t.cas_latency
        banks = dram.banks
        pins = self.pins

        m.submodules.wfifo = wfifo = fifo.SyncFIFO(width=dram.bus_bits, depth=self.fifo_depth)
        m.submodules.rfifo = rfifo = fifo.SyncFIFO(width=dram.bus_bits, depth=self.fifo_depth)
        m.d.comb += [
            wfifo.w_data.eq(self.w.payload),
            wfifo.w_en.eq(self.w.valid),
            self.w.ready.eq(wfifo.w_rdy),
            self.r.payload.eq(rfifo.r_data),
            self.r.valid.eq(rfifo.r_rdy),
            rfifo.r_en.eq(self.r.ready),
        ]

        # Output registers: a NOP unless a command is issued this cycle.
        cmd_pins = Cat(pins.we_n, pins.cas_n, pins.ras_n, pins.cs_n)
        m.d.sync += [cmd_pins.eq(NOP), pins.dqm.eq(0), pins.dq_oe.eq(0)]
        dq_i = Signal(dram.bus_bits)
        m.d.sync += dq_i.eq(pins.dq_i)

        # Timing rules, each a counter that allows the command it guards at zero.
        act_ok = [_Wait(m, t.rc + t.rp + t.rfc, f"act_wait{b}") for b in range(banks)]
        pre_ok = [_Wait(m, t.ras + bl + t.wr, f"pre_wait{b}") for b in range(banks)]
        rw_ok = [_Wait(m, t.rcd, f"rw_wait{b}") for b in range(banks)]
        rrd_ok = _Wait(m, t.rrd, "rrd_wait")
        cmd_ok = _Wait(m, max(t.rfc, t.mrd, t.rp), "cmd_wait")  # tRFC, tMRD: no command
        rd_ok = _Wait(m, bl, "rd_wait")
        wr_ok = _Wait(m, cl + bl + 1, "wr_wait")

        is_open = Signal(banks)
        open_row = [Signal(g.row_bits, name=f"open_row{b}") for b in range(banks)]

        def issue(code: int, *, ba=0, a=0) -> None:  # noqa: ANN001 - Amaranth values
            m.d.sync += [cmd_pins.eq(code), pins.ba.eq(ba), pins.a.eq(a)]

        def precharge_all() -> None:
            issue(PRECHARGE, a=1 << A10)
            m.d.sync += is_open.eq(0)
            for w in act_ok:
                w.at_least(t.rp)

        def refresh() -> None:
            issue(REFRESH)
            cmd_ok.at_least(t.rfc)
            m.d.sync += [ref_timer.eq(refresh_period(t) - 1), ref_due.eq(0)]

        # Refresh request: raised refresh_period() cycles after each refresh.
        ref_timer = Signal(range(t.refi + 1))
        ref_due = Signal()
        with m.If(ref_timer != 0):
            m.d.sync += ref_timer.eq(ref_timer - 1)
        with m.Else():
            m.d.sync += ref_due.eq(1)

        # The command's fields and its bank's state.
        c = self.cmd.payload
        col = c.addr[: g.col_burst_bits]
        bank = c.addr[g.col_burst_bits :][: g.bank_bits] if banks > 1 else Const(0, 1)
        row = c.addr[g.col_burst_bits + (banks - 1).bit_length() :]
        count = c.last - c.first + 1
        # Selected by shifts, not by case or if statements: Icarus runs an ``always @*``
        # block only when an input changes, so a block whose inputs never change would
        # leave its outputs undefined.
        bank_open = is_open.bit_select(bank, 1)
        row_hit = Cat(open_row).word_select(bank, g.row_bits) == row
        bank_act_ok = Cat(w.done for w in act_ok).bit_select(bank, 1)
        bank_pre_ok = Cat(w.done for w in pre_ok).bit_select(bank, 1)
        bank_rw_ok = Cat(w.done for w in rw_ok).bit_select(bank, 1)
        all_pre_ok = Cat(w.done for w in pre_ok).all()
        all_act_ok = Cat(w.done for w in act_ok).all()

        # Read data: a pulse per READ runs down a delay line to the cycle its first word
        # is in dq_i (command register, CAS latency, input register), with its word range.
        beat_layout = data.StructLayout(
            {"go": 1, "first": unsigned(g.beat_bits), "last": unsigned(g.beat_bits)}
        )
        delay = [Signal(beat_layout, name=f"rd_delay{i}") for i in range(cl + 2)]
        start_read = Signal(beat_layout)
        m.d.sync += [delay[0].eq(start_read)] + [
            delay[i].eq(delay[i - 1]) for i in range(1, len(delay))
        ]
        rd_beat = Signal(range(bl + 1))  # beats of the current read burst still to come
        rd_idx = Signal(g.beat_bits)
        rd_first, rd_last = Signal(g.beat_bits), Signal(g.beat_bits)
        arriving = delay[-1]
        in_burst = arriving.go | (rd_beat != 0)
        beat = Mux(arriving.go, 0, rd_idx)
        lo = Mux(arriving.go, arriving.first, rd_first)
        hi = Mux(arriving.go, arriving.last, rd_last)
        with m.If(arriving.go):
            m.d.sync += [
                rd_beat.eq(bl - 1),
                rd_idx.eq(1),
                rd_first.eq(arriving.first),
                rd_last.eq(arriving.last),
            ]
        with m.Elif(rd_beat != 0):
            m.d.sync += [rd_beat.eq(rd_beat - 1), rd_idx.eq(rd_idx + 1)]
        push = Signal()
        m.d.comb += [
            push.eq(in_burst & (beat >= lo) & (beat <= hi)),
            rfifo.w_en.eq(push),
            rfifo.w_data.eq(dq_i),
        ]
        # Words of issued READs not yet in the read FIFO: room is reserved for them.
        inflight = Signal(range(self.fifo_depth + bl + 1))
        read_room = Signal()
        m.d.comb += read_room.eq(rfifo.w_level + inflight + count <= self.fifo_depth)

        # Write data: word k of the burst goes out k cycles after the WRITE (DQM masks
        # the words outside first..last).
        wr_beat = Signal(range(bl + 1))
        wr_idx = Signal(g.beat_bits)
        wr_first, wr_last = Signal(g.beat_bits), Signal(g.beat_bits)
        start_write = Signal()
        w_active = start_write | (wr_beat != 0)
        w_beat = Mux(start_write, 0, wr_idx)
        w_lo = Mux(start_write, c.first, wr_first)
        w_hi = Mux(start_write, c.last, wr_last)
        with m.If(wr_beat != 0):
            m.d.sync += [wr_beat.eq(wr_beat - 1), wr_idx.eq(wr_idx + 1)]
        with m.If(start_write):
            m.d.sync += [
                wr_beat.eq(bl - 1),
                wr_idx.eq(1),
                wr_first.eq(c.first),
                wr_last.eq(c.last),
            ]
        w_take = Signal()
        m.d.comb += [
            w_take.eq(w_active & (w_beat >= w_lo) & (w_beat <= w_hi)),
            wfifo.r_en.eq(w_take),
        ]
        with m.If(w_active):
            m.d.sync += [
                pins.dq_oe.eq(1),
                pins.dq_o.eq(wfifo.r_data),
                pins.dqm.eq(Mux(w_take, 0, (1 << len(pins.dqm)) - 1)),
            ]

        m.d.sync += inflight.eq(inflight + Mux(start_read.go, count, 0) - push)
        m.d.sync += pins.cke.eq(1)

        init_wait = Signal(range(t.init + 2), init=t.init)
        # The state machine as an if-chain on a state register (an Amaranth FSM becomes a
        # case statement that Verilator's lint flags as incomplete).
        state = Signal(range(len(_STATES)))
        power_up, refresh_1, refresh_2, load_mode, run = (
            state == _STATES.index(name) for name in _STATES
        )

        def goto(name: str) -> None:
            m.d.sync += state.eq(_STATES.index(name))

        with m.If(power_up):
            with m.If(init_wait != 0):
                m.d.sync += init_wait.eq(init_wait - 1)
            with m.Else():
                precharge_all()
                cmd_ok.at_least(t.rp)
                goto("INIT_REFRESH_1")
        for here, nxt in ((refresh_1, "INIT_REFRESH_2"), (refresh_2, "INIT_MODE")):
            with m.Elif(here):
                with m.If(cmd_ok.done):
                    refresh()
                    goto(nxt)
        with m.Elif(load_mode):
            with m.If(cmd_ok.done):
                issue(MODE, a=mode_register(dram))
                cmd_ok.at_least(t.mrd)
                goto("RUN")
        with m.Elif(run):
            m.d.comb += self.ready.eq(1)
            with m.If(~cmd_ok.done):
                pass  # tRFC or tMRD: nothing may be issued
            with m.Elif(ref_due):
                with m.If(is_open.any()):
                    with m.If(all_pre_ok):
                        precharge_all()
                with m.Elif(all_act_ok):
                    refresh()
            with m.Elif(self.cmd.valid & bank_open & row_hit & bank_rw_ok):
                with m.If(c.write):
                    with m.If(wr_ok.done & (wfifo.r_level >= count)):
                        issue(WRITE, ba=bank, a=col * bl)
                        m.d.comb += [self.cmd.ready.eq(1), start_write.eq(1)]
                        wr_ok.at_least(bl)
                        rd_ok.at_least(bl)
                        for b in range(banks):
                            with m.If(bank == b):
                                pre_ok[b].at_least(bl - 1 + t.wr)
                with m.Elif(rd_ok.done & read_room):
                    issue(READ, ba=bank, a=col * bl)
                    m.d.comb += [
                        self.cmd.ready.eq(1),
                        start_read.go.eq(1),
                        start_read.first.eq(c.first),
                        start_read.last.eq(c.last),
                    ]
                    rd_ok.at_least(bl)
                    wr_ok.at_least(cl + bl + 1)  # the read's data, then a turnaround
                    for b in range(banks):
                        with m.If(bank == b):
                            pre_ok[b].at_least(bl)  # the burst is not cut short
            with m.Elif(self.cmd.valid & bank_open):  # another row: close it
                with m.If(bank_pre_ok):
                    issue(PRECHARGE, ba=bank)
                    for b in range(banks):
                        with m.If(bank == b):
                            m.d.sync += is_open[b].eq(0)
                            act_ok[b].at_least(t.rp)
            with m.Elif(self.cmd.valid):  # bank closed: open the row
                with m.If(bank_act_ok & rrd_ok.done):
                    issue(ACTIVE, ba=bank, a=row)
                    rrd_ok.at_least(t.rrd)
                    for b in range(banks):
                        with m.If(bank == b):
                            m.d.sync += [is_open[b].eq(1), open_row[b].eq(row)]
                            rw_ok[b].at_least(t.rcd)
                            pre_ok[b].at_least(t.ras)
                            act_ok[b].at_least(t.rc)
        return m


class SdramPort(wiring.Component):
    """The SDRAM behind the device's memory port (:mod:`barista_hw.device.rtl.port`).

    Ports: the memory side of :func:`~barista_hw.device.rtl.port.port_signature` (``cmd``,
    ``w``, ``r``, of ``dram.bus_bits``-bit words), ``pins`` and ``ready`` as
    :class:`SdramController`. A command of ``length`` words from ``addr`` is cut at burst
    boundaries into bursts of the controller (partial at either end: DQM masks the
    words not written, a read drops those not asked for); the next command is taken
    once the last burst of the current one is issued. ``w`` is taken only for the
    write command being cut, as the port's contract asks.
    """

    def __init__(
        self, dram: DramConfig, *, addr_bits: int = ADDR_BITS, len_bits: int = LEN_BITS
    ) -> None:
        self.dram = dram
        g = Geometry(dram)
        if addr_bits < g.addr_bits + g.beat_bits or addr_bits > 32:
            raise InputError(
                f"memory port addr_bits {addr_bits}: the SDRAM needs "
                f"{g.addr_bits + g.beat_bits} word-address bits"
            )
        self.geometry, self.addr_bits, self.len_bits = g, addr_bits, len_bits
        memory_side = port_signature(dram.bus_bits, addr_bits, len_bits).flip()
        super().__init__(
            {
                **dict(memory_side.members.items()),
                "pins": Out(pins_signature(dram)),
                "ready": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        g, bl = self.geometry, self.dram.burst_length
        m.submodules.ctrl = ctrl = SdramController(self.dram)
        wiring.connect(m, wiring.flipped(self.pins), ctrl.pins)
        wiring.connect(m, ctrl.r, wiring.flipped(self.r))
        m.d.comb += self.ready.eq(ctrl.ready)

        busy = Signal()
        addr = Signal(self.addr_bits)
        left = Signal(self.len_bits)
        write = Signal()
        w_left = Signal(self.len_bits)  # write words of the current command still to take
        m.d.comb += self.cmd.ready.eq(~busy)
        with m.If(self.cmd.valid & ~busy & (self.cmd.payload.length != 0)):
            p = self.cmd.payload
            m.d.sync += [busy.eq(1), addr.eq(p.addr), left.eq(p.length), write.eq(p.write)]
            m.d.sync += w_left.eq(Mux(p.write, p.length, 0))

        # The current burst: from the word at addr to the burst's end or the command's.
        first = addr[: g.beat_bits]
        room = bl - first
        n = Mux(left < room, left, room)
        m.d.comb += [
            ctrl.cmd.valid.eq(busy),
            ctrl.cmd.payload.addr.eq(addr[g.beat_bits :]),
            ctrl.cmd.payload.write.eq(write),
            ctrl.cmd.payload.first.eq(first),
            ctrl.cmd.payload.last.eq(first + n - 1),
        ]
        with m.If(ctrl.cmd.valid & ctrl.cmd.ready):
            m.d.sync += [addr.eq(addr + n), left.eq(left - n)]
            with m.If(left == n):
                m.d.sync += busy.eq(0)

        take_w = w_left != 0
        m.d.comb += [
            ctrl.w.payload.eq(self.w.payload),
            ctrl.w.valid.eq(self.w.valid & take_w),
            self.w.ready.eq(ctrl.w.ready & take_w),
        ]
        with m.If(self.w.valid & self.w.ready):
            m.d.sync += w_left.eq(w_left - 1)
        return m
