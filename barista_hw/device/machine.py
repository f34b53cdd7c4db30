"""The device model: a bit-exact numpy execution of a device program.

Instructions run in program order (the waits only matter for time, :mod:`.timing`), each
vectorised: a LOAD gathers its tile with the DMA's address generation, a GEMM runs the
engine's model on the tiles in the operand buffers (reduction chunks accumulate at full
width and requantise once, as the accelerator does), a STORE writes or col2im-adds its
tile, a VEC runs the vector unit's integer operation on DRAM tensors. Every instruction's
counts come from :func:`.traffic.instruction_counts`, the function the traffic model
uses, given the addresses the running instruction generated, so the counts taken while
running equal the model's. The counts do not depend on the data: each instruction's are
taken on its first run and kept.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from typing import Protocol

import numpy as np

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.command import GemmCommand
from barista_hw.numfmt import MAX_SHIFT, Rounding
from barista_hw.schedule import block_seed

from . import dma, traffic, vector
from .geometry import PoolGeometry, Space
from .isa import ACC_FIRST, ACC_LAST, ON_C, WIRE8, Instruction, Op, Program, View
from .memory import DeviceConfig
from .scaling import ScaleTable
from .vector import Rounder, Stats, VecOp

# Exponents set once, not by the policy.
FIXED_ROLES = ("master", "momentum", "mask", "constant", "dataset")


class Host(Protocol):
    """The other end of the link, as the program's HOST_IN / HOST_OUT see it."""

    def send(self, name: str) -> tuple[np.ndarray, int]:
        """The integers and frac of tensor ``name`` (HOST_IN)."""
        ...

    def receive(self, name: str, q: np.ndarray, frac: int) -> None:
        """Tensor ``name`` read back from the device (HOST_OUT)."""
        ...


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed an instruction's random lanes start from in ``iteration``."""
    return zlib.crc32(f"{seed}:{iteration}".encode())


def written_stats(q: np.ndarray, bits: int) -> Stats:
    """The statistics of a write whose saturation is not known otherwise: its peak, and
    the elements at the format's limits counted as saturated."""
    if not q.size:
        return Stats(0, 0)
    rails = np.count_nonzero((q == -(1 << (bits - 1))) | (q == (1 << (bits - 1)) - 1))
    return Stats(max(-int(q.min()), int(q.max())), int(rails))


