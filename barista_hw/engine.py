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

Accumulator read-out (``raw``, fixed-point engines built with
``EngineConfig.readout``): a command with ``raw`` set emits each row's accumulators
unrequantised, as ``P = EngineConfig.raw_beats`` beats in a row on the same lanes: beat
``j`` carries bits ``j*w .. j*w+w-1`` of each accumulator (``w`` the operand width; the
last beat sign-extended). The lanes and the link framing stay; a row then leaves every
``P`` cycles, so with ``Kt`` short the drain sets the pace (see :func:`cycle_bound`).
This is how a block's partial sum leaves a device, to be summed across devices at full
width and requantised once by the host (:mod:`barista.data_parallel`).

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

from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from . import lfsr
from .array import SystolicArray
from .config import EngineConfig, Pass
from .fprequant import MinifloatRequantizer
from .memory import collision_free_memory
from .mxformat import FloatGemmFormat
from .numfmt import SHIFT_BITS
from .passengine import FORWARD, WEIGHT_GRAD, PassGemmFormat
from .passrequant import PassRequantizer
from .pipeline import delay, replicate
from .requant import LfsrLanes, Requantizer

#: Bits of a per-pass engine's ``pass_id`` command field (:data:`barista_hw.command.PASS_IDS`).
PASS_ID_BITS = 2

CYCLE_BITS = 40
#: Registers from a bank row's load to its requantised beat entering the output FIFO:
#: the array's drain register, the row and its partial sums, their sum, then the
#: requantiser's stages.
DRAIN_STAGES = SystolicArray.DRAIN_DELAY + 2 + Requantizer.LATENCY
#: Output FIFO depth: one row per cycle keeps flowing while o is always ready.
OUT_DEPTH = DRAIN_STAGES + 2
#: Cycles from a command's acceptance to the first cycle operands can be taken.
FIRST_TAKE = 2
#: Cycles from a bank row's load to its sum with its partial sums (the requantiser's input).
FORMED = DRAIN_STAGES - Requantizer.LATENCY
#: Registers after a minifloat engine's requantiser, so its results leave as the fixed ones do.
MINIFLOAT_PAD = Requantizer.LATENCY - MinifloatRequantizer.LATENCY


def command_layout(cfg: EngineConfig, batched: bool) -> data.StructLayout:
    """Fields of an engine command; ``batched`` adds the image count of the gradient pass.

    A minifloat engine has no ``shift``: its requantiser's output format sets the scale.
    A per-pass engine (:class:`~barista_hw.passengine.PassGemmFormat`) adds ``pass_id``.
    """
    fields = {
        "m": unsigned(cfg.dim_bits),
        "k": unsigned(cfg.dim_bits),
        "n": unsigned(cfg.dim_bits),
        "shift": unsigned(SHIFT_BITS),
        "rounding": unsigned(2),
        "seed": unsigned(lfsr.STATE_BITS),
    }
    if is_minifloat(cfg):
        del fields["shift"]
    if batched:
        fields["images"] = unsigned(cfg.dim_bits)
    if cfg.acc_depth:
        fields["acc_first"] = unsigned(1)
        fields["acc_last"] = unsigned(1)
    if cfg.readout:
        fields["raw"] = unsigned(1)
    if isinstance(cfg.fmt, PassGemmFormat):
        fields["pass_id"] = unsigned(PASS_ID_BITS)
    return data.StructLayout(fields)


def output_layout(cfg: EngineConfig) -> data.StructLayout:
    return data.StructLayout(
        {"data": data.ArrayLayout(cfg.fmt.output_shape, cfg.cols), "last": unsigned(1)}
    )


def is_minifloat(cfg: EngineConfig) -> bool:
    """The engine multiplies minifloat or MX codes (a
    :data:`~barista_hw.mxformat.FloatGemmFormat`: exact accumulators, minifloat requantiser)."""
    return isinstance(cfg.fmt, FloatGemmFormat)


