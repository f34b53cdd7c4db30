"""The device's decoder: each unit's command from the record, its static command and the
device's registers, as :func:`~.device.command` computes it from the model's state.

State (:mod:`.decode` says what the host writes), in memories (one write and one
registered read port each), so it grows by memory words, not by logic an entry:

* the **exponent file**, an entry a tensor: ``frac`` (the next write's exponent),
  ``stored`` (what memory holds, with ``has_stored``), ``width`` (three memories read at
  one address), ``fixed`` (a flip-flop a tensor: the merge, the writes and SCALE test
  it) and the iteration's statistics (peak, saturated, overflow with written: three
  memories read at one address), the model's :class:`~barista_hw.device.scaling.
  ScaleTable`;
* the **host registers** (32 bits, a memory): seeds, encoded scalars, the host's
  exponents.

Decode (a record offered on ``valid``): the decoder reads the entries the record names
one a cycle (the effective exponents of a/src, b/src2, dst; ``frac`` of out/dst, dst2)
and, beside them, the registers (the seed or a HOST_IN's exponent; an SGD's lr .. lr + 3,
mom, mom + 1): 6 cycles, an SGD 8. Then ``ready``: ``command`` and ``writes`` are the
record's until ``take``. A GEMM's ``shift`` is ``clamp(stored(a) + stored(b) -
frac(out), 0, MAX_SHIFT)`` and its ``seed`` a register; a VEC's ``shifts``, ``align`` and
``scalars`` add to the static ones the exponent terms of :class:`~.vector.VecCommand` 's
constructors (the static command holds the rest), its ``seed`` a register. ``writes``
names the tensor each of the unit's statistics streams writes and its exponent.

Updates: a ``take`` applies ``writes`` one a cycle (``stored``, and ``frac`` of a fixed
tensor, as :meth:`ScaleTable.wrote`; 3 cycles) before the next record is decoded. A
valid ``reports`` entry is queued (:data:`QUEUE` deep a port: a unit reports once an
instruction) and merged into its tensor's statistics one at a time by read-modify-write
(2 cycles; peak and overflow the largest, saturation summed; fixed tensors keep none).
A report that finds its queue full is lost: ``lost`` sets that port's bit and keeps it
(sticky until reset; the host reads it back at :data:`~.decode.STATUS`,
:data:`REPORT_NAMES` names the ports), so a lost report is never silent.
``scale`` (a pulse) waits until the queues are drained, then walks the entries one a
cycle: :func:`~barista_hw.device.scaling.next_frac` of every written entry, statistics
cleared; ``scale_done`` pulses in its last cycle. A register access (``reg_write`` or
``reg_read``) is done in a cycle ``reg_ready`` is high (no record being decoded or
written, the queues drained, no SCALE pending): a write puts ``reg_data`` at
``reg_addr`` (a host register, or from :data:`EXP_BASE` word ``addr % 4`` of an entry);
a read (an entry word, :func:`~.decode.read_address`, or ``lost`` at
:data:`~.decode.STATUS` with :data:`~.decode.READ`) gives the word on ``reg_value`` in
the next cycle.

Ports: ``record`` (in, 256), ``static`` (in, :func:`~.decode.command_layout`), ``decode``
(in, :func:`~.decode.decode_layout`), all three held while ``valid`` (in); ``ready``
(out), ``take`` (in, only with ``ready``); ``command`` (out, the decoded command),
``writes`` (out, :func:`target_layout` x 3), both valid with ``ready``; ``reports`` (in,
:func:`report_layout` x :data:`REPORTS`); ``scale`` (in), ``scale_done`` (out);
``reg_write``, ``reg_read`` (in), ``reg_addr`` (in, 16), ``reg_data`` (in, 32),
``reg_ready`` (out), ``reg_value`` (out, 32); ``lost`` (out, :data:`REPORTS`: sticky,
a report lost at that port's full queue).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from barista_hw.memory import collision_free_memory
from barista_hw.numfmt import MAX_SHIFT

from ..isa import ACC_LAST, Op
from ..memory import DeviceConfig
from ..scaling import MAX_FRAC, MIN_FRAC, ZERO_GROWTH
from ..vector import VecOp
from .decode import (
    EXP_BASE,
    FRAC_BITS,
    READ,
    REG_BITS,
    STATUS,
    STORED_BITS,
    TENSOR_BITS,
    command_layout,
    decode_layout,
    entry_layout,
    field_at,
)
from .sequencer import RECORD_BITS
from .stats import PEAK_BITS
from .vector import RAW_BITS, SHIFT_BITS, STREAMS

__all__ = [
    "MEMORIES",
    "QUEUE",
    "REPORTS",
    "REPORT_NAMES",
    "Decoder",
    "entry_depth",
    "report_layout",
    "target_layout",
]

REPORTS = STREAMS + 2  # VecMem's streams, the GEMM unit, the link
#: Who reports on each port (a lost report's culprit, :attr:`Decoder.lost`).
REPORT_NAMES = (*(f"VecMem's stream {k}" for k in range(STREAMS)), "the GEMM unit", "the link")
QUEUE = 4  # reports waiting a port
WIDE = signed(STORED_BITS + 3)  # exponent sums
ENTRY_READS = 5  # eff of a/src, b/src2, dst; frac of out/dst, dst2
REG_READS = 7  # the seed; an SGD's lr .. lr + 3, mom, mom + 1
#: Bits of a word of the exponent file's memories (``stored`` with ``has_stored``) and of
#: the statistics' (``overflow`` with ``written``).
MEMORIES = {
    "frac": FRAC_BITS,
    "stored": STORED_BITS + 1,
    "width": entry_layout().members["width"],
    "peak": PEAK_BITS,
    "saturated": PEAK_BITS,
    "overflow": RAW_BITS + 1,
}


STATS = ("peak", "saturated", "overflow")


def entry_depth(tensors: int) -> int:
    """Words of the entry memories: a power of two, so every index reads a word."""
    return 1 << max(1, (tensors - 1).bit_length())


def target_layout() -> data.StructLayout:
    """A statistics stream's tensor and the exponent its write leaves."""
    return data.StructLayout(
        {"use": 1, "tensor": unsigned(TENSOR_BITS), "frac": signed(STORED_BITS)}
    )


