"""Accelerator: one shared GEMM engine, operand buffers, and a controller that runs a pass.

The host side (simulator driver, board link) talks to three streams:

* ``wr``: buffer writes, one word per beat: ``sel`` 0 writes buffer A at
  ``addr`` with lanes ``0..R-1`` of ``data``; ``sel`` 1 writes buffer B with lanes
  ``0..C-1``. Always ready: writes land the cycle they arrive, also while a
  command runs (the host double-buffers by choosing addresses).
* ``cmd``: run one GEMM (a layer pass, or one chunk of it) from the buffers:
  the engine command (``m``, ``k``, ``n``, ``images``, ``shift``, ``rounding``,
  ``seed``, ``acc_first``, ``acc_last``) plus the buffer base addresses
  ``a_base`` and ``b_base``.
* ``o``: the engine's results (C lanes + ``last``), only for commands with
  ``acc_last`` set.

Buffer layout expected by a command (``Kt = k * images``; ``TM``, ``TN`` tile
rows and columns): A word ``a_base + tm*Kt + kk`` holds ``A[tm*R : tm*R+R, kk]``,
B word ``b_base + tn*Kt + kk`` holds ``B[kk, tn*C : tn*C+C]``. The controller
walks ``tm``, ``tn``, ``kk`` exactly as the engine consumes beats, through a
read pipeline (address, the buffers' banked and registered read, see
:mod:`barista_hw.buffer`, a small operand FIFO fed on credit) that sustains one
beat per cycle and keeps the engine's backpressure off the buffers.
Which layer tensors go into A and B for each pass is the mapping of
:mod:`barista_hw.engine`; the host lays them out (see
:func:`barista_hw.plan` for the chunking).
"""

from __future__ import annotations

from amaranth import Cat, Module, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .buffer import READ_LATENCY, OperandBuffer
from .config import AcceleratorConfig
from .engine import CYCLE_BITS, GemmEngine, command_layout, output_layout
from .pipeline import delay

#: Operand words issued to the buffers and not yet taken by the engine, at most: as
#: many as the round trip from issue to take (the address issued, the buffers'
#: pipelined read, the operand FIFO), so one word per cycle is sustained.
FEED_DEPTH = 2 + READ_LATENCY
#: Cycles from a command's acceptance to its first operand word reaching the engine:
#: the command register, then that round trip.
FEED_LATENCY = 1 + FEED_DEPTH


class SharedEngine(GemmEngine):
    """The engine of an accelerator: all three passes (``images = 1`` except the gradient)."""

    BATCHED = True


def run_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """Fields of an accelerator run command: the engine command plus buffer bases."""
    fields = dict(command_layout(cfg.engine, batched=True).members)
    fields["a_base"] = unsigned(cfg.a_addr_bits)
    fields["b_base"] = unsigned(cfg.b_addr_bits)
    return data.StructLayout(fields)


def write_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    lanes = max(cfg.engine.rows, cfg.engine.cols)
    return data.StructLayout(
        {
            "sel": unsigned(1),
            "addr": unsigned(max(cfg.a_addr_bits, cfg.b_addr_bits)),
            "data": data.ArrayLayout(cfg.engine.fmt.operand_shape, lanes),
        }
    )


class _Walk:
    """The controller's walk over a command's tiles and reductions, in buffer addresses.

    Down-counters and registered "last" flags: the walk's decisions are then a few LUTs
    from registers, never a comparison on a carry chain.
    """

    def __init__(self, cfg: AcceleratorConfig) -> None:
        dim = cfg.engine.dim_bits
        self.walking = Signal()  # addresses left to issue for the current command
        self.a_addr = Signal(cfg.a_addr_bits)
        self.b_addr = Signal(cfg.b_addr_bits)
        self.a_row = Signal(cfg.a_addr_bits)  # first word of the current tile row in A
        self.m_rem = Signal(dim)
        self.n_rem = Signal(dim)
        self.k_left = Signal(dim)
        self.img_left = Signal(dim)
        self.last_col = Signal()  # n_rem <= C
        self.last_row = Signal()  # m_rem <= R


