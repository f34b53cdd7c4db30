"""The GEMM path of the device: LOAD -> GEMM -> STORE from memory, one instruction at a time.

A small top that runs a program's LOAD, GEMM and STORE instructions in program order on
the RTL units: three :class:`~.dma.DmaEngine` s (LOADs into scratchpad A, LOADs into B,
STOREs from C, the last with the col2im accumulator), the :class:`~.gemm_unit.GemmUnit`
(scratchpads A and B inside, C outside) and scratchpad C, all meeting DRAM through one
:class:`~.packed.PackedPort` on a memory port of ``bus_bits`` words (tensors packed at
their width from their byte address, as in DRAM).

Sequencing is the simplest: a command is taken when every unit is idle, so nothing
overlaps and a program's wait tokens are met by construction (the sequencer of
:mod:`.sequencer` would overlap the units; this top proves the data path). Commands are
pre-decoded in Python (:func:`command`): a DMA command
(:func:`~.dma.command`) or a GEMM unit command (:func:`~.gemm_unit.command`).
"""

from __future__ import annotations

import enum

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError
from barista_hw.command import GemmCommand

from ..geometry import Space
from ..isa import Instruction, Op, Program
from ..lowering import WIDE_BITS
from ..memory import DeviceConfig, PortConfig
from ..traffic import stage_depth
from . import dma as dma_rtl
from . import gemm_unit
from .dma import ACC_DEPTH, DmaEngine
from .packed import PackedPort
from .port import ADDR_BITS, LEN_BITS, port_signature
from .scratchpad import Scratchpad, geometry

__all__ = [
    "GemmPath",
    "Unit",
    "command",
    "command_layout",
    "dma_payload",
    "gemm_units",
    "share_port",
]


class Unit(enum.IntEnum):
    """The unit a command goes to."""

    LOAD_A = 0
    LOAD_B = 1
    STORE_C = 2
    GEMM = 3


_DMA_SPACES = {Unit.LOAD_A: Space.A, Unit.LOAD_B: Space.B, Unit.STORE_C: Space.C}


def _dma_spad_bits(config: DeviceConfig) -> int:
    return max(geometry(config, s).addr_bits for s in _DMA_SPACES.values())


def command_layout(config: DeviceConfig) -> data.StructLayout:
    """A command: the ``unit`` it goes to and that unit's fields (the other's are unused)."""
    c_geom = geometry(config, Space.C)
    return data.StructLayout(
        {
            "unit": unsigned(2),
            "dma": dma_rtl.command_layout(_dma_spad_bits(config)),
            "gemm": gemm_unit.command_layout(config.accelerator, c_geom),
        }
    )


def command(
    inst: Instruction, program: Program, config: DeviceConfig, gemm: GemmCommand | None = None
) -> dict:
    """The command (:func:`command_layout` fields) of LOAD, STORE or GEMM ``inst``; a GEMM
    needs ``gemm``, what it asks of the engine when it runs
    (:meth:`~barista_hw.device.machine.Machine.gemm_command`). DMA addresses are packed
    (:func:`~.dma.command` with ``packed=True``)."""
    if inst.op is Op.GEMM:
        if gemm is None:
            raise InputError(f"{inst.text()}: a GEMM's command needs its engine command")
        c_geom = geometry(config, Space.C)
        fields = gemm_unit.command(inst, gemm, config.accelerator, c_geom)
        return {"unit": int(Unit.GEMM), "gemm": fields}
    if inst.op not in (Op.LOAD, Op.STORE):
        raise InputError(f"{inst.text()}: the GEMM path runs LOAD, GEMM and STORE")
    space = Space(inst["space"])
    unit = {(Op.LOAD, Space.A): Unit.LOAD_A, (Op.LOAD, Space.B): Unit.LOAD_B}.get(
        (inst.op, space), Unit.STORE_C if (inst.op, space) == (Op.STORE, Space.C) else None
    )
    if unit is None:
        raise InputError(f"{inst.text()}: the GEMM path LOADs into A or B and STOREs from C")
    fields = dma_rtl.command(
        inst,
        program,
        geometry(config, space),
        acc_depth=col2im_depth(config),
        packed=True,
        stage_depth=stage_depth(config, space),
    )
    return {"unit": int(unit), "dma": fields}


def col2im_depth(config: DeviceConfig) -> int:
    """The STORE DMA's col2im accumulator: ``config``'s (:data:`~.dma.ACC_DEPTH` where it
    sets no bound), or none where the DMA cannot add the 32-bit accumulator tensors in
    whole elements of the engine's width (fx12, fx18)."""
    if WIDE_BITS % config.accelerator.engine.fmt.width:
        return 0
    return config.scratchpads.col2im_elements or ACC_DEPTH


