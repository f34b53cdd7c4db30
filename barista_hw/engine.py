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
is accepted up to and including the final output transfer. The first operands
are taken :data:`FIRST_TAKE` cycles after acceptance at the earliest (the command
register, then the walk state loaded from it). With operands always valid and
``o`` always ready (``T`` tiles, ``Kt = k * images``, ``W = R + C + 2`` the
capture-wave latency, ``rows(t)`` the valid rows of tile ``t``), each tile
occupies ``max(Kt, W + rows(previous tile))`` issue cycles and the tail adds
``W + rows(last tile) + D`` with ``D`` the drain latency (:func:`drain_latency`:
the requantiser pipeline and the output FIFO):
``cycles <= T * max(Kt, W + R) + W + R + D + FIRST_TAKE - 1``; :func:`cycle_bound`
computes it. Stalls on the streams only add cycles.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from . import lfsr
from .array import SystolicArray
from .config import EngineConfig, Pass
from .memory import collision_free_memory
from .numfmt import SHIFT_BITS
from .pipeline import delay, replicate
from .requant import LfsrLanes, Requantizer

CYCLE_BITS = 40
#: Registers from a bank row's load to its requantised beat entering the output FIFO:
#: the array's drain register, the row and its partial sums, their sum, then the
#: requantiser's stages.
DRAIN_STAGES = SystolicArray.DRAIN_DELAY + 2 + Requantizer.LATENCY
#: Output FIFO depth: one row per cycle keeps flowing while o is always ready.
OUT_DEPTH = DRAIN_STAGES + 2
#: Cycles from a command's acceptance to the first cycle operands can be taken.
FIRST_TAKE = 2


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


def drain_latency(cfg: EngineConfig) -> int:
    """Cycles from a bank row's load to the edge at which its output beat is sent.

    With ``o`` always ready: the drain stages, then one cycle in the output FIFO.
    """
    return DRAIN_STAGES + 1


