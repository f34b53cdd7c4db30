"""The device top: the sequencer driving the real units, all on one memory port.

* :class:`~.sequencer.Sequencer` takes the program and issues each instruction to its
  unit (:data:`~barista_hw.device.emit.UNIT`) once its waits are done;
* ``dma_in``: LOADs into A or B (two :class:`~.dma.DmaEngine` s behind one
  :class:`~.packed.PackedPort`); ``dma_out``: STOREs from C (with the col2im
  accumulator, its own packed port); ``engine``: the :class:`~.gemm_unit.GemmUnit`
  (A and B inside, writing scratchpad C); ``vector``: :class:`~.vecmem.VecMem`;
  ``link``: :class:`~.link.LinkUnit` (HOST_IN / HOST_OUT words to and from the host);
* a :class:`~.arbiter.PortArbiter` (round robin) shares the memory port between the
  two packed ports, VecMem and the link, so the units overlap as the waits allow.

**Pre-decode.** Commands depend on the current exponents and the host's scalars, so the
host pre-decodes (:func:`command`): each program record arrives with its unit's hardware
command beside it on ``prog`` (one :func:`command_layout` union). Records reach a unit
in program order, so the top splits the commands into a FIFO a unit as records are taken,
and a unit's front-end pairs the record the sequencer issues with the head of its FIFO.
On the link this costs each instruction its unit's command besides its 32-byte record
(:func:`command_bytes`). A hardware decoder (exponents in a register file that SCALE
updates from the units' statistics) is the later step; SCALE goes out to the host here.

Front-ends: a unit takes one instruction at a time and reports its token on
``<unit>_done`` once finished (DMA: the engine and its packed port idle, so its writes
are in the memory's queue; GEMM: results in C; VEC: statistics out; link: all words moved).

Ports: ``prog`` (in, :func:`prog_layout`: ``record``, ``last``, ``command``); ``port``
(memory port master, ``bus_bits`` words); ``host_in`` (in, bus words of HOST_INs, in
program order); ``host_out`` (out, bus words of HOST_OUTs); ``scale`` (out, the SCALE
record, the iteration's end); ``running``, ``cycles``, ``busy_<unit>`` (the sequencer's).
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError
from barista_hw.numfmt import Rounding

from ..emit import UNIT
from ..geometry import Space
from ..isa import Instruction, Op
from ..machine import Machine, iteration_seed
from ..memory import DeviceConfig
from ..vector import Rounder
from . import gemm_path, link, vecmem
from .arbiter import PortArbiter
from .gemm_path import Unit, dma_payload, gemm_units, share_port
from .link import LinkUnit
from .packed import PackedPort
from .port import port_signature
from .scratchpad import geometry
from .sequencer import COUNT_BITS, RECORD_BITS, TOKEN_AT, TOKEN_BITS, UNITS, Sequencer
from .vecmem import VecMem

__all__ = ["Device", "command", "command_bytes", "command_layout", "pack_record", "prog_layout"]


def command_layout(config: DeviceConfig) -> data.UnionLayout:
    """A pre-decoded command: the GEMM path's (LOAD, STORE, GEMM), VecMem's or the link's."""
    return data.UnionLayout(
        {
            "path": gemm_path.command_layout(config),
            "vec": vecmem.command_layout(),
            "link": link.command_layout(),
        }
    )


def prog_layout(config: DeviceConfig) -> data.StructLayout:
    return data.StructLayout({"record": RECORD_BITS, "last": 1, "command": command_layout(config)})


def command(inst: Instruction, machine: Machine, bus_bits: int = 16) -> int:
    """The command bits of ``inst`` as ``machine`` (the model, in the state just before
    ``inst`` runs) gives them: exponents, the iteration's seeds, the host's scalars."""
    program, config = machine.program, machine.config
    if inst.op in (Op.LOAD, Op.STORE, Op.GEMM):
        gemm = machine.gemm_command(inst) if inst.op is Op.GEMM else None
        fields = gemm_path.command(inst, program, config, gemm)
        return gemm_path.pack_command(fields, config)
    if inst.op is Op.VEC:
        lanes = config.scratchpads.vector_lanes
        seed = iteration_seed(inst["seed"], machine.iteration)
        rnd = Rounder(Rounding(inst["rounding"]), seed, lanes)
        width = config.accelerator.engine.fmt.width
        scales, scalars = machine.scales, machine.scalars
        return vecmem.pack_command(
            vecmem.command(inst, program, scales, rnd=rnd, width=width, scalars=scalars)
        )
    if inst.op in (Op.HOST_IN, Op.HOST_OUT):
        fields = link.command(inst, program, bus_bits)
        return link.command_layout().const(fields).as_bits()
    if inst.op in (Op.SCALE, Op.SYNC):
        return 0
    raise InputError(f"{inst.text()}: {inst.op.name} is not run by the device top yet")