class Accelerator(wiring.Component):
    """Buffers + controller + :class:`SharedEngine` (see the module docstring).

    Ports (streams as in the module docstring):

    * ``cmd``: ``In(stream.Signature(run_layout(cfg)))``; ready while the engine is idle
      and no walk is in progress.
    * ``wr``: ``In(stream.Signature(write_layout(cfg)))``; always ready.
    * ``o``: ``Out(stream.Signature(output_layout(cfg.engine)))``, the engine's ``o``.
    * ``busy``: ``Out(1)``, the engine busy, or operand words left to issue or in flight.
    * ``cycles``: ``Out(CYCLE_BITS)``, the engine's cycle count.
    """

    def __init__(self, cfg: AcceleratorConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "cmd": In(stream.Signature(run_layout(cfg))),
                **self._write_ports(cfg),
                "o": Out(stream.Signature(output_layout(cfg.engine))),
                "busy": Out(1),
                "cycles": Out(CYCLE_BITS),
            }
        )

    @staticmethod
    def _write_ports(cfg: AcceleratorConfig) -> dict:
        """The ports that fill the buffers (a variant fed otherwise overrides this and
        :meth:`_host_writes`)."""
        return {"wr": In(stream.Signature(write_layout(cfg)))}

    def elaborate(self, platform: object) -> Module:
        m = Module()
        ecfg = self.cfg.engine
        m.submodules.engine = engine = SharedEngine(ecfg)
        m.submodules.buf_a = buf_a = OperandBuffer(
            data.ArrayLayout(ecfg.fmt.operand_shape, ecfg.rows), self.cfg.a_depth
        )
        m.submodules.buf_b = buf_b = OperandBuffer(
            data.ArrayLayout(ecfg.fmt.operand_shape, ecfg.cols), self.cfg.b_depth
        )
        walk = _Walk(self.cfg)

        self._host_writes(m, buf_a, buf_b)
        cmd = self._accept(m, engine, walk)
        outstanding, issue = self._read_pipeline(m, engine, buf_a, buf_b, walk)
        self._step(m, cmd, walk, issue)
        wiring.connect(m, wiring.flipped(self.o), engine.o)
        m.d.comb += [
            self.busy.eq(engine.busy | walk.walking | (outstanding != 0)),
            self.cycles.eq(engine.cycles),
        ]
        return m

    def _host_writes(self, m: Module, buf_a: OperandBuffer, buf_b: OperandBuffer) -> None:
        """``wr`` into the buffer its ``sel`` names, lanes ``0..R-1`` or ``0..C-1``."""
        w = self.wr.payload
        m.d.comb += [
            self.wr.ready.eq(1),
            buf_a.w_addr.eq(w.addr),
            buf_b.w_addr.eq(w.addr),
            buf_a.w_en.eq(self.wr.valid & (w.sel == 0)),
            buf_b.w_en.eq(self.wr.valid & (w.sel == 1)),
        ]
        m.d.comb += [buf_a.w_data[r].eq(w.data[r]) for r in range(self.cfg.engine.rows)]
        m.d.comb += [buf_b.w_data[c].eq(w.data[c]) for c in range(self.cfg.engine.cols)]

    def _accept(self, m: Module, engine: SharedEngine, walk: _Walk) -> Signal:
        """Hand the engine its part of a command, keep the rest; returns the command register.

        As in the engine, acceptance loads only the command register and the walk starts
        from it a cycle later (the engine is busy by then: no second accept).
        """
        R, C = self.cfg.engine.rows, self.cfg.engine.cols
        cmd = Signal(run_layout(self.cfg))
        for name in command_layout(self.cfg.engine, batched=True).members:
            m.d.comb += getattr(engine.cmd.payload, name).eq(getattr(self.cmd.payload, name))
        m.d.comb += [
            engine.cmd.valid.eq(self.cmd.valid & ~walk.walking),
            self.cmd.ready.eq(engine.cmd.ready & ~walk.walking),
        ]
        accepted = self.cmd.valid & self.cmd.ready
        started = Signal()
        m.d.sync += started.eq(accepted)
        with m.If(accepted):
            m.d.sync += cmd.eq(self.cmd.payload)
        with m.If(started):
            m.d.sync += [
                walk.walking.eq(1),
                walk.a_addr.eq(cmd.a_base),
                walk.a_row.eq(cmd.a_base),
                walk.b_addr.eq(cmd.b_base),
                walk.m_rem.eq(cmd.m),
                walk.n_rem.eq(cmd.n),
                walk.last_row.eq(cmd.m <= R),
                walk.last_col.eq(cmd.n <= C),
                walk.k_left.eq(cmd.k - 1),
                walk.img_left.eq(cmd.images - 1),
            ]
        return cmd

    def _read_pipeline(
        self,
        m: Module,
        engine: SharedEngine,
        buf_a: OperandBuffer,
        buf_b: OperandBuffer,
        walk: _Walk,
    ) -> tuple[Signal, Signal]:
        """Address -> the buffers' pipelined read -> operand FIFO -> engine.

        Addresses are issued on credit (FEED_DEPTH words in flight or queued), so the
        engine's ready reaches only the FIFO, not the buffers' many blocks. Returns
        ``outstanding`` (words issued, not yet taken) and ``issue`` (an address goes out).
        """
        a_width = Shape.cast(buf_a.shape).width
        m.submodules.feed = feed = SyncFIFO(
            width=a_width + Shape.cast(buf_b.shape).width, depth=FEED_DEPTH
        )
        outstanding = Signal(range(FEED_DEPTH + 1))
        issue = Signal()
        take = Signal()
        m.d.comb += [
            issue.eq(walk.walking & (outstanding < FEED_DEPTH)),
            buf_a.r_addr.eq(walk.a_addr),
            buf_b.r_addr.eq(walk.b_addr),
            engine.a.valid.eq(feed.r_rdy),
            engine.b.valid.eq(feed.r_rdy),
            engine.a.payload.eq(feed.r_data[:a_width]),
            engine.b.payload.eq(feed.r_data[a_width:]),
            take.eq(engine.a.valid & engine.a.ready),
            feed.r_en.eq(take),
        ]
        m.d.sync += outstanding.eq(outstanding + issue - take)
        rd_valid = delay(m, issue, READ_LATENCY, "rd_valid")  # the word read for an issue
        m.d.comb += [feed.w_en.eq(rd_valid), feed.w_data.eq(Cat(buf_a.r_data, buf_b.r_data))]
        return outstanding, issue

    def _step(self, m: Module, cmd: Signal, walk: _Walk, issue: Signal) -> None:
        """Advance the walk on each address issued, in the order the engine takes beats."""
        R, C = self.cfg.engine.rows, self.cfg.engine.cols
        with m.If(issue):
            last_k = walk.k_left == 0
            last_img = walk.img_left == 0
            with m.If(last_k):
                m.d.sync += walk.k_left.eq(cmd.k - 1)
                with m.If(last_img):
                    m.d.sync += walk.img_left.eq(cmd.images - 1)
                with m.Else():
                    m.d.sync += walk.img_left.eq(walk.img_left - 1)
            with m.Else():
                m.d.sync += walk.k_left.eq(walk.k_left - 1)
            with m.If(last_k & last_img):  # end of a tile
                with m.If(walk.last_col):  # end of a tile row
                    m.d.sync += [
                        walk.n_rem.eq(cmd.n),
                        walk.last_col.eq(cmd.n <= C),
                        walk.b_addr.eq(cmd.b_base),
                        walk.a_addr.eq(walk.a_addr + 1),
                        walk.a_row.eq(walk.a_addr + 1),
                    ]
                    with m.If(walk.last_row):
                        m.d.sync += walk.walking.eq(0)
                    with m.Else():
                        m.d.sync += [
                            walk.m_rem.eq(walk.m_rem - R),
                            walk.last_row.eq(walk.m_rem <= 2 * R),
                        ]
                with m.Else():
                    m.d.sync += [
                        walk.n_rem.eq(walk.n_rem - C),
                        walk.last_col.eq(walk.n_rem <= 2 * C),
                        walk.a_addr.eq(walk.a_row),
                        walk.b_addr.eq(walk.b_addr + 1),
                    ]
            with m.Else():
                m.d.sync += [walk.a_addr.eq(walk.a_addr + 1), walk.b_addr.eq(walk.b_addr + 1)]
