"""VEC instructions from memory: the vector unit between an operand reader and a result writer.

:class:`VecMem` runs one ``VEC`` instruction of a program on tensors packed in DRAM (each
at its width from its bit address, :func:`barista_hw.device.memory.pack_stream`) behind
one memory port (:mod:`.port`), bit-exactly as :class:`barista_hw.device.machine.Machine`:

* the **operand reader** walks the order the :class:`~.vector.VectorUnit` wants by
  counters (beat rows of ``lanes`` groups, each group's entries in turn: element order;
  ``BIAS_ADD``'s bias beside each element; ``MEAN_SUB``'s mean image again for every
  image; ``BIAS_GRAD`` channel by channel; pooling windows, forward, or each input
  pixel's candidate covering windows, backward, with ``pad`` entries) and reads each
  operand element it needs from DRAM: one port command of the 1 to 3 bus words holding
  its bits, unpacked at the operand's width (a runtime width: masks, activations, 32-bit
  master weights). Padding, lanes past the last group and the constants (pooling's
  ``1/n`` from a table in the command, ``MAXPOOL_BACK``'s window offset) read nothing;
* the **result writer** stores each output's results (up to three: ``SGD``'s momentum,
  master and operand copy; ``MAXPOOL``'s maximum and mask; ``CONVERT``'s cleared source)
  at their widths, consecutive from each result's bit address: a read-modify-write of
  the element's words (its neighbours' bits kept), one element at a time.

No staging: windows that share inputs re-read them from DRAM. Cost per instruction
(:func:`cycles_bound` is its bound for the test bench): each operand read is a command of
1 to 3 words, each result write two commands (read, then write) waiting the memory's
read latency, so results dominate; the vector unit's own beats overlap. This is the
correct, simple baseline; bursts (a staging buffer in V per plane) are the next step.

Address generation: a linear operand has two walkers of :mod:`.dma` (three nested
counters each, adding constant deltas to its element address and image coordinates): a
*group* walker stepped per lane and restarted from the row's mark for every entry, and
an *entry* walker stepped per entry. Pooling forward is im2col's (groups: outputs,
entries: kernel offsets) with the padding test on the coordinates; pooling backward has
its own counters (each pixel's quotient and remainder by the stride, kept by increments;
no divider). :func:`command` pre-decodes an instruction (its record, descriptors, the
current exponents and scalars) into the hardware command.

Ports:

* ``cmd`` (in, :func:`command_layout`): one instruction, taken while idle;
* ``port`` (the memory port's master, ``bus_bits`` words);
* ``stats`` (out, :data:`~.vector.STATS_LAYOUT`): the unit's statistics, offered once the
  last result is written; reading them ends the instruction;
* ``busy`` (out): an instruction is running.
"""

from __future__ import annotations

import enum
import math

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from .. import vector
from ..geometry import PoolGeometry
from ..isa import ON_C, Instruction, Op, Program
from ..scaling import ScaleTable
from ..vector import RECIP_BITS, Rounder, VecOp
from .dma import COORD_BITS, FIRST_BIT_BITS, LEVELS, Walk, _position_layout, _step, walker_layout
from .port import ADDR_BITS, LEN_BITS, port_signature
from .vector import CMD_LAYOUT, DATA_BITS, STATS_LAYOUT, STREAMS, VecCommand, VectorUnit

COUNT_BITS = 24  # groups, entries a group, beat rows
KMAX = 4  # pooling kernels up to 4 x 4 (the reciprocal table's size)
NONE = 0xFFFF  # an instruction's absent tensor


class Source(enum.IntEnum):
    """Where an operand slot's values come from."""

    NONE = 0
    MEMORY = 1
    RECIP = 2  # pooling's 1/n of the entry's window (the command's table)
    OFFSET = 3  # MAXPOOL_BACK: the entry's offset in its window


def _operand_layout() -> data.StructLayout:
    return data.StructLayout(
        {
            "src": 2,
            "unsigned": 1,  # a mask: window offsets, not sign-extended
            "first_bit": unsigned(FIRST_BIT_BITS),
            "bits": 6,
            "g": walker_layout(),
            "t": walker_layout(),
        }
    )


def _result_layout() -> data.StructLayout:
    return data.StructLayout(
        {"use": 1, "zero": 1, "first_bit": unsigned(FIRST_BIT_BITS), "bits": 6}
    )


def _cover_layout() -> data.StructLayout:
    u16, s32 = unsigned(16), signed(32)
    fields = ("height", "width", "out_h", "out_w", "sh", "sw", "a_n", "b_n", "sh_kw")
    return data.StructLayout(
        {
            **dict.fromkeys(fields, u16),
            **dict.fromkeys(("q0h", "r0h", "q0w", "r0w", "rhkw0"), u16),
            "row0": s32,
            "plane": s32,
        }
    )


def command_layout() -> data.StructLayout:
    """A command: the unit's, the walk (groups, entries a group, beat rows), the padding
    test, the reciprocal table, three operand slots, three results, the covering walk."""
    return data.StructLayout(
        {
            "vec": CMD_LAYOUT,
            "cover": 1,  # pooling backward's walk (else linear walkers)
            "check": 1,  # operand 0's coordinates tested against height x width
            "nops": 2,  # operand slots used (a prefix)
            "groups": COUNT_BITS,
            "length": COUNT_BITS,
            "rows": COUNT_BITS,
            "height": unsigned(COORD_BITS - 1),
            "width": unsigned(COORD_BITS - 1),
            "kh": 4,
            "kw": 4,
            "lim_h": signed(COORD_BITS),  # H + pad: a window's size is clipped there
            "lim_w": signed(COORD_BITS),
            "recip": data.ArrayLayout(unsigned(RECIP_BITS + 1), KMAX * KMAX),
            "ops": data.ArrayLayout(_operand_layout(), 3),
            "res": data.ArrayLayout(_result_layout(), STREAMS),
            "cv": _cover_layout(),
        }
    )