def pack_record(inst: Instruction, cmd: int, *, last: bool) -> int:
    """The ``prog`` payload of ``inst`` with its pre-decoded command ``cmd``."""
    record = int.from_bytes(inst.encode(), "little")
    return record | int(last) << RECORD_BITS | cmd << (RECORD_BITS + 1)


def command_bytes(config: DeviceConfig) -> dict[str, int]:
    """Bytes a pre-decoded command adds to a record on the link, per kind of command."""
    layout = command_layout(config)
    return {name: -(-f.shape.size // 8) for name, f in layout}


class Device(wiring.Component):
    """The device top (module docstring: the ports)."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        bus_bits: int = 16,
        window: int = 64,
        depth: int = 4,
        max_burst: int = 16,
    ) -> None:
        self.config, self.bus_bits, self.max_burst = config, bus_bits, max_burst
        self.window, self.depth = window, depth
        ports = {
            "prog": In(stream.Signature(prog_layout(config))),
            "port": Out(port_signature(bus_bits)),
            "host_in": In(stream.Signature(bus_bits)),
            "host_out": Out(stream.Signature(bus_bits)),
            "scale": Out(stream.Signature(RECORD_BITS)),
            "running": Out(1),
            "cycles": Out(COUNT_BITS),
        }
        ports.update({f"busy_{u}": Out(COUNT_BITS) for u in UNITS})
        super().__init__(ports)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.config
        m.submodules.seq = seq = Sequencer(window=self.window, depth=self.depth)
        fifos = self._dispatch(m, seq)
        m.d.comb += [self.running.eq(seq.running), self.cycles.eq(seq.cycles)]
        for u in UNITS:
            m.d.comb += getattr(self, f"busy_{u}").eq(getattr(seq, f"busy_{u}"))
        wiring.connect(m, seq.scale, wiring.flipped(self.scale))

        c_geom = geometry(cfg, Space.C)
        dmas, gemm, _ = gemm_units(m, cfg, self.max_burst)
        packed = {}
        for side in ("in", "out"):
            packed[side] = PackedPort(
                c_geom.bits, bus_bits=self.bus_bits, max_elements=self.max_burst
            )
            m.submodules[f"packed_{side}"] = packed[side]
        lanes = cfg.scratchpads.vector_lanes
        m.submodules.vec = vec = VecMem(lanes, bus_bits=self.bus_bits)
        m.submodules.link = lnk = LinkUnit(self.bus_bits)
        m.submodules.arb = arb = PortArbiter(4, self.bus_bits)
        masters = (packed["in"].port, packed["out"].port, vec.port, lnk.port)
        for i, master in enumerate(masters):
            wiring.connect(m, master, getattr(arb, f"m{i}"))
        wiring.connect(m, arb.port, wiring.flipped(self.port))
        wiring.connect(m, wiring.flipped(self.host_in), lnk.host_in)
        wiring.connect(m, lnk.host_out, wiring.flipped(self.host_out))

        store = dmas[Unit.STORE_C]

        # -- front-ends: each unit's record paired with its command, done tokens back.
        loads = {u: dmas[u] for u in (Unit.LOAD_A, Unit.LOAD_B)}
        owner = Signal(2)
        share_port(m, loads, packed["in"], owner)
        share_port(m, {Unit.STORE_C: store}, packed["out"], Signal(2, init=Unit.STORE_C))

        def dma_in(c: data.View, go: object) -> object:
            for u, d in loads.items():
                m.d.comb += d.cmd.valid.eq(go & (c.path.unit == u))
                dma_payload(m, d, c.path.dma)
            with m.If(go):
                m.d.sync += owner.eq(c.path.unit)
            return loads[Unit.LOAD_A].cmd.ready & loads[Unit.LOAD_B].cmd.ready

        def dma_out(c: data.View, go: object) -> object:
            m.d.comb += store.cmd.valid.eq(go)
            dma_payload(m, store, c.path.dma)
            return store.cmd.ready

        def engine(c: data.View, go: object) -> object:
            m.d.comb += [gemm.cmd.valid.eq(go), gemm.cmd.payload.eq(c.path.gemm)]
            return gemm.cmd.ready

        def vector(c: data.View, go: object) -> object:
            m.d.comb += [vec.cmd.valid.eq(go), vec.cmd.payload.eq(c.vec)]
            return vec.cmd.ready

        def link_(c: data.View, go: object) -> object:
            m.d.comb += [lnk.cmd.valid.eq(go), lnk.cmd.payload.eq(c.link)]
            return lnk.cmd.ready

        m.d.comb += vec.stats.ready.eq(1)  # the statistics are not collected yet
        fronts = {
            "dma_in": (
                dma_in,
                ~(loads[Unit.LOAD_A].busy | loads[Unit.LOAD_B].busy | packed["in"].busy),
            ),
            "dma_out": (dma_out, ~(store.busy | packed["out"].busy)),
            "engine": (engine, ~gemm.busy),
            "vector": (vector, vec.stats.valid),
            "link": (link_, ~lnk.busy),
        }
        for u, (issue, finished) in fronts.items():
            self._front(m, seq, fifos[u], u, issue, finished)
        return m

    def _dispatch(self, m: Module, seq: Sequencer) -> dict[str, fifo.SyncFIFOBuffered]:
        """``prog`` into the sequencer, each command into its unit's FIFO in step."""
        layout = command_layout(self.config)
        p = self.prog.payload
        op = p.record[:8]
        fifos, room = {}, Signal(init=1)
        taken = self.prog.valid & self.prog.ready
        for u in UNITS:
            q = fifo.SyncFIFOBuffered(width=layout.size, depth=self.depth + 1)
            m.submodules[f"cmds_{u}"] = fifos[u] = q
            mine = Signal(name=f"cmd_to_{u}")
            for o in (o for o, unit in UNIT.items() if unit == u):
                with m.If(op == int(o)):
                    m.d.comb += mine.eq(1)
            with m.If(mine):
                m.d.comb += room.eq(q.w_rdy)
            m.d.comb += [q.w_en.eq(taken & mine), q.w_data.eq(p.command.as_value())]
        m.d.comb += [
            seq.prog.valid.eq(self.prog.valid & room),
            seq.prog.payload.record.eq(p.record),
            seq.prog.payload.last.eq(p.last),
            self.prog.ready.eq(seq.prog.ready & room),
        ]
        return fifos

    def _front(self, m, seq, q, u, issue, finished) -> None:  # noqa: ANN001
        """Unit ``u``'s front-end: the issued record with the head command, one at a time;
        its token on ``<u>_done`` once ``finished`` (checked from the second cycle on)."""
        rec, done = getattr(seq, u), getattr(seq, f"{u}_done")
        busy, fresh = Signal(name=f"{u}_running"), Signal(name=f"{u}_fresh")
        token = Signal(TOKEN_BITS, name=f"{u}_token")
        c = Signal(command_layout(self.config), name=f"{u}_cmd")
        m.d.comb += c.as_value().eq(q.r_data)
        offer = rec.valid & q.r_rdy & ~busy
        unit_ready = issue(c, offer)
        go = offer & unit_ready
        m.d.comb += [rec.ready.eq(go), q.r_en.eq(go)]
        with m.If(go):
            m.d.sync += [busy.eq(1), fresh.eq(1), token.eq(rec.payload[TOKEN_AT:][:TOKEN_BITS])]
        with m.Elif(fresh):
            m.d.sync += fresh.eq(0)
        end = busy & ~fresh & finished
        m.d.comb += [done.valid.eq(end), done.payload.eq(token)]
        with m.If(end):
            m.d.sync += busy.eq(0)
