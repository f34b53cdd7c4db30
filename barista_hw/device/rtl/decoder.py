"""The device's decoder: each unit's command from the record, its static command and the
device's registers, as :func:`~.device.command` computes it from the model's state.

State (:mod:`.decode` says what the host writes):

* the **exponent file**, an entry a tensor: ``frac`` (the next write's exponent),
  ``stored`` (what memory holds), ``fixed``, ``width``, and the iteration's statistics
  (peak, saturated, overflow, written), the model's :class:`~barista_hw.device.scaling.
  ScaleTable`;
* the **host registers** (32 bits): seeds, encoded scalars, the host's exponents.

Decode (combinational, from ``record``, ``static`` and ``decode``): a GEMM's ``shift`` is
``clamp(stored(a) + stored(b) - frac(out), 0, MAX_SHIFT)`` and its ``seed`` a register; a
VEC's ``shifts``, ``align`` and ``scalars`` add to the static ones the exponent terms of
:class:`~.vector.VecCommand` 's constructors (the static command holds the rest: the
constants, a pooling's reciprocal shift), its ``seed`` a register. ``writes`` names the
tensor each of the unit's statistics streams writes and the exponent it writes at.

Updates (registered): a ``take`` applies ``writes`` (``stored``, and ``frac`` of a fixed
tensor, as :meth:`ScaleTable.wrote`); a valid ``reports`` entry merges a unit's
statistics into its tensor's (peak and overflow the largest, saturation summed; fixed
tensors keep none; the program's waits keep two reports of one cycle on two tensors);
``scale`` moves every written tensor's ``frac`` by
:func:`~barista_hw.device.scaling.next_frac` and clears the statistics; ``reg_write``
writes a register (``reg_addr``, ``reg_data``). ``reg_value`` is the exponent-entry word
at ``reg_addr`` (combinational: the host's read-back, :func:`~.decode.read_address`).

Ports: ``record`` (in, 256), ``static`` (in, :func:`~.decode.command_layout`), ``decode``
(in, :func:`~.decode.decode_layout`), ``take`` (in); ``command`` (out, the decoded
command), ``writes`` (out, :func:`target_layout` x 3); ``reports`` (in,
:func:`report_layout` x :data:`REPORTS`); ``scale`` (in); ``reg_write`` (in),
``reg_addr`` (in, 16), ``reg_data`` (in, 32), ``reg_value`` (out, 32).
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from barista_hw.numfmt import MAX_SHIFT

from ..isa import ACC_LAST, Op
from ..memory import DeviceConfig
from ..scaling import MAX_FRAC, MIN_FRAC, ZERO_GROWTH
from ..vector import VecOp
from .decode import (
    EXP_BASE,
    REG_BITS,
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

__all__ = ["REPORTS", "Decoder", "report_layout", "target_layout"]

REPORTS = STREAMS + 2  # VecMem's streams, the GEMM unit, the link
WIDE = signed(STORED_BITS + 3)  # exponent sums


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


class _Table:
    """Signals read by an index: a power-of-two table (the last repeated) read by the
    index's low bits, so the mux covers every index (no incomplete case)."""

    def __init__(self, values: list) -> None:
        self.bits = max(1, (len(values) - 1).bit_length())
        self.array = Array(values + [values[-1]] * ((1 << self.bits) - len(values)))

    def __getitem__(self, index: Value) -> Value:
        return self.array[index[: self.bits]]


