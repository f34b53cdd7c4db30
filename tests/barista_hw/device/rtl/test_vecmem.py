"""VEC instructions run from memory in RTL (:class:`~barista_hw.device.rtl.vecmem.VecMem`)
against the device model's :class:`~barista_hw.device.machine.Machine`, on Icarus and
Verilator (``--sim``).

Each case is one VEC instruction of a small program: every operation that reads DRAM,
random tensors packed at their widths from odd byte addresses over random memory (so
every neighbour's bits must survive the writes), random pooling geometries (kernel,
stride, padding), every rounding mode, a slice of the batch's images (``i0 > 0``), and
the instructions of a compiled net. The Machine runs the same instruction; the whole
DRAM image after it (every bus word) and the statistics it records are compared with
the RTL's. Random stalls hit every stream of the memory port. One build and one
simulation per simulator.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device import traffic, vector
from barista_hw.device.compiler import compile_net
from barista_hw.device.geometry import ConvGeometry, PoolGeometry
from barista_hw.device.isa import ON_C, Instruction, Op, Program
from barista_hw.device.layers import Conv, Pool, Relu
from barista_hw.device.machine import Machine, iteration_seed
from barista_hw.device.memory import DeviceConfig, pack_stream
from barista_hw.device.rtl.vecmem import command, command_layout, recip_table
from barista_hw.device.rtl.vector import decode_stats
from barista_hw.device.vector import Rounder, Stats, VecOp
from barista_hw.numfmt import Rounding
from sim.vecmem_run import BUS_BITS, VecCase, VecResult, build, run_cases

LANES = 3  # the vector unit's lanes: groups are rarely a multiple of it
DEPTH = 64  # staging rings smaller than most tensors here, so they wrap
ACC = DEFAULT_ACCELERATOR.derive(rows=3, cols=3, depth=128, acc_depth=16)
CONFIG = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f", vector_lanes=LANES)
WIDTH = CONFIG.accelerator.engine.fmt.width
STALL = 0.3
ITERATION = 5
SCALARS = {"lr0": 0.01, "decay0": 0.0005, "momentum": 0.9}
POOL_CASES = 3  # random geometries per pooling operation


@dataclass
class Spec:
    """One instruction on a program whose tensors hold ``values`` at exponents ``fracs``
    (``targets``: the exponents the next writes use)."""

    name: str
    program: Program
    inst: Instruction
    values: dict[str, np.ndarray]
    fracs: dict[str, int]
    targets: dict[str, int]
    scalars: dict[str, float] = field(default_factory=lambda: SCALARS)

    def machine(self) -> Machine:
        m = Machine(self.program, CONFIG)
        m.iteration, m.scalars = ITERATION, self.scalars
        for name, frac in self.targets.items():
            m.scales.set_frac(name, frac)
        for name, q in self.values.items():
            m.write(name, q, self.fracs[name])
        return m

    def rounder(self) -> Rounder:
        seed = iteration_seed(self.inst["seed"], ITERATION)
        return Rounder(Rounding(self.inst["rounding"]), seed, LANES)

    def command(self) -> dict:
        return command(
            self.inst,
            self.program,
            self.machine().scales,
            rnd=self.rounder(),
            width=WIDTH,
            scalars=self.scalars,
            depth=DEPTH,
        )

    def image(self, m: Machine, background: np.ndarray) -> np.ndarray:
        """The DRAM's bus words: ``background`` with the instruction's tensors packed in
        (the others may share their memory: a compiled program's transients do)."""
        image = background.copy()
        keys = ("src", "src2", "dst", "dst2")
        for t in (self.tensors[self.inst[k]] for k in keys if self.inst[k] != 0xFFFF):
            q = m.tensor(t["name"]).ravel()
            first = 8 * t["addr"]
            words = pack_stream(q, t["bits"], BUS_BITS, first).astype(np.int64)
            mask = pack_stream(np.full(q.size, -1), t["bits"], BUS_BITS, first).astype(np.int64)
            w0 = first // BUS_BITS
            image[w0 : w0 + words.size] = (image[w0 : w0 + words.size] & ~mask) | words
        return image

    def background(self) -> np.ndarray:
        size = max(t["addr"] + (math.prod(t["shape"]) * t["bits"] + 7) // 8 for t in self.tensors)
        rng = np.random.default_rng(zlib.crc32(self.name.encode()) + 1)
        return rng.integers(0, 1 << BUS_BITS, size=size // 2 + 4).astype(np.int64)

    @property
    def tensors(self) -> list[dict]:
        return self.program.tensors

    def expected(self) -> tuple[np.ndarray, dict[str, Stats]]:
        """The DRAM image after the Machine ran the instruction, and the stats it recorded."""
        m = self.machine()
        recorded: dict[str, Stats] = {}
        wrote = m.scales.wrote

        def spy(name: str, frac: int, stats: Stats, exact: float | None = None) -> None:
            recorded[name] = stats
            wrote(name, frac, stats, exact)

        m.scales.wrote = spy
        m._vec(self.inst)
        return self.image(m, self.background()), recorded

    def case(self, stall: float, latency: int = 3) -> VecCase:
        initial = self.image(self.machine(), self.background())
        name = f"{self.name}-stall" if stall else self.name
        return VecCase(name, self.command(), initial, stall, latency)


# -- building programs ---------------------------------------------------------------------
def _program(rng: np.random.Generator, tensors: list[tuple], **extra) -> Program:  # noqa: ANN003
    """Tensors ``(name, role, shape, bits)`` placed one after another, each from an odd or
    even byte address (not aligned to the bus word)."""
    table, slot, byte = [], 0, int(rng.integers(0, 5))
    for name, role, shape, bits in tensors:
        n = math.prod(shape)
        entry = {"name": name, "role": role, "shape": list(shape), "bits": bits}
        table.append({**entry, "dram": slot, "addr": byte})
        slot += -(-n // 16) * 16
        byte += (n * bits + 7) // 8 + int(rng.integers(0, 4))
    return Program(tensors=table, meta={"batch": tensors[0][2][0]}, **extra)


def _vec(op: VecOp, rng: np.random.Generator, images: tuple[int, int], **fields) -> Instruction:  # noqa: ANN003
    i0, n = images
    f = {"src": 0xFFFF, "src2": 0xFFFF, "dst": 0xFFFF, "dst2": 0xFFFF, "desc": 0xFF}
    f |= {"rounding": int(rng.integers(0, 3)), "i0": i0, "images": n}
    f |= {"seed": int(rng.integers(0, 1 << 32)), "param": 0, **fields}
    return Instruction(Op.VEC, int(op), fields=f)


def _rand(rng: np.random.Generator, shape: tuple, bits: int, top: int | None = None) -> np.ndarray:
    lim = 1 << ((top or bits) - 1)
    return rng.integers(-lim, lim, size=shape)


def _images(rng: np.random.Generator) -> tuple[int, tuple[int, int]]:
    """A batch and the slice the instruction works on."""
    batch = int(rng.integers(1, 4))
    i0 = int(rng.integers(0, batch))
    return batch, (i0, int(rng.integers(1, batch - i0 + 1)))


def _spec(name: str, build) -> Spec:  # noqa: ANN001
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    program, inst, values, fracs, targets = build(rng)
    return Spec(name, program, inst, values, fracs, targets)


def _element_specs() -> list[Spec]:
    out = []

    def relu(back: bool):  # noqa: ANN202
        def make(rng):  # noqa: ANN001, ANN202
            batch, imgs = _images(rng)
            shape = (batch, 2, 3, 3)
            names = [("x", "activation", shape, WIDTH), ("y", "activation", shape, WIDTH)]
            if back:
                names.append(("dy", "gradient", shape, WIDTH))
            p = _program(rng, names)
            slope = [0.0, 0.1, -0.3][int(rng.integers(0, 3))]
            src, src2 = (2, 0) if back else (0, 0xFFFF)
            op = VecOp.RELU_BACK if back else VecOp.RELU
            inst = _vec(op, rng, imgs, src=src, src2=src2, dst=1, param=vector.scalar_param(slope))
            values = {n: _rand(rng, s, b) for n, _, s, b in names}
            return p, inst, values, dict.fromkeys(values, 6), {}

        return make

    out += [_spec("relu", relu(False)), _spec("relu-back", relu(True))]

    def bias_add(rng):  # noqa: ANN001, ANN202
        batch, imgs = _images(rng)
        shape = (batch, 3, 2, 3)
        names = [("y", "activation", shape, WIDTH), ("b", "weight", (3,), WIDTH)]
        names.append(("z", "activation", shape, WIDTH))
        p = _program(rng, names)
        inst = _vec(VecOp.BIAS_ADD, rng, imgs, src=0, src2=1, dst=2)
        values = {n: _rand(rng, s, b) for n, _, s, b in names}
        return p, inst, values, {"y": 5, "b": 9, "z": 5}, {}

    def mean_sub(rng, image=(2, 3, 2)):  # noqa: ANN001, ANN202
        batch, imgs = _images(rng)
        shape = (batch, *image)
        names = [("data", "activation", shape, 8), ("mean", "constant", (1, *image), WIDTH)]
        names.append(("x", "activation", shape, WIDTH))
        p = _program(rng, names)
        inst = _vec(VecOp.MEAN_SUB, rng, imgs, src=0, src2=1, dst=2)
        values = {n: _rand(rng, s, b) for n, _, s, b in names}
        return p, inst, values, {"data": 0, "mean": 4, "x": 0}, {"x": 3}

    def bias_grad(rng, shape=None):  # noqa: ANN001, ANN202
        batch, imgs = _images(rng) if shape is None else (shape[0], (1, shape[0] - 1))
        shape = (batch, 4, 2, 3) if shape is None else shape
        names = [("dy", "gradient", shape, WIDTH), ("db", "weight_grad", shape[1:2], WIDTH)]
        p = _program(rng, names)
        inst = _vec(VecOp.BIAS_GRAD, rng, imgs, src=0, dst=1)
        values = {n: _rand(rng, s, b) for n, _, s, b in names}
        return p, inst, values, {"dy": 8, "db": 0}, {"db": 6}

    def convert(rng):  # noqa: ANN001, ANN202
        batch, imgs = _images(rng)
        shape = (batch, 5)
        names = [("acc:x", "gradient", shape, 32), ("dx", "gradient", shape, WIDTH)]
        p = _program(rng, names)
        inst = _vec(VecOp.CONVERT, rng, imgs, src=0, dst=1, param=1)  # read and clear
        values = {"acc:x": _rand(rng, shape, 32, 24), "dx": _rand(rng, shape, WIDTH)}
        return p, inst, values, {"acc:x": 12, "dx": 0}, {"dx": 4}

    def sgd(rng):  # noqa: ANN001, ANN202
        shape = (2, 5)
        names = [
            ("w", "weight", shape, WIDTH),
            ("master", "master", shape, 32),
            ("mom", "momentum", shape, 32),
            ("dw", "weight_grad", shape, 32),
        ]
        p = _program(rng, names, scalars=["lr0", "decay0"])
        inst = _vec(VecOp.SGD, rng, (0, 1), src=3, src2=2, dst=1, dst2=0, param=0)
        values = {n: _rand(rng, s, b, 22) for n, _, s, b in names}
        fracs = {"w": 10, "master": 20, "mom": 22, "dw": 18}
        return p, inst, values, fracs, {"w": 11}

    for name, make in [
        ("bias-add", bias_add),
        ("mean-sub", mean_sub),
        ("bias-grad", bias_grad),
        ("convert-clear", convert),
        ("sgd", sgd),
        # Past the ring: the mean fetched once an image, the bias gradient once a row of
        # channels (5 channels: the last row's spare lane fetches the next image's).
        ("mean-sub-again", lambda rng: mean_sub(rng, (2, 6, 6))),
        ("bias-grad-rows", lambda rng: bias_grad(rng, (3, 5, 2, 5))),
    ]:
        out.append(_spec(name, make))
    return out


def _random_pool(rng: np.random.Generator) -> PoolGeometry:
    while True:
        try:
            k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
            return PoolGeometry(
                int(rng.integers(1, 3)),
                int(rng.integers(3, 7)),
                int(rng.integers(3, 7)),
                k,
                (int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                (int(rng.integers(0, k[0])), int(rng.integers(0, k[1]))),
            )
        except InputError:
            continue


def _pool_desc(g: PoolGeometry) -> dict:
    return {
        "channels": g.channels,
        "height": g.height,
        "width": g.width,
        "kernel": list(g.kernel),
        "stride": list(g.stride),
        "pad": list(g.pad),
    }


def _pool_make(op: VecOp, geom: PoolGeometry | None = None, images: tuple | None = None):  # noqa: ANN202
    """A pooling instruction's builder on ``geom`` and ``images`` (the batch and the slice
    the instruction works on), random where None."""

    def make(rng):  # noqa: ANN001, ANN202
        g = _random_pool(rng) if geom is None else geom
        batch, imgs = _images(rng) if images is None else images
        big = (batch, g.channels, g.height, g.width)
        small = (batch, g.channels, g.out_height, g.out_width)
        mask = ("mask", "mask", small, vector.mask_bits(g))
        if op is VecOp.MAXPOOL:
            names = [("x", "activation", big, WIDTH), ("y", "activation", small, WIDTH)]
            names.append(mask)
            fields = {"src": 0, "dst": 1, "dst2": 2}
        elif op is VecOp.AVEPOOL:
            names = [("x", "activation", big, WIDTH), ("y", "activation", small, WIDTH)]
            fields = {"src": 0, "dst": 1}
        else:
            names = [("dy", "gradient", small, WIDTH), ("dx", "gradient", big, WIDTH)]
            fields = {"src": 0, "dst": 1}
            if op is VecOp.MAXPOOL_BACK:
                names.append(mask)
                fields["src2"] = 2
        p = _program(rng, names, descriptors=[_pool_desc(g)])
        inst = _vec(op, rng, imgs, desc=0, **fields)
        values = {n: _rand(rng, s, b) for n, _, s, b in names}
        if "mask" in values:
            values["mask"] = rng.integers(0, g.kernel[0] * g.kernel[1], size=small)
        return p, inst, values, {n: 0 if n == "mask" else 7 for n in values}, {}

    return make


def _pool_specs() -> list[Spec]:
    out = []
    for op in (VecOp.MAXPOOL, VecOp.MAXPOOL_BACK, VecOp.AVEPOOL, VecOp.AVEPOOL_BACK):
        for i in range(POOL_CASES):
            out.append(_spec(f"{op.name.lower()}-{i}", _pool_make(op)))
    return out


# MAXPOOL_BACK's masks of 1 to 4 bits (16 to 4 elements a bus word) longer than the ring,
# wrapping it two to five times. The ring's limit sits at the output row the next input
# rows re-read, inside a bus word (odd rows, or a misaligned mask): a word fetched past it
# overwrites slots still to be read (LeNet's 2-bit masks on 512-element rings found that).
# (geometry, (batch, (i0, images)))
RING_WRAPS = [
    (PoolGeometry(2, 6, 26, (1, 2), (1, 2)), (3, (1, 2))),
    (PoolGeometry(2, 8, 26, (2, 2), (2, 2)), (3, (1, 2))),
    (PoolGeometry(2, 8, 24, (2, 3), (2, 3)), (3, (1, 2))),
    (PoolGeometry(2, 12, 15, (3, 3), (3, 3)), (5, (1, 4))),
]


def _ring_wrap_specs() -> list[Spec]:
    return [
        _spec(f"maxpool-back-wrap-{vector.mask_bits(g)}bit", _pool_make(VecOp.MAXPOOL_BACK, g, i))
        for g, i in RING_WRAPS
    ]


# AVE pooling of 3 x 3 stride 2 over 4 x 6 (Caffe's ceil mode, as cifar10_quick's 16 x 16
# and 8 x 8 pools): windows of 9, 6 and 4 pixels, the last clipped to 2 x 2 at the image's
# corner, whose reciprocal (2**(RECIP_BITS + 1)) the table once wrapped to 0.
CEIL_POOL = PoolGeometry(2, 4, 6, (3, 3), (2, 2))


def _ceil_pool_specs() -> list[Spec]:
    return [
        _spec(f"{op.name.lower()}-ceil", _pool_make(op, CEIL_POOL, (2, (0, 2))))
        for op in (VecOp.AVEPOOL, VecOp.AVEPOOL_BACK)
    ]


def _net() -> list:
    """A small net: a padded convolution with bias, ReLU, a padded strided pooling."""
    geom = ConvGeometry(2, 6, 5, (3, 3), (1, 1), (1, 1))
    conv = Conv("conv", "data", "c", 3, geom=geom)
    pool = Pool("pool", "c", "p", PoolGeometry(3, 6, 5, (3, 2), (2, 2), (1, 1)))
    relu = Relu("relu", "p", "r", pool.out_shape)
    ip = Conv("ip", "r", "out", 4, inputs=math.prod(pool.out_shape))
    return [conv, pool, relu, ip]


def _program_specs() -> list[Spec]:
    """The VEC instructions of a compiled net that read DRAM (epilogues on C excepted),
    on random tensors."""
    compiled = compile_net(_net(), CONFIG, batch=2, inputs={"data": (2, 6, 5)}, output="out")
    program = compiled.program
    out, seen = [], set()
    for inst in program.instructions:
        if inst.op is not Op.VEC or inst["desc"] == ON_C:
            continue
        op = VecOp(inst.sub)
        if op in seen:
            continue
        seen.add(op)
        name = f"program-{op.name.lower()}"
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        values, fracs = {}, {}
        for t in program.tensors:
            shape = tuple(t["shape"])
            if t["role"] == "mask":  # window offsets: unsigned
                values[t["name"]] = rng.integers(0, 1 << t["bits"], size=shape)
            else:
                values[t["name"]] = _rand(rng, shape, t["bits"], min(t["bits"], 22))
            fracs[t["name"]] = 0 if t["role"] in ("mask", "constant") else 8
        scalars = {n: 0.0005 if n.startswith("decay") else 0.01 for n in program.scalars}
        scalars["momentum"] = 0.9
        out.append(Spec(name, program, inst, values, fracs, {}, scalars))
    return out


SPECS = (
    _element_specs() + _pool_specs() + _ceil_pool_specs() + _ring_wrap_specs() + _program_specs()
)
RUNS = [(i, stall) for i in range(len(SPECS)) for stall in (0.0, STALL)]


def _results(cache: dict, sim: str) -> list[VecResult]:
    key = ("vecmem", sim)
    if key not in cache:
        try:
            cases = [SPECS[i].case(stall) for i, stall in RUNS]
            cache[key] = run_cases(build(sim, LANES, DEPTH), LANES, cases, seed=21)
        except Exception as exc:  # reported by every test, built once
            cache[key] = exc
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


def _stats_streams(spec: Spec, recorded: dict[str, Stats]) -> list[tuple[int, str]]:
    """The unit's statistics streams and the tensors whose stats the Machine recorded."""
    names = {k: spec.tensors[spec.inst[k]]["name"] for k in ("src2", "dst", "dst2")
             if spec.inst[k] != 0xFFFF}  # fmt: skip
    if spec.inst.sub == VecOp.SGD:
        return [(0, names["src2"]), (1, names["dst"]), (2, names["dst2"])]
    return [(0, names["dst"])]


@pytest.mark.cocotb
@pytest.mark.parametrize("index", range(len(RUNS)), ids=[f"{SPECS[i].name}-{s}" for i, s in RUNS])
def test_vecmem_bit_exact(sim: str, index: int, sim_run_cache: dict) -> None:
    """The whole DRAM image and the statistics equal the Machine's."""
    spec = SPECS[RUNS[index][0]]
    res = _results(sim_run_cache, sim)[index]
    image, recorded = spec.expected()
    np.testing.assert_array_equal(res.memory, image, err_msg=f"{res.case.name}: DRAM words")
    got = decode_stats(res.stats)
    for k, name in _stats_streams(spec, recorded):
        assert got[k] == recorded[name], f"{res.case.name}: stats of {name}"


def test_cases_cover_every_operation_that_reads_memory() -> None:
    """Every VEC operation the Machine runs from DRAM has a case (COPY has no Machine
    operation); the compiled net's VECs are among them."""
    ops = {VecOp(s.inst.sub) for s in SPECS}
    assert ops == set(VecOp) - {VecOp.COPY}
    assert {VecOp.RELU, VecOp.MAXPOOL, VecOp.SGD} <= {
        VecOp(s.inst.sub) for s in SPECS if s.name.startswith("program")
    }


@pytest.mark.cocotb
def test_vecmem_cycles_against_the_time_model(sim: str, sim_run_cache: dict) -> None:
    """Stalls cost cycles, never bits; the measured cycles are printed beside the time
    model's (:func:`barista_hw.device.traffic.instruction_counts`) for the report."""
    results = _results(sim_run_cache, sim)
    for free, stalled in zip(results[::2], results[1::2], strict=True):
        assert stalled.cycles >= free.cycles, stalled.case.name
        np.testing.assert_array_equal(free.memory, stalled.memory)
    for spec, free in zip(SPECS, results[::2], strict=True):
        if spec.name.startswith("program"):
            model = traffic.instruction_counts(spec.inst, spec.program, CONFIG).cycles
            print(f"{spec.name}: {free.cycles} cycles measured, {model} modelled")


def test_commands_the_unit_does_not_run_are_refused() -> None:
    spec = next(s for s in SPECS if s.name == "relu")
    scales = spec.machine().scales
    rnd = spec.rounder()
    epilogue = Instruction(Op.VEC, int(VecOp.RELU), fields={**spec.inst.fields, "desc": ON_C})
    with pytest.raises(InputError, match="epilogue on C"):
        command(epilogue, spec.program, scales, rnd=rnd, width=WIDTH)
    with pytest.raises(InputError, match="runs VEC"):
        command(Instruction(Op.SYNC), spec.program, scales, rnd=rnd, width=WIDTH)
    big = PoolGeometry(1, 6, 6, (5, 5), (1, 1))
    program = Program(
        tensors=spec.program.tensors, descriptors=[_pool_desc(big)], meta=spec.program.meta
    )
    pool = Instruction(Op.VEC, int(VecOp.MAXPOOL), fields={**spec.inst.fields, "desc": 0})
    with pytest.raises(InputError, match="exceeds 4 x 4"):
        command(pool, program, scales, rnd=rnd, width=WIDTH)


def test_operands_past_the_ring_are_refused() -> None:
    """A bias gradient whose row of channels does not fit the ring is refused, by size."""
    spec = next(s for s in SPECS if s.name == "bias-grad-rows")
    m = spec.machine()
    with pytest.raises(InputError, match="staging ring of 43 elements; the unit has 16"):
        command(spec.inst, spec.program, m.scales, rnd=spec.rounder(), width=WIDTH, depth=16)


def test_ring_wrap_cases_wrap_the_ring_with_narrow_masks() -> None:
    """The wrap cases fetch a mask of several elements a bus word past the ring twice or
    more, read back ``reach`` elements behind the newest (the slots a word fetched past
    the ring's limit would overwrite)."""
    wraps = [s for s in SPECS if s.name.startswith("maxpool-back-wrap")]
    assert len(wraps) == len(RING_WRAPS)
    for spec in wraps:
        mask = spec.command()["ops"][1]
        assert BUS_BITS // mask["bits"] >= 4, spec.name
        assert mask["run"] * mask["runs"] >= 2 * DEPTH, spec.name
        assert mask["reach"] > 0, spec.name


def test_the_reciprocal_table_holds_every_windows_reciprocal() -> None:
    """Every pooling the unit runs (kernels up to 4 x 4, any stride and padding, windows
    clipped at the edge) has each window's reciprocal within the command's table entries;
    the ceil case's corner needs more than ``RECIP_BITS + 1`` bits."""
    width = command_layout().members["recip"].elem_shape.width
    largest = 0
    for kh, kw, stride, size in itertools.product(range(1, 5), range(1, 5), range(1, 5), range(9)):
        for ph, pw in itertools.product(range(kh), range(kw)):
            if size + 2 * ph < kh or size + 2 * pw < kw:
                continue
            try:
                geom = PoolGeometry(1, size, size, (kh, kw), (stride, stride), (ph, pw))
            except InputError:  # no such pooling
                continue
            largest = max(largest, *recip_table(geom))
    assert (1 << (width - 1)) <= largest < 1 << width  # n = 1 of a 4 x 4 kernel: 2**27
    assert max(recip_table(CEIL_POOL)) >= 1 << (vector.RECIP_BITS + 1)


def test_narrow_operands_keep_a_words_slack_in_the_ring() -> None:
    """The fetcher takes whole words below the ring's limit, so a 2-bit mask whose reads
    reach 60 of the ring's 64 elements would wait forever on the word holding the next
    element: refused, its need counting a 32-bit word's 15 further elements."""
    geom = PoolGeometry(1, 4, 116, (2, 2), (2, 2))  # output rows of 58 masks
    spec = _spec("slack", _pool_make(VecOp.MAXPOOL_BACK, geom, (2, (0, 2))))
    with pytest.raises(InputError, match="'mask' needs a staging ring of 75 elements; the unit"):
        spec.command()


# The time model's cycles of the compiled net's VECs against the RTL's, stall-free (the
# model's SDRAM term is below the port's words here; the bench's read latency replaces the
# config's): every kind within 5% (docs/device.md, "The time model charges the port").
VEC_CYCLE_TOLERANCE = 0.05


@pytest.mark.cocotb
def test_vecmem_cycles_are_the_time_model(sim: str, sim_run_cache: dict) -> None:
    results = _results(sim_run_cache, sim)
    checked, misses = 0, []
    for (i, stall), res in zip(RUNS, results, strict=True):
        spec = SPECS[i]
        if stall or not spec.name.startswith("program"):
            continue
        model = traffic.instruction_counts(spec.inst, spec.program, CONFIG).cycles
        model += res.case.latency - CONFIG.read_latency
        checked += 1
        if abs(res.cycles / model - 1) > VEC_CYCLE_TOLERANCE:
            misses.append(f"{spec.name}: RTL {res.cycles} cycles, model {model}")
    assert checked >= 7 and not misses, misses
