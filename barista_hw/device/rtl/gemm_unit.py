"""The device's GEMM unit in RTL: the accelerator fed from scratchpads A and B, its results
written into scratchpad C.

It runs the device's GEMM instruction (:mod:`barista_hw.device.isa`; the model is
:meth:`~barista_hw.device.machine.Machine._gemm`) on the project's
:class:`~barista_hw.accelerator.Accelerator`, unchanged but for who writes its operand
buffers: the buffers *are* scratchpads A and B, and the DMA's LOADs write them through
the scratchpad write ports ``a_w_*`` and ``b_w_*`` (one word a cycle each, also at the
same time) instead of the host's ``wr`` stream. The DMA's layout of A is the
accelerator's (:func:`~barista_hw.schedule.pack_a`: word ``tm * Kt + kk``) and of B too
(:func:`~barista_hw.schedule.pack_b`), so a LOAD of a chunk's tile at its ``a_base`` or
``b_base`` is what the chunk's command reads. A chain of GEMMs (``ACC_FIRST`` ..
``ACC_LAST``) is a chain of accelerator commands accumulating at full width in the
engine's accumulator memory; the last requantises and emits the block.

**C.** The engine emits a block tile by tile (row-major over ``(tm, tn)``), a tile's
valid rows in order, ``cols`` lanes a beat. Each beat is written to scratchpad C in the
layout the DMA's STORE reads (lanes along the block's columns, as ``pack_b``): the row
``r`` of tile ``(tm, tn)`` goes to word ``c_base + tn * m + tm * rows + r``. C takes a
beat every cycle, so the engine's output is never stalled.

**Pre-decode.** :func:`command` turns a GEMM instruction and what it asks of the engine
now (:meth:`~barista_hw.device.machine.Machine.gemm_command`: the shift from the current
exponents, the block's seed from ``block_seed(iteration_seed(...))``) into this unit's
command, in Python, as :func:`~barista_hw.device.rtl.dma.command` does for the DMA. In
the device top the :class:`~.decoder.Decoder` sets the shift and the seed from its
registers instead (:mod:`.decode`).
"""

from __future__ import annotations

import dataclasses

from amaranth import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError
from barista_hw.accelerator import Accelerator, run_layout
from barista_hw.buffer import OperandBuffer
from barista_hw.command import GemmCommand, fit_field
from barista_hw.config import AcceleratorConfig
from barista_hw.engine import CYCLE_BITS

from ..isa import ACC_FIRST, ACC_LAST, Instruction, Op
from .scratchpad import SpadGeometry
from .stats import PEAK_BITS, watch

__all__ = ["GemmUnit", "ScratchpadAccelerator", "command", "command_layout"]


def command_layout(cfg: AcceleratorConfig, c_geom: SpadGeometry) -> data.StructLayout:
    """A GEMM unit command: the accelerator's run command plus ``c_base``, C's first word."""
    fields = dict(run_layout(cfg).members)
    fields["c_base"] = unsigned(c_geom.addr_bits)
    return data.StructLayout(fields)