def cycle_bound(cfg: EngineConfig, m: int, k: int, n: int, images: int = 1) -> int:
    """Upper bound of ``cycles`` for a stall-free GEMM (see the module docstring)."""
    tiles = -(-m // cfg.rows) * -(-n // cfg.cols)
    w = wave_latency(cfg)
    return (
        tiles * max(k * images, w + cfg.rows) + w + cfg.rows + drain_latency(cfg) + FIRST_TAKE - 1
    )


def _lane_mask(count, lanes: int, skip: int = 0):  # noqa: ANN001, ANN202
    """Bit ``i`` set when lane ``i`` is inside a matrix edge ``count - skip`` lanes away.

    ``count > skip + i``: comparisons with constants, no subtraction.
    """
    return Cat(*(count > skip + i for i in range(lanes)))


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
        images = cmd.images if self.BATCHED else 1
        k_one, img_one = cmd.k == 1, images == 1  # each reduction restarts its flag from these
        # The feeder's decisions (``fire`` and what it loads) come from registers through
        # a few LUTs: down-counters, and flags and lane masks registered ahead of use
        # rather than comparisons on the counters in the path of ``fire``.
        m_rem = Signal(dim)  # rows of A from the current tile row on
        n_rem = Signal(dim)  # columns of B from the current tile column on
        k_left = Signal(dim)  # beats left in this image's reduction, minus one
        img_left = Signal(dim)
        last_k = Signal()  # k_left == 0
        last_img = Signal()  # img_left == 0
        row_mask = Signal(R)  # lane r of A is inside the matrix: m_rem > r
        col_mask = Signal(C)  # lane c of B is inside the matrix: n_rem > c
        # Operands are being fed: from the cycle after ``started`` to the command's last
        # beat. One register, so ``fire`` depends on no busy/started/done logic.
        feeding = Signal()
        pending = Signal()  # a tile's last beat has been issued and it is not drained yet
        pend_rows = Signal(range(R + 1))
        pend_final = Signal()
        bank_full = Signal()
        drain_row = Signal(range(R + 1))
        tile_base = Signal(range(max(cfg.acc_depth, 1) + R))  # accumulator-memory row of tile
        # tile_base + drain_row, kept as a counter: the block RAMs' address is a register.
        acc_addr = Signal.like(tile_base)

        # -- command --------------------------------------------------------
        # Acceptance loads only the command register; the walk state and the LFSR
        # seeds follow from that register in the next cycle (``started``, when the
        # feeder does not fire), so the acceptance net drives few flip-flops and no
        # logic sits between the sender's payload register and the walk state.
        accepted = self.cmd.valid & self.cmd.ready
        started = Signal()
        m.d.comb += [self.cmd.ready.eq(~self.busy), lanes.seed.eq(cmd.seed), lanes.load.eq(started)]
        m.d.sync += started.eq(accepted)
        with m.If(accepted):
            m.d.sync += [cmd.eq(self.cmd.payload), self.busy.eq(1), self.cycles.eq(0)]
        with m.If(started):
            m.d.sync += [
                m_rem.eq(cmd.m),
                n_rem.eq(cmd.n),
                row_mask.eq(_lane_mask(cmd.m, R)),
                col_mask.eq(_lane_mask(cmd.n, C)),
                k_left.eq(cmd.k - 1),
                last_k.eq(k_one),
                img_left.eq(images - 1),
                last_img.eq(img_one),
                feeding.eq(1),
                tile_base.eq(0),
                acc_addr.eq(0),
            ]
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # What a tile's last beat moves to, registered from the walk state. They are
        # read only at a tile's last beat, which comes at least two cycles after the
        # state they follow changed (a start, or the previous tile's last beat, after
        # which the bank is pending for a whole capture wave); at a start they follow
        # the command itself. Each is a comparison with constants, computed for both
        # sources; ``started`` only chooses between the results.
        last_row = Signal()  # the current tile row is the last: m_rem <= R
        last_col = Signal()  # the current tile column is the last: n_rem <= C
        next_rows = Signal(R)  # the row mask of the next tile row: m_rem - R > r
        next_cols = Signal(C)  # the column mask of the next tile column
        first_cols = Signal(C)  # the column mask of a tile row's first column

        def ahead(rows, cols) -> list:  # noqa: ANN001
            return [
                last_row.eq(rows <= R),
                last_col.eq(cols <= C),
                next_rows.eq(_lane_mask(rows, R, skip=R)),
                next_cols.eq(_lane_mask(cols, C, skip=C)),
            ]

        with m.If(started):
            m.d.sync += ahead(cmd.m, cmd.n)
        with m.Else():
            m.d.sync += ahead(m_rem, n_rem)
        m.d.sync += first_cols.eq(_lane_mask(cmd.n, C))

        # -- operand feeder -------------------------------------------------
        last_beat = last_k & last_img
        fire = Signal()
        m.d.comb += [
            fire.eq(
                feeding
                & self.a.valid
                & self.b.valid
                & ~(last_beat & pending)  # the bank must be free before the next capture
            ),
            self.a.ready.eq(fire),
            self.b.ready.eq(fire),
        ]
        m.d.sync += [array.valid.eq(fire), array.last.eq(fire & last_beat)]
        a_in = Signal.like(array.a, reset_less=True)  # operands only matter under valid
        b_in = Signal.like(array.b, reset_less=True)
        m.d.comb += [array.a.eq(a_in), array.b.eq(b_in)]
        # Lanes past the matrix edge are zeroed: partial tiles need no host padding.
        # Loaded every cycle (``array.valid`` says which beats count), so ``fire``
        # does not fan out to the operand registers at every row's and column's edge.
        for r in range(R):
            m.d.sync += a_in[r].eq(Mux(row_mask[r], self.a.payload[r], 0))
        for c in range(C):
            m.d.sync += b_in[c].eq(Mux(col_mask[c], self.b.payload[c], 0))
        with m.If(fire):
            with m.If(last_k):
                m.d.sync += [k_left.eq(cmd.k - 1), last_k.eq(k_one)]
                with m.If(last_img):
                    m.d.sync += [img_left.eq(images - 1), last_img.eq(img_one)]
                with m.Else():
                    m.d.sync += [img_left.eq(img_left - 1), last_img.eq(img_left == 1)]
            with m.Else():
                m.d.sync += [k_left.eq(k_left - 1), last_k.eq(k_left == 1)]
            with m.If(last_beat):
                m.d.sync += [
                    pending.eq(1),
                    pend_rows.eq(Mux(last_row, m_rem, R)),
                    pend_final.eq(last_col & last_row),
                ]
                with m.If(last_col):
                    m.d.sync += [n_rem.eq(cmd.n), col_mask.eq(first_cols)]
                    with m.If(last_row):
                        m.d.sync += feeding.eq(0)
                    with m.Else():
                        m.d.sync += [m_rem.eq(m_rem - R), row_mask.eq(next_rows)]
                with m.Else():
                    m.d.sync += [n_rem.eq(n_rem - C), col_mask.eq(next_cols)]

        # -- drain: bank (+ partial sums) -> pipelined requantiser -> output FIFO ----
        # With an accumulator memory, a command with acc_first = 0 adds the
        # partial sums a previous command left there (full width, modular), and
        # one with acc_last = 0 writes the sums back instead of emitting them.
        # A row "loaded" out of the bank is taken from ``row0`` DRAIN_DELAY cycles
        # later and reaches the FIFO DRAIN_STAGES cycles after its load; a credit
        # count of rows loaded but not yet sent keeps the FIFO from overflowing
        # without a combinational path from ``o.ready`` into the array.
        load = Signal()
        # One copy of ``take`` per column: each loads that column's bank and partial-sum
        # registers, and the top row of the array spans the die.
        takes = replicate(m, delay(m, load, SystolicArray.DRAIN_DELAY - 1, "take"), C, "take")
        final_row = drain_row == pend_rows - 1
        acc_row = data.ArrayLayout(cfg.fmt.acc_shape, C)
        # Stage 1: the bank row and the partial sums read for it (zero when the command
        # starts its sums), each straight into a register; stage 2: their sum. So the
        # block RAM's slow clock-to-out never runs into the adder.
        bank_row = Signal(acc_row, reset_less=True)
        part = Signal(acc_row, reset_less=True)
        row = Signal(acc_row, reset_less=True)
        m.d.sync += [row[c].eq(bank_row[c] + part[c]) for c in range(C)]
        formed = DRAIN_STAGES - Requantizer.LATENCY  # cycles from a load to its row's sum
        for c in range(C):
            with m.If(takes[c]):
                m.d.sync += bank_row[c].eq(array.row0[c])
        if cfg.acc_depth:
            first, emit = cmd.acc_first, cmd.acc_last
            # A row's sum is written back `formed` cycles after its read; no command reads
            # that row again sooner: the read-during-write word is never used.
            m.submodules.accmem = accmem = collision_free_memory(acc_row, cfg.acc_depth)
            rd = accmem.read_port(domain="sync")
            wr = accmem.write_port()
            # The partial sums of the row loaded are read at its load and arrive with
            # its take (DRAIN_DELAY is at least the read port's one cycle), so rows
            # leave back to back also when they accumulate. The sum is written back
            # to the address it was read from once it is formed; the next command
            # reads it many cycles later.
            m.d.comb += [
                rd.addr.eq(delay(m, acc_addr, SystolicArray.DRAIN_DELAY - 1, "rd_addr")),
                rd.en.eq(1),
                wr.addr.eq(delay(m, acc_addr, formed, "wr_addr")),
                wr.data.eq(row),
                wr.en.eq(delay(m, load & ~emit, formed, "wr_en")),
            ]
            for c in range(C):
                with m.If(takes[c]):
                    m.d.sync += part[c].eq(Mux(first, 0, rd.data[c]))
        else:
            emit = Const(1)

        m.submodules.out_fifo = fifo = SyncFIFO(
            width=Shape.cast(output_layout(cfg)).width, depth=OUT_DEPTH
        )
        credits = Signal(range(OUT_DEPTH + 1))  # rows loaded for output, not yet sent
        sent = self.o.valid & self.o.ready
        m.d.comb += [
            load.eq(bank_full & (credits < OUT_DEPTH)),
            array.drain.eq(load),
        ]
        m.d.sync += credits.eq(credits + (load & emit) - sent)

        # A row's random words are the lanes' state when the row enters the requantiser;
        # the lanes step as it does (rows enter in order, one state each). The step is
        # a flag of the drain pipeline, copied per lane: not ``load``, which would fan
        # out to every lane's state.
        s_valid = Signal(DRAIN_STAGES)
        s_last = Signal(DRAIN_STAGES)
        m.d.comb += lanes.advance.eq(Cat(replicate(m, s_valid[formed - 2], C, "advance")))
        m.d.sync += [
            s_valid.eq(Cat(load & emit, s_valid[:-1])),
            s_last.eq(Cat(pend_final & final_row, s_last[:-1])),
        ]
        beat = Signal(output_layout(cfg))
        m.d.comb += [
            requant.acc.eq(row),
            requant.words.eq(lanes.words),
            requant.shift.eq(cmd.shift),
            requant.rounding.eq(cmd.rounding),
            beat.data.eq(requant.q),
            beat.last.eq(s_last[-1]),
            fifo.w_data.eq(beat),
            fifo.w_en.eq(s_valid[-1]),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
        ]

        with m.If(array.tile_done):
            m.d.sync += bank_full.eq(1)
        with m.If(load):
            m.d.sync += [drain_row.eq(drain_row + 1), acc_addr.eq(acc_addr + 1)]
            with m.If(final_row):
                m.d.sync += [
                    bank_full.eq(0),
                    pending.eq(0),
                    drain_row.eq(0),
                    tile_base.eq(tile_base + R),
                    acc_addr.eq(tile_base + R),
                ]
                with m.If(pend_final & ~emit):
                    m.d.sync += self.busy.eq(0)  # partial sums stored: nothing to emit
        with m.If(sent & self.o.payload.last):
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