class _File:
    """The exponent file's and the host registers' signals."""

    def __init__(self, tensors: int, registers: int) -> None:
        n = range(tensors)
        self.frac = [Signal(signed(8), name=f"frac{i}") for i in n]
        self.stored = [Signal(signed(STORED_BITS), name=f"stored{i}") for i in n]
        self.has = [Signal(name=f"has_stored{i}") for i in n]
        self.fixed = [Signal(name=f"fixed{i}") for i in n]
        self.width = [Signal(6, name=f"width{i}") for i in n]
        self.peak = [Signal(PEAK_BITS, name=f"peak{i}") for i in n]
        self.sat = [Signal(PEAK_BITS, name=f"saturated{i}") for i in n]
        self.ovf = [Signal(RAW_BITS, name=f"overflow{i}") for i in n]
        self.written = [Signal(name=f"written{i}") for i in n]
        self.eff = [Signal(signed(STORED_BITS), name=f"eff{i}") for i in n]
        self.regs = [Signal(REG_BITS, name=f"reg{r}") for r in range(registers)]


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
                "take": In(1),
                "command": Out(command_layout(config)),
                "writes": Out(data.ArrayLayout(target_layout(), STREAMS)),
                "reports": In(data.ArrayLayout(report_layout(), REPORTS)),
                "scale": In(1),
                "reg_write": In(1),
                "reg_addr": In(16),
                "reg_data": In(REG_BITS),
                "reg_value": Out(REG_BITS),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        f = _File(self.tensors, self.registers)
        for i in range(self.tensors):
            m.d.comb += f.eff[i].eq(Mux(f.has[i], f.stored[i], f.frac[i]))
        m.d.comb += self.command.as_value().eq(self.static.as_value())
        self._decode(m, f)
        self._merge(m, f)
        self._take(m, f)
        self._scale(m, f)
        self._registers(m, f)
        self._readback(m, f)
        return m

    def _field(self, op: Op, name: str) -> Value:
        at, bits = field_at(op, name)
        return self.record[at : at + bits]

    # -- decode ---------------------------------------------------------------------------
    def _decode(self, m: Module, f: _File) -> None:
        rec, dec = self.record, self.decode
        op = rec[:8]
        gemm = op == Op.GEMM
        eff, frac, regs = _Table(f.eff), _Table(f.frac), _Table(f.regs)
        src, src2 = self._field(Op.VEC, "src"), self._field(Op.VEC, "src2")
        dst, dst2 = self._field(Op.VEC, "dst"), self._field(Op.VEC, "dst2")
        x0, x1, x2 = (Signal(signed(STORED_BITS), name=f"x{k}") for k in range(3))
        y0, y1 = Signal(signed(STORED_BITS), name="y0"), Signal(signed(STORED_BITS), name="y1")
        m.d.comb += [
            x0.eq(eff[Mux(gemm, dec.a, src)]),
            x1.eq(eff[Mux(gemm, dec.b, src2)]),
            x2.eq(eff[dst]),
            y0.eq(frac[Mux(gemm, dec.out, dst)]),
            y1.eq(frac[dst2]),
        ]
        reg = regs[dec.reg]  # a seed; a HOST_IN's exponent
        w = self.writes
        # If chains, not a Switch: Yosys writes a partial case without a default.
        with m.If(gemm):
            self._gemm(m, x0 + x1 - y0, x0 + x1, reg)
        with m.Elif(op == Op.VEC):
            self._vec(m, f, (x0, x1, x2, y0, y1), (src2, dst, dst2), reg)
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

    def _vec(self, m: Module, f: _File, ex: tuple, keys: tuple, seed: Value) -> None:
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
            m.d.comb += v.seed.eq(seed)
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
            self._sgd(m, f, ex, sh, sc)
            put(0, src2, st_src2)
            put(1, dst, st_dst)
            put(2, dst2, fr_dst2)
        with m.Else():  # ReLU, pooling: the input's exponent
            put(0, dst, st_src)

    def _sgd(self, m: Module, f: _File, ex: tuple, sh: list, sc: list) -> None:
        """:meth:`VecCommand.sgd`'s terms: mantissas and exponents from the registers."""
        st_grad, st_mom, st_master, _, fr_op = ex
        regs, dec = _Table(f.regs), self.decode
        ml, el = regs[dec.lr][:16].as_signed(), regs[dec.lr + 1].as_signed()
        md, ed = regs[dec.lr + 2][:16].as_signed(), regs[dec.lr + 3].as_signed()
        mm, em = regs[dec.mom][:16].as_signed(), regs[dec.mom + 1].as_signed()
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

    # -- updates ------------------------------------------------------------------------
    def _merge(self, m: Module, f: _File) -> None:
        """The units' statistics into their tensors' entries. The program's waits order
        the writers of a tensor, so no two reports in one cycle name the same tensor:
        each entry ORs in the one that hits it."""
        for i in range(self.tensors):
            hits = [r.valid & (r.tensor == i) & ~f.fixed[i] for r in self.reports]
            peak = sat = ovf = hit = 0
            for h, r in zip(hits, self.reports, strict=True):
                peak = peak | Mux(h, r.peak, 0)
                sat = sat | Mux(h, r.saturated, 0)
                ovf = ovf | Mux(h, r.overflow, 0)
                hit = hit | h
            with m.If(hit):
                m.d.sync += [
                    f.peak[i].eq(Mux(peak > f.peak[i], peak, f.peak[i])),
                    f.sat[i].eq(f.sat[i] + sat),
                    f.ovf[i].eq(Mux(ovf > f.ovf[i], ovf, f.ovf[i])),
                    f.written[i].eq(1),
                ]

    def _take(self, m: Module, f: _File) -> None:
        """A taken instruction's writes: their exponents into ``stored``."""
        for w in self.writes:
            with m.If(self.take & w.use):
                for i in range(self.tensors):
                    with m.If(w.tensor == i):
                        m.d.sync += [f.stored[i].eq(w.frac), f.has[i].eq(1)]
                        with m.If(f.fixed[i]):
                            m.d.sync += f.frac[i].eq(w.frac)

    def _scale(self, m: Module, f: _File) -> None:
        """SCALE: :func:`~barista_hw.device.scaling.next_frac` of every written entry."""
        with m.If(self.scale):
            for i in range(self.tensors):
                base = f.eff[i]
                length = Signal(range(PEAK_BITS + 1), name=f"peak{i}_len")
                for j in range(PEAK_BITS):  # the highest set bit wins
                    with m.If(f.peak[i][j]):
                        m.d.comb += length.eq(j + 1)
                raw = Signal(WIDE, name=f"next{i}")
                ovf = Mux(f.ovf[i] > 1, f.ovf[i], 1)
                with m.If(f.sat[i] != 0):
                    m.d.comb += raw.eq(base - ovf - 1)
                with m.Elif(f.peak[i] == 0):
                    m.d.comb += raw.eq(base + ZERO_GROWTH)
                with m.Else():
                    m.d.comb += raw.eq(base + f.width[i] - 2 - length)
                clamped = Mux(raw < MIN_FRAC, MIN_FRAC, Mux(raw > MAX_FRAC, MAX_FRAC, raw))
                with m.If(f.written[i] & ~f.fixed[i]):
                    m.d.sync += f.frac[i].eq(clamped)
                m.d.sync += [f.peak[i].eq(0), f.sat[i].eq(0), f.ovf[i].eq(0)]
                m.d.sync += f.written[i].eq(0)

    def _registers(self, m: Module, f: _File) -> None:
        """A host register, or (from :data:`EXP_BASE`) word ``addr % 4`` of an entry:
        the exponents, peak, saturated, overflow and written."""
        addr, value = self.reg_addr, self.reg_data
        with m.If(self.reg_write):
            for r, reg in enumerate(f.regs):
                with m.If(addr == r):
                    m.d.sync += reg.eq(value)
            e = data.View(entry_layout(), value[: entry_layout().size])
            for i in range(self.tensors):
                at = EXP_BASE + 4 * i
                with m.If(addr == at):
                    m.d.sync += [
                        f.frac[i].eq(e.frac),
                        f.stored[i].eq(e.stored),
                        f.has[i].eq(e.has_stored),
                        f.fixed[i].eq(e.fixed),
                        f.width[i].eq(e.width),
                    ]
                with m.If(addr == at + 1):
                    m.d.sync += f.peak[i].eq(value)
                with m.If(addr == at + 2):
                    m.d.sync += f.sat[i].eq(value)
                with m.If(addr == at + 3):
                    m.d.sync += [f.ovf[i].eq(value[:RAW_BITS]), f.written[i].eq(value[RAW_BITS])]

    def _readback(self, m: Module, f: _File) -> None:
        """``reg_value``: word ``addr % 4`` of entry ``(addr - EXP_BASE) / 4``, as
        :func:`~.decode.exponent_writes` lays the four words out."""
        words = []
        for i in range(self.tensors):
            e = Signal(entry_layout(), name=f"entry{i}")
            m.d.comb += [
                e.frac.eq(f.frac[i]),
                e.stored.eq(f.stored[i]),
                e.has_stored.eq(f.has[i]),
                e.fixed.eq(f.fixed[i]),
                e.width.eq(f.width[i]),
            ]
            words += [e.as_value(), f.peak[i], f.sat[i], Cat(f.ovf[i], f.written[i])]
        m.d.comb += self.reg_value.eq(_Table(words)[self.reg_addr])