def gemm_units(
    m: Module, cfg: DeviceConfig, max_burst: int
) -> tuple[dict, gemm_unit.GemmUnit, Scratchpad]:
    """The three DMAs (unit -> engine; only C's, whose STOREs add into DRAM by col2im, has
    the accumulator; only B's, which takes the im2col LOADs, the stage buffer), the GEMM
    unit and scratchpad C, added to ``m`` with their scratchpads wired: LOADs write A and
    B inside the GEMM unit; it writes C; STOREs read C."""
    c_geom = geometry(cfg, Space.C)
    dmas = {
        u: DmaEngine(
            geometry(cfg, s),
            max_burst=max_burst,
            acc_depth=col2im_depth(cfg) if u is Unit.STORE_C else 0,
            stage_depth=stage_depth(cfg, s),
        )
        for u, s in _DMA_SPACES.items()
    }
    for u, d in dmas.items():
        m.submodules[u.name.lower()] = d
    m.submodules.gemm = gemm = gemm_unit.GemmUnit(cfg.accelerator, c_geom)
    m.submodules.spad_c = spad_c = Scratchpad(c_geom)
    for u, name in ((Unit.LOAD_A, "a"), (Unit.LOAD_B, "b")):
        d = dmas[u]
        m.d.comb += [
            getattr(gemm, f"{name}_w_addr").eq(d.s_w_addr),
            getattr(gemm, f"{name}_w_data").eq(d.s_w_data),
            getattr(gemm, f"{name}_w_en").eq(d.s_w_en),
        ]
    store = dmas[Unit.STORE_C]
    m.d.comb += [
        spad_c.w_addr.eq(gemm.c_w_addr),
        spad_c.w_data.eq(gemm.c_w_data),
        spad_c.w_en.eq(gemm.c_w_en),
        spad_c.r_addr.eq(store.s_r_addr),
        store.s_r_data.eq(spad_c.r_data),
    ]
    return dmas, gemm, spad_c


def dma_payload(m: Module, d: DmaEngine, fields: data.View) -> None:
    """Drive DMA ``d``'s command payload from a command's ``dma`` fields (its scratchpad's
    address width may be narrower than the command's)."""
    for name in dma_rtl.command_layout(d.geom.addr_bits).members:
        m.d.comb += getattr(d.cmd.payload, name).eq(getattr(fields, name))


def pack_command(fields: dict, config: DeviceConfig) -> int:
    """The bits of a command (the ``cmd`` stream's payload)."""
    return command_layout(config).const(fields).as_bits()


class GemmPath(wiring.Component):
    """DMA + GEMM unit + scratchpad C on one memory port (module docstring).

    Ports:

    * ``cmd``: ``In(stream.Signature(command_layout(config)))``, taken when every unit
      is idle.
    * ``port``: ``Out(port_signature(bus_bits))``, the memory port (DRAM words).
    * ``busy``: Out(1), a command is running (its unit, or the packed port, busy).
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        bus_bits: int = PortConfig.bits,
        max_burst: int = PortConfig.dma_burst,
    ) -> None:
        self.config, self.bus_bits, self.max_burst = config, bus_bits, max_burst
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(config))),
                "port": Out(port_signature(bus_bits, ADDR_BITS, LEN_BITS)),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.config
        c_geom = geometry(cfg, Space.C)
        dmas, gemm, spad_c = gemm_units(m, cfg, self.max_burst)
        m.submodules.packed = packed = PackedPort(
            c_geom.bits, bus_bits=self.bus_bits, max_elements=self.max_burst
        )
        wiring.connect(m, packed.port, wiring.flipped(self.port))

        busy = packed.busy | gemm.busy
        for d in dmas.values():
            busy = busy | d.busy
        m.d.comb += self.busy.eq(busy)
        self._issue(m, dmas, gemm)
        self._share_port(m, dmas, packed)
        return m

    def _issue(self, m: Module, dmas: dict, gemm: gemm_unit.GemmUnit) -> None:
        """A command goes to its unit when all are idle (then its unit is ready)."""
        p = self.cmd.payload
        ready = Signal()
        m.d.comb += ready.eq(gemm.cmd.ready)
        for u, d in dmas.items():
            with m.If(p.unit == u):
                m.d.comb += ready.eq(d.cmd.ready)
            m.d.comb += d.cmd.valid.eq(self.cmd.valid & ~self.busy & (p.unit == u))
            dma_payload(m, d, p.dma)
        m.d.comb += [
            gemm.cmd.valid.eq(self.cmd.valid & ~self.busy & (p.unit == Unit.GEMM)),
            gemm.cmd.payload.eq(p.gemm),
            self.cmd.ready.eq(~self.busy & ready),
        ]

    def _share_port(self, m: Module, dmas: dict, packed: PackedPort) -> None:
        """The packed port belongs to the DMA of the last DMA command (one runs at a time)."""
        owner = Signal(2)
        with m.If(self.cmd.valid & self.cmd.ready & (self.cmd.payload.unit != Unit.GEMM)):
            m.d.sync += owner.eq(self.cmd.payload.unit)
        share_port(m, dmas, packed, owner)


def share_port(m: Module, dmas: dict, packed: PackedPort, owner: Signal) -> None:
    """Connect the DMAs ``dmas`` (unit -> engine) to one packed port; ``owner`` names the
    unit whose command runs (one at a time), the last of ``dmas`` by default."""
    up = packed.up
    for u, d in dmas.items():
        mine = owner == u
        m.d.comb += [
            d.port.cmd.ready.eq(up.cmd.ready & mine),
            d.port.w.ready.eq(up.w.ready & mine),
            d.port.r.valid.eq(up.r.valid & mine),
            d.port.r.payload.eq(up.r.payload),
        ]
    *pick, last = dmas.items()

    def sel(get):  # noqa: ANN001, ANN202 - the owner's signal
        v = get(last[1])
        for u, d in pick:
            v = Mux(owner == u, get(d), v)
        return v

    m.d.comb += [
        up.cmd.valid.eq(sel(lambda d: d.port.cmd.valid)),
        up.cmd.payload.eq(sel(lambda d: d.port.cmd.payload.as_value())),
        up.w.valid.eq(sel(lambda d: d.port.w.valid)),
        up.w.payload.eq(sel(lambda d: d.port.w.payload)),
        up.r.ready.eq(sel(lambda d: d.port.r.ready)),
        packed.first_bit.eq(sel(lambda d: d.first_bit)),
    ]