def _array_and_requantizer(
    cfg: EngineConfig,
) -> tuple[SystolicArray, Requantizer | MinifloatRequantizer | PassRequantizer]:
    """The array and the requantiser of ``cfg``'s format. The minifloat requantiser's output
    is delayed to the fixed one's latency, so every engine has the same cycle counts."""
    fmt = cfg.fmt
    if not isinstance(fmt, FloatGemmFormat):
        return SystolicArray(cfg.rows, cfg.cols, fmt, cfg.dataflow), Requantizer(fmt, cfg.cols)
    array = SystolicArray(cfg.rows, cfg.cols, fmt.arith, cfg.dataflow)
    # A per-pass engine's results: one requantiser per output format, selected per command.
    per_pass = isinstance(fmt, PassGemmFormat)
    kind, out = (PassRequantizer, fmt.outs) if per_pass else (MinifloatRequantizer, fmt.out)
    requant = kind(
        fmt.acc_width,
        fmt.acc_exp,
        out,
        cfg.cols,
        saturate=fmt.saturate,
        delay=MINIFLOAT_PAD,
    )
    return array, requant


def wave_latency(cfg: EngineConfig) -> int:
    """Cycles from issuing a tile's last beat to its results being in the bank."""
    return cfg.rows + cfg.cols + 2


def drain_latency(cfg: EngineConfig) -> int:
    """Cycles from a bank row's load to the edge at which its output beat is sent.

    With ``o`` always ready: the drain stages, then one cycle in the output FIFO.
    """
    return DRAIN_STAGES + 1


