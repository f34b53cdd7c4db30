"""The RTL DMA engine against the device model, on Icarus and Verilator (``--sim``).

Each case is a LOAD or STORE instruction of a small program (dense, transposed,
folded and im2col views with random geometries: stride, padding, non-square kernels,
dilation, groups). A LOAD's expected scratchpad words are the model's
:func:`~barista_hw.device.dma.gather` of :func:`~barista_hw.device.traffic.tile_index`,
laid out as the engine's buffers hold them (:func:`~barista_hw.schedule.pack_a` /
:func:`~barista_hw.schedule.pack_b`); a dense STORE's expected memory is the model's
dense store of the tile, a col2im STORE's the model's
:func:`~barista_hw.device.dma.scatter_add` into 32-bit accumulators (their memory is the
slots packed at 32 bits, :func:`~barista_hw.device.memory.pack_stream`; slots near both
limits, so sums saturate, and some only part-way). Every scratchpad word and every
memory word is compared. Random
stalls hit every stream on both sides of the memory port; each stalled case has a
stall-free twin. One build and one simulation per simulator.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device import dma, traffic
from barista_hw.device.compiler import compile_net
from barista_hw.device.geometry import ConvGeometry, PoolGeometry, Space
from barista_hw.device.isa import Instruction, Op, Program, View
from barista_hw.device.layers import Conv, Pool, Relu
from barista_hw.device.lowering import WIDE_BITS
from barista_hw.device.memory import DeviceConfig, pack_stream, unpack_stream
from barista_hw.device.rtl.dma import ACC_DEPTH, DmaEngine, command, lane_axis
from barista_hw.device.rtl.scratchpad import SpadGeometry, geometry, half_base
from barista_hw.numfmt import FixedFormat
from barista_hw.rtl import to_verilog
from barista_hw.schedule import pack_a, pack_b
from sim.dma_run import BUS_BITS, DmaCase, DmaResult, build, run_cases
from sim.lint import lint

# A 3 x 3 fx16 engine: A, B and C have one geometry (3 lanes of 16 bits, 128 words), so
# one harness runs every case.
ACC = DEFAULT_ACCELERATOR.derive(rows=3, cols=3, depth=128, acc_depth=16)
# The harness's im2col stage buffer: small, so some random footprints fit and some do not.
STAGE = 64
CONFIG = DeviceConfig.for_accelerator(
    ACC, target="ulx3s-85f", c_depth=128, v_depth=128, im2col_stage=STAGE
)
GEOM = geometry(CONFIG, Space.A)
assert GEOM == geometry(CONFIG, Space.B) == geometry(CONFIG, Space.C)
BITS, LANES = GEOM.bits, GEOM.lanes
# The same engine in fx12: 12-bit elements straddle the 16-bit bus words (packed). Its
# DMA has no col2im accumulator (32 bits are no whole number of 12-bit elements).
CONFIG12 = DeviceConfig.for_accelerator(
    ACC.derive(fmt=FixedFormat.parse("fx12")),
    target="ulx3s-85f",
    c_depth=128,
    v_depth=128,
    im2col_stage=STAGE,
)
GEOM12 = geometry(CONFIG12, Space.A)
STALL = 0.3
IM2COL_CASES = 8
STAGE_CASES = 8  # larger im2col tiles into B, across images: staged, or falling back
COL2IM_CASES = 6


def _inst(op: Op, view: View, space: Space, *, desc: int, base: int, tile: tuple, flags=0, group=0):  # noqa: ANN001, ANN202
    """The instruction; into or from scratchpad half 1 when ``base`` is odd (half 0 else)."""
    (r0, rows), (c0, cols) = tile
    spad = half_base(GEOM, base % 2)
    fields = dict(space=int(space), desc=desc, group=group, flags=flags, dram=base, spad=spad)
    fields.update(r0=r0, rows=rows, c0=c0, cols=cols)
    return Instruction(op, int(view), fields=fields)


def _conv_desc(g: ConvGeometry, images: int) -> dict:
    return {
        "channels": g.channels,
        "height": g.height,
        "width": g.width,
        "kernel": list(g.kernel),
        "stride": list(g.stride),
        "pad": list(g.pad),
        "dilation": list(g.dilation),
        "group": g.group,
        "images": images,
    }


def _words(tile: np.ndarray, space: Space, geom: SpadGeometry = GEOM) -> np.ndarray:
    """The scratchpad words of a tile (rows of lanes), as the engine's buffers hold it."""
    return pack_a(tile, geom.lanes) if lane_axis(space) == 0 else pack_b(tile, geom.lanes)