# -- the command, from an instruction ---------------------------------------------------
_ZERO_WALK = Walk((1, 1), ((0, 0, 0),) * LEVELS, (0, 0, 0), (0, 0, 0))


def _stride(step: int) -> Walk:
    return Walk((1, 1), ((0, 0, 0), (0, 0, 0), (step, 0, 0)), (0, 0, 0), (0, 0, 0))


def _wrap(inner: int, outer: int, deltas: tuple[int, int, int]) -> Walk:
    """Three levels of ``inner`` x ``outer`` x unbounded with address deltas ``deltas``."""
    return Walk((inner, outer), tuple((d, 0, 0) for d in deltas), (0, 0, 0), (0, 0, 0))


class _Builder:
    """The fields of one instruction's command, filled per operation."""

    def __init__(self, inst: Instruction, program: Program, lanes: int) -> None:
        self.inst, self.program, self.lanes = inst, program, lanes
        self.ops: list[dict] = []
        self.res: list[dict] = []
        self.f: dict = {"cover": 0, "check": 0, "groups": 0, "length": 1}

    def tensor(self, key: str) -> dict:
        index = self.inst[key]
        if index == NONE:
            raise InputError(f"{self.inst.text()}: no {key} tensor")
        return self.program.tensors[index]

    def per_image(self, key: str) -> int:
        return math.prod(self.tensor(key)["shape"][1:])

    def first_bit(self, key: str, images: bool) -> tuple[int, int]:
        t = self.tensor(key)
        if not 1 <= t["bits"] <= DATA_BITS:
            raise InputError(f"{self.inst.text()}: {t['name']!r} has {t['bits']}-bit elements")
        skip = self.inst["i0"] * self.per_image(key) if images else 0
        return 8 * t["addr"] + skip * t["bits"], t["bits"]

    def operand(self, key: str, g: Walk, t: Walk = _ZERO_WALK, *, images: bool = True) -> None:
        first, bits = self.first_bit(key, images)
        uns = int(self.tensor(key)["role"] == "mask")
        op = {"src": Source.MEMORY, "unsigned": uns, "first_bit": first, "bits": bits}
        self.ops.append({**op, "g": g, "t": t})

    def constant(self, source: Source) -> None:
        op = {"src": source, "unsigned": 0, "first_bit": 0, "bits": 1}
        self.ops.append({**op, "g": _ZERO_WALK, "t": _ZERO_WALK})

    def result(self, key: str, *, images: bool = True, zero: bool = False) -> None:
        first, bits = self.first_bit(key, images)
        self.res.append({"use": 1, "zero": int(zero), "first_bit": first, "bits": bits})

    def fields(self, vec: VecCommand) -> dict:
        unused = {"src": Source.NONE, "first_bit": 0, "bits": 1}
        ops = [{**o, "g": o["g"].fields(), "t": o["t"].fields()} for o in self.ops] + [
            {**unused, "g": _ZERO_WALK.fields(), "t": _ZERO_WALK.fields()}
        ] * (3 - len(self.ops))
        res = self.res + [{"use": 0, "zero": 0, "first_bit": 0, "bits": 1}] * (3 - len(self.res))
        groups = self.f["groups"]
        return {
            "height": 0,
            "width": 0,
            "kh": 1,
            "kw": 1,
            "lim_h": 0,
            "lim_w": 0,
            "recip": [0] * (KMAX * KMAX),
            "cv": {},
            **self.f,
            "vec": _vec_fields(vec),
            "nops": len(self.ops),
            "rows": -(-groups // self.lanes),
            "ops": ops,
            "res": res,
        }


def _vec_fields(vec: VecCommand) -> dict:
    return {
        "op": int(vec.op),
        "rounding": int(vec.rounding),
        "seed": vec.seed & 0xFFFFFFFF,
        "bits": vec.bits,
        "bits2": vec.bits2,
        "shifts": list(vec.shifts),
        "scalars": list(vec.scalars),
        "align": list(vec.align),
    }


def _pool_geometry(inst: Instruction, program: Program) -> PoolGeometry:
    d = program.descriptors[inst["desc"]]
    geom = PoolGeometry(
        d["channels"], d["height"], d["width"], *(tuple(d[k]) for k in ("kernel", "stride", "pad"))
    )
    if max(geom.kernel) > KMAX:
        raise InputError(f"{inst.text()}: pooling kernel {geom.kernel} exceeds {KMAX} x {KMAX}")
    return geom


def _recip_table(geom: PoolGeometry) -> list[int]:
    """The pooling reciprocals (:func:`vector.reciprocals`) by window size: entry
    ``(hsize - 1) * KMAX + wsize - 1``, the window clipped as :func:`vector.pool_sizes`."""
    r, _ = vector.reciprocals(geom)
    hs, ws = vector.window_starts(geom)
    hsize = np.minimum(hs + geom.kernel[0], geom.height + geom.pad[0]) - hs
    wsize = np.minimum(ws + geom.kernel[1], geom.width + geom.pad[1]) - ws
    table = [0] * (KMAX * KMAX)
    for i, a in enumerate(hsize):
        for j, b in enumerate(wsize):
            table[(int(a) - 1) * KMAX + int(b) - 1] = int(r[i, j])
    return table


def _pool_fields(b: _Builder, geom: PoolGeometry) -> None:
    (kh, kw), (ph, pw) = geom.kernel, geom.pad
    b.f.update(
        height=geom.height,
        width=geom.width,
        kh=kh,
        kw=kw,
        lim_h=geom.height + ph,
        lim_w=geom.width + pw,
        recip=_recip_table(geom),
    )


def _window_walks(geom: PoolGeometry) -> tuple[Walk, Walk]:
    """Pooling forward as im2col: groups (ow, oh, plane), entries (j, i)."""
    (kh, kw), (sh, sw), (ph, pw) = geom.kernel, geom.stride, geom.pad
    h, w = geom.height, geom.width
    g = Walk(
        (geom.out_width, geom.out_height),
        ((sw, 0, sw), (sh * w, sh, 0), (h * w, 0, 0)),
        (0, 0, 0),
        (-ph * w - pw, -ph, -pw),
    )
    t = Walk((kw, kh), ((1, 0, 1), (w, 1, 0), (0, 0, 0)), (0, 0, 0), (0, 0, 0))
    return g, t


def _cover_fields(b: _Builder, geom: PoolGeometry) -> None:
    (kh, kw), (sh, sw), (ph, pw) = geom.kernel, geom.stride, geom.pad
    b.f["cover"] = 1
    b.f["length"] = vector.covering_windows(geom.kernel, geom.stride)
    b.f["cv"] = {
        "height": geom.height,
        "width": geom.width,
        "out_h": geom.out_height,
        "out_w": geom.out_width,
        "sh": sh,
        "sw": sw,
        "a_n": -(-kh // sh),
        "b_n": -(-kw // sw),
        "sh_kw": sh * kw,
        "q0h": ph // sh,
        "r0h": ph % sh,
        "q0w": pw // sw,
        "r0w": pw % sw,
        "rhkw0": ph % sh * kw,
        "row0": ph // sh * geom.out_width,
        "plane": geom.out_height * geom.out_width,
    }


def command(
    inst: Instruction,
    program: Program,
    scales: ScaleTable,
    *,
    rnd: Rounder,
    width: int,
    scalars: dict[str, float] | None = None,
) -> dict:
    """The :func:`command_layout` fields of ``VEC`` ``inst`` of ``program`` with the
    exponents in ``scales`` as they are when it runs, rounding with ``rnd`` (the
    machine's: the iteration's seed, the unit's lanes), results of ``width`` bits (the
    operand format's), ``scalars`` the host's (``SGD``)."""
    if inst.op is not Op.VEC:
        raise InputError(f"{inst.text()}: the vector unit runs VEC, not {inst.op.name}")
    if inst["desc"] == ON_C:
        raise InputError(f"{inst.text()}: an epilogue on C is not run from memory")
    op = VecOp(inst.sub)
    if op not in _BUILDERS:
        raise InputError(f"{inst.text()}: {op.name} is not run from memory")
    b = _Builder(inst, program, rnd.lanes)
    name = lambda key: program.tensors[inst[key]]["name"]  # noqa: E731
    vec = _BUILDERS[op](b, op, name, scales, rnd, width, scalars or {})
    return b.fields(vec)


def _element_count(b: _Builder, key: str = "src") -> int:
    return b.inst["images"] * b.per_image(key)


def _bias_add(b, op, name, scales, rnd, width, scalars) -> VecCommand:  # noqa: ANN001
    shape = b.tensor("src")["shape"]
    channels, pixels = shape[1], math.prod(shape[2:])
    b.f["groups"] = _element_count(b)
    b.operand("src", _stride(1))
    b.operand("src2", _wrap(pixels, channels, (0, 1, 0)), images=False)
    b.result("dst")
    return VecCommand.bias_add(scales.stored(name("src")), scales.stored(name("src2")), width, rnd)


def _mean_sub(b, op, name, scales, rnd, width, scalars) -> VecCommand:  # noqa: ANN001
    size = b.per_image("src")
    b.f["groups"] = _element_count(b)
    b.operand("src", _stride(1))
    b.operand("src2", _wrap(size, 1, (1, 0, 0)), images=False)
    b.result("dst")
    fx, fm = scales.stored(name("src")), scales.stored(name("src2"))
    return VecCommand.mean_sub(fx, fm, scales.frac(name("dst")), width, rnd)


def _bias_grad(b, op, name, scales, rnd, width, scalars) -> VecCommand:  # noqa: ANN001
    shape = b.tensor("src")["shape"]
    channels, pixels = shape[1], math.prod(shape[2:])
    b.f.update(groups=channels, length=b.inst["images"] * pixels)
    b.operand("src", _stride(pixels), _wrap(pixels, 1, (1, 0, channels * pixels)))
    b.result("dst", images=False)
    return VecCommand.bias_grad(scales.stored(name("src")), scales.frac(name("dst")), width, rnd)


def _relu(b, op, name, scales, rnd, width, scalars) -> VecCommand:  # noqa: ANN001
    b.f["groups"] = _element_count(b)
    b.operand("src", _stride(1))
    back = op is VecOp.RELU_BACK
    if back:
        b.operand("src2", _stride(1))
    b.result("dst")
    slope = vector.scalar_from_param(b.inst["param"])
    return VecCommand.relu(width, slope, rnd, back=back)


def _convert(b, op, name, scales, rnd, width, scalars) -> VecCommand:  # noqa: ANN001
    b.f["groups"] = _element_count(b)
    b.operand("src", _stride(1))
    b.result("dst")
    if b.inst["param"] & 1:  # read-and-clear: the source written back as zeros
        b.result("src", zero=True)
    frac_in, frac_out = scales.stored(name("src")), scales.frac(name("dst"))
    return VecCommand.convert(frac_in, frac_out, width, rnd)


def _pool(b, op, name, scales, rnd, width, scalars) -> VecCommand:  # noqa: ANN001
    geom = _pool_geometry(b.inst, b.program)
    _pool_fields(b, geom)
    images = b.inst["images"]
    if op in (VecOp.MAXPOOL, VecOp.AVEPOOL):
        b.f.update(check=1, groups=images * geom.channels * geom.out_height * geom.out_width)
        b.f["length"] = geom.kernel[0] * geom.kernel[1]
        b.operand("src", *_window_walks(geom))
        b.result("dst")
        if op is VecOp.MAXPOOL:
            b.result("dst2")
            return VecCommand.maxpool()
        b.constant(Source.RECIP)
        return VecCommand.avepool(geom, width, rnd)
    b.f["groups"] = images * geom.channels * geom.height * geom.width
    _cover_fields(b, geom)
    b.operand("src", _ZERO_WALK)  # addresses from the covering walk
    b.result("dst")
    if op is VecOp.MAXPOOL_BACK:
        b.operand("src2", _ZERO_WALK)
        b.constant(Source.OFFSET)
        return VecCommand.maxpool_back(width)
    b.constant(Source.RECIP)
    return VecCommand.avepool(geom, width, rnd, back=True)


def _sgd(b, op, name, scales, rnd, width, scalars) -> VecCommand:  # noqa: ANN001
    b.f["groups"] = math.prod(b.tensor("dst")["shape"])
    for key in ("src", "src2", "dst"):  # grad, momentum, master
        b.operand(key, _stride(1), images=False)
    for key in ("src2", "dst", "dst2"):  # momentum, master, operand copy
        b.result(key, images=False)
    lr_index = b.inst["param"]
    names = b.program.scalars
    stored = scales.stored
    return VecCommand.sgd(
        stored(name("dst")),
        stored(name("src2")),
        stored(name("src")),
        lr=vector.encode_scalar(scalars[names[lr_index]]),
        mom=vector.encode_scalar(scalars["momentum"]),
        decay=vector.encode_scalar(scalars[names[lr_index + 1]]),
        operand_bits=width,
        frac_operand=scales.frac(name("dst2")),
        rnd=rnd,
    )


_BUILDERS = {
    VecOp.BIAS_ADD: _bias_add,
    VecOp.MEAN_SUB: _mean_sub,
    VecOp.BIAS_GRAD: _bias_grad,
    VecOp.RELU: _relu,
    VecOp.RELU_BACK: _relu,
    VecOp.CONVERT: _convert,
    VecOp.MAXPOOL: _pool,
    VecOp.AVEPOOL: _pool,
    VecOp.MAXPOOL_BACK: _pool,
    VecOp.AVEPOOL_BACK: _pool,
    VecOp.SGD: _sgd,
}


def pack_command(fields: dict) -> int:
    """The bits of a command (the ``cmd`` stream's payload)."""
    return command_layout().const(fields).as_bits()


def cycles_bound(fields: dict, *, latency: int, lanes: int) -> int:
    """A bound on an instruction's cycles on a stall-free memory of read ``latency``:
    every operand read and every result's read-modify-write in turn, plus the unit."""
    entries = fields["rows"] * lanes * fields["length"]
    outputs = fields["groups"] * sum(r["use"] for r in fields["res"])
    return entries * fields["nops"] * 4 + outputs * (2 * latency + 12) + 64


# -- the hardware ---------------------------------------------------------------------------
def _tag_layout(bus_bits: int) -> data.StructLayout:
    return data.StructLayout(
        {
            "writer": 1,  # the words are the writer's (an element it merges into)
            "read": 1,  # words follow on ``r`` (else ``value`` is the element)
            "k": 2,
            "unsigned": 1,
            "off": max(1, (bus_bits - 1).bit_length()),
            "bits": 6,
            "words": 2,
            "value": signed(DATA_BITS),
            "pad": 1,
            "on": 1,
            "elast": 1,  # the entry's last operand
            "last": 1,
            "end": 1,
        }
    )


_WRITER = ("IDLE", "SCAN", "READ", "WAIT", "WRITE", "DATA")
_ENTRY = data.StructLayout(
    {"v": data.ArrayLayout(signed(DATA_BITS), 3), "pad": 1, "on": 1, "last": 1, "end": 1}
)


def _select(m: Module, values: list, index: Value, name: str) -> data.View | Value:
    """``values[index]`` as a chain of multiplexers, the last value the default: a
    continuous assignment, defined from time 0 in an event-driven simulator (Icarus runs
    an ``always @*`` block only once an input changes)."""
    out = Signal.like(values[0], name=name)
    value = Value.cast(values[-1])
    for i in range(len(values) - 2, -1, -1):
        value = Mux(index == i, values[i], value)
    m.d.comb += out.eq(value)
    return out


def _cover_group() -> data.StructLayout:
    u16, s32 = unsigned(16), signed(32)
    return data.StructLayout(
        {
            **dict.fromkeys(("h", "w", "qh", "rh", "qw", "rw", "rhkw"), u16),
            "rowaddr": s32,
            "obase": s32,
        }
    )


def _cover_entry() -> data.StructLayout:
    return data.StructLayout(
        {"a": 8, "b": 8, "a_out": signed(32), "a_sh": 16, "a_shkw": 16, "b_sw": 16}
    )


class VecMem(wiring.Component):
    """The vector unit fed from and writing to memory (module docstring: the ports)."""

    def __init__(
        self,
        lanes: int,
        *,
        bus_bits: int = 16,
        addr_bits: int = ADDR_BITS,
        len_bits: int = LEN_BITS,
        entries: int = 4,
        tags: int = 8,
    ) -> None:
        if bus_bits < 8 or bus_bits & (bus_bits - 1) or bus_bits > 32:
            raise InputError(f"vecmem: a bus of {bus_bits} bits; 8, 16 or 32")
        self.lanes, self.bus_bits, self.entries, self.tags = lanes, bus_bits, entries, tags
        self.shift = bus_bits.bit_length() - 1
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout())),
                "port": Out(port_signature(bus_bits, addr_bits, len_bits)),
                "stats": Out(stream.Signature(STATS_LAYOUT)),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.unit = unit = VectorUnit(self.lanes)
        tl = _tag_layout(self.bus_bits)
        m.submodules.tagq = tagq = fifo.SyncFIFO(width=tl.size, depth=self.tags)
        m.submodules.entq = entq = fifo.SyncFIFO(width=_ENTRY.size, depth=self.entries)
        c = Signal(command_layout(), name="c")
        active, unit_due = Signal(), Signal()
        start = self.cmd.valid & ~active
        m.d.comb += [self.cmd.ready.eq(~active), self.busy.eq(active)]
        with m.If(start):
            m.d.sync += [c.eq(self.cmd.payload), active.eq(1), unit_due.eq(1)]
        m.d.comb += [unit.cmd.valid.eq(unit_due), unit.cmd.payload.eq(c.vec)]
        with m.If(unit.cmd.ready & unit_due):
            m.d.sync += unit_due.eq(0)

        arb = self._arbiter(m)
        self._reader(m, c, start, tagq, entq, arb)
        words, done = self._data(m, tagq, entq, tl)
        self._beats(m, unit, entq)
        idle = self._writer(m, c, start, unit, tagq, arb, words, done)
        m.d.comb += [
            self.stats.valid.eq(unit.stats.valid & idle),
            self.stats.payload.eq(unit.stats.payload),
            unit.stats.ready.eq(self.stats.ready & idle),
        ]
        with m.If(self.stats.valid & self.stats.ready):
            m.d.sync += active.eq(0)
        return m

    # -- the port's command stream, shared: the writer first; an offered command is kept
    def _arbiter(self, m: Module) -> dict:
        pc = self.port.cmd
        a = {
            "w_req": Signal(name="w_req"),
            "w_want": Signal(name="w_want"),
            "r_req": Signal(name="r_req"),
            "w_cmd": Signal.like(pc.payload, name="w_cmd"),
            "r_cmd": Signal.like(pc.payload, name="r_cmd"),
        }
        locked, held_w = Signal(), Signal()
        writer = Mux(locked, held_w, a["w_req"])
        m.d.comb += [
            pc.valid.eq(Mux(writer, a["w_req"], a["r_req"])),
            pc.payload.eq(Mux(writer, a["w_cmd"], a["r_cmd"])),
        ]
        m.d.sync += [locked.eq(pc.valid & ~pc.ready), held_w.eq(writer)]
        a["w_go"] = writer & a["w_req"] & pc.ready
        a["r_go"] = ~writer & a["r_req"] & pc.ready
        a["r_locked"] = locked & ~held_w
        return a

    # -- the operand reader: the walk and its tags (and reads)
    def _reader(self, m, c, start, tagq, entq, arb) -> dict:  # noqa: ANN001
        lanes, tl, sh = self.lanes, _tag_layout(self.bus_bits), self.shift
        gen_on = Signal(name="gen_on")
        row, t = Signal(COUNT_BITS, name="row"), Signal(COUNT_BITS, name="t")
        lane, k = Signal(range(max(2, lanes)), name="lane"), Signal(2, name="k")
        gidx, gmark = Signal(COUNT_BITS, name="gidx"), Signal(COUNT_BITS, name="gmark")
        # Entries the entry FIFO can still take (read data are never refused: the writer's
        # words may follow the reader's on ``r``).
        credit = Signal(range(self.entries + 1), name="credit", init=self.entries)
        pl = _position_layout()
        G = [Signal(pl, name=f"g{i}") for i in range(3)]
        GM = [Signal(pl, name=f"gm{i}") for i in range(3)]
        T = [Signal(pl, name=f"t{i}") for i in range(3)]
        cg, cgm = Signal(_cover_group(), name="cg"), Signal(_cover_group(), name="cgm")
        ce = Signal(_cover_entry(), name="ce")
        cv = c.cv
        p = self.cmd.payload

        def positions(w: data.View) -> list:
            return [w.cnt, w.addr, w.y, w.x]

        def set_pos(dst, src) -> list:  # noqa: ANN001
            return [a.eq(b) for a, b in zip(positions(dst), positions(src), strict=True)]

        with m.If(start):
            m.d.sync += [gen_on.eq(1), row.eq(0), t.eq(0), lane.eq(0), k.eq(0)]
            m.d.sync += [gidx.eq(0), gmark.eq(0)]
            for i in range(3):
                m.d.sync += set_pos(G[i], p.ops[i].g) + set_pos(GM[i], p.ops[i].g)
                m.d.sync += set_pos(T[i], p.ops[i].t)
            for reg in (cg, cgm):
                m.d.sync += reg.eq(0)
                pcv = p.cv
                m.d.sync += [
                    reg.qh.eq(pcv.q0h), reg.rh.eq(pcv.r0h), reg.qw.eq(pcv.q0w),
                    reg.rw.eq(pcv.r0w), reg.rhkw.eq(pcv.rhkw0), reg.rowaddr.eq(pcv.row0),
                ]  # fmt: skip
            m.d.sync += ce.eq(0)

        # -- the entry's values
        on = gidx < c.groups
        y = Signal(signed(COORD_BITS), name="y")
        x = Signal(signed(COORD_BITS), name="x")
        m.d.comb += [y.eq(G[0].y + T[0].y), x.eq(G[0].x + T[0].x)]
        inside = (y.as_unsigned() < c.height) & (x.as_unsigned() < c.width)
        i_, j_ = Signal(16, name="cov_i"), Signal(16, name="cov_j")
        oh, ow = Signal(signed(18), name="cov_oh"), Signal(signed(18), name="cov_ow")
        m.d.comb += [
            i_.eq(cg.rh + ce.a_sh),
            j_.eq(cg.rw + ce.b_sw),
            oh.eq(cg.qh - ce.a),
            ow.eq(cg.qw - ce.b),
        ]
        covers = (
            (oh >= 0) & (oh < cv.out_h) & (i_ < c.kh) & (ow >= 0) & (ow < cv.out_w) & (j_ < c.kw)
        )
        pad = Mux(c.cover, ~covers, c.check & ~inside)
        cover_addr = cg.obase + cg.rowaddr - ce.a_out + ow
        offset = cg.rhkw + ce.a_shkw + j_
        # The window's first row and column: its size is clipped at lim_h, lim_w.
        top = Mux(c.cover, cg.h - i_, G[0].y).as_signed()
        left = Mux(c.cover, cg.w - j_, G[0].x).as_signed()
        hsize, wsize = Signal(signed(COORD_BITS + 2)), Signal(signed(COORD_BITS + 2))
        m.d.comb += [hsize.eq(c.lim_h - top), wsize.eq(c.lim_w - left)]
        hs = Mux(hsize > c.kh, c.kh, hsize)
        ws = Mux(wsize > c.kw, c.kw, wsize)
        recip = _select(m, list(c.recip), Cat((ws - 1)[:2], (hs - 1)[:2]), "recip")

        op = _select(m, list(c.ops), k, "op")
        linear = [G[i].addr + T[i].addr for i in range(3)]
        addr = Mux(c.cover, cover_addr, _select(m, linear, k, "linear_addr"))
        bit = Signal(FIRST_BIT_BITS + 1, name="bit")
        m.d.comb += bit.eq(op.first_bit + addr * op.bits)
        off = bit[:sh]
        nwords = (off + op.bits + self.bus_bits - 1) >> sh
        read = (op.src == Source.MEMORY) & on & ~pad
        value = Mux(op.src == Source.RECIP, recip, Mux(op.src == Source.OFFSET, offset, 0))
        elast = k == c.nops - 1
        last = t == c.length - 1
        tag = Signal(tl, name="rtag")
        m.d.comb += [
            tag.read.eq(read),
            tag.k.eq(k),
            tag.off.eq(off),
            tag.bits.eq(op.bits),
            tag.unsigned.eq(op.unsigned),
            tag.words.eq(nwords),
            tag.value.eq(value),
            tag.pad.eq(pad),
            tag.on.eq(on),
            tag.elast.eq(elast),
            tag.last.eq(last),
            tag.end.eq(last & (row == c.rows - 1)),
        ]
        ok = gen_on & tagq.w_rdy & ((k != 0) | (credit != 0)) & (arb["r_locked"] | ~arb["w_want"])
        m.d.comb += [
            arb["r_req"].eq(ok & read),
            arb["r_cmd"].addr.eq(bit[sh:]),
            arb["r_cmd"].length.eq(nwords),
            arb["r_cmd"].write.eq(0),
        ]
        fire = ok & (~read | arb["r_go"])
        arb["r_fire"], arb["r_tag"] = fire, tag  # pushed by the writer's mux
        popped = entq.r_en & entq.r_rdy
        m.d.sync += credit.eq(credit - (fire & (k == 0)) + popped)

        # -- stepping: operand, lane (group), entry, row
        with m.If(fire):
            m.d.sync += k.eq(Mux(elast, 0, k + 1))
        step = fire & elast
        g_next = [_step(m, G[i], c.ops[i].g, f"g{i}_next") for i in range(3)]
        t_next = [_step(m, T[i], c.ops[i].t, f"t{i}_next") for i in range(3)]
        cg_next = self._cover_group_step(m, c, cg)
        ce_next = self._cover_entry_step(m, c, ce)
        with m.If(step):
            with m.If(lane != lanes - 1):
                m.d.sync += [lane.eq(lane + 1), gidx.eq(gidx + 1), cg.eq(cg_next)]
                for i in range(3):
                    m.d.sync += set_pos(G[i], g_next[i])
            with m.Elif(~last):
                m.d.sync += [lane.eq(0), t.eq(t + 1), gidx.eq(gmark), cg.eq(cgm), ce.eq(ce_next)]
                for i in range(3):
                    m.d.sync += set_pos(G[i], GM[i]) + set_pos(T[i], t_next[i])
            with m.Else():
                m.d.sync += [lane.eq(0), t.eq(0), row.eq(row + 1), ce.eq(0)]
                m.d.sync += [gidx.eq(gidx + 1), gmark.eq(gidx + 1), cg.eq(cg_next), cgm.eq(cg_next)]
                for i in range(3):
                    m.d.sync += set_pos(G[i], g_next[i]) + set_pos(GM[i], g_next[i])
                    m.d.sync += set_pos(T[i], c.ops[i].t)
                with m.If(row == c.rows - 1):
                    m.d.sync += gen_on.eq(0)
        return {"gen_on": gen_on}

    def _cover_group_step(self, m: Module, c: data.View, g: data.View) -> data.View:
        """The next input pixel of the covering walk: its quotient and remainder by the
        stride kept by increments."""
        cv = c.cv
        n = Signal(_cover_group(), name="cg_next")
        m.d.comb += n.eq(g)
        with m.If(g.w != cv.width - 1):
            m.d.comb += n.w.eq(g.w + 1)
            with m.If(g.rw == cv.sw - 1):
                m.d.comb += [n.rw.eq(0), n.qw.eq(g.qw + 1)]
            with m.Else():
                m.d.comb += n.rw.eq(g.rw + 1)
        with m.Else():
            m.d.comb += [n.w.eq(0), n.qw.eq(cv.q0w), n.rw.eq(cv.r0w)]
            with m.If(g.h != cv.height - 1):
                m.d.comb += n.h.eq(g.h + 1)
                with m.If(g.rh == cv.sh - 1):
                    m.d.comb += [
                        n.rh.eq(0),
                        n.qh.eq(g.qh + 1),
                        n.rowaddr.eq(g.rowaddr + cv.out_w),
                        n.rhkw.eq(0),
                    ]
                with m.Else():
                    m.d.comb += [n.rh.eq(g.rh + 1), n.rhkw.eq(g.rhkw + c.kw)]
            with m.Else():
                m.d.comb += [
                    n.h.eq(0),
                    n.qh.eq(cv.q0h),
                    n.rh.eq(cv.r0h),
                    n.rowaddr.eq(cv.row0),
                    n.rhkw.eq(cv.rhkw0),
                    n.obase.eq(g.obase + cv.plane),
                ]
        return n

    def _cover_entry_step(self, m: Module, c: data.View, e: data.View) -> data.View:
        """The next candidate window (b inner, a outer)."""
        cv = c.cv
        n = Signal(_cover_entry(), name="ce_next")
        m.d.comb += n.eq(e)
        with m.If(e.b != cv.b_n - 1):
            m.d.comb += [n.b.eq(e.b + 1), n.b_sw.eq(e.b_sw + cv.sw)]
        with m.Else():
            m.d.comb += [
                n.b.eq(0),
                n.b_sw.eq(0),
                n.a.eq(e.a + 1),
                n.a_out.eq(e.a_out + cv.out_w),
                n.a_sh.eq(e.a_sh + cv.sh),
                n.a_shkw.eq(e.a_shkw + cv.sh_kw),
            ]
        return n

    # -- read data: elements unpacked into entries; the writer's words handed over
    def _data(self, m, tagq, entq, tl) -> tuple:  # noqa: ANN001
        bus = self.bus_bits
        head = data.View(tl, tagq.r_data)
        r = self.port.r
        count = Signal(2, name="wcount")
        buf = Signal(3 * bus, name="rbuf")
        m.d.comb += r.ready.eq(tagq.r_rdy & head.read)
        beat = r.valid & r.ready
        full = Signal(3 * bus, name="rfull")
        m.d.comb += full.eq(buf | (r.payload << (count * bus)))
        complete = tagq.r_rdy & (~head.read | (beat & (count == head.words - 1)))
        with m.If(beat):
            m.d.sync += [buf.eq(full), count.eq(count + 1)]
        with m.If(complete):
            m.d.sync += [buf.eq(0), count.eq(0)]
        m.d.comb += tagq.r_en.eq(complete)
        # The element: its bits from the offset, sign-extended from the runtime width.
        raw = Signal(DATA_BITS, name="raw")
        m.d.comb += raw.eq(full >> head.off)
        mask = Signal(DATA_BITS, name="emask")
        m.d.comb += mask.eq((Const(1, DATA_BITS + 1) << head.bits) - 1)
        neg = raw.bit_select((head.bits - 1)[:5], 1) & ~head.unsigned
        elem = Mux(neg, raw | ~mask, raw & mask).as_signed()
        val = Mux(head.read, elem, head.value)
        v = Signal(data.ArrayLayout(signed(DATA_BITS), 3), name="ev")
        ent = Signal(_ENTRY, name="entry")
        m.d.comb += [ent.v[i].eq(Mux(head.k == i, val, v[i])) for i in range(3)]
        m.d.comb += [
            ent.pad.eq(head.pad),
            ent.on.eq(head.on),
            ent.last.eq(head.last),
            ent.end.eq(head.end),
        ]
        reader = complete & ~head.writer
        with m.If(reader):
            m.d.sync += v.eq(ent.v)
        m.d.comb += [entq.w_en.eq(reader & head.elast), entq.w_data.eq(ent)]
        return full, complete & head.writer

    # -- beats: entries into lanes, a beat to the unit
    def _beats(self, m, unit, entq) -> None:  # noqa: ANN001
        lanes = self.lanes
        x = unit.x.payload
        bl = Signal(range(max(2, lanes)), name="blane")
        bfull = Signal(name="bfull")
        vals = Signal(data.ArrayLayout(data.ArrayLayout(signed(DATA_BITS), 3), lanes))
        pads, ons = Signal(lanes, name="bpad"), Signal(lanes, name="bon")
        blast, bend = Signal(name="blast"), Signal(name="bend")
        e = data.View(_ENTRY, entq.r_data)
        m.d.comb += entq.r_en.eq(~bfull)
        with m.If(entq.r_rdy & ~bfull):
            with m.Switch(bl):
                for i in range(lanes):
                    with m.Case(i) if i < lanes - 1 else m.Default():
                        m.d.sync += [vals[i].eq(e.v), pads[i].eq(e.pad), ons[i].eq(e.on)]
            m.d.sync += [blast.eq(e.last), bend.eq(e.end)]
            with m.If(bl == lanes - 1):
                m.d.sync += [bl.eq(0), bfull.eq(1)]
            with m.Else():
                m.d.sync += bl.eq(bl + 1)
        m.d.comb += [
            unit.x.valid.eq(bfull),
            x.v.eq(vals),
            x.pad.eq(pads),
            x.on.eq(ons),
            x.last.eq(blast),
            x.end.eq(bend),
        ]
        with m.If(unit.x.valid & unit.x.ready):
            m.d.sync += bfull.eq(0)

    # -- the result writer: a read-modify-write an element
    def _writer(self, m, c, start, unit, tagq, arb, words, done) -> Signal:  # noqa: ANN001
        lanes, bus, sh = self.lanes, self.bus_bits, self.shift
        tl = _tag_layout(bus)
        q = Signal(data.ArrayLayout(data.ArrayLayout(signed(DATA_BITS), STREAMS), lanes))
        qon = Signal(lanes, name="qon")
        wl = Signal(range(max(2, lanes)), name="wl")
        wk = Signal(2, name="wk")
        rbit = [Signal(FIRST_BIT_BITS + 1, name=f"rbit{i}") for i in range(STREAMS)]
        with m.If(start):
            m.d.sync += [rbit[i].eq(self.cmd.payload.res[i].first_bit) for i in range(STREAMS)]
        merged = Signal(3 * bus, name="merged")
        wi = Signal(2, name="wi")
        res = _select(m, list(c.res), wk, "res")
        b = _select(m, rbit, wk, "wbit")
        off = b[:sh]
        nwords = (off + res.bits + bus - 1) >> sh
        mask = Signal(DATA_BITS, name="wmask")
        m.d.comb += mask.eq((Const(1, DATA_BITS + 1) << res.bits) - 1)
        lane_q = _select(m, list(q), wl, "lane_q")
        value = Mux(res.zero, 0, _select(m, list(lane_q), wk, "q_k")).as_unsigned() & mask
        wide = Signal(3 * bus, name="wide")
        m.d.comb += wide.eq(mask << off)
        m.d.comb += [
            arb["w_cmd"].addr.eq(b[sh:]),
            arb["w_cmd"].length.eq(nwords),
        ]
        wtag = Signal(tl, name="wtag")
        m.d.comb += [wtag.writer.eq(1), wtag.read.eq(1), wtag.off.eq(off), wtag.words.eq(nwords)]
        w = self.port.w
        idle = Signal(name="w_idle")

        # An if-chain on a state register (an Amaranth FSM's case statement is incomplete
        # for Verilator's lint).
        state = Signal(range(len(_WRITER)), name="writer_state")
        is_ = {name: state == i for i, name in enumerate(_WRITER)}

        def goto(name: str) -> list:
            return [state.eq(_WRITER.index(name))]

        def finish_slot() -> None:
            """Result ``wk`` of lane ``wl`` done: the next, or the beat is done."""
            lane_done = wk == STREAMS - 1
            m.d.sync += [wk.eq(Mux(lane_done, 0, wk + 1)), wl.eq(Mux(lane_done, wl + 1, wl))]
            with m.If(lane_done):
                m.d.sync += [r.eq(r + c.res[i].bits) for i, r in enumerate(rbit)]
            beat_done = lane_done & (wl == lanes - 1)
            m.d.sync += state.eq(Mux(beat_done, _WRITER.index("IDLE"), _WRITER.index("SCAN")))

        # The comb outputs as continuous assignments (an ``always @*`` block runs in an
        # event-driven simulator only once an input changes: not at time 0).
        reading, writing = is_["READ"], is_["WRITE"]
        m.d.comb += [
            idle.eq(is_["IDLE"]),
            unit.y.ready.eq(is_["IDLE"]),
            arb["w_want"].eq((is_["SCAN"] & res.use) | reading | is_["WAIT"] | writing),
            arb["w_req"].eq((reading & tagq.w_rdy) | writing),
            arb["w_cmd"].write.eq(writing),
            w.valid.eq(is_["DATA"]),
            w.payload.eq(merged.word_select(wi, bus)),
            # One pusher a cycle: the reader yields to a waiting writer unless its own
            # command holds the port.
            tagq.w_en.eq((reading & arb["w_go"]) | arb["r_fire"]),
            tagq.w_data.eq(Mux(reading & arb["w_go"], wtag.as_value(), arb["r_tag"].as_value())),
        ]
        with m.If(is_["IDLE"]):
            with m.If(unit.y.valid):
                m.d.sync += [q.eq(unit.y.payload.q), qon.eq(unit.y.payload.on)]
                m.d.sync += [wl.eq(0), wk.eq(0), *goto("SCAN")]
        with m.Elif(is_["SCAN"]):
            with m.If(~qon.bit_select(wl, 1)):
                m.d.sync += goto("IDLE")  # lanes on are a prefix
            with m.Elif(res.use):
                m.d.sync += goto("READ")
            with m.Else():
                finish_slot()
        with m.Elif(reading):
            with m.If(arb["w_go"]):
                m.d.sync += goto("WAIT")
        with m.Elif(is_["WAIT"]):
            with m.If(done):
                m.d.sync += [merged.eq((words & ~wide) | (value << off)), *goto("WRITE")]
        with m.Elif(writing):
            with m.If(arb["w_go"]):
                m.d.sync += [wi.eq(0), *goto("DATA")]
        with m.Else():  # DATA
            with m.If(w.ready):
                m.d.sync += wi.eq(wi + 1)
                with m.If(wi == nwords - 1):
                    finish_slot()
        return idle