def command(
    inst: Instruction, gemm: GemmCommand, cfg: AcceleratorConfig, c_geom: SpadGeometry
) -> dict[str, int]:
    """The unit's command (:func:`command_layout` fields) of GEMM ``inst``, given ``gemm``,
    what it asks of the engine when it runs (:meth:`Machine.gemm_command
    <barista_hw.device.machine.Machine.gemm_command>`). A Python pre-decode, as the DMA's.

    Raises :class:`InputError` naming the instruction when a field does not fit."""
    if inst.op is not Op.GEMM:
        raise InputError(f"{inst.text()}: the GEMM unit runs GEMM, not {inst.op.name}")
    mode, what = inst["mode"], inst.text()
    first, last = bool(mode & ACC_FIRST), bool(mode & ACC_LAST)
    engine = gemm.engine(inst["m"], inst["k"], inst["n"], acc_first=first, acc_last=last)
    engine = dataclasses.replace(engine, a_base=inst["a_base"], b_base=inst["b_base"])
    fields = engine.fields(run_layout(cfg).members.items(), what)
    c_words = -(-inst["n"] // cfg.engine.cols) * inst["m"]
    if inst["c_base"] + c_words > c_geom.depth:
        raise InputError(
            f"{what}: a block of {c_words} words from word {inst['c_base']} overflows "
            f"scratchpad C's {c_geom.depth}"
        )
    fields["c_base"] = fit_field("c_base", inst["c_base"], c_geom.addr_bits, what)
    return fields


class ScratchpadAccelerator(Accelerator):
    """The :class:`~barista_hw.accelerator.Accelerator` whose operand buffers are filled
    through two scratchpad write ports (the DMA's) instead of the ``wr`` stream.

    Ports: ``cmd``, ``o``, ``busy``, ``cycles`` as the accelerator's; ``a_w_addr``,
    ``a_w_data`` (``rows`` lanes), ``a_w_en`` write buffer A, ``b_w_addr``, ``b_w_data``
    (``cols`` lanes), ``b_w_en`` buffer B, each a word in the cycle ``*_w_en`` is high.
    """

    @staticmethod
    def _write_ports(cfg: AcceleratorConfig) -> dict:
        bits = cfg.engine.fmt.width
        return {
            "a_w_addr": In(cfg.a_addr_bits),
            "a_w_data": In(cfg.engine.rows * bits),
            "a_w_en": In(1),
            "b_w_addr": In(cfg.b_addr_bits),
            "b_w_data": In(cfg.engine.cols * bits),
            "b_w_en": In(1),
        }

    def _host_writes(self, m: Module, buf_a: OperandBuffer, buf_b: OperandBuffer) -> None:
        for buf, name in ((buf_a, "a"), (buf_b, "b")):
            m.d.comb += [
                buf.w_addr.eq(getattr(self, f"{name}_w_addr")),
                buf.w_data.eq(getattr(self, f"{name}_w_data")),
                buf.w_en.eq(getattr(self, f"{name}_w_en")),
            ]


class GemmUnit(wiring.Component):
    """GEMM instructions on scratchpads A and B (inside) into scratchpad C (outside).

    Ports:

    * ``cmd``: ``In(stream.Signature(command_layout(cfg, c_geom)))``, one GEMM instruction
      (:func:`command`); ready while the unit is idle.
    * ``a_w_addr``/``a_w_data``/``a_w_en``, ``b_w_addr``/``b_w_data``/``b_w_en``: In, the
      write ports of scratchpads A and B (a LOAD's DMA drives them); not while a GEMM
      reads the words written.
    * ``c_w_addr``/``c_w_data``/``c_w_en``: Out, scratchpad C's write port: one result row
      (``cols`` lanes) a cycle, at the address the module docstring gives.
    * ``busy``: Out(1), from a command's acceptance until its last result is written
      (a command without ``acc_last``: until its sums are in the accumulator memory).
    * ``cycles``: Out(CYCLE_BITS), the engine's cycle count of the last command.
    * ``peak``, ``rails``: Out(:data:`~.stats.PEAK_BITS`), the statistics of the results
      the last command wrote to C (:func:`~.stats.watch`: the block's columns only).
    """

    def __init__(self, cfg: AcceleratorConfig, c_geom: SpadGeometry) -> None:
        if c_geom.lanes != cfg.engine.cols or c_geom.bits != cfg.engine.fmt.width:
            raise InputError(
                f"scratchpad C {c_geom}: the GEMM unit writes words of {cfg.engine.cols} lanes "
                f"of {cfg.engine.fmt.width} bits"
            )
        self.cfg, self.c_geom = cfg, c_geom
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(cfg, c_geom))),
                **ScratchpadAccelerator._write_ports(cfg),
                "c_w_addr": Out(c_geom.addr_bits),
                "c_w_data": Out(c_geom.word_bits),
                "c_w_en": Out(1),
                "busy": Out(1),
                "cycles": Out(CYCLE_BITS),
                "peak": Out(PEAK_BITS),
                "rails": Out(PEAK_BITS),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.acc = acc = ScratchpadAccelerator(self.cfg)
        for name in ("a_w_addr", "a_w_data", "a_w_en", "b_w_addr", "b_w_data", "b_w_en"):
            m.d.comb += getattr(acc, name).eq(getattr(self, name))
        p = self.cmd.payload
        for name in run_layout(self.cfg).members:
            m.d.comb += getattr(acc.cmd.payload, name).eq(getattr(p, name))
        m.d.comb += [
            acc.cmd.valid.eq(self.cmd.valid),
            self.cmd.ready.eq(acc.cmd.ready),
            self.busy.eq(acc.busy),
            self.cycles.eq(acc.cycles),
        ]
        self._write_c(m, acc)
        return m

    def _write_c(self, m: Module, acc: ScratchpadAccelerator) -> None:
        """Each output beat into C: row ``r`` of tile ``(tm, tn)`` at ``c_base + tn * m +
        tm * rows + r``, counted with the tile walk's down-counters (no multiplier)."""
        R, C = self.cfg.engine.rows, self.cfg.engine.cols
        dim = self.cfg.engine.dim_bits
        abits = self.c_geom.addr_bits
        c_base, m_all, n_all = Signal(abits), Signal(dim), Signal(dim)
        row0 = Signal(abits)  # tm * rows: the tile's first row in the block
        col0 = Signal(abits)  # tn * m: the tile column's first word
        r = Signal(range(R))
        m_left = Signal(dim)  # rows from the tile's first to the block's end
        n_left = Signal(dim)  # columns from the tile's first to the block's end
        p = self.cmd.payload
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                c_base.eq(p.c_base),
                m_all.eq(p.m),
                n_all.eq(p.n),
                m_left.eq(p.m),
                n_left.eq(p.n),
                row0.eq(0),
                col0.eq(0),
                r.eq(0),
            ]
        o = acc.o
        m.d.comb += [
            o.ready.eq(1),
            self.c_w_en.eq(o.valid),
            self.c_w_data.eq(o.payload.data.as_value()),
            self.c_w_addr.eq(c_base + col0 + row0 + r),
        ]
        tile_end = (r == R - 1) | (r == m_left - 1)
        with m.If(o.valid):
            m.d.sync += r.eq(Mux(tile_end, 0, r + 1))
            with m.If(tile_end):
                with m.If(n_left <= C):  # the tile row's last tile
                    m.d.sync += [
                        n_left.eq(n_all),
                        col0.eq(0),
                        row0.eq(row0 + R),
                        m_left.eq(m_left - R),
                    ]
                with m.Else():
                    m.d.sync += [n_left.eq(n_left - C), col0.eq(col0 + m_all)]
        lanes = [Value.cast(o.payload.data[j]).as_signed() for j in range(C)]
        on = Cat(n_left > j for j in range(C))
        start = self.cmd.valid & self.cmd.ready
        peak, rails = watch(m, lanes, on, enable=o.valid, clear=start, name="c")
        m.d.comb += [self.peak.eq(peak), self.rails.eq(rails)]