def report_layout() -> data.StructLayout:
    """A unit's statistics of one write of ``tensor``."""
    return data.StructLayout(
        {
            "valid": 1,
            "tensor": unsigned(TENSOR_BITS),
            "peak": unsigned(PEAK_BITS),
            "saturated": unsigned(PEAK_BITS),
            "overflow": unsigned(RAW_BITS),
        }
    )


_STATES = {"IDLE": 0, "READ": 1, "DONE": 2, "WRITE": 3, "WALK": 4}


def _pick(values: list[Value], index: Value) -> Value:
    """``values[index]`` (the last for a larger index), a mux chain."""
    out = values[-1]
    for k in reversed(range(len(values) - 1)):
        out = Mux(index == k, values[k], out)
    return out


class _Port:
    """A memory of ``depth`` words of ``width`` bits: a write port and a registered read
    port at ``addr``."""

    def __init__(self, m: Module, name: str, width: int, depth: int, addr: Value) -> None:
        m.submodules[name] = mem = collision_free_memory(width, depth)
        self.w, self.r = mem.write_port(), mem.read_port(domain="sync")
        m.d.comb += self.r.addr.eq(addr)

    def write(self, m: Module, addr: Value, value: Value) -> None:
        m.d.comb += [self.w.addr.eq(addr), self.w.data.eq(value), self.w.en.eq(1)]