def _pack_words(words: np.ndarray, bits: int) -> list[int]:
    mask = (1 << bits) - 1
    return [sum((int(v) & mask) << (i * bits) for i, v in enumerate(w)) for w in words]


def _unpack_words(words: list[int], geom: SpadGeometry) -> np.ndarray:
    bits, mask = geom.bits, (1 << geom.bits) - 1
    out = np.array([[(w >> (i * bits)) & mask for i in range(geom.lanes)] for w in words])
    out = out.astype(np.int64)
    return np.where(out >= 1 << (bits - 1), out - (1 << bits), out)


def _wide_slots(rng, size: int) -> np.ndarray:  # noqa: ANN001
    """32-bit accumulator slots: a third anywhere, a third each within 2**15 of a limit."""
    lim = 1 << (WIDE_BITS - 1)
    near = rng.integers(0, 1 << 15, size=size)
    kind = rng.integers(0, 3, size=size)
    anywhere = rng.integers(-lim, lim, size=size)
    return np.where(kind == 0, anywhere, np.where(kind == 1, lim - 1 - near, -lim + near))


def _put(image: np.ndarray, t: dict, values: np.ndarray) -> None:
    """Write tensor ``t``'s ``values`` into the bus words ``image``, packed at its width from
    its byte address (the model's layout); the other bits of its end words are kept."""
    first = 8 * t["addr"]
    words = pack_stream(values, t["bits"], BUS_BITS, first).astype(np.int64)
    mask = pack_stream(np.full(values.size, -1), t["bits"], BUS_BITS, first).astype(np.int64)
    w0 = first // BUS_BITS
    image[w0 : w0 + words.size] = (image[w0 : w0 + words.size] & ~mask) | words