def cycle_bound(
    cfg: EngineConfig, m: int, k: int, n: int, images: int = 1, raw: bool = False
) -> int:
    """Upper bound of ``cycles`` for a stall-free GEMM (see the module docstring); ``raw``:
    a read-out command, whose rows each take ``raw_beats`` cycles to leave."""
    tiles = -(-m // cfg.rows) * -(-n // cfg.cols)
    w = wave_latency(cfg)
    beats = cfg.raw_beats if raw else 1
    drain = cfg.rows * beats
    return tiles * max(k * images, w + drain) + w + drain + drain_latency(cfg) + FIRST_TAKE - 1


def _lane_mask(count, lanes: int, skip: int = 0):  # noqa: ANN001, ANN202
    """Bit ``i`` set when lane ``i`` is inside a matrix edge ``count - skip`` lanes away.

    ``count > skip + i``: comparisons with constants, no subtraction.
    """
    return Cat(*(count > skip + i for i in range(lanes)))


def useful_macs(m: int, k: int, n: int, images: int = 1) -> int:
    return m * k * n * images


class _Walk:
    """The feeder's walk over a command's tiles and reductions: registers and their inputs.

    The feeder's decisions (``fire`` and what it loads) come from registers through a
    few LUTs: down-counters, and flags and lane masks registered ahead of use rather
    than comparisons on the counters in the path of ``fire``.
    """

    def __init__(self, cfg: EngineConfig, cmd: Signal, batched: bool) -> None:
        R, C, dim = cfg.rows, cfg.cols, cfg.dim_bits
        self.images = cmd.images if batched else 1
        # Each reduction restarts its flag from these.
        self.k_one, self.img_one = cmd.k == 1, self.images == 1
        self.m_rem = Signal(dim)  # rows of A from the current tile row on
        self.n_rem = Signal(dim)  # columns of B from the current tile column on
        self.k_left = Signal(dim)  # beats left in this image's reduction, minus one
        self.img_left = Signal(dim)
        self.last_k = Signal()  # k_left == 0
        self.last_img = Signal()  # img_left == 0
        self.row_mask = Signal(R)  # lane r of A is inside the matrix: m_rem > r
        self.col_mask = Signal(C)  # lane c of B is inside the matrix: n_rem > c
        # Operands are being fed: from the cycle after ``started`` to the command's last
        # beat. One register, so ``fire`` depends on no busy/started/done logic.
        self.feeding = Signal()
        self.last_beat = self.last_k & self.last_img
        # What a tile's last beat moves to (see GemmEngine._look_ahead).
        self.last_row = Signal()  # the current tile row is the last: m_rem <= R
        self.last_col = Signal()  # the current tile column is the last: n_rem <= C
        self.next_rows = Signal(R)  # the row mask of the next tile row: m_rem - R > r
        self.next_cols = Signal(C)  # the column mask of the next tile column
        self.first_cols = Signal(C)  # the column mask of a tile row's first column


class _Bank:
    """The array's result bank between a tile's capture and its drain, row by row."""

    def __init__(self, cfg: EngineConfig) -> None:
        R = cfg.rows
        self.pending = Signal()  # a tile's last beat has been issued and it is not drained yet
        self.pend_rows = Signal(range(R + 1))  # valid rows of that tile
        self.pend_final = Signal()  # that tile is the command's last
        self.bank_full = Signal()  # the array has captured that tile
        self.drain_row = Signal(range(R + 1))
        self.tile_base = Signal(range(max(cfg.acc_depth, 1) + R))  # accumulator-memory row
        # tile_base + drain_row, kept as a counter: the block RAMs' address is a register.
        self.acc_addr = Signal.like(self.tile_base)
        self.load = Signal()  # a bank row enters the drain this cycle
        self.final_row = self.drain_row == self.pend_rows - 1


class GemmEngine(wiring.Component):
    """Tiled ``C = A @ B`` on an R x C output-stationary array (see the module docstring).

    Ports (streams as in the module docstring):

    * ``cmd``: ``In(stream.Signature(command_layout(cfg, BATCHED)))``; ready while idle.
    * ``a``: ``In(stream.Signature(ArrayLayout(operand_shape, rows)))``.
    * ``b``: ``In(stream.Signature(ArrayLayout(operand_shape, cols)))``.
    * ``o``: ``Out(stream.Signature(output_layout(cfg)))``.
    * ``busy``: ``Out(1)``, from a command's acceptance to its final output transfer (for
      a command that keeps its sums in the accumulator memory: to its last row's load
      into the drain).
    * ``cycles``: ``Out(CYCLE_BITS)``, cleared at acceptance and counting while ``busy``.
    """

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
        array, requant = _array_and_requantizer(cfg)
        m.submodules.array = array
        m.submodules.requant = requant
        m.submodules.lanes = lanes = LfsrLanes(cfg.cols)
        cmd = Signal(command_layout(cfg, self.BATCHED))
        walk = _Walk(cfg, cmd, self.BATCHED)
        bank = _Bank(cfg)

        started = self._accept(m, cmd, lanes)
        self._start(m, cmd, walk, bank, started)
        self._count_cycles(m)
        self._look_ahead(m, cmd, walk, started)
        fire = self._feed(m, cmd, walk, bank, array)
        self._step(m, cmd, walk, bank, fire)
        row = self._drain(m, cmd, bank, array)
        fifo, sent = self._output_fifo(m, cmd, bank, array)
        self._requantise(m, cmd, bank, row, requant, lanes, fifo)
        self._retire(m, cmd, bank, array, sent)
        return m

    def _emit(self, cmd: Signal) -> Value:
        """The command's sums leave the engine (else they stay in the accumulator memory)."""
        return cmd.acc_last if self.cfg.acc_depth else Const(1)

    def _raw(self, cmd: Signal) -> Value:
        """The command's sums leave unrequantised (the accumulator read-out)."""
        return self._emit(cmd) & cmd.raw if self.cfg.readout else Const(0)

    def _accept(self, m: Module, cmd: Signal, lanes: LfsrLanes) -> Signal:
        """Take a command into ``cmd`` while idle; returns ``started``, set the cycle after.

        Acceptance loads only the command register; the walk state and the LFSR seeds
        follow from that register in the next cycle (``started``, when the feeder does not
        fire), so the acceptance net drives few flip-flops and no logic sits between the
        sender's payload register and the walk state.
        """
        accepted = self.cmd.valid & self.cmd.ready
        started = Signal()
        m.d.comb += [self.cmd.ready.eq(~self.busy), lanes.seed.eq(cmd.seed), lanes.load.eq(started)]
        m.d.sync += started.eq(accepted)
        with m.If(accepted):
            m.d.sync += [cmd.eq(self.cmd.payload), self.busy.eq(1), self.cycles.eq(0)]
        return started

    def _start(self, m: Module, cmd: Signal, walk: _Walk, bank: _Bank, started: Signal) -> None:
        """Load the walk from the command register: the first tile, its masks and counters."""
        R, C = self.cfg.rows, self.cfg.cols
        with m.If(started):
            m.d.sync += [
                walk.m_rem.eq(cmd.m),
                walk.n_rem.eq(cmd.n),
                walk.row_mask.eq(_lane_mask(cmd.m, R)),
                walk.col_mask.eq(_lane_mask(cmd.n, C)),
                walk.k_left.eq(cmd.k - 1),
                walk.last_k.eq(walk.k_one),
                walk.img_left.eq(walk.images - 1),
                walk.last_img.eq(walk.img_one),
                walk.feeding.eq(1),
                bank.tile_base.eq(0),
                bank.acc_addr.eq(0),
            ]

    def _count_cycles(self, m: Module) -> None:
        """``cycles`` counts while busy (cleared at acceptance, see :meth:`_accept`)."""
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

    def _look_ahead(self, m: Module, cmd: Signal, walk: _Walk, started: Signal) -> None:
        """Register what a tile's last beat moves to, from the walk state.

        They are read only at a tile's last beat, which comes at least two cycles after
        the state they follow changed (a start, or the previous tile's last beat, after
        which the bank is pending for a whole capture wave); at a start they follow the
        command itself. Each is a comparison with constants, computed for both sources;
        ``started`` only chooses between the results.
        """
        R, C = self.cfg.rows, self.cfg.cols

        def ahead(rows, cols) -> list:  # noqa: ANN001
            return [
                walk.last_row.eq(rows <= R),
                walk.last_col.eq(cols <= C),
                walk.next_rows.eq(_lane_mask(rows, R, skip=R)),
                walk.next_cols.eq(_lane_mask(cols, C, skip=C)),
            ]

        with m.If(started):
            m.d.sync += ahead(cmd.m, cmd.n)
        with m.Else():
            m.d.sync += ahead(walk.m_rem, walk.n_rem)
        m.d.sync += walk.first_cols.eq(_lane_mask(cmd.n, C))

    def _feed(
        self, m: Module, cmd: Signal, walk: _Walk, bank: _Bank, array: SystolicArray
    ) -> Signal:
        """Hand operand beats to the array; returns ``fire``, set when a beat is taken.

        Lanes past the matrix edge are zeroed: partial tiles need no host padding. The
        operand registers load every cycle (``array.valid`` says which beats count), so
        ``fire`` does not fan out to them at every row's and column's edge. A per-pass
        engine tags each code with its format (:meth:`_tags`).
        """
        fire = Signal()
        m.d.comb += [
            fire.eq(
                walk.feeding
                & self.a.valid
                & self.b.valid
                & ~(walk.last_beat & bank.pending)  # the bank must be free before the next capture
            ),
            self.a.ready.eq(fire),
            self.b.ready.eq(fire),
        ]
        m.d.sync += [array.valid.eq(fire), array.last.eq(fire & walk.last_beat)]
        a_in = Signal.like(array.a, reset_less=True)  # operands only matter under valid
        b_in = Signal.like(array.b, reset_less=True)
        m.d.comb += [array.a.eq(a_in), array.b.eq(b_in)]
        tag_a, tag_b = self._tags(cmd)
        for r in range(self.cfg.rows):
            m.d.sync += a_in[r].eq(tag_a(Mux(walk.row_mask[r], self.a.payload[r], 0)))
        for c in range(self.cfg.cols):
            m.d.sync += b_in[c].eq(tag_b(Mux(walk.col_mask[c], self.b.payload[c], 0)))
        return fire

    def _tags(self, cmd: Signal) -> tuple:
        """How A's and B's codes enter the array: as they are, or for a per-pass engine with
        the tag of their format above them (1: ``grad``; dY is A of the weight gradient and
        B of backward-data, :class:`~barista_hw.passpe.PassArith`)."""
        if not isinstance(self.cfg.fmt, PassGemmFormat):
            return (lambda v: v), (lambda v: v)
        grad_a = cmd.pass_id == WEIGHT_GRAD
        grad_b = ~grad_a & (cmd.pass_id != FORWARD)
        return (lambda v: Cat(v, grad_a)), (lambda v: Cat(v, grad_b))

    def _step(self, m: Module, cmd: Signal, walk: _Walk, bank: _Bank, fire: Signal) -> None:
        """Advance the walk on each beat: the reductions, then the tile column and row.

        A tile's last beat leaves the tile pending in the bank until it is drained.
        """
        R, C = self.cfg.rows, self.cfg.cols
        with m.If(fire):
            with m.If(walk.last_k):
                m.d.sync += [walk.k_left.eq(cmd.k - 1), walk.last_k.eq(walk.k_one)]
                with m.If(walk.last_img):
                    m.d.sync += [walk.img_left.eq(walk.images - 1), walk.last_img.eq(walk.img_one)]
                with m.Else():
                    m.d.sync += [
                        walk.img_left.eq(walk.img_left - 1),
                        walk.last_img.eq(walk.img_left == 1),
                    ]
            with m.Else():
                m.d.sync += [walk.k_left.eq(walk.k_left - 1), walk.last_k.eq(walk.k_left == 1)]
            with m.If(walk.last_beat):
                m.d.sync += [
                    bank.pending.eq(1),
                    bank.pend_rows.eq(Mux(walk.last_row, walk.m_rem, R)),
                    bank.pend_final.eq(walk.last_col & walk.last_row),
                ]
                with m.If(walk.last_col):
                    m.d.sync += [walk.n_rem.eq(cmd.n), walk.col_mask.eq(walk.first_cols)]
                    with m.If(walk.last_row):
                        m.d.sync += walk.feeding.eq(0)
                    with m.Else():
                        m.d.sync += [
                            walk.m_rem.eq(walk.m_rem - R),
                            walk.row_mask.eq(walk.next_rows),
                        ]
                with m.Else():
                    m.d.sync += [walk.n_rem.eq(walk.n_rem - C), walk.col_mask.eq(walk.next_cols)]

    def _drain(self, m: Module, cmd: Signal, bank: _Bank, array: SystolicArray) -> Signal:
        """Form the sum of each bank row loaded and its partial sums; returns that ``row``.

        A row loaded out of the bank is taken from ``row0`` DRAIN_DELAY cycles later and
        its sum is formed :data:`FORMED` cycles after its load. Stage 1: the bank row and
        the partial sums read for it (zero when the command starts its sums), each
        straight into a register; stage 2: their sum. So the block RAM's slow
        clock-to-out never runs into the adder.
        """
        C = self.cfg.cols
        # One copy of ``take`` per column: each loads that column's bank and partial-sum
        # registers, and the top row of the array spans the die.
        takes = replicate(m, delay(m, bank.load, SystolicArray.DRAIN_DELAY - 1, "take"), C, "take")
        acc_row = data.ArrayLayout(self.cfg.fmt.acc_shape, C)
        bank_row = Signal(acc_row, reset_less=True)
        part = Signal(acc_row, reset_less=True)
        row = Signal(acc_row, reset_less=True)
        m.d.sync += [row[c].eq(bank_row[c] + part[c]) for c in range(C)]
        for c in range(C):
            with m.If(takes[c]):
                m.d.sync += bank_row[c].eq(array.row0[c])
        if self.cfg.acc_depth:
            self._partial_sums(m, cmd, bank, takes, part, row)
        return row

    def _partial_sums(
        self, m: Module, cmd: Signal, bank: _Bank, takes: list[Signal], part: Signal, row: Signal
    ) -> None:
        """The accumulator memory: ``part`` reads a row's partial sums, its sum goes back.

        A command with ``acc_first`` = 0 adds the partial sums a previous command left
        (full width, modular), and one with ``acc_last`` = 0 writes the sums back instead
        of emitting them. The partial sums of the row loaded are read at its load and
        arrive with its take (DRAIN_DELAY is at least the read port's one cycle), so rows
        leave back to back also when they accumulate. A row's sum is written back to the
        address it was read from once it is formed; no command reads that row again
        sooner (the next reads it many cycles later): the read-during-write word is never
        used.
        """
        acc_row = data.ArrayLayout(self.cfg.fmt.acc_shape, self.cfg.cols)
        m.submodules.accmem = accmem = collision_free_memory(acc_row, self.cfg.acc_depth)
        rd = accmem.read_port(domain="sync")
        wr = accmem.write_port()
        m.d.comb += [
            rd.addr.eq(delay(m, bank.acc_addr, SystolicArray.DRAIN_DELAY - 1, "rd_addr")),
            rd.en.eq(1),
            wr.addr.eq(delay(m, bank.acc_addr, FORMED, "wr_addr")),
            wr.data.eq(row),
            wr.en.eq(delay(m, bank.load & ~self._emit(cmd), FORMED, "wr_en")),
        ]
        for c in range(self.cfg.cols):
            with m.If(takes[c]):
                m.d.sync += part[c].eq(Mux(cmd.acc_first, 0, rd.data[c]))

    def _output_fifo(
        self, m: Module, cmd: Signal, bank: _Bank, array: SystolicArray
    ) -> tuple[SyncFIFO, Value]:
        """The output FIFO and the drain's flow control; returns it and ``sent`` (o's transfer).

        A row reaches the FIFO DRAIN_STAGES cycles after its load; a credit count of rows
        loaded but not yet sent keeps the FIFO from overflowing without a combinational
        path from ``o.ready`` into the array.
        """
        beats = self.cfg.raw_beats
        depth = max(OUT_DEPTH, beats)
        m.submodules.out_fifo = fifo = SyncFIFO(
            width=Shape.cast(output_layout(self.cfg)).width, depth=depth
        )
        credits = Signal(range(depth + 1))  # beats of rows loaded for output, not yet sent
        sent = self.o.valid & self.o.ready
        room: Value = credits < OUT_DEPTH
        added: Value = bank.load & self._emit(cmd)
        if self.cfg.readout:
            # A read-out row is P beats: room for all of them, and P cycles before the next
            # row's load, so the serialiser (_read_out) has sent the last one's.
            raw = self._raw(cmd)
            gap = Signal(range(beats))
            with m.If(bank.load & raw):
                m.d.sync += gap.eq(beats - 1)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)
            room = Mux(raw, (credits <= depth - beats) & (gap == 0), room)
            added = Mux(added, Mux(raw, beats, 1), 0)
        m.d.comb += [bank.load.eq(bank.bank_full & room), array.drain.eq(bank.load)]
        m.d.sync += credits.eq(credits + added - sent)
        return fifo, sent

    def _requantise(
        self,
        m: Module,
        cmd: Signal,
        bank: _Bank,
        row: Signal,
        requant: Requantizer | MinifloatRequantizer | PassRequantizer,
        lanes: LfsrLanes,
        fifo: SyncFIFO,
    ) -> None:
        """Requantise each summed row into an output beat, through the FIFO to ``o``.

        A row's random words are the lanes' state when the row enters the requantiser;
        the lanes step as it does (rows enter in order, one state each). The step is a
        flag of the drain pipeline, copied per lane: not ``load``, which would fan out to
        every lane's state.
        """
        C = self.cfg.cols
        s_valid = Signal(DRAIN_STAGES)
        s_last = Signal(DRAIN_STAGES)
        m.d.comb += lanes.advance.eq(Cat(replicate(m, s_valid[FORMED - 2], C, "advance")))
        requantised = bank.load & self._emit(cmd)
        if self.cfg.readout:
            requantised &= ~self._raw(cmd)
        m.d.sync += [
            s_valid.eq(Cat(requantised, s_valid[:-1])),
            s_last.eq(Cat(bank.pend_final & bank.final_row, s_last[:-1])),
        ]
        beat = Signal(output_layout(self.cfg))
        if isinstance(requant, PassRequantizer):  # forward results, or the gradients'
            m.d.comb += requant.sel.eq(cmd.pass_id != FORWARD)
        w_data, w_en = beat, s_valid[-1]
        if self.cfg.readout:
            raw_beat, raw_valid = self._read_out(m, cmd, bank, row, s_last[FORMED - 1])
            w_data, w_en = Mux(raw_valid, raw_beat, beat), w_en | raw_valid
        m.d.comb += [
            requant.acc.eq(row),
            requant.words.eq(lanes.words),
            *([] if is_minifloat(self.cfg) else [requant.shift.eq(cmd.shift)]),
            requant.rounding.eq(cmd.rounding),
            beat.data.eq(requant.q),
            beat.last.eq(s_last[-1]),
            fifo.w_data.eq(w_data),
            fifo.w_en.eq(w_en),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
        ]

    def _read_out(
        self, m: Module, cmd: Signal, bank: _Bank, row: Signal, last: Value
    ) -> tuple[Signal, Value]:
        """The accumulator read-out: a ``raw`` row's sums as ``raw_beats`` output beats.

        The row is taken into a shift register when it is formed (``last``: it is the
        command's final row, at that time), and each cycle its low operand-width bits go
        out as one beat and it shifts right (arithmetically) by that width. Returns the beat
        and its valid flag (no requantised beat is due then: the command is a read-out).
        """
        C, beats = self.cfg.cols, self.cfg.raw_beats
        w = self.cfg.fmt.operand_shape.width
        take = delay(m, bank.load & self._raw(cmd), FORMED, "raw_take")
        sums = Signal(data.ArrayLayout(signed(beats * w), C), reset_less=True)
        left = Signal(range(beats + 1))  # beats of the row still to send
        final = Signal()
        with m.If(left != 0):
            m.d.sync += [left.eq(left - 1), *(sums[c].eq(sums[c] >> w) for c in range(C))]
        with m.If(take):
            m.d.sync += [left.eq(beats), final.eq(last), *(sums[c].eq(row[c]) for c in range(C))]
        beat = Signal(output_layout(self.cfg))
        m.d.comb += [beat.data[c].eq(sums[c][:w]) for c in range(C)]
        m.d.comb += beat.last.eq(final & (left == 1))
        return beat, left != 0

    def _retire(
        self, m: Module, cmd: Signal, bank: _Bank, array: SystolicArray, sent: Value
    ) -> None:
        """Count the bank's rows out; free the bank after a tile's last, end the command."""
        R = self.cfg.rows
        with m.If(array.tile_done):
            m.d.sync += bank.bank_full.eq(1)
        with m.If(bank.load):
            m.d.sync += [bank.drain_row.eq(bank.drain_row + 1), bank.acc_addr.eq(bank.acc_addr + 1)]
            with m.If(bank.final_row):
                m.d.sync += [
                    bank.bank_full.eq(0),
                    bank.pending.eq(0),
                    bank.drain_row.eq(0),
                    bank.tile_base.eq(bank.tile_base + R),
                    bank.acc_addr.eq(bank.tile_base + R),
                ]
                with m.If(bank.pend_final & ~self._emit(cmd)):
                    m.d.sync += self.busy.eq(0)  # partial sums stored: nothing to emit
        with m.If(sent & self.o.payload.last):
            m.d.sync += self.busy.eq(0)


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