class _File:
    """The exponent file's and the host registers' memories and the read addresses."""

    def __init__(self, m: Module, tensors: int, registers: int) -> None:
        depth = entry_depth(tensors)
        self.bits = depth.bit_length() - 1
        self.ea = Signal(self.bits)  # the exponents' read address
        self.sa = Signal(self.bits)  # the statistics'
        self.ra = Signal(range(registers))  # the host registers'
        self.frac, self.stored, self.width, self.peak, self.sat, self.ovf = (
            _Port(m, name, bits, depth, self.sa if name in STATS else self.ea)
            for name, bits in MEMORIES.items()
        )
        self.regs = _Port(m, "regs", REG_BITS, registers, self.ra)
        self.fixed = Signal(depth)

    def eff(self) -> Value:
        """The effective exponent of the entry read: ``stored``, else ``frac``."""
        s = self.stored.r.data
        return Mux(s[STORED_BITS], s[:STORED_BITS].as_signed(), self.frac.r.data.as_signed())

    def fixed_at(self, index: Value) -> Value:
        return self.fixed.bit_select(index[: self.bits], 1)


class Decoder(wiring.Component):
    """The decoder (module docstring) of ``tensors`` exponent entries and ``registers``
    host registers."""

    def __init__(self, config: DeviceConfig, *, tensors: int = 32, registers: int = 64) -> None:
        self.config, self.tensors, self.registers = config, tensors, registers
        super().__init__(
            {
                "record": In(RECORD_BITS),
                "static": In(command_layout(config)),
                "decode": In(decode_layout()),
                "valid": In(1),
                "ready": Out(1),
                "take": In(1),
                "command": Out(command_layout(config)),
                "writes": Out(data.ArrayLayout(target_layout(), STREAMS)),
                "reports": In(data.ArrayLayout(report_layout(), REPORTS)),
                "scale": In(1),
                "scale_done": Out(1),
                "reg_write": In(1),
                "reg_read": In(1),
                "reg_addr": In(16),
                "reg_data": In(REG_BITS),
                "reg_ready": Out(1),
                "reg_value": Out(REG_BITS),
                "lost": Out(REPORTS),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        f = _File(m, self.tensors, self.registers)
        exps = [Signal(signed(STORED_BITS), name=f"exp{k}") for k in range(ENTRY_READS)]
        regs = [Signal(REG_BITS, name=f"hreg{k}") for k in range(REG_READS)]
        # The read step, the write step, the walk's entry:
        self._step = Signal(range(max(REG_READS, self.tensors) + 1), name="step")
        self._kept = Signal(data.ArrayLayout(target_layout(), STREAMS), name="kept")
        m.d.comb += self.command.as_value().eq(self.static.as_value())
        self._decode(m, exps, regs)
        self._readback(m, f)
        walking, merging, drained = Signal(), Signal(), Signal()
        queues = self._merge(m, f, walking, merging)
        pending = Signal()  # a SCALE waiting for the queues
        queued = Cat(q.r_rdy for q in queues) | Cat(r.valid for r in self.reports)
        m.d.comb += drained.eq(~queued.any() & ~merging)
        with m.If(self.scale):
            m.d.sync += pending.eq(1)
        # If chains on a state register, not an FSM: Yosys writes its partial case.
        state = self._state = Signal(range(len(_STATES)), name="decoder_state")
        with m.If(state == _STATES["IDLE"]):
            self._idle(m, f, pending, drained)
        with m.Elif(state == _STATES["READ"]):
            self._read(m, f, exps, regs)
        with m.Elif(state == _STATES["DONE"]):
            self._done(m)
        with m.Elif(state == _STATES["WRITE"]):
            self._write(m, f)
        with m.Else():
            self._walk(m, f)
        m.d.comb += walking.eq(state == _STATES["WALK"])
        return m

    def _go(self, m: Module, state: str) -> None:
        m.d.sync += self._state.eq(_STATES[state])

    def _field(self, op: Op, name: str) -> Value:
        at, bits = field_at(op, name)
        return self.record[at : at + bits]

    # -- the decoder's states -----------------------------------------------------------------
    def _addresses(self) -> tuple[list[Value], list[Value]]:
        """The entries and the host registers a record reads, in read order."""
        gemm, dec = self.record[:8] == Op.GEMM, self.decode
        src, src2 = self._field(Op.VEC, "src"), self._field(Op.VEC, "src2")
        dst, dst2 = self._field(Op.VEC, "dst"), self._field(Op.VEC, "dst2")
        entries = [Mux(gemm, dec.a, src), Mux(gemm, dec.b, src2), dst, Mux(gemm, dec.out, dst)]
        lr, mom = dec.lr, dec.mom
        return [*entries, dst2], [dec.reg, lr, lr + 1, lr + 2, lr + 3, mom, mom + 1]

    def _idle(self, m: Module, f: _File, pending: Signal, drained: Signal) -> None:
        """A SCALE once drained; a register access; a record's first reads."""
        step = self._step
        entries, registers = self._addresses()
        m.d.comb += [f.ea.eq(entries[0]), f.ra.eq(registers[0])]
        m.d.sync += step.eq(1)
        with m.If(pending & drained):
            m.d.sync += [pending.eq(0), step.eq(0)]
            self._go(m, "WALK")
        with m.Else():
            m.d.comb += self.reg_ready.eq(drained & ~pending)
            with m.If(self.reg_ready & (self.reg_write | self.reg_read)):
                self._register(m, f)
            with m.Elif(self.valid):
                self._go(m, "READ")

    def _read(self, m: Module, f: _File, exps: list[Signal], regs: list[Signal]) -> None:
        """Step ``k``: read the record's entry and register ``k``, keep those of ``k - 1``."""
        step = self._step
        entries, registers = self._addresses()
        m.d.comb += [f.ea.eq(_pick(entries, step)), f.ra.eq(_pick(registers, step))]
        for k in range(REG_READS):
            with m.If(step == k + 1):
                if k < ENTRY_READS:  # a/src, b/src2, dst: effective; out/dst, dst2: frac
                    got = f.eff() if k < 3 else f.frac.r.data.as_signed()
                    m.d.sync += exps[k].eq(got)
                m.d.sync += regs[k].eq(f.regs.r.data)
        sgd = (self.record[:8] == Op.VEC) & (self.record[8:16] == VecOp.SGD)
        m.d.sync += step.eq(step + 1)
        with m.If(step == Mux(sgd, REG_READS, ENTRY_READS)):
            self._go(m, "DONE")

    def _done(self, m: Module) -> None:
        """``command`` and ``writes`` ready; a take keeps the writes to apply."""
        step, kept = self._step, self._kept
        m.d.comb += self.ready.eq(1)
        with m.If(self.take):
            m.d.sync += [kept.eq(self.writes), step.eq(0)]
            self._go(m, "WRITE")
        with m.Elif(~self.valid):
            self._go(m, "IDLE")

    def _write(self, m: Module, f: _File) -> None:
        """Step ``k``: write ``k`` of the taken record (``stored``; ``frac`` if fixed)."""
        step, kept = self._step, self._kept
        w = kept[step[:2]]
        with m.If(w.use):
            at = w.tensor[: f.bits]
            f.stored.write(m, at, Cat(w.frac, Value.cast(1)))
            with m.If(f.fixed_at(at)):
                f.frac.write(m, at, w.frac[:FRAC_BITS])
        m.d.sync += step.eq(step + 1)
        with m.If(step == STREAMS - 1):
            self._go(m, "IDLE")

    def _walk(self, m: Module, f: _File) -> None:
        """SCALE: read entry ``k``, update entry ``k - 1``; ``scale_done`` at the last."""
        step = self._step
        m.d.comb += [f.ea.eq(step), f.sa.eq(step)]
        at = Signal(f.bits, name="walk_at")
        m.d.comb += at.eq(step - 1)
        with m.If(step != 0):
            new = self._next_frac(m, f)
            with m.If(f.ovf.r.data[RAW_BITS] & ~f.fixed_at(at)):
                f.frac.write(m, at, new[:FRAC_BITS])
            for port in (f.peak, f.sat, f.ovf):
                port.write(m, at, 0)
        m.d.sync += step.eq(step + 1)
        with m.If(step == self.tensors):
            m.d.comb += self.scale_done.eq(1)
            self._go(m, "IDLE")

    def _next_frac(self, m: Module, f: _File) -> Signal:
        """:func:`~barista_hw.device.scaling.next_frac` of the entry read (one instance)."""
        peak, sat, ovf = f.peak.r.data, f.sat.r.data, f.ovf.r.data[:RAW_BITS]
        length = Signal(range(PEAK_BITS + 1), name="peak_len")
        for j in range(PEAK_BITS):  # the highest set bit wins
            with m.If(peak[j]):
                m.d.comb += length.eq(j + 1)
        raw, base = Signal(WIDE, name="next_raw"), f.eff()
        with m.If(sat != 0):
            m.d.comb += raw.eq(base - Mux(ovf > 1, ovf, 1) - 1)
        with m.Elif(peak == 0):
            m.d.comb += raw.eq(base + ZERO_GROWTH)
        with m.Else():
            m.d.comb += raw.eq(base + f.width.r.data - 2 - length)
        new = Signal(WIDE, name="next_frac")
        m.d.comb += new.eq(Mux(raw < MIN_FRAC, MIN_FRAC, Mux(raw > MAX_FRAC, MAX_FRAC, raw)))
        return new

    def _register(self, m: Module, f: _File) -> None:
        """A host register, or (from :data:`EXP_BASE`) word ``addr % 4`` of an entry: the
        exponents, peak, saturated, overflow and written; a read's word next cycle."""
        addr, value = self.reg_addr, self.reg_data
        index, word = addr[2 : READ.bit_length() - 1], addr[:2]  # below READ's bit
        at = index[: f.bits]
        entry = (addr >= EXP_BASE) & (index < self.tensors)
        with m.If(self.reg_write & (addr < self.registers)):
            f.regs.write(m, addr, value)
        with m.If(self.reg_write & entry):
            e = data.View(entry_layout(), value[: entry_layout().size])
            with m.If(word == 0):
                f.frac.write(m, at, e.frac)
                f.stored.write(m, at, Cat(e.stored, e.has_stored))
                f.width.write(m, at, e.width)
                m.d.sync += f.fixed.bit_select(at, 1).eq(e.fixed)
            ports = (f.peak, f.sat, f.ovf)
            for k, port in enumerate(ports, start=1):
                with m.If(word == k):
                    port.write(m, at, value)
        m.d.comb += [f.ea.eq(at), f.sa.eq(at)]
        with m.If(self.reg_read):
            m.d.sync += [
                self._read_word.eq(word),
                self._read_fixed.eq(f.fixed_at(at)),
                self._read_status.eq((addr & ~READ) == STATUS),
            ]

    def _readback(self, m: Module, f: _File) -> None:
        """``reg_value``: the word read in the cycle before, as :func:`~.decode.
        exponent_writes` lays the four words out."""
        self._read_word, self._read_fixed = Signal(2, name="read_word"), Signal(name="read_fixed")
        self._read_status = Signal(name="read_status")
        e = Signal(entry_layout(), name="read_entry")
        s = f.stored.r.data
        m.d.comb += [
            e.frac.eq(f.frac.r.data),
            e.stored.eq(s[:STORED_BITS]),
            e.has_stored.eq(s[STORED_BITS]),
            e.fixed.eq(self._read_fixed),
            e.width.eq(f.width.r.data),
        ]
        words = [e.as_value(), f.peak.r.data, f.sat.r.data, f.ovf.r.data]
        value = _pick(words, self._read_word)
        m.d.comb += self.reg_value.eq(Mux(self._read_status, self.lost, value))

    # -- statistics -----------------------------------------------------------------------
    def _merge(self, m: Module, f: _File, walking: Value, merging: Signal) -> list:
        """The units' reports queued, merged one at a time (not while SCALE walks)."""
        tb = f.bits
        queues = []
        for p, r in enumerate(self.reports):
            q = fifo.SyncFIFO(width=tb + 2 * PEAK_BITS + RAW_BITS, depth=QUEUE)
            m.submodules[f"reports{p}"] = q
            m.d.comb += [
                q.w_en.eq(r.valid),
                q.w_data.eq(Cat(r.tensor[:tb], r.peak, r.saturated, r.overflow)),
            ]
            with m.If(r.valid & ~q.w_rdy):  # full: the report is lost, say so
                m.d.sync += self.lost[p].eq(1)
            queues.append(q)
        choice = Signal(range(REPORTS), name="merge_port")  # the first queue with a report
        for k in reversed(range(REPORTS)):
            with m.If(queues[k].r_rdy):
                m.d.comb += choice.eq(k)
        head = _pick([q.r_data for q in queues], choice)
        cur = Signal(len(head), name="merge_report")
        tensor = cur[:tb]
        peak, sat = cur[tb : tb + PEAK_BITS], cur[tb + PEAK_BITS : tb + 2 * PEAK_BITS]
        ovf = cur[tb + 2 * PEAK_BITS :]
        busy = Signal(name="merge_busy")  # reading a report's entry: merge it next cycle
        m.d.comb += merging.eq(busy)
        with m.If(~busy & ~walking):
            m.d.comb += f.sa.eq(head[:tb])
            m.d.sync += cur.eq(head)
            for k, q in enumerate(queues):
                m.d.comb += q.r_en.eq(choice == k)
            with m.If(Cat(q.r_rdy for q in queues).any()):
                m.d.sync += busy.eq(1)
        with m.If(busy):
            old_peak, old_ovf = f.peak.r.data, f.ovf.r.data[:RAW_BITS]
            with m.If(~f.fixed_at(tensor)):
                f.peak.write(m, tensor, Mux(peak > old_peak, peak, old_peak))
                f.sat.write(m, tensor, f.sat.r.data + sat)
                f.ovf.write(m, tensor, Cat(Mux(ovf > old_ovf, ovf, old_ovf), Value.cast(1)))
            m.d.sync += busy.eq(0)
        return queues

    # -- decode -------------------------------------------------------------------------------
    def _decode(self, m: Module, exps: list[Signal], regs: list[Signal]) -> None:
        op = self.record[:8]
        x0, x1, x2, y0, _ = exps
        reg = regs[0]  # a seed; a HOST_IN's exponent
        w = self.writes
        # If chains, not a Switch: Yosys writes a partial case without a default.
        with m.If(op == Op.GEMM):
            self._gemm(m, x0 + x1 - y0, x0 + x1, reg)
        with m.Elif(op == Op.VEC):
            src2, dst = self._field(Op.VEC, "src2"), self._field(Op.VEC, "dst")
            self._vec(m, exps, (src2, dst, self._field(Op.VEC, "dst2")), regs)
        with m.Elif(op == Op.HOST_IN):
            m.d.comb += [
                w[0].use.eq(1),
                w[0].tensor.eq(self._field(Op.HOST_IN, "tensor")),
                w[0].frac.eq(reg.as_signed()),
            ]

    def _gemm(self, m: Module, diff: Value, fa_fb: Value, seed: Value) -> None:
        s = Signal(WIDE, name="gemm_diff")
        shift = Signal(range(MAX_SHIFT + 1), name="gemm_shift")
        m.d.comb += [
            s.eq(diff),
            shift.eq(Mux(s < 0, 0, Mux(s > MAX_SHIFT, MAX_SHIFT, s))),
            self.command.path.gemm.seed.eq(seed),
        ]
        if "shift" in self.command.path.gemm.shape().members:
            m.d.comb += self.command.path.gemm.shift.eq(shift)
        w = self.writes[0]
        m.d.comb += [
            w.use.eq(self._field(Op.GEMM, "mode")[ACC_LAST.bit_length() - 1]),  # C written
            w.tensor.eq(self.decode.out),
            w.frac.eq(fa_fb - shift),
        ]

    def _vec(self, m: Module, ex: list, keys: tuple, regs: list) -> None:
        st_src, st_src2, st_dst, fr_dst, fr_dst2 = ex
        src2, dst, dst2 = keys
        v = self.command.vec.vec
        static = self.static.vec.vec
        sh = [Signal(signed(SHIFT_BITS), name=f"dyn_shift{k}") for k in range(5)]
        al = [Signal(signed(SHIFT_BITS), name=f"dyn_align{k}") for k in range(2)]
        sc = [Signal(signed(32), name=f"dyn_scalar{k}") for k in range(3)]
        for k in range(5):
            m.d.comb += v.shifts[k].eq(static.shifts[k] + sh[k])
        for k in range(2):
            m.d.comb += v.align[k].eq(static.align[k] + al[k])
        for k in range(3):
            m.d.comb += v.scalars[k].eq(static.scalars[k] + sc[k])
        w = self.writes

        def put(k: int, tensor: Value, exp: Value) -> None:
            m.d.comb += [w[k].use.eq(1), w[k].tensor.eq(tensor), w[k].frac.eq(exp)]

        sub = self.record[8:16]
        # Max pooling rounds nothing: its command has no seed.
        with m.If((sub != VecOp.MAXPOOL) & (sub != VecOp.MAXPOOL_BACK)):
            m.d.comb += v.seed.eq(regs[0])
        with m.If(sub == VecOp.BIAS_ADD):
            m.d.comb += sh[0].eq(st_src2 - st_src)
            put(0, dst, st_src)
        with m.Elif(sub == VecOp.MEAN_SUB):
            fine = Mux(st_src > st_src2, st_src, st_src2)
            m.d.comb += [sh[0].eq(fine - fr_dst), al[0].eq(fine - st_src)]
            m.d.comb += al[1].eq(fine - st_src2)
            put(0, dst, fr_dst)
        with m.Elif((sub == VecOp.BIAS_GRAD) | (sub == VecOp.CONVERT)):
            m.d.comb += sh[0].eq(st_src - fr_dst)
            put(0, dst, fr_dst)
        with m.Elif(sub == VecOp.MAXPOOL):
            put(0, dst, st_src)
            put(1, dst2, 0)
        with m.Elif(sub == VecOp.SGD):
            self._sgd(m, ex, sh, sc, regs)
            put(0, src2, st_src2)
            put(1, dst, st_dst)
            put(2, dst2, fr_dst2)
        with m.Else():  # ReLU, pooling: the input's exponent
            put(0, dst, st_src)

    def _sgd(self, m: Module, ex: list, sh: list, sc: list, regs: list) -> None:
        """:meth:`VecCommand.sgd`'s terms: mantissas and exponents from the registers."""
        st_grad, st_mom, st_master, _, fr_op = ex
        _, lr_m, lr_e, decay_m, decay_e, mom_m, mom_e = regs
        ml, el = lr_m[:16].as_signed(), lr_e.as_signed()
        md, ed = decay_m[:16].as_signed(), decay_e.as_signed()
        mm, em = mom_m[:16].as_signed(), mom_e.as_signed()
        m.d.comb += [
            sh[0].eq(em),
            sh[1].eq(el + st_grad - st_mom),
            sh[2].eq(el + ed + st_master - st_mom),
            sh[3].eq(st_mom - st_master),
            sh[4].eq(st_master - fr_op),
            sc[0].eq(mm),
            sc[1].eq(ml),
            sc[2].eq(ml * md),
        ]