class Spec:
    """A case and how to check it: the program, the instruction, the memory before.

    Unpacked (no tensor table), the memory is the model's slots, a slot a bus word (two
    for a col2im STORE's 32-bit accumulators). ``packed``, it is the DRAM image of the
    program's tensors, each packed at its width from its byte address (random values
    written tensor by tensor; the allocator overlays tensors of disjoint lifetimes, so
    the addressed tensor is what its bits read afterwards); the model runs on that
    tensor's elements and the expected image is the image with them written back.
    """

    def __init__(
        self,
        name: str,
        program: Program,
        inst: Instruction,
        size: int,
        rng,  # noqa: ANN001
        *,
        geom: SpadGeometry = GEOM,
        packed: bool = False,
    ) -> None:
        self.name, self.program, self.inst = name, program, inst
        self.geom, self.packed = geom, packed
        self.col2im = inst.op is Op.STORE and inst.sub == View.IM2COL
        lim = 1 << (geom.bits - 1)
        self.base = inst["dram"]
        if packed:
            ends = [8 * t["addr"] + math.prod(t["shape"]) * t["bits"] for t in program.tensors]
            self.image = np.zeros(-(-max(ends) // BUS_BITS), dtype=np.int64)
            for t in program.tensors:
                n, tl = math.prod(t["shape"]), 1 << (t["bits"] - 1)
                wide = t["bits"] == WIDE_BITS
                _put(self.image, t, _wide_slots(rng, n) if wide else rng.integers(-tl, tl, n))
            self.tensor = traffic.dram_tensor(inst, program)
            n = math.prod(self.tensor["shape"])
            first = 8 * self.tensor["addr"]
            self.memory = unpack_stream(self.image, self.tensor["bits"], n, BUS_BITS, first)
            self.base -= self.tensor["dram"]
        elif self.col2im:
            self.memory = _wide_slots(rng, size).astype(np.int64)
        else:
            self.memory = rng.integers(-lim, lim, size=size).astype(np.int64)
        self.index = traffic.tile_index(inst, program)  # the model's addressing
        self.tile = rng.integers(-lim, lim, size=self.index.shape).astype(np.int64)

    def words(self, memory: np.ndarray) -> np.ndarray:
        """The bus words (unsigned) of ``memory`` (slots, or the addressed tensor's
        elements when packed)."""
        if self.packed:
            image = self.image.copy()
            _put(image, self.tensor, memory)
            return image
        if self.col2im:
            return pack_stream(memory, WIDE_BITS, BUS_BITS).astype(np.int64)
        return memory & ((1 << BUS_BITS) - 1)

    def case(self, stall: float, latency: int) -> DmaCase:
        space = Space(self.inst["space"])
        words = _words(self.index, space, self.geom).shape[0]
        store = self.inst.op is Op.STORE
        pre = _pack_words(_words(self.tile, space, self.geom), self.geom.bits) if store else []
        name = f"{self.name}{'-stalled' if stall else ''}"
        acc_depth = ACC_DEPTH if self.geom == GEOM else 0
        cmd = command(
            self.inst,
            self.program,
            self.geom,
            packed=self.packed,
            acc_depth=acc_depth,
            stage_depth=STAGE,  # the harness's engine stages im2col LOADs into A, too
        )
        spad = self.inst["spad"]
        memory = self.words(self.memory)
        return DmaCase(name, cmd, memory, spad, words, pre, stall, latency)

    def expected(self) -> tuple[np.ndarray | None, np.ndarray]:
        """(scratchpad words of a LOAD, memory afterwards), from the model."""
        if self.inst.op is Op.LOAD:
            tile = dma.gather(self.memory, self.base, self.index)
            return _words(tile, Space(self.inst["space"]), self.geom), self.memory
        mem = self.memory.copy()
        if self.col2im:
            dma.scatter_add(mem, self.base, self.index, self.tile, WIDE_BITS)
            return None, mem
        keep = self.index >= 0
        mem[self.base + self.index[keep]] = self.tile[keep]  # the model's dense STORE
        return None, mem

    def order(self) -> np.ndarray:
        """The tile's flat element numbers in the order the DMA streams them."""
        ids = np.arange(1, self.index.size + 1).reshape(self.index.shape)
        flat = _words(ids, Space(self.inst["space"]), self.geom).ravel()
        return flat[flat > 0] - 1


def _random_conv(rng) -> ConvGeometry:  # noqa: ANN001
    while True:
        group = int(rng.choice([1, 1, 2]))
        try:
            return ConvGeometry(
                channels=group * int(rng.integers(1, 3)),
                height=int(rng.integers(3, 8)),
                width=int(rng.integers(3, 8)),
                kernel=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                pad=(int(rng.integers(0, 3)), int(rng.integers(0, 3))),
                dilation=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                group=group,
            )
        except InputError:
            continue


def _span(rng, size: int, most: int) -> tuple[int, int]:  # noqa: ANN001
    """A random ``(start, length)`` in ``[0, size)``: at least half of ``most`` when it fits."""
    top = min(size, most)
    n = int(rng.integers(max(1, min(top, most // 2)), top + 1))
    return int(rng.integers(0, size - n + 1)), n


def _random_im2col(
    name: str,
    rng_of: Callable[[str], np.random.Generator],
    images: int,
    cols: int,
    space: Space,
    flags: int,
    base: int | None = None,
) -> Spec:
    """An im2col LOAD of a random geometry over up to ``images`` images, a tile of up to 8
    rows and ``cols`` columns (``flags``: transposed) into ``space``, from element ``base``
    (None: random)."""
    rng = rng_of(name)
    g = _random_conv(rng)
    images = int(rng.integers(1, images + 1))
    prog = Program(descriptors=[_conv_desc(g, images)])
    rows, cols_ = _span(rng, g.k, 8), _span(rng, images * g.pixels, cols)
    tile = (cols_, rows) if flags else (rows, cols_)
    group = int(rng.integers(0, g.group))
    base = int(rng.integers(0, 4)) if base is None else base
    inst = _inst(
        Op.LOAD, View.IM2COL, space, desc=0, base=base, tile=tile, flags=flags, group=group
    )
    return Spec(name, prog, inst, base + images * g.channels * g.height * g.width, rng)


def specs() -> list[Spec]:
    """The cases: deterministic, seeded from their names."""
    out: list[Spec] = []

    def rng_of(name: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(name.encode()))

    # Dense: a row-major matrix and its transpose, into A (lanes along rows) and B.
    for space in (Space.A, Space.B):
        for flags in (0, 1):
            name = f"dense-{space.name}-{'t' if flags else 'n'}"
            rng = rng_of(name)
            m, ld = 7, 9  # a 7 x 6 matrix with leading dimension 9
            prog = Program(descriptors=[{"row_stride": ld, "col_stride": 1}])
            tile = ((1, 5), (2, 4)) if not flags else ((2, 4), (1, 5))
            inst = _inst(Op.LOAD, View.MATRIX, space, desc=0, base=5, tile=tile, flags=flags)
            out.append(Spec(name, prog, inst, 5 + m * ld, rng))
    # Folded: (images, channels, pixels) as channels x images*pixels, across images.
    rng = rng_of("folded")
    prog = Program(descriptors=[{"channels": 3, "pixels": 5}])
    inst = _inst(Op.LOAD, View.FOLDED, Space.B, desc=0, base=3, tile=((1, 2), (3, 9)))
    out.append(Spec("folded-B", prog, inst, 3 + 3 * 3 * 5, rng))
    # im2col: random geometries, groups, tiles of both orientations into A and B.
    for i in range(IM2COL_CASES):
        space, flags = Space.A if i % 2 else Space.B, (i // 2) % 2
        out.append(_random_im2col(f"im2col-{i}", rng_of, 2, 12, space, flags))
    # Staged im2col: tiles of more rows and columns, up to three images, into B.
    for i in range(STAGE_CASES):
        out.append(_random_im2col(f"stage-{i}", rng_of, 3, 21, Space.B, i % 2, base=1))
    # Staged with blocks of two words, fewer than the lanes: the walk waits for each
    # block's lanes (a 2 x 1 kernel's two taps over one 7 x 3 image's 18 pixels).
    g = ConvGeometry(1, 7, 3, (2, 1), (1, 1), (0, 0), (1, 1))
    prog = Program(descriptors=[_conv_desc(g, 1)])
    inst = _inst(Op.LOAD, View.IM2COL, Space.B, desc=0, base=2, tile=((0, 2), (0, 18)))
    out.append(Spec("stage-short", prog, inst, 2 + 21, rng_of("stage-short")))
    # Staged over two images whose last run's tail no word reads (image 0's pixels need
    # later input rows than image 1's): the LOAD ends once the whole footprint is in.
    g = ConvGeometry(1, 5, 5, (3, 3), (1, 1), (0, 0), (1, 1))
    prog = Program(descriptors=[_conv_desc(g, 2)])
    inst = _inst(Op.LOAD, View.IM2COL, Space.B, desc=0, base=0, tile=((0, 9), (5, 8)))
    out.append(Spec("stage-tail", prog, inst, 2 * 25, rng_of("stage-tail")))
    # STORE: a dense tile from C into a strided matrix, and a folded one.
    rng = rng_of("store-dense")
    prog = Program(descriptors=[{"row_stride": 8, "col_stride": 1}])
    inst = _inst(Op.STORE, View.MATRIX, Space.C, desc=0, base=2, tile=((1, 4), (0, 7)))
    out.append(Spec("store-dense-C", prog, inst, 2 + 6 * 8, rng))
    rng = rng_of("store-folded")
    prog = Program(descriptors=[{"channels": 4, "pixels": 3}])
    inst = _inst(Op.STORE, View.FOLDED, Space.C, desc=0, base=1, tile=((1, 3), (2, 5)))
    out.append(Spec("store-folded-C", prog, inst, 1 + 3 * 4 * 3, rng))
    # col2im: random geometries and groups, tiles from C added into 32-bit accumulators.
    for i in range(COL2IM_CASES):
        name = f"col2im-{i}"
        rng = rng_of(name)
        g = _random_conv(rng)
        images = int(rng.integers(1, 3))
        tensor = {"name": "acc:x", "bits": WIDE_BITS}
        prog = Program(tensors=[tensor], descriptors=[{**_conv_desc(g, images), "tensor": 0}])
        tile = (_span(rng, g.k, 8), _span(rng, images * g.pixels, 12))
        group = int(rng.integers(0, g.group))
        base = int(rng.integers(0, 4))
        inst = _inst(Op.STORE, View.IM2COL, Space.C, desc=0, base=base, tile=tile, group=group)
        size = base + images * g.channels * g.height * g.width
        out.append(Spec(name, prog, inst, size, rng))
    return out


def _net() -> list:
    """A small net with every LOAD and STORE kind the compiler emits: a grouped, strided,
    padded convolution (its weight gradient reads im2col transposed), pooling, a second
    convolution whose input gradient goes through col2im, an inner product."""
    geom = ConvGeometry(4, 9, 8, (3, 2), (1, 2), (1, 0), (1, 1), group=2)
    conv = Conv("conv", "data", "c", 6, geom=geom, bias=False, backward_data=False)
    pool = Pool("pool", "c", "p", PoolGeometry(6, geom.out_height, geom.out_width, (2, 2), (2, 2)))
    relu = Relu("relu", "p", "r", pool.out_shape)
    g2 = ConvGeometry(*pool.out_shape, (2, 2), (1, 1), (1, 1))
    conv2 = Conv("conv2", "r", "c2", 4, geom=g2)
    ip = Conv("ip", "c2", "out", 5, inputs=4 * g2.pixels)
    return [conv, pool, relu, conv2, ip]


def _corner(inst: Instruction, last: int, rows: int = 4, cols: int = 12) -> Instruction:
    """The ``rows x cols`` first (``last`` 0) or last corner of ``inst``'s tile."""
    f = dict(inst.fields)
    for start, size, most in (("r0", "rows", rows), ("c0", "cols", cols)):
        n = min(f[size], most)
        f[start] += last * (f[size] - n)
        f[size] = n
    return Instruction(inst.op, inst.sub, fields=f)


def random_net(rng) -> tuple[list, tuple[int, int, int]]:  # noqa: ANN001
    """A net like :func:`_net` of random convolution geometries (stride, padding,
    dilation, groups), and its input shape: a convolution, ReLU, a second convolution
    (its input gradient through col2im), an inner product."""
    g = _random_conv(rng)
    conv = Conv("conv", "data", "c", g.group * int(rng.integers(1, 4)), geom=g, bias=False,
                backward_data=False)  # fmt: skip
    relu = Relu("relu", "c", "r", conv.out_shape)
    g2 = ConvGeometry(*conv.out_shape, (2, 2), (1, 1), (1, 1))
    conv2 = Conv("conv2", "r", "c2", int(rng.integers(2, 5)), geom=g2)
    ip = Conv("ip", "c2", "out", 5, inputs=conv2.num_output * g2.pixels)
    return [conv, relu, conv2, ip], (g.channels, g.height, g.width)


def program_specs(
    config: DeviceConfig = CONFIG, *, col2im: bool = True, net: tuple | None = None
) -> list[Spec]:
    """The first and last LOAD and STORE of each kind (view, space, transposed) of the
    compiled program of ``net`` (layers, input shape; default :func:`_net`) on ``config``,
    on random memory in the program's packed DRAM layout (``col2im``: with its col2im
    STOREs)."""
    layers, shape = net or (_net(), (4, 9, 8))
    program = compile_net(layers, config, batch=2, inputs={"data": shape}, output="out")
    program = program.program
    geom = geometry(config, Space.A)
    size = max(t["dram"] + int(np.prod(t["shape"])) for t in program.tensors)
    kinds: dict[tuple, list[Instruction]] = {}
    for inst in program.instructions:
        if inst.op is Op.LOAD or (inst.op is Op.STORE and (col2im or inst.sub != View.IM2COL)):
            key = (inst.op.name, View(inst.sub).name, Space(inst["space"]).name, inst["flags"])
            kinds.setdefault(key, []).append(inst)
    out = []
    for key, insts in sorted(kinds.items()):
        tile = traffic.tile_index(insts[0], program)
        if len(insts) == 1 and _words(tile, Space.C, geom).shape[0] > half_base(geom, 1):
            # One tile larger than C's half (the compiler does not bound C blocks by
            # c_depth): its first and last corner, as STOREs of their own.
            insts = [_corner(insts[0], 0), _corner(insts[0], 1)]
        for k, inst in enumerate(insts[:1] + insts[1:][-1:]):
            name = f"program{geom.bits}-{'-'.join(map(str, key))}-{k}".lower()
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            out.append(Spec(name, program, inst, size, rng, geom=geom, packed=True))
    return out


SPECS = specs() + program_specs()
LATENCY = 3
# Every spec without and with stalls; two more at the latency's extremes: one cycle, and
# more cycles than the DMA keeps reads in flight (it must wait, not lose or reorder data).
RUNS = [(i, stall, LATENCY) for i in range(len(SPECS)) for stall in (0.0, STALL)]
_LONG = next(i for i, s in enumerate(SPECS) if s.name == "im2col-6")
RUNS += [(_LONG, 0.0, 1), (_LONG, STALL, 40)]


def _cases() -> list[DmaCase]:
    out = []
    for i, stall, latency in RUNS:
        case = SPECS[i].case(stall, latency)
        if latency != LATENCY:
            case.name += f"-latency{latency}"
        out.append(case)
    return out


def _results(cache: dict, sim: str) -> list[DmaResult]:
    key = ("dma", sim)
    if key not in cache:
        try:
            cache[key] = run_cases(build(sim, GEOM, stage_depth=STAGE), _cases(), seed=11)
        except Exception as exc:  # reported by every test, built once
            cache[key] = exc
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


@pytest.mark.cocotb
@pytest.mark.parametrize("index", range(len(RUNS)), ids=[c.name for c in _cases()])
def test_dma_bit_exact(sim: str, index: int, sim_run_cache: dict) -> None:
    spec = SPECS[RUNS[index][0]]
    res = _results(sim_run_cache, sim)[index]
    words, memory = spec.expected()
    if words is not None:
        got = _unpack_words(res.spad_words, spec.geom)
        np.testing.assert_array_equal(got, words, err_msg=f"{res.case.name}: scratchpad words")
    got = res.memory & ((1 << BUS_BITS) - 1)
    np.testing.assert_array_equal(got, spec.words(memory), err_msg=f"{res.case.name}: memory")


def test_im2col_cases_take_the_stage_and_fall_back() -> None:
    """The im2col LOADs exercise the stage buffer and both fallbacks: staged ones of both
    orientations, over runs of several images, with blocks shorter than the lanes' step
    (the walk waits for the next block's lanes); unstaged ones whose footprint exceeds the
    buffer and ones staging would not speed up."""
    seen = set()
    for spec in SPECS + SPECS12:
        if spec.inst.op is not Op.LOAD or spec.inst.sub != View.IM2COL:
            continue
        lanes = spec.geom.lanes
        plan = traffic.stage_plan(spec.inst, spec.program, lanes, STAGE, spec.index)
        if plan is None:
            big = traffic.stage_plan(spec.inst, spec.program, lanes, 1 << 15, spec.index)
            seen.add("too big" if big else "not faster")
            continue
        seen |= {f"staged-{spec.inst['flags']}", f"packed-{spec.packed}"}
        if plan.segments > 1:
            seen.add("runs")
        if plan.blocks > 1 and plan.words // plan.blocks <= lanes:
            seen.add("short blocks")
    want = {"staged-0", "staged-1", "runs", "short blocks", "too big", "not faster"}
    assert want | {"packed-True", "packed-False"} <= seen, seen


def test_col2im_cases_tell_saturating_once_from_every_step() -> None:
    """The col2im cases can fail: some slots saturate, and some would end differently had
    each contribution saturated in the DMA's stream order (a partial sum crosses a limit
    that the whole sum does not)."""
    lim = 1 << (WIDE_BITS - 1)
    saturated = differ = 0
    for spec in (s for s in SPECS if s.col2im and not s.packed):
        saturated += dma.scatter_add(
            spec.memory.copy(), spec.inst["dram"], spec.index, spec.tile, WIDE_BITS
        )
        stepwise = spec.memory.copy()
        index, tile = spec.index.ravel(), spec.tile.ravel()
        for e in spec.order():
            if index[e] >= 0:
                a = spec.inst["dram"] + index[e]
                stepwise[a] = min(max(stepwise[a] + tile[e], -lim), lim - 1)
        differ += int(np.count_nonzero(stepwise != spec.expected()[1]))
    assert saturated > 0 and differ > 0, (saturated, differ)


def packed_specs() -> list[Spec]:
    """Sub-tiles of 12-bit tensors, one from an odd byte address: the ends of every burst
    share their words with elements the instruction does not move."""
    x = {"name": "x", "bits": 12, "shape": [7, 9], "dram": 5, "addr": 33}
    y = {"name": "y", "bits": 12, "shape": [3, 4, 5], "dram": 80, "addr": 130}
    program = Program(
        tensors=[x, y],
        descriptors=[
            {"row_stride": 9, "col_stride": 1, "tensor": 0},
            {"channels": 4, "pixels": 5, "tensor": 1},
        ],
    )
    cases = [
        ("store-dense", Op.STORE, View.MATRIX, Space.C, 0, ((1, 4), (2, 5)), 0),
        ("store-folded", Op.STORE, View.FOLDED, Space.C, 1, ((1, 2), (3, 9)), 0),
        ("load-dense-t", Op.LOAD, View.MATRIX, Space.A, 0, ((2, 4), (1, 5)), 1),
        ("load-folded", Op.LOAD, View.FOLDED, Space.B, 1, ((0, 3), (4, 7)), 0),
    ]
    out = []
    for name, op, view, space, desc, tile, flags in cases:
        base = program.tensors[desc]["dram"]
        inst = _inst(op, view, space, desc=desc, base=base, tile=tile, flags=flags)
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        out.append(Spec(f"packed12-{name}", program, inst, 140, rng, geom=GEOM12, packed=True))
    return out


SPECS12 = program_specs(CONFIG12, col2im=False) + packed_specs()
RUNS12 = [(i, stall) for i in range(len(SPECS12)) for stall in (0.0, STALL)]


def _results12(cache: dict, sim: str) -> list[DmaResult]:
    key = ("dma12", sim)
    if key not in cache:
        try:
            cases = [SPECS12[i].case(stall, LATENCY) for i, stall in RUNS12]
            design = build(sim, GEOM12, acc_depth=0, stage_depth=STAGE)
            cache[key] = run_cases(design, cases, seed=12)
        except Exception as exc:  # reported by every test, built once
            cache[key] = exc
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


@pytest.mark.cocotb
@pytest.mark.parametrize(
    "index", range(len(RUNS12)), ids=[f"{SPECS12[i].name}-{s}" for i, s in RUNS12]
)
def test_dma_packed_12_bit_exact(sim: str, index: int, sim_run_cache: dict) -> None:
    """fx12 tensors packed on the 16-bit bus: LOADs unpack straddling elements, STOREs
    merge the words they cover in part; the whole DRAM image compared bit for bit."""
    spec = SPECS12[RUNS12[index][0]]
    res = _results12(sim_run_cache, sim)[index]
    words, memory = spec.expected()
    if words is not None:
        got = _unpack_words(res.spad_words, spec.geom)
        np.testing.assert_array_equal(got, words, err_msg=f"{res.case.name}: scratchpad words")
    got = res.memory & ((1 << BUS_BITS) - 1)
    np.testing.assert_array_equal(got, spec.words(memory), err_msg=f"{res.case.name}: memory")


# The time model's port cycles (``traffic.dma_port`` without the SDRAM: the bench's
# memory has none) against the RTL's, stall-free, for a compiled program's instructions:
# fx16 and fx12 (its straddling elements: the unpacker's and the writer's waits) within 5%
# (issue 21's goal; docs/device.md, "The time model charges the port").
CYCLE_TOLERANCE = 0.05


def port_model_cycles(spec: Spec, config: DeviceConfig, latency: int) -> int:
    """The time model's cycles of ``spec``'s instruction on a port of read ``latency``, on
    the harness's device: its col2im accumulator bounds the footprint pass 2 moves."""
    scratch = dataclasses.replace(config.scratchpads, col2im_elements=ACC_DEPTH)
    rtl = dataclasses.replace(config, scratchpads=scratch)
    return traffic.dma_port(spec.inst, spec.program, rtl, spec.index, latency=latency).cycles


def model_port_words(spec: Spec, config: DeviceConfig) -> list[int]:
    """The words of each port command the time model sees ``spec``'s instruction issue."""
    return traffic.dma_port_commands(spec.inst, spec.program, config, spec.index)[0].tolist()


def model_dram_words(spec: Spec, config: DeviceConfig) -> int:
    """The traffic model's DRAM bytes of ``spec``'s LOAD, in port words."""
    c = traffic.instruction_counts(spec.inst, spec.program, config, index=spec.index)
    return c.dram_read_bytes * 8 // config.port.bits


def _cycle_misses(runs: list, specs: list[Spec], results: list, config: DeviceConfig,
                  tolerance: float) -> tuple[int, list[str]]:  # fmt: skip
    checked, misses = 0, []
    for run, res in zip(runs, results, strict=True):
        spec, stall = specs[run[0]], run[1]
        if stall or not spec.packed:
            continue
        model = port_model_cycles(spec, config, res.case.latency)
        checked += 1
        if spec.inst.op is Op.LOAD and res.lengths != model_port_words(spec, config):
            misses.append(f"{spec.name}: port commands {res.lengths}, model's differ")
        if spec.inst.op is Op.LOAD and model_dram_words(spec, config) != sum(res.lengths):
            misses.append(f"{spec.name}: DRAM bytes not the {sum(res.lengths)} words read")
        if abs(res.cycles / model - 1) > tolerance:
            misses.append(f"{spec.name}: RTL {res.cycles} cycles, model {model}")
    return checked, misses


@pytest.mark.cocotb
def test_dma_cycles_are_the_time_model(sim: str, sim_run_cache: dict) -> None:
    """Every stall-free instruction of the compiled programs, fx16 and fx12, within 5% of
    the model; a LOAD's port commands are the model's, command for command."""
    checked, misses = _cycle_misses(RUNS, SPECS, _results(sim_run_cache, sim), CONFIG,
                                    CYCLE_TOLERANCE)  # fmt: skip
    assert checked >= 18 and not misses, misses
    runs12 = [(i, stall, LATENCY) for i, stall in RUNS12]
    checked, misses = _cycle_misses(runs12, SPECS12, _results12(sim_run_cache, sim), CONFIG12,
                                    CYCLE_TOLERANCE)  # fmt: skip
    assert checked >= 16 and not misses, misses


def staged_model_cycles(spec: Spec, latency: int) -> int | None:
    """The time model's cycles of a staged LOAD (None: not staged); an unpacked spec's
    memory is a tensor of 16-bit elements from address 0."""
    plan = traffic.stage_plan(spec.inst, spec.program, spec.geom.lanes, STAGE, spec.index)
    if plan is None:
        return None
    t, base = {"bits": BITS, "addr": 0}, spec.inst["dram"]
    if spec.packed:
        t = traffic.dram_tensor(spec.inst, spec.program)
        base -= t["dram"]
    axis = lane_axis(spec.inst["space"])
    return traffic.stage_cycles(plan, t, base, CONFIG, spec.index, axis, latency=latency)


@pytest.mark.cocotb
def test_staged_cycles_are_the_time_model(sim: str, sim_run_cache: dict) -> None:
    """Every stall-free staged LOAD (random geometries, fx16 and fx12, phases overlapped)
    within 5% of the model; its port commands are the model's (the footprint's runs)."""
    checked, misses = 0, []
    for runs, specs, results in (
        (RUNS, SPECS, _results(sim_run_cache, sim)),
        ([(i, stall, LATENCY) for i, stall in RUNS12], SPECS12, _results12(sim_run_cache, sim)),
    ):
        for run, res in zip(runs, results, strict=True):
            spec = specs[run[0]]
            model = staged_model_cycles(spec, res.case.latency)
            if run[1] or model is None:
                continue
            checked += 1
            if abs(res.cycles / model - 1) > CYCLE_TOLERANCE:
                misses.append(f"{spec.name}: RTL {res.cycles} cycles, model {model}")
            if spec.packed and res.lengths != model_port_words(spec, CONFIG):
                misses.append(f"{spec.name}: port commands {res.lengths}, model's differ")
    assert checked >= 12 and not misses, (checked, misses)


@pytest.mark.cocotb
def test_dma_bursts_and_stalls(sim: str, sim_run_cache: dict) -> None:
    """Contiguous runs merge into bursts; stalls cost cycles, never bits (the twins agree)."""
    results = _results(sim_run_cache, sim)[: 2 * len(SPECS)]
    for free, stalled in zip(results[::2], results[1::2], strict=True):
        assert stalled.cycles >= free.cycles, f"{stalled.case.name} faster than its twin"
        assert free.spad_words == stalled.spad_words
    # dense-B-n, 5 x 4: per row a word of 3 contiguous columns, then one of the 4th.
    dense_b = results[4]
    assert dense_b.case.name == "dense-B-n"
    assert sorted(dense_b.lengths) == [1] * 5 + [LANES] * 5


def test_commands_the_rtl_does_not_run_are_refused() -> None:
    """col2im footprints past the accumulator or into a tensor not of its width, col2im
    without an accumulator, packed tensors not of the lanes' width, tiles past the
    scratchpad's end, and non-DMA opcodes."""
    col = next(s for s in SPECS if s.name == "col2im-0")
    span = command(col.inst, col.program, GEOM)["acc_len"]
    with pytest.raises(InputError, match="exceeds the DMA's accumulator"):
        command(col.inst, col.program, GEOM, acc_depth=span - 1)
    narrow = Program(tensors=[{"name": "acc:x", "bits": 16}], descriptors=col.program.descriptors)
    with pytest.raises(InputError, match="'acc:x' of 16 bits"):
        command(col.inst, narrow, GEOM)
    with pytest.raises(InputError, match="no col2im accumulator"):
        command(col.inst, col.program, GEOM, acc_depth=0)
    load = next(s for s in SPECS12 if s.inst.op is Op.LOAD)
    with pytest.raises(InputError, match="12-bit elements; the DMA moves 16-bit"):
        command(load.inst, load.program, GEOM, packed=True)
    conv = next(s for s in SPECS if s.name == "im2col-0")
    fields = dict(conv.inst.fields)
    fields["spad"] = GEOM.depth - 1
    with pytest.raises(InputError, match="overflow the scratchpad"):
        command(Instruction(Op.LOAD, int(View.IM2COL), fields=fields), conv.program, GEOM)
    sync = Instruction(Op.SYNC)
    with pytest.raises(InputError, match="runs LOAD and STORE"):
        command(sync, conv.program, GEOM)


@pytest.mark.parametrize(
    ("geom", "acc_depth", "stage"),
    [(GEOM, ACC_DEPTH, 0), (SpadGeometry(1, 8, 64), 64, 32), (GEOM12, 0, STAGE)],
    ids=["3x16", "1x8-stage", "3x12-no-col2im-stage"],
)
def test_dma_verilog_is_lint_clean(
    geom: SpadGeometry, acc_depth: int, stage: int, tmp_path: Path
) -> None:
    """``verilator --lint-only -Wall`` with the project's waivers (one lane, too)."""
    path = tmp_path / "dma.v"
    path.write_text(to_verilog(DmaEngine(geom, acc_depth=acc_depth, stage_depth=stage), "dma"))
    assert lint(path, "dma") == []