class Machine:
    """The device: its DRAM, scratchpads and scale table, running ``program``."""

    def __init__(self, program: Program, config: DeviceConfig) -> None:
        self.program = program
        self.config = config
        self.fmt = config.accelerator.engine.fmt
        size = max((t["dram"] + math.prod(t["shape"]) for t in program.tensors), default=0)
        self.dram = np.zeros(size, dtype=np.int64)
        self.scales = ScaleTable()
        for t in program.tensors:
            fixed = t["role"] in FIXED_ROLES
            width = t["bits"] if fixed else self.fmt.width
            self.scales.add(t["name"], 0 if fixed else width // 2, width, fixed=fixed)
        self._counted: dict[int, traffic.InstCounts] = {}
        self._whole: traffic.Counts | None = None  # a whole run's counts
        self._index: np.ndarray | None = None  # the running LOAD's or STORE's addresses
        self.probing = False
        self._fetch_from_host = False  # a test pass: FETCH takes the host's batch
        self.changed = False  # the last probe pass moved an exponent
        self.tiles: dict[tuple[int, int], np.ndarray] = {}
        self._partial: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.counts = traffic.Counts()
        self.iteration = 0
        self._run: dict[Op, Callable[[Instruction], None]] = {
            Op.LOAD: self._load,
            Op.STORE: self._store,
            Op.GEMM: self._gemm,
            Op.VEC: self._vec,
            Op.HOST_IN: self._host_in,
            Op.HOST_OUT: self._host_out,
            Op.FETCH: self._fetch,
            Op.SCALE: self._scale,
            Op.SYNC: lambda i: None,
        }

    # -- tensors ----------------------------------------------------------------------
    def tensor(self, name_or_index: str | int) -> np.ndarray:
        """A tensor's integers: a view of the DRAM in the tensor's shape."""
        t = self._entry(name_or_index)
        size = math.prod(t["shape"])
        return self.dram[t["dram"] : t["dram"] + size].reshape(t["shape"])

    def _entry(self, name_or_index: str | int) -> dict:
        if isinstance(name_or_index, int):
            return self.program.tensors[name_or_index]
        for t in self.program.tensors:
            if t["name"] == name_or_index:
                return t
        raise InputError(f"the device program has no tensor {name_or_index!r}")

    def write(self, name: str, q: np.ndarray, frac: int) -> None:
        """Put integers ``q`` with ``frac`` into tensor ``name`` (the host's setup writes)."""
        view = self.tensor(name)
        view[...] = np.asarray(q, dtype=np.int64).reshape(view.shape)
        self.scales.wrote(name, frac, written_stats(view, self._entry(name)["bits"]))

    # -- running ----------------------------------------------------------------------
    def run(
        self,
        host: Host,
        scalars: dict[str, float],
        *,
        iteration: int,
        until: int | None = None,
    ) -> traffic.Counts:
        """Run the program once (one training iteration), or its instructions up to index
        ``until`` (counting nothing); the counts it took. Counts do not depend on the
        data: a whole run's are taken once and then returned again."""
        self.host, self.scalars, self.iteration = host, scalars, iteration
        counting = until is None and self._whole is None
        self.counts = self._whole if until is None and self._whole else traffic.Counts()
        sections = traffic.section_names(self.program)
        for i, (section, inst) in enumerate(zip(sections, self.program.instructions, strict=True)):
            if until is not None and i > until:
                break
            self.execute(inst)
            if not counting:
                continue
            if i not in self._counted:
                self._counted[i] = traffic.instruction_counts(
                    inst, self.program, self.config, index=self._index
                )
            self.counts.add(section, self._counted[i])
        if counting:
            self._whole = self.counts
        return self.counts

    def forward(self, host: Host, scalars: dict[str, float], *, iteration: int) -> None:
        """The iteration's forward part only, up to the logits going to the host (a test
        pass): no gradient, no update; the statistics and counts stay as they were. The
        batch comes from the host, also where the iteration FETCHes it from a preloaded
        dataset (a test batch is not in the training set)."""
        scales, counts = self.scales.state_dict(), self.counts
        self._fetch_from_host = True
        try:
            self.run(host, scalars, iteration=iteration, until=self._logits_out)
        finally:
            self._fetch_from_host = False
            self.scales.load_state_dict(scales)
            self.counts = counts

    @functools.cached_property
    def _logits_out(self) -> int:
        """The index of the instruction that sends the logits to the host."""
        output = self.program.meta["output"]
        return next(
            i
            for i, inst in enumerate(self.program.instructions)
            if inst.op is Op.HOST_OUT and self._name(inst["tensor"]) == output
        )

    def probe(self, host: Host, scalars: dict[str, float], *, iteration: int) -> bool:
        """One probe pass (``docs/device.md``): the iteration without its SGD update, whose
        GEMMs and conversions record the exact peaks they round; the exponents then move
        to those peaks. True if an exponent changed (another pass may move more)."""
        self.probing = True
        try:
            self.run(host, scalars, iteration=iteration)
        finally:
            self.probing = False
        return self.changed

    def execute(self, inst: Instruction) -> None:
        """Run one instruction (what :meth:`run` does for each, counting nothing)."""
        self._index = None
        self._run[inst.op](inst)

    def gemm_command(self, inst: Instruction) -> GemmCommand:
        """What GEMM ``inst`` asks of the engine now: the shift from the exponents its
        descriptor's tensors have, its rounding, and its block's seed in this iteration."""
        d = self.program.descriptors[inst["desc"]]
        fa, fb = self.scales.stored(d["a"]), self.scales.stored(d["b"])
        return GemmCommand(
            shift=max(0, min(MAX_SHIFT, fa + fb - self.scales.frac(d["out"]))),
            rounding=Rounding(inst["mode"] & 3),
            seed=block_seed(iteration_seed(inst["seed"], self.iteration), inst["block"]),
            images=inst["images"],
        )

    def _load(self, inst: Instruction) -> None:
        index = self._index = traffic.tile_index(inst, self.program)
        self.tiles[(inst["space"], inst["spad"])] = dma.gather(self.dram, inst["dram"], index)

    def _store(self, inst: Instruction) -> None:
        index = self._index = traffic.tile_index(inst, self.program)
        q = self._c_tile(inst)
        if inst.sub == View.IM2COL:
            bits = traffic.dram_tensor(inst, self.program)["bits"]
            dma.scatter_add(self.dram, inst["dram"], index, q, bits)
        else:
            self.dram[inst["dram"] + index] = q

    def _c_tile(self, inst: Instruction) -> np.ndarray:
        """The tile a STORE reads from C: a whole result block, or a part of the block
        holding its words (a STORE cut to fit the col2im accumulator). C holds a block's
        columns in strips of the engine's ``cols`` lanes, each strip its rows a word, so
        a part is rows of one strip or whole rows of consecutive strips."""
        spad, rows, cols = inst["spad"], inst["rows"], inst["cols"]
        q = self.tiles.get((Space.C, spad))
        if q is not None and q.shape == (rows, cols):
            return q
        base = max(s for space, s in self.tiles if space == Space.C and s <= spad)
        block = self.tiles[(Space.C, base)]
        lanes = self.config.accelerator.engine.cols
        strip, r0 = divmod(spad - base, block.shape[0])
        if r0 and cols > lanes:
            raise InputError(f"{inst.text()}: not a part of the result block at C word {base}")
        return block[r0 : r0 + rows, strip * lanes : strip * lanes + cols]

    def _gemm(self, inst: Instruction) -> None:
        a = self.tiles[(Space.A, inst["a_base"])]
        b = self.tiles[(Space.B, inst["b_base"])]
        if inst["mode"] & ACC_FIRST:
            self._partial[inst["c_base"]] = []
        parts = self._partial[inst["c_base"]]
        parts.append((a, b))
        if not inst["mode"] & ACC_LAST:
            return
        d = self.program.descriptors[inst["desc"]]
        fa, fb = self.scales.stored(d["a"]), self.scales.stored(d["b"])
        cmd = self.gemm_command(inst)
        shift = cmd.shift
        a_all = np.concatenate([p[0] for p in parts], axis=1)
        b_all = np.concatenate([p[1] for p in parts], axis=0)
        q = model.gemm_quantized(a_all, b_all, self.config.accelerator.engine, cmd)
        q = np.asarray(q, dtype=np.int64)
        self.tiles[(Space.C, inst["c_base"])] = q
        exact = None
        if self.probing:
            product = np.asarray(a_all, np.float64) @ np.asarray(b_all, np.float64)
            exact = float(np.abs(product).max(initial=0.0)) * 2.0 ** -(fa + fb)
        self.scales.wrote(d["out"], fa + fb - shift, written_stats(q, self.fmt.width), exact)

    def _host_in(self, inst: Instruction) -> None:
        name = self.program.tensors[inst["tensor"]]["name"]
        q, frac = self.host.send(name)
        if inst.sub & WIRE8 and q.size and (q.min() < 0 or q.max() > 255):
            raise InputError(f"the host's {name!r} does not fit its byte-a-value link format")
        self.write(name, q, frac)

    def _fetch(self, inst: Instruction) -> None:
        if self._fetch_from_host:
            name = self._name(inst["tensor"])
            self.write(name, *self.host.send(name))
            return
        source = self._name(inst["source"])
        start = int(self.scalars[self.program.scalars[inst["scalar"]]])
        rows = (start + np.arange(inst["images"])) % inst["records"]
        q = self.tensor(source)[rows]
        self.write(self._name(inst["tensor"]), q, self.scales.stored(source))

    def _host_out(self, inst: Instruction) -> None:
        name = self.program.tensors[inst["tensor"]]["name"]
        self.host.receive(name, self.tensor(name).copy(), self.scales.stored(name))

    def _scale(self, inst: Instruction) -> None:
        if self.probing:
            self.changed = self.scales.probe_advance()
        else:
            self.scales.advance()

    # -- the vector unit ----------------------------------------------------------------
    def _vec(self, inst: Instruction) -> None:
        op = VecOp(inst.sub)
        rnd = Rounder(
            Rounding(inst["rounding"]),
            iteration_seed(inst["seed"], self.iteration),
            self.config.scratchpads.vector_lanes,
        )
        if inst["desc"] == ON_C:
            self._epilogue(op, inst, rnd)
        else:
            VECTOR_OPS[op](self, inst, rnd)

    def _epilogue(self, op: VecOp, inst: Instruction, rnd: Rounder) -> None:
        """A bias add or ReLU on the result block in C (``isa.ON_C``)."""
        key = (Space.C, inst["dst2"])
        tile, out = self.tiles[key], self._name(inst["dst"])
        frac = self.scales.stored(out)
        if op is VecOp.BIAS_ADD:
            rows = slice(inst["i0"], inst["i0"] + inst["images"])
            bias = self.tensor(inst["src2"])[rows]
            fb = self.scales.stored(self._name(inst["src2"]))
            q, s = vector.bias_add(tile[None], frac, bias, fb, self.fmt.width, rnd)
        elif op is VecOp.RELU:
            q, s = vector.relu(tile, self.fmt.width, _slope(inst), rnd=rnd)
        else:
            raise InputError(f"{inst.text()}: {op.name} is no epilogue operation")
        self.tiles[key] = q.reshape(tile.shape)
        self.scales.wrote(out, frac, s)

    def _images(self, index: int, inst: Instruction) -> np.ndarray:
        return self.tensor(index)[inst["i0"] : inst["i0"] + inst["images"]]

    def _name(self, index: int) -> str:
        return self.program.tensors[index]["name"]

    def _put(
        self,
        index: int,
        inst: Instruction | None,
        q: np.ndarray,
        frac: int,
        s: Stats,
        exact: float | None = None,
    ) -> None:
        """Write a result (``inst``: into its images, else the whole tensor) and record it."""
        view = self.tensor(index) if inst is None else self._images(index, inst)
        view[...] = q.reshape(view.shape)
        self.scales.wrote(self._name(index), frac, s, exact if self.probing else None)

    def _read(self, inst: Instruction, key: str = "src") -> tuple[np.ndarray, int]:
        """Operand ``key`` of a VEC over its images, and the exponent it is stored with."""
        return self._images(inst[key], inst), self.scales.stored(self._name(inst[key]))

    def _target(self, inst: Instruction, key: str = "dst") -> int:
        return self.scales.frac(self._name(inst[key]))


def _bias_add(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    y, fy = m._read(inst)
    bias = m.tensor(inst["src2"])
    fb = m.scales.stored(m._name(inst["src2"]))
    q, s = vector.bias_add(y.reshape(y.shape[0], y.shape[1], -1), fy, bias, fb, m.fmt.width, rnd)
    m._put(inst["dst"], inst, q, fy, s)


def _mean_sub(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    x, fx = m._read(inst)
    mean = m.tensor(inst["src2"])
    fm = m.scales.stored(m._name(inst["src2"]))
    frac = m._target(inst)
    q, s = vector.mean_sub(x, fx, mean[0], fm, frac, m.fmt.width, rnd)
    exact = float(np.abs(x * 2.0**-fx - mean * 2.0**-fm).max(initial=0)) if m.probing else None
    m._put(inst["dst"], inst, q, frac, s, exact)


def _bias_grad(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    """Sums over images and pixels, of every channel or of a ``channels`` descriptor's."""
    dy, fdy = m._read(inst)
    dy = dy.reshape(dy.shape[0], dy.shape[1], -1)
    part = slice(None)
    if inst["desc"] != 0xFF:
        d = m.program.descriptors[inst["desc"]]
        part = slice(d["c0"], d["c0"] + d["channels"])
        dy = dy[:, part]
    frac = m._target(inst)
    q, s = vector.bias_grad(dy, fdy, frac, m.fmt.width, rnd)
    exact = float(np.abs(dy.sum(axis=(0, 2))).max(initial=0)) * 2.0**-fdy if m.probing else None
    m.tensor(inst["dst"])[part] = q
    m.scales.wrote(m._name(inst["dst"]), frac, s, exact)


def _slope(inst: Instruction) -> float:
    """The ReLU's negative slope, sent encoded in ``param`` (:func:`vector.scalar_param`)."""
    return vector.scalar_from_param(inst["param"])


def _relu(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    x, fx = m._read(inst)
    q, s = vector.relu(x, m.fmt.width, _slope(inst), rnd=rnd)
    m._put(inst["dst"], inst, q, fx, s)


def _relu_back(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    (dy, fdy), (x, _) = m._read(inst), m._read(inst, "src2")
    q, s = vector.relu_back(dy, x, m.fmt.width, _slope(inst), rnd=rnd)
    m._put(inst["dst"], inst, q, fdy, s)


def _pool(m: Machine, inst: Instruction) -> PoolGeometry:
    d = m.program.descriptors[inst["desc"]]
    return PoolGeometry(
        d["channels"], d["height"], d["width"], *(tuple(d[k]) for k in ("kernel", "stride", "pad"))
    )


def _maxpool(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    x, fx = m._read(inst)
    y, mask, s = vector.maxpool(x, _pool(m, inst))
    m._put(inst["dst"], inst, y, fx, s)
    m._put(inst["dst2"], inst, mask.astype(np.int64), 0, Stats(0, 0))


def _maxpool_back(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    (dy, fdy), (mask, _) = m._read(inst), m._read(inst, "src2")
    q, s = vector.maxpool_back(dy, mask, _pool(m, inst), m.fmt.width)
    m._put(inst["dst"], inst, q, fdy, s)


def _avepool(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    x, fx = m._read(inst)
    q, s = vector.avepool(x, _pool(m, inst), m.fmt.width, rnd)
    m._put(inst["dst"], inst, q, fx, s)


def _avepool_back(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    dy, fdy = m._read(inst)
    q, s = vector.avepool_back(dy, _pool(m, inst), m.fmt.width, rnd)
    m._put(inst["dst"], inst, q, fdy, s)


def _convert(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    src, fsrc = m._read(inst)
    frac = m._target(inst)
    q, s = vector.convert(src, fsrc, frac, m.fmt.width, rnd)
    exact = float(np.abs(src).max(initial=0)) * 2.0**-fsrc if m.probing else None
    m._put(inst["dst"], inst, q, frac, s, exact)
    if inst["param"] & 1:  # read-and-clear (a col2im accumulator)
        src[...] = 0


def _sgd(m: Machine, inst: Instruction, rnd: Rounder) -> None:
    if m.probing:  # the probe leaves the weights as they are
        return
    grad, mom, master, operand = (m._name(inst[k]) for k in ("src", "src2", "dst", "dst2"))
    scalars, lr_index = m.program.scalars, inst["param"]
    stored = m.scales.stored
    r = vector.sgd(
        m.tensor(master),
        stored(master),
        m.tensor(mom),
        stored(mom),
        m.tensor(grad),
        stored(grad),
        lr=vector.encode_scalar(m.scalars[scalars[lr_index]]),
        mom=vector.encode_scalar(m.scalars["momentum"]),
        decay=vector.encode_scalar(m.scalars[scalars[lr_index + 1]]),
        operand_bits=m.fmt.width,
        frac_operand=m.scales.frac(operand),
        rnd=rnd,
    )
    m._put(inst["dst"], None, r.master, stored(master), r.master_stats)
    m._put(inst["src2"], None, r.momentum, stored(mom), r.momentum_stats)
    m._put(inst["dst2"], None, r.operand, m.scales.frac(operand), r.operand_stats)


VECTOR_OPS: dict[VecOp, Callable[[Machine, Instruction, Rounder], None]] = {
    VecOp.BIAS_ADD: _bias_add,
    VecOp.BIAS_GRAD: _bias_grad,
    VecOp.RELU: _relu,
    VecOp.RELU_BACK: _relu_back,
    VecOp.MAXPOOL: _maxpool,
    VecOp.MAXPOOL_BACK: _maxpool_back,
    VecOp.AVEPOOL: _avepool,
    VecOp.AVEPOOL_BACK: _avepool_back,
    VecOp.CONVERT: _convert,
    VecOp.SGD: _sgd,
    VecOp.MEAN_SUB: _mean_sub,
}
