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

**Decode.** The :class:`~.decoder.Decoder` builds each unit's command as the record is
taken: from the record, the static command beside it in the fetched beat (what the
tables fix: walks, sizes; the same every iteration, :func:`~.decode.static_command`)
and its registers: the exponent file (a tensor's ``frac``, ``stored`` and the
iteration's statistics, which SCALE turns into the next ``frac``s as the model's
:class:`~barista_hw.device.scaling.ScaleTable` does) and the host registers (seeds,
scalars, the host's exponents; :class:`~.decode.RegisterMap`). :func:`command` is the
model's reference for it; it decodes a record in a few cycles (its state is in memories)
and the top takes a record once the decoder is ``ready``. Records reach a unit in program
order, so the top pushes each decoded command (with the tensors its statistics go to)
into a FIFO a unit, and a unit's front-end pairs the record the sequencer issues with
the head of its FIFO. A unit's FIFO holds only what its front-end reads
(:func:`unit_entry_layout`: a DMA's 908 of the command's 4,738 bits in the 8 x 4 test
top), not the whole command;
VecMem's is one entry deep, the command it runs (:data:`FRONT_DEPTH`). After
a SCALE record nothing more is taken until SCALE has moved the exponents, so the next
iteration's records (and register writes) decode from them. Statistics: VecMem's
``stats``, the GEMM unit's ``peak``/``rails`` of the block it wrote, and the words a
HOST_IN took from ``host_in``, each at its instruction's end.

Front-ends: a unit takes one instruction at a time and reports its token on
``<unit>_done`` once finished (DMA: the engine and its packed port idle, so its writes
are in the memory's queue; GEMM: results in C; VEC: statistics out; link: all words moved).

**Program source.** The records come from DRAM only: the host lays the program's beats
out there once (:func:`record_layout`, :mod:`.fetch`) and starts a run of them with two
register writes (``FETCH_ADDR``, ``FETCH_RUN``); a :class:`~.fetch.ProgramFetcher`, a
fifth master on the arbiter, reads them in bursts and its beat register feeds the decoder
and the sequencer directly, ``prog`` waiting until the run's final beat was taken.

Ports: ``prog`` (in, register writes, :func:`~.decode.write_layout`: ``addr``, ``data``,
:func:`pack_write`: the exponent file once, the host registers before each iteration,
the fetcher's start);
``port`` (memory port master, ``bus_bits`` words); ``host_in`` (in, bus words of
HOST_INs, in program order); ``host_out`` (out, bus words of HOST_OUTs); ``scale`` (out,
the SCALE record, the iteration's end: the exponents move as it is taken); ``readback``
(out, 32: an exponent-entry word for each ``prog`` write that reads one,
:func:`~.decode.read_address`; such a write waits until the last word was taken);
``running``, ``cycles``, ``busy_<unit>`` (the sequencer's); ``lost`` (out, the
decoder's sticky bits of a statistics report lost at a full queue, a bit a report port:
:data:`~.decoder.REPORT_NAMES`; also read back at :data:`~.decode.STATUS`).
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError
from barista_hw.numfmt import Rounding

from ..emit import UNIT
from ..geometry import Space
from ..isa import Instruction, Op, Program
from ..machine import Machine, iteration_seed
from ..memory import DeviceConfig, PortConfig
from ..timing import Fetch
from ..vector import Rounder
from . import gemm_path, link, vecmem
from .arbiter import PortArbiter
from .decode import (
    FETCH_ADDR,
    FETCH_RUN,
    READ,
    REG_BITS,
    command_layout,
    decode_layout,
    write_layout,
)
from .decoder import REPORTS, Decoder, target_layout
from .fetch import BURST as FETCH_BURST
from .fetch import LAST_BIT, WORDS_BITS, ProgramFetcher, beat_words
from .gemm_path import Unit, dma_payload, gemm_units, share_port
from .link import LinkUnit
from .packed import PackedPort
from .port import port_signature
from .scratchpad import geometry
from .sequencer import COUNT_BITS, RECORD_BITS, TOKEN_AT, TOKEN_BITS, UNITS, Sequencer
from .stats import watch
from .vecmem import VecMem
from .vector import STREAMS

__all__ = [
    "Device",
    "beat_lengths",
    "command",
    "command_layout",
    "fetch_model",
    "pack_record",
    "pack_write",
    "record_layout",
    "unit_entry_layout",
]


def record_layout(config: DeviceConfig) -> data.StructLayout:
    """A record's beat in the program image (:mod:`.fetch`): the record, its decode fields
    and static command. The command comes last, so a beat's bits above the part its unit
    reads are zero (:func:`beat_lengths`)."""
    return data.StructLayout(
        {"record": RECORD_BITS, "decode": decode_layout(), "command": command_layout(config)}
    )


def beat_lengths(config: DeviceConfig, bus_bits: int = PortConfig.bits) -> dict[int, int]:
    """Opcode -> bus words of its beats in the program image (:mod:`.fetch`): the record,
    the decode fields and the static command's part its unit reads (a DMA's ``unit`` and
    ``dma``, a GEMM's whole path command, VecMem's, the link's; SCALE and SYNC none)."""
    at = record_layout(config)["command"].offset
    path = gemm_path.command_layout(config)
    dma = path["dma"].offset + path["dma"].width
    bits = {
        Op.LOAD: dma,
        Op.STORE: dma,
        Op.GEMM: path.size,
        Op.VEC: vecmem.command_layout().size,
        Op.HOST_IN: link.command_layout().size,
        Op.HOST_OUT: link.command_layout().size,
        Op.SCALE: 0,
        Op.SYNC: 0,
    }
    return {int(op): beat_words(at + n, bus_bits) for op, n in bits.items()}


def fetch_model(
    program: Program, config: DeviceConfig, *, depth: int = 4, window: int = 64
) -> Fetch:
    """How :class:`Device` (its ``depth`` and ``window``) fetches ``program`` from DRAM,
    for the time model (:func:`~barista_hw.device.timing.schedule`): each record's beat
    words (:func:`beat_lengths`), each unit's intake (the sequencer's queue or the unit's
    FIFO, the smaller; VecMem's held until its instruction ends)."""
    lengths = beat_lengths(config)
    queue = {u: min(depth, FRONT_DEPTH.get(u, depth + 1)) for u in UNITS}
    return Fetch(
        words=[lengths[int(inst.op)] for inst in program.instructions],
        queue=queue,
        held=frozenset({"vector"}),
        window=window,
        fifo=2 * FETCH_BURST,
        latency=config.read_latency,
        word_bytes=PortConfig.bits // 8,
    )


def command(inst: Instruction, machine: Machine, bus_bits: int = 16) -> int:
    """The command bits of ``inst`` as ``machine`` (the model, in the state just before
    ``inst`` runs) gives them: exponents, the iteration's seeds, the host's scalars. The
    reference the :class:`~.decoder.Decoder` is tested against."""
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
        ring = vecmem.ring_depth(config)
        return vecmem.pack_command(
            vecmem.command(inst, program, scales, rnd=rnd, width=width, scalars=scalars, depth=ring)
        )
    if inst.op in (Op.HOST_IN, Op.HOST_OUT):
        fields = link.command(inst, program, bus_bits)
        return link.command_layout().const(fields).as_bits()
    if inst.op in (Op.SCALE, Op.SYNC):
        return 0
    raise InputError(f"{inst.text()}: {inst.op.name} is not run by the device top yet")


def pack_record(config: DeviceConfig, inst: Instruction, static: dict, decode: dict) -> int:
    """The :func:`record_layout` beat of ``inst`` with its static command and decode fields
    (:func:`~.decode.static_command`, :func:`~.decode.decode_fields`)."""
    layout = record_layout(config)
    record = int.from_bytes(inst.encode(), "little")
    cmd = command_layout(config).const(static).as_value().value
    dec = decode_layout().const(decode).as_value().value
    return record | dec << layout["decode"].offset | cmd << layout["command"].offset


def pack_write(addr: int, value: int) -> int:
    """The ``prog`` payload (:func:`~.decode.write_layout`) writing ``value`` into
    register ``addr`` (:mod:`.decode`)."""
    return write_layout().const({"addr": addr, "data": value & 0xFFFFFFFF}).as_value().value


class Device(wiring.Component):
    """The device top (module docstring: the ports); ``tensors`` exponent entries and
    ``registers`` host registers in the decoder."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        bus_bits: int = PortConfig.bits,
        window: int = 64,
        depth: int = 4,
        max_burst: int = PortConfig.dma_burst,
        tensors: int = 32,
        registers: int = 64,
    ) -> None:
        if config.scratchpads.epilogues:
            raise InputError(
                "the device top applies no epilogue on C: build it from a DeviceConfig "
                "with epilogues=False (memory.RTL_UNITS), whose programs run bias and "
                "ReLU as VECs from memory"
            )
        self.config, self.bus_bits, self.max_burst = config, bus_bits, max_burst
        self.window, self.depth = window, depth
        self.tensors, self.registers = tensors, registers
        ports = {
            "prog": In(stream.Signature(write_layout())),
            "port": Out(port_signature(bus_bits)),
            "host_in": In(stream.Signature(bus_bits)),
            "host_out": Out(stream.Signature(bus_bits)),
            "scale": Out(stream.Signature(RECORD_BITS)),
            "readback": Out(stream.Signature(REG_BITS)),
            "running": Out(1),
            "cycles": Out(COUNT_BITS),
        }
        ports.update({f"busy_{u}": Out(COUNT_BITS) for u in UNITS})
        ports["lost"] = Out(REPORTS)
        super().__init__(ports)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.config
        m.submodules.seq = seq = Sequencer(window=self.window, depth=self.depth, keep=SEQ_KEEP)
        m.submodules.decoder = dec = Decoder(cfg, tensors=self.tensors, registers=self.registers)
        beat_bits = record_layout(cfg).size
        lengths = beat_lengths(cfg, self.bus_bits)
        fetch = ProgramFetcher(beat_bits, self.bus_bits, lengths=lengths)
        m.submodules.fetch = self._fetch = fetch
        fifos = self._dispatch(m, seq, dec)
        m.d.comb += [
            self.running.eq(seq.running),
            self.cycles.eq(seq.cycles),
            self.lost.eq(dec.lost),
        ]
        for u in UNITS:
            m.d.comb += getattr(self, f"busy_{u}").eq(getattr(seq, f"busy_{u}"))
        wiring.connect(m, seq.scale, wiring.flipped(self.scale))
        m.d.comb += dec.scale.eq(seq.scale.valid & seq.scale.ready)

        c_geom = geometry(cfg, Space.C)
        dmas, gemm, _ = gemm_units(m, cfg, self.max_burst)
        packed = {}
        for side in ("in", "out"):
            packed[side] = PackedPort(
                c_geom.bits, bus_bits=self.bus_bits, max_elements=self.max_burst
            )
            m.submodules[f"packed_{side}"] = packed[side]
        lanes = cfg.scratchpads.vector_lanes
        ring = vecmem.ring_depth(cfg)
        m.submodules.vec = vec = VecMem(lanes, bus_bits=self.bus_bits, depth=ring, held=True)
        m.submodules.link = lnk = LinkUnit(self.bus_bits)
        m.submodules.arb = arb = PortArbiter(5, self.bus_bits)
        masters = (packed["in"].port, packed["out"].port, vec.port, lnk.port, self._fetch.port)
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
                m.d.comb += d.cmd.valid.eq(go & (c.unit == u))
                dma_payload(m, d, c.dma)
            with m.If(go):
                m.d.sync += owner.eq(c.unit)
            return loads[Unit.LOAD_A].cmd.ready & loads[Unit.LOAD_B].cmd.ready

        def dma_out(c: data.View, go: object) -> object:
            m.d.comb += store.cmd.valid.eq(go)
            dma_payload(m, store, c.dma)
            return store.cmd.ready

        def engine(c: data.View, go: object) -> object:
            m.d.comb += [gemm.cmd.valid.eq(go), gemm.cmd.payload.eq(c.gemm)]
            return gemm.cmd.ready

        def vector(c: data.View, go: object) -> object:
            m.d.comb += [vec.cmd.valid.eq(go), vec.cmd.payload.eq(c.vec)]
            return vec.cmd.ready

        link_go = Signal()

        def link_(c: data.View, go: object) -> object:
            m.d.comb += [lnk.cmd.valid.eq(go), lnk.cmd.payload.eq(c.link), link_go.eq(go)]
            return lnk.cmd.ready

        m.d.comb += vec.stats.ready.eq(1)  # taken in the cycle the instruction ends
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
        ends = {u: self._front(m, seq, fifos[u], u, *f) for u, f in fronts.items()}
        # -- statistics: each unit's, at its instruction's end, to the written tensors.
        r = dec.reports
        end, targets = ends["vector"]
        for k in range(STREAMS):
            stat = vec.stats.payload[k]
            self._report(m, r[k], end, targets[k], stat.peak, stat.saturated, stat.overflow)
        end, targets = ends["engine"]
        self._report(m, r[STREAMS], end, targets[0], gemm.peak, gemm.rails, 0)
        hi = self.host_in
        peak, rails = watch(
            m,
            [hi.payload.as_signed()],
            Const(1, 1),
            enable=hi.valid & hi.ready,
            clear=link_go,
            name="host",
        )
        end, targets = ends["link"]
        self._report(m, r[STREAMS + 1], end, targets[0], peak, rails, 0)
        return m

    @staticmethod
    def _report(m, report, end, target, peak, saturated, overflow) -> None:  # noqa: ANN001
        m.d.comb += [
            report.valid.eq(end & target.use),
            report.tensor.eq(target.tensor),
            report.peak.eq(peak),
            report.saturated.eq(saturated),
            report.overflow.eq(overflow),
        ]

    def _dispatch(
        self, m: Module, seq: Sequencer, dec: Decoder
    ) -> dict[str, fifo.SyncFIFOBuffered]:
        """The fetcher's beats into the sequencer, each record decoded into its unit's FIFO
        in step; ``prog``'s register writes into the decoder (:meth:`_writes`). After a
        SCALE nothing is taken until its update is done (the next records decode from the
        new exponents)."""
        beats = self._fetch.beats
        p = data.View(record_layout(self.config), beats.payload.beat)
        op = p.record[:8]
        held = Signal()
        fifos, room = {}, Signal(init=1)
        record = beats.valid & ~held
        taken = record & dec.ready & seq.prog.ready & room
        m.d.comb += [
            dec.record.eq(p.record),
            dec.static.eq(p.command),
            dec.decode.eq(p.decode),
            dec.valid.eq(record),
            dec.take.eq(taken),
        ]
        self._writes(m, dec, held)
        with m.If(taken & (op == Op.SCALE)):
            m.d.sync += held.eq(1)
        with m.If(dec.scale_done):
            m.d.sync += held.eq(0)
        for u in UNITS:
            value = self._entry(m, u, dec)
            deep = FRONT_DEPTH.get(u, self.depth + 1)
            q = fifo.SyncFIFOBuffered(width=len(value.as_value()), depth=deep)
            m.submodules[f"cmds_{u}"] = fifos[u] = q
            mine = Signal(name=f"cmd_to_{u}")
            for o in (o for o, unit in UNIT.items() if unit == u):
                with m.If(op == int(o)):
                    m.d.comb += mine.eq(1)
            with m.If(mine):
                m.d.comb += room.eq(q.w_rdy)
            m.d.comb += [q.w_en.eq(taken & mine), q.w_data.eq(value.as_value())]
        m.d.comb += [
            seq.prog.valid.eq(record & dec.ready & room),
            seq.prog.payload.record.eq(p.record),
            seq.prog.payload.last.eq(beats.payload.last),
            beats.ready.eq(~held & dec.ready & seq.prog.ready & room),
        ]
        return fifos

    def _writes(self, m: Module, dec: Decoder, held: Signal) -> None:
        """``prog``'s register writes, taken while no run is fetched: ``FETCH_ADDR`` /
        ``FETCH_RUN`` set the run's address and start it (:mod:`.fetch`), the others go to
        the decoder (after a SCALE once its update is done); a read's word waits on
        ``readback`` until the host takes it, the next read until then."""
        prog, fetch = self.prog, self._fetch
        wr = prog.payload
        idle = prog.valid & ~fetch.busy
        to_addr, to_run = wr.addr == FETCH_ADDR, wr.addr == FETCH_RUN
        read = (wr.addr & READ).any()
        rb, pending = self.readback, Signal()  # one word held until the host takes it
        m.d.comb += [
            dec.reg_write.eq(idle & ~to_addr & ~to_run & ~read & ~held),
            dec.reg_read.eq(idle & read & ~held & ~rb.valid & ~pending),
            dec.reg_addr.eq(wr.addr),
            dec.reg_data.eq(wr.data),
        ]
        # The decoder's read gives its word a cycle after it is taken.
        m.d.sync += pending.eq(dec.reg_read & dec.reg_ready)
        with m.If(rb.valid & rb.ready):
            m.d.sync += rb.valid.eq(0)
        with m.If(pending):
            m.d.sync += [rb.valid.eq(1), rb.payload.eq(dec.reg_value)]
        base = Signal(len(fetch.start.payload.addr))
        st = fetch.start
        m.d.comb += [
            st.valid.eq(idle & to_run),
            st.payload.addr.eq(base),
            st.payload.words.eq(wr.data[:WORDS_BITS]),
            st.payload.last.eq(wr.data[LAST_BIT]),
        ]
        with m.If(idle & to_addr):
            m.d.sync += base.eq(wr.data)
        decoder = ~held & dec.reg_ready & ~(read & (rb.valid | pending))
        m.d.comb += prog.ready.eq(~fetch.busy & Mux(to_addr, 1, Mux(to_run, st.ready, decoder)))

    def _entry(self, m: Module, u: str, dec: Decoder) -> data.View:
        """Unit ``u``'s FIFO entry, from the decoder's command and statistics targets."""
        value = Signal(unit_entry_layout(self.config, u), name=f"cmd_entry_{u}")
        cmd, path = dec.command, gemm_path.command_layout(self.config).members
        for name in FRONT_FIELDS[u]:
            src = cmd.path[name] if name in path else cmd[name]
            m.d.comb += value.command[name].eq(src)
        for k in range(FRONT_TARGETS[u]):
            w = value.writes[k]
            m.d.comb += [w.use.eq(dec.writes[k].use), w.tensor.eq(dec.writes[k].tensor)]
        return value

    def _front(self, m, seq, q, u, issue, finished) -> tuple:  # noqa: ANN001
        """Unit ``u``'s front-end: the issued record with the head command, one at a time;
        its token on ``<u>_done`` once ``finished`` (checked from the second cycle on).
        Returns the end's signal and the running instruction's statistics targets."""
        rec, done = getattr(seq, u), getattr(seq, f"{u}_done")
        busy, fresh = Signal(name=f"{u}_running"), Signal(name=f"{u}_fresh")
        token = Signal(TOKEN_BITS, name=f"{u}_token")
        head = Signal(unit_entry_layout(self.config, u), name=f"{u}_head")
        targets = None
        m.d.comb += head.as_value().eq(q.r_data)
        offer = rec.valid & q.r_rdy & ~busy
        unit_ready = issue(head.command, offer)
        go = offer & unit_ready
        m.d.comb += rec.ready.eq(go)
        with m.If(go):
            m.d.sync += [busy.eq(1), fresh.eq(1), token.eq(rec.payload[TOKEN_AT:][:TOKEN_BITS])]
        with m.Elif(fresh):
            m.d.sync += fresh.eq(0)
        if FRONT_TARGETS[u]:
            targets = Signal(head.writes.shape(), name=f"{u}_targets")
            with m.If(go):
                m.d.sync += targets.eq(head.writes)
        end = busy & ~fresh & finished
        m.d.comb += [done.valid.eq(end), done.payload.eq(token)]
        # VecMem runs from the head of its FIFO (``held``): popped as the instruction ends.
        m.d.comb += q.r_en.eq(end if u == "vector" else go)
        with m.If(end):
            m.d.sync += busy.eq(0)
        return end, targets


#: What each unit's front-end reads of a decoded command (:func:`~.decode.command_layout`:
#: the GEMM path's ``unit``, ``dma``, ``gemm``; ``vec``; ``link``) ...
FRONT_FIELDS = {
    "dma_in": ("unit", "dma"),
    "dma_out": ("dma",),
    "engine": ("gemm",),
    "vector": ("vec",),
    "link": ("link",),
}
#: ... and how many statistics targets (VecMem's streams; the GEMM unit's and the link's one).
FRONT_TARGETS = {"dma_in": 0, "dma_out": 0, "engine": 1, "vector": STREAMS, "link": 1}
#: FIFO depths other than ``depth + 1``: VecMem's holds one command, the one it runs (an
#: output register, no distributed RAM: 9.4k cells fewer); a VEC's record waits to be
#: decoded until the VEC before it has ended.
FRONT_DEPTH = {"vector": 1}
#: Record bits the sequencer queues for a unit: the front-ends read the token alone (the
#: rest travels decoded in the FIFOs), so a queue holds the header's first word.
SEQ_KEEP = TOKEN_AT + TOKEN_BITS


def unit_entry_layout(config: DeviceConfig, unit: str) -> data.StructLayout:
    """Unit ``unit``'s FIFO entry: the fields of the decoded command its front-end reads
    and the tensors (``use``, ``tensor``) its statistics streams report to."""
    whole = command_layout(config).members
    path = gemm_path.command_layout(config).members
    fields = {n: path[n] if n in path else whole[n] for n in FRONT_FIELDS[unit]}
    layout = {"command": data.StructLayout(fields)}
    if FRONT_TARGETS[unit]:
        target = data.StructLayout({"use": 1, "tensor": target_layout().members["tensor"]})
        layout["writes"] = data.ArrayLayout(target, FRONT_TARGETS[unit])
    return data.StructLayout(layout)
