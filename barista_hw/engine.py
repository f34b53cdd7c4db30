"""GEMM engines: a tiling sequencer around one :class:`SystolicArray`, with stream ports.

``GemmEngine`` computes ``C = A @ B`` for any ``M, K, N`` given by a command.
The same array serves the three passes of a layer; what differs is which
tensors are streamed as A and B (operand order and transposition) and, for the
weight gradient, the accumulation across images:

=====================  ==================  ==================  =============================
engine                 A (M x K)           B (K x N)           accumulation
=====================  ==================  ==================  =============================
``ForwardEngine``      W                   X (im2col)          over K = C_in*kh*kw
``BackwardDataEngine`` W^T                 dY                  over K = C_out
``WeightGradEngine``   dY[b], b = 0..B-1   X[b]^T, b = 0..B-1  over K = pixels, then images:
                                                               full width across the whole
                                                               batch, requantised once
=====================  ==================  ==================  =============================

Streams (Amaranth ``lib.stream``, valid/ready; any stall anywhere is allowed):

* ``cmd``: one command per GEMM: ``m``, ``k``, ``n`` (all >= 1; ``k`` per image
  and ``images`` >= 1 for the weight-gradient engine), ``shift`` and
  ``rounding`` of the requantisation, ``seed`` of the stochastic lanes.
* ``a``: R lanes, ``b``: C lanes. Beat order: for each output tile ``(tm, tn)``
  in row-major order, for each ``k`` (for the gradient engine: for each image,
  for each ``k``): ``a`` = ``A[tm*R : tm*R+R, k]``, ``b`` = ``B[k, tn*C : tn*C+C]``.
  Lanes past the matrix edge (partial tiles) are don't-care: the engine forces
  them to zero.
* ``o``: C lanes plus ``last``. For each tile, its valid rows in order, one beat
  each; lanes past ``N`` are zero. ``last`` marks the final beat of the GEMM.

Cycle count: ``cycles`` counts the clock cycles from the one after the command
is accepted up to and including the final output transfer. With operands
always valid and ``o`` always ready (``T`` tiles, ``Kt = k * images``,
``W = R + C + 2`` the capture-wave latency, ``rows(t)`` the valid rows of
tile ``t``), each tile occupies ``max(Kt, W + rows(previous tile))`` issue
cycles and the tail adds ``W + rows(last tile) + 1``:
``cycles <= T * max(Kt, W + R) + W + R + 1``; :func:`cycle_bound` computes it.
Stalls on the streams only add cycles.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import lfsr
from .array import SystolicArray
from .config import EngineConfig, Pass
from .numfmt import SHIFT_BITS
from .requant import LfsrLanes, Requantizer

CYCLE_BITS = 40


def command_layout(cfg: EngineConfig, batched: bool) -> data.StructLayout:
    """Fields of an engine command; ``batched`` adds the image count of the gradient pass."""
    fields = {
        "m": unsigned(cfg.dim_bits),
        "k": unsigned(cfg.dim_bits),
        "n": unsigned(cfg.dim_bits),
        "shift": unsigned(SHIFT_BITS),
        "rounding": unsigned(2),
        "seed": unsigned(lfsr.STATE_BITS),
    }
    if batched:
        fields["images"] = unsigned(cfg.dim_bits)
    if cfg.acc_depth:
        fields["acc_first"] = unsigned(1)
        fields["acc_last"] = unsigned(1)
    return data.StructLayout(fields)


def output_layout(cfg: EngineConfig) -> data.StructLayout:
    return data.StructLayout(
        {"data": data.ArrayLayout(cfg.fmt.operand_shape, cfg.cols), "last": unsigned(1)}
    )


def wave_latency(cfg: EngineConfig) -> int:
    """Cycles from issuing a tile's last beat to its results being in the bank."""
    return cfg.rows + cfg.cols + 2


def cycle_bound(cfg: EngineConfig, m: int, k: int, n: int, images: int = 1) -> int:
    """Upper bound of ``cycles`` for a stall-free GEMM (see the module docstring)."""
    tiles = -(-m // cfg.rows) * -(-n // cfg.cols)
    w = wave_latency(cfg)
    return tiles * max(k * images, w + cfg.rows) + w + cfg.rows + 1


def useful_macs(m: int, k: int, n: int, images: int = 1) -> int:
    return m * k * n * images


class GemmEngine(wiring.Component):
    """Tiled ``C = A @ B`` on an R x C output-stationary array (see the module docstring)."""

    PASS: Pass | None = None
    BATCHED = False  # the command carries an image count (weight-gradient pass)

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        fmt = cfg.fmt
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(cfg, self.BATCHED))),
                "a": In(stream.Signature(data.ArrayLayout(fmt.operand_shape, cfg.rows))),
                "b": In(stream.Signature(data.ArrayLayout(fmt.operand_shape, cfg.cols))),
                "o": Out(stream.Signature(output_layout(cfg))),
                "busy": Out(1),
                "cycles": Out(CYCLE_BITS),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.cfg
        R, C, dim = cfg.rows, cfg.cols, cfg.dim_bits
        m.submodules.array = array = SystolicArray(R, C, cfg.fmt, cfg.dataflow)
        m.submodules.requant = requant = Requantizer(cfg.fmt, C)
        m.submodules.lanes = lanes = LfsrLanes(C)

        cmd = Signal(command_layout(cfg, self.BATCHED))
        m_rem = Signal(dim)  # rows of A from the current tile row on
        n_rem = Signal(dim)  # columns of B from the current tile column on
        k_cnt = Signal(dim)
        img_cnt = Signal(dim)
        feed_done = Signal()
        pending = Signal()  # a tile's last beat has been issued and it is not drained yet
        pend_rows = Signal(range(R + 1))
        pend_final = Signal()
        bank_full = Signal()
        drain_row = Signal(range(R + 1))
        tile_base = Signal(range(max(cfg.acc_depth, 1) + R))  # accumulator-memory row of tile

        # -- command --------------------------------------------------------
        m.d.comb += [self.cmd.ready.eq(~self.busy), lanes.seed.eq(self.cmd.payload.seed)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                cmd.eq(self.cmd.payload),
                m_rem.eq(self.cmd.payload.m),
                n_rem.eq(self.cmd.payload.n),
                k_cnt.eq(0),
                img_cnt.eq(0),
                feed_done.eq(0),
                tile_base.eq(0),
                self.busy.eq(1),
                self.cycles.eq(0),
            ]
            m.d.comb += lanes.load.eq(1)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # -- operand feeder -------------------------------------------------
        images = cmd.images if self.BATCHED else 1
        last_k = k_cnt == cmd.k - 1
        last_img = (img_cnt == images - 1) if self.BATCHED else 1
        last_beat = last_k & last_img
        last_col = n_rem <= C
        last_row = m_rem <= R
        fire = Signal()
        m.d.comb += [
            fire.eq(
                self.busy
                & ~feed_done
                & self.a.valid
                & self.b.valid
                & ~(last_beat & pending)  # the bank must be free before the next capture
            ),
            self.a.ready.eq(fire),
            self.b.ready.eq(fire),
        ]
        m.d.sync += [array.valid.eq(fire), array.last.eq(fire & last_beat)]
        with m.If(fire):
            # Lanes past the matrix edge are zeroed: partial tiles need no host padding.
            for r in range(R):
                m.d.sync += array.a[r].eq(Mux(m_rem > r, self.a.payload[r], 0))
            for c in range(C):
                m.d.sync += array.b[c].eq(Mux(n_rem > c, self.b.payload[c], 0))
            with m.If(last_k):
                m.d.sync += k_cnt.eq(0)
                if self.BATCHED:
                    with m.If(last_img):
                        m.d.sync += img_cnt.eq(0)
                    with m.Else():
                        m.d.sync += img_cnt.eq(img_cnt + 1)
            with m.Else():
                m.d.sync += k_cnt.eq(k_cnt + 1)
            with m.If(last_beat):
                m.d.sync += [
                    pending.eq(1),
                    pend_rows.eq(Mux(last_row, m_rem, R)),
                    pend_final.eq(last_col & last_row),
                ]
                with m.If(last_col):
                    m.d.sync += n_rem.eq(cmd.n)
                    with m.If(last_row):
                        m.d.sync += feed_done.eq(1)
                    with m.Else():
                        m.d.sync += m_rem.eq(m_rem - R)
                with m.Else():
                    m.d.sync += n_rem.eq(n_rem - C)

        # -- drain: bank (+ partial sums) -> requantiser -> output register ------
        # With an accumulator memory, a command with acc_first = 0 adds the
        # partial sums a previous command left there (full width, modular), and
        # one with acc_last = 0 writes the sums back instead of emitting them.
        load = Signal()
        final_row = drain_row == pend_rows - 1
        summed = Signal(data.ArrayLayout(cfg.fmt.acc_shape, C))
        if cfg.acc_depth:
            first, emit = cmd.acc_first, cmd.acc_last
            m.submodules.accmem = accmem = Memory(
                shape=data.ArrayLayout(cfg.fmt.acc_shape, C), depth=cfg.acc_depth, init=[]
            )
            rd = accmem.read_port(domain="sync")
            wr = accmem.write_port()
            addr = tile_base + drain_row
            rd_ok = Signal()  # the read data belongs to addr: no row moved last cycle
            m.d.sync += rd_ok.eq(~load)
            m.d.comb += [
                rd.addr.eq(addr),
                rd.en.eq(1),
                wr.addr.eq(addr),
                wr.data.eq(summed),
                wr.en.eq(load & ~emit),
            ]
            for c in range(C):
                m.d.comb += summed[c].eq(Mux(first, array.row0[c], array.row0[c] + rd.data[c]))
        else:
            first, emit, rd_ok = Const(1), Const(1), Const(1)
            m.d.comb += summed.eq(array.row0)
        m.d.comb += [
            requant.acc.eq(summed),
            requant.words.eq(lanes.words),
            requant.shift.eq(cmd.shift),
            requant.rounding.eq(cmd.rounding),
            load.eq(bank_full & (~self.o.valid | self.o.ready) & (first | rd_ok)),
            array.drain.eq(load),
            lanes.advance.eq(load & emit),
        ]
        with m.If(array.tile_done):
            m.d.sync += bank_full.eq(1)
        with m.If(load):
            m.d.sync += drain_row.eq(drain_row + 1)
            with m.If(emit):
                m.d.sync += [
                    self.o.payload.data.eq(requant.q),
                    self.o.payload.last.eq(pend_final & final_row),
                    self.o.valid.eq(1),
                ]
            with m.If(final_row):
                m.d.sync += [
                    bank_full.eq(0),
                    pending.eq(0),
                    drain_row.eq(0),
                    tile_base.eq(tile_base + R),
                ]
                with m.If(pend_final & ~emit):
                    m.d.sync += self.busy.eq(0)  # partial sums stored: nothing to emit
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.o.valid & self.o.ready & self.o.payload.last):
            m.d.sync += self.busy.eq(0)
        return m


class ForwardEngine(GemmEngine):
    """Forward pass ``Y = W @ X``: A = W (C_out x K), B = im2col(X) (K x pixels)."""

    PASS = Pass.FORWARD


class BackwardDataEngine(GemmEngine):
    """Backward-data pass ``dX = W^T @ dY``: A = W^T (K x C_out), B = dY (C_out x pixels).

    The array is the forward one: the transposition is only in which elements
    the ``a`` stream carries (rows of W instead of columns).
    """

    PASS = Pass.BACKWARD_DATA


class WeightGradEngine(GemmEngine):
    """Weight-gradient pass ``dW = sum_b dY[b] @ X[b]^T``: A = dY[b], B = X[b]^T.

    The command's ``images`` field nests the reduction over the batch inside
    each tile, so the accumulators sum ``k * images`` products at full width
    and requantise once per tile, whatever the batch size.
    """

    PASS = Pass.WEIGHT_GRAD
    BATCHED = True


ENGINES: dict[Pass, type[GemmEngine]] = {
    Pass.FORWARD: ForwardEngine,
    Pass.BACKWARD_DATA: BackwardDataEngine,
    Pass.WEIGHT_GRAD: WeightGradEngine,
}
