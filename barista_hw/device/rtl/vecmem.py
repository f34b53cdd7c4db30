"""VEC instructions from memory: the vector unit between staged operand streams and a
result packer, all on one memory port.

:class:`VecMem` runs one ``VEC`` instruction of a program on tensors packed in DRAM (each
at its width from its bit address, :func:`barista_hw.device.memory.pack_stream`) behind
one memory port (:mod:`.port`), bit-exactly as :class:`barista_hw.device.machine.Machine`:

* a **fetcher** per operand streams the operand's elements from DRAM in bursts of up to
  ``burst`` words, as *runs* of consecutive elements (one run for most operands: the
  instruction's slice of the tensor), unpacks them at the operand's runtime width and
  writes them, in fetch order, into the operand's **staging buffer** (block RAM of
  ``depth`` 32-bit elements used as a ring: element ``f`` of the fetch order in slot
  ``f mod depth``);
* the **reader** walks the order the :class:`~.vector.VectorUnit` wants by counters, a
  whole beat (``lanes`` groups' entries) a cycle, and reads each operand from its
  staging buffer (``lanes`` read ports): element order; ``BIAS_ADD``'s bias and
  ``MEAN_SUB``'s mean image read once and re-read from the buffer; ``BIAS_GRAD`` channel
  by channel; pooling windows (forward) and each input pixel's candidate covering windows
  (backward) re-read from the buffer, with ``pad`` entries. Pooling's ``1/n`` (a table in
  the command) and ``MAXPOOL_BACK``'s window offset are constants of the walk;
* the **result packer** packs each result (up to three: ``SGD``'s momentum, master and
  operand copy; ``MAXPOOL``'s maximum and mask; ``CONVERT``'s cleared source) at its
  width into whole bus words and writes them in bursts; only a result's first and last
  word, where it shares a word with a neighbour's bits, is read first and merged (read
  just before the burst that writes it, so results of one instruction that share a word
  keep each other's bits).

**The ring.** The reader may read fetch element ``a`` once it is written (``a <
fetched``); the fetcher may write element ``f`` only while ``f < hi - reach + depth``,
``hi`` one past the largest element read so far: every later read lies at most ``reach``
elements below ``hi``, so nothing still needed is overwritten (the fetcher sees ``hi`` a
cycle late, from a register, which only ever allows less). :func:`command` computes
``reach`` from the exact order of reads (and ``forward``, how far a beat reaches past
``hi``), and takes another fetch order where ``reach + forward`` exceeds the ring
(``MEAN_SUB``'s mean fetched again for every image; ``BIAS_GRAD`` fetched per row of
channels and image) or refuses the instruction (:class:`InputError`).

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
from dataclasses import dataclass

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from .. import vector
from ..geometry import PoolGeometry
from ..isa import ON_C, Instruction, Op, Program
from ..memory import VEC_RING, DeviceConfig, PortConfig
from ..scaling import ScaleTable
from ..vector import RECIP_BITS, Rounder, VecOp
from .dma import (
    COORD_BITS,
    FIRST_BIT_BITS,
    LEVELS,
    Walk,
    position_layout,
    walker_layout,
    walker_levels,
    walker_step,
)
from .port import ADDR_BITS, LEN_BITS, max_length, port_signature
from .vector import CMD_LAYOUT, DATA_BITS, STATS_LAYOUT, STREAMS, VecCommand, VectorUnit, in_layout

COUNT_BITS = 24  # groups, entries a group, beat rows, run lengths
KMAX = 4  # pooling kernels up to 4 x 4 (the reciprocal table's size)
# A reciprocal is round(2**shift / n), shift = RECIP_BITS - 1 + ceil(log2(the largest n)):
# windows clipped at the image's edge (Caffe's ceil mode) have smaller n, so up to
# 2**shift (n = 1) and not below 2**RECIP_BITS for n <= largest n / 2 (a 3 x 3 pooling's
# 2 x 2 corner: 2**(RECIP_BITS + 1), which RECIP_BITS + 1 bits wrapped to 0).
RECIP_WIDTH = RECIP_BITS + (KMAX * KMAX - 1).bit_length()
NONE = 0xFFFF  # an instruction's absent tensor
MAX_BUS_BITS = 32  # the widest port VecMem is built for
CHUNK = 16  # BIAS_GRAD of a row of channels: pixels a fetch run (2 bursts of 16-bit words)
STAGE_DEPTH = VEC_RING  # elements of an operand's staging ring (one 512 x 36 block RAM a copy)
BURST = 8  # bus words a port command moves at most (the SDRAM's burst)
IDX = signed(34)  # fetch indices and their differences


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
            "g": walker_layout(),  # the reader's walk, in fetch indices
            "t": walker_layout(),
            "run": COUNT_BITS,  # the fetch: runs of ``run`` elements,
            "runs": COUNT_BITS,
            "rw": walker_layout(),  # starting at these element addresses
            "reach": COUNT_BITS,  # the ring's look-behind (module docstring)
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
            "recip": data.ArrayLayout(unsigned(RECIP_WIDTH), KMAX * KMAX),
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


@dataclass(frozen=True)
class Fetch:
    """An operand's fetch order: ``runs`` runs of ``run`` consecutive elements, starting
    at the addresses ``walk`` steps through (one run from element 0: ``runs=1``)."""

    run: int
    runs: int = 1
    walk: Walk = _ZERO_WALK


@dataclass(frozen=True)
class Layout:
    """An operand's reader walks (``g`` per lane, ``t`` per entry, in fetch indices) and its
    fetch order; ``fetch`` None: the walks' element addresses, fetched as one run."""

    g: Walk
    t: Walk = _ZERO_WALK
    fetch: Fetch | None = None


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

    def first_bit(self, key: str, images: bool, skip: int = 0) -> tuple[int, int]:
        """The operand's first bit (``skip`` elements on from the instruction's first
        image, or from the tensor's start) and its width."""
        t = self.tensor(key)
        if not 1 <= t["bits"] <= DATA_BITS:
            raise InputError(f"{self.inst.text()}: {t['name']!r} has {t['bits']}-bit elements")
        skip += self.inst["i0"] * self.per_image(key) if images else 0
        return 8 * t["addr"] + skip * t["bits"], t["bits"]

    def operand(
        self,
        key: str,
        g: Walk,
        t: Walk = _ZERO_WALK,
        *,
        images: bool = True,
        alt: Layout | None = None,
        skip: int = 0,
    ) -> None:
        """An operand read from memory by walks ``g``, ``t`` (from element ``skip``);
        ``alt``: the layout to take where the ring cannot hold the natural one's reach."""
        first, bits = self.first_bit(key, images, skip)
        uns = int(self.tensor(key)["role"] == "mask")
        op = {"src": Source.MEMORY, "unsigned": uns, "first_bit": first, "bits": bits}
        self.ops.append(
            {**op, "layout": Layout(g, t), "alt": alt, "name": self.tensor(key)["name"]}
        )

    def constant(self, source: Source) -> None:
        op = {"src": source, "unsigned": 0, "first_bit": 0, "bits": 1}
        self.ops.append({**op, "layout": Layout(_ZERO_WALK), "alt": None, "name": ""})

    def result(self, key: str, *, images: bool = True, zero: bool = False, skip: int = 0) -> None:
        first, bits = self.first_bit(key, images, skip)
        self.res.append({"use": 1, "zero": int(zero), "first_bit": first, "bits": bits})

    def fields(self, vec: VecCommand, depth: int) -> dict:
        unused = {"src": Source.NONE, "unsigned": 0, "first_bit": 0, "bits": 1}
        ops = [_place(self, k, depth) for k in range(len(self.ops))]
        ops += [{**unused, **_layout_fields(Layout(_ZERO_WALK), Fetch(0, 0), 0)}] * (3 - len(ops))
        res = self.res + [{"use": 0, "zero": 0, "first_bit": 0, "bits": 1}] * (3 - len(self.res))
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
            "rows": self.rows,
            "ops": ops,
            "res": res,
        }

    @property
    def rows(self) -> int:
        return -(-self.f["groups"] // self.lanes)


def _layout_fields(layout: Layout, fetch: Fetch, reach: int) -> dict:
    return {
        "g": layout.g.fields(),
        "t": layout.t.fields(),
        "run": fetch.run,
        "runs": fetch.runs,
        "rw": fetch.walk.fields(),
        "reach": reach,
    }


def _place(b: _Builder, k: int, depth: int) -> dict:
    """Operand ``k``'s fields: its natural layout if the ring holds its reach, else its
    alternative (:meth:`_Builder.operand`); refused if neither fits."""
    op = b.ops[k]
    fields = {k: op[k] for k in ("src", "unsigned", "first_bit", "bits")}
    if op["src"] != Source.MEMORY:
        return {**fields, **_layout_fields(op["layout"], Fetch(0, 0), 0)}
    need = 0
    # The fetcher takes whole bus words below the ring's limit, so the element a beat
    # needs may share its word with up to this many elements the limit must also admit.
    slack = -(-MAX_BUS_BITS // op["bits"]) - 1
    for layout in (op["layout"], op["alt"]):
        if layout is None:
            continue
        reach, forward, end = _reach(b, layout)
        fetch = layout.fetch or Fetch(end)
        fits = reach + forward + slack <= depth
        if fits and fetch.run * fetch.runs <= end - reach + depth:
            return {**fields, **_layout_fields(layout, fetch, reach)}
        need = reach + forward + slack
    raise InputError(
        f"{b.inst.text()}: operand {op['name']!r} needs a staging ring of {need} elements; "
        f"the unit has {depth}"
    )


def _walk_values(w: Walk, n: int) -> np.ndarray:
    """``(addr, y, x)`` of a walker's first ``n`` positions, from counters 0."""
    i = np.arange(n, dtype=np.int64)
    s0, s1 = w.sizes
    out = np.tile(np.array(w.start, dtype=np.int64), (n, 1))
    for c, d in zip((i % s0, (i // s0) % s1, i // (s0 * s1)), w.deltas, strict=True):
        out += c[:, None] * np.array(d, dtype=np.int64)
    return out


def _cover_reads(cv: dict, kh: int, kw: int, g: np.ndarray, length: int) -> tuple:
    """The covering walk's fetch indices and which candidates cover their pixel."""
    plane, h, w = (
        g // (cv["height"] * cv["width"]),
        g // cv["width"] % cv["height"],
        g % cv["width"],
    )
    e = np.arange(length).reshape(1, length, 1)
    a, bb = e // cv["b_n"], e % cv["b_n"]
    hq, hr = np.divmod(h + cv["q0h"] * cv["sh"] + cv["r0h"], cv["sh"])
    wq, wr = np.divmod(w + cv["q0w"] * cv["sw"] + cv["r0w"], cv["sw"])
    oh, ow, i, j = hq - a, wq - bb, hr + a * cv["sh"], wr + bb * cv["sw"]
    covers = (oh >= 0) & (oh < cv["out_h"]) & (i < kh) & (ow >= 0) & (ow < cv["out_w"]) & (j < kw)
    return plane * cv["plane"] + oh * cv["out_w"] + ow, covers


def _reads(b: _Builder, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Fetch indices ``(rows, length, lanes)`` the reader reads with ``layout``, in its
    order (beats: rows, then entries; lanes side by side), and which it reads."""
    rows, length, lanes = b.rows, b.f["length"], b.lanes
    g = np.arange(rows * lanes).reshape(rows, 1, lanes)
    on = g < b.f["groups"]
    if b.f["cover"]:
        addr, covers = _cover_reads(b.f["cv"], b.f["kh"], b.f["kw"], g, length)
        return np.broadcast_to(addr, (rows, length, lanes)), on & covers

    def values(lay: Layout) -> np.ndarray:
        gv = _walk_values(lay.g, rows * lanes).reshape(rows, 1, lanes, 3)
        return gv + _walk_values(lay.t, length).reshape(1, length, 1, 3)

    read = np.broadcast_to(on, (rows, length, lanes))
    if b.f["check"]:  # padding: operand 0's coordinates outside the image
        yx = values(b.ops[0]["layout"])
        y, x = yx[..., 1], yx[..., 2]
        read = read & (y >= 0) & (y < b.f["height"]) & (x >= 0) & (x < b.f["width"])
    return values(layout)[..., 0], read


def _reach(b: _Builder, layout: Layout) -> tuple[int, int, int]:
    """The ring's ``reach`` (how far below ``hi`` a read lies, ``hi`` counted after its
    beat), ``forward`` (how far past ``hi`` a beat reads) and one past the last read."""
    addr, read = _reads(b, layout)
    beats, rd = addr.reshape(-1, b.lanes), read.reshape(-1, b.lanes)
    some = rd.any(axis=1)
    if not some.any():
        return 0, 0, 0
    top = np.where(rd, beats, -1).max(axis=1)
    low = np.where(rd, beats, np.iinfo(np.int64).max).min(axis=1)
    hi_after = np.maximum.accumulate(top + 1)
    hi_before = np.concatenate([[0], hi_after[:-1]])
    reach = max(0, int((hi_after - low)[some].max()))
    forward = max(0, int((top + 1 - hi_before)[some].max()))
    return reach, forward, int(top.max()) + 1


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


def recip_table(geom: PoolGeometry) -> list[int]:
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
        recip=recip_table(geom),
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


def ring_depth(config: DeviceConfig) -> int:
    """The staging rings' elements of ``config``'s vector unit (:data:`STAGE_DEPTH` where
    it sets no bound)."""
    return config.scratchpads.vec_ring or STAGE_DEPTH


def command(
    inst: Instruction,
    program: Program,
    scales: ScaleTable,
    *,
    rnd: Rounder,
    width: int,
    scalars: dict[str, float] | None = None,
    depth: int = STAGE_DEPTH,
) -> dict:
    """The :func:`command_layout` fields of ``VEC`` ``inst`` of ``program`` with the
    exponents in ``scales`` as they are when it runs, rounding with ``rnd`` (the
    machine's: the iteration's seed, the unit's lanes), results of ``width`` bits (the
    operand format's), ``scalars`` the host's (``SGD``), for a unit whose staging rings
    hold ``depth`` elements."""
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
    return b.fields(vec, depth)


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
    # The mean read once and re-read from the ring; if it does not fit, once an image.
    again = Layout(_stride(1), fetch=Fetch(size, b.inst["images"]))
    b.operand("src2", _wrap(size, 1, (1, 0, 0)), images=False, alt=again)
    b.result("dst")
    fx, fm = scales.stored(name("src")), scales.stored(name("src2"))
    return VecCommand.mean_sub(fx, fm, scales.frac(name("dst")), width, rnd)


def _bias_grad(b, op, name, scales, rnd, width, scalars) -> VecCommand:  # noqa: ANN001
    shape = b.tensor("src")["shape"]
    channels, pixels = shape[1], math.prod(shape[2:])
    images = b.inst["images"]
    if b.inst["desc"] != 0xFF:  # one row of channels: interleaved in short runs
        d = b.program.descriptors[b.inst["desc"]]
        c0, n = d["c0"], d["channels"]
        b.f.update(groups=n, length=images * pixels)
        b.operand("src", _stride(pixels), _wrap(pixels, 1, (1, 0, channels * pixels)),
                  alt=_bias_grad_chunks(b.lanes, n, channels, pixels, images),
                  skip=c0 * pixels)  # fmt: skip
        b.result("dst", images=False, skip=c0)
    else:
        b.f.update(groups=channels, length=images * pixels)
        b.operand("src", _stride(pixels), _wrap(pixels, 1, (1, 0, channels * pixels)),
                  alt=_bias_grad_rows(b.lanes, channels, pixels, images))  # fmt: skip
        b.result("dst", images=False)
    return VecCommand.bias_grad(scales.stored(name("src")), scales.frac(name("dst")), width, rnd)


def _bias_grad_chunks(lanes: int, n: int, channels: int, pixels: int, images: int) -> Layout:
    """``BIAS_GRAD`` of ``n`` channels (at most a row of ``lanes``) fetched in runs of
    ``p`` pixels (:data:`CHUNK` at most, dividing the pixels): a run for each chunk of
    pixels, image and channel, so the ring holds about ``n * p`` elements however many
    pixels; lane ``l`` reads channel ``l``'s runs (chunk, image, pixel in turn)."""
    p = max(d for d in range(1, CHUNK + 1) if pixels % d == 0)
    run_walk = _wrap(n, images, (pixels, channels * pixels, p))
    fetch = Fetch(p, n * images * (pixels // p), run_walk)
    g = Walk((lanes, 1), ((p, 0, 0), (0, 0, 0), (0, 0, 0)), (0, 0, 0), (0, 0, 0))
    return Layout(g, _wrap(p, images, (1, n * p, images * n * p)), fetch)


def _bias_grad_rows(lanes: int, channels: int, pixels: int, images: int) -> Layout:
    """``BIAS_GRAD`` fetched per beat row: for each image, the row's ``lanes`` channels
    (a run each, so the ring holds ``lanes`` channels, not the slice). The last row's
    lanes past the channels fetch the next image's first channels (unread), except in
    the last image, where they are left out."""
    rows = -(-channels // lanes)
    run_walk = _wrap(lanes, images, (pixels, channels * pixels, lanes * pixels))
    fetch = Fetch(pixels, rows * images * lanes - (rows * lanes - channels), run_walk)
    g = Walk((lanes, 1), ((pixels, 0, 0), (0, 0, 0), (images * lanes * pixels, 0, 0)),
             (0, 0, 0), (0, 0, 0))  # fmt: skip
    return Layout(g, _wrap(pixels, images, (1, lanes * pixels, 0)), fetch)


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
    """A generous bound on an instruction's cycles on a stall-free memory of read
    ``latency`` (for a test bench's timeout): every operand element and every result
    element a port command of its own, plus the unit."""
    entries = fields["rows"] * lanes * fields["length"]
    outputs = fields["groups"] * sum(r["use"] for r in fields["res"])
    return entries * fields["nops"] * 4 + outputs * (2 * latency + 12) + 64


# -- the hardware ---------------------------------------------------------------------------
WRITER = 3  # a read tag's destination: the writer's edge words (0..2: the fetchers)
_WRITER_STATES = ("IDLE", "READ_FIRST", "READ_LAST", "WRITE", "DATA")


def _tag_layout(bus_bits: int, len_bits: int) -> data.StructLayout:
    """A read command's tag: whose words (a fetcher, or the writer's edge ``which``)."""
    return data.StructLayout(
        {
            "dest": 2,
            "words": len_bits,
            "start": 1,  # a fetcher's run starts with this command's first word
            "off": max(1, (bus_bits - 1).bit_length()),  # the run's first bit in that word
            "which": 1,  # the writer's first (0) or last (1) edge word
        }
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


def _cover_group_step(m: Module, c: data.View, g: data.View, name: str) -> data.View:
    """The next input pixel of the covering walk: its quotient and remainder by the
    stride kept by increments."""
    cv = c.cv
    n = Signal(_cover_group(), name=name)
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


def _cover_entry_step(m: Module, c: data.View, e: data.View) -> data.View:
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


def _positions(w: data.View) -> list:
    return [w.cnt, w.addr, w.y, w.x]


def _set_pos(dst: data.View, src: data.View) -> list:
    return [a.eq(b) for a, b in zip(_positions(dst), _positions(src), strict=True)]


def _low_mask(n: Value, width: int) -> Value:
    """Ones in the ``n`` low bits of ``width``."""
    return ((Const(1, width + 1) << n) - 1)[:width]


class VecMem(wiring.Component):
    """The vector unit fed from and writing to memory (module docstring: the ports).

    ``depth``: elements of each operand's staging ring (a power of two; :func:`command`
    must be given the same); ``burst``: bus words a port command moves at most; ``held``:
    the ``cmd`` payload stays as taken until ``stats`` is read (the device top pops its
    command FIFO then), so the unit keeps no copy of the command."""

    def __init__(
        self,
        lanes: int,
        *,
        bus_bits: int = PortConfig.bits,
        addr_bits: int = ADDR_BITS,
        len_bits: int = LEN_BITS,
        depth: int = STAGE_DEPTH,
        burst: int = BURST,
        entries: int = 4,
        tags: int = 8,
        held: bool = False,
    ) -> None:
        if bus_bits < 8 or bus_bits & (bus_bits - 1) or bus_bits > 32:
            raise InputError(f"vecmem: a bus of {bus_bits} bits; 8, 16 or 32")
        if depth < 2 or depth & (depth - 1) or not 1 <= burst <= max_length(len_bits):
            raise InputError(f"vecmem: a ring of {depth} elements, bursts of {burst} words")
        self.lanes, self.bus_bits, self.entries, self.tags = lanes, bus_bits, entries, tags
        self.depth, self.burst, self.len_bits = depth, burst, len_bits
        self.held = held
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
        tl = _tag_layout(self.bus_bits, self.len_bits)
        m.submodules.tagq = tagq = fifo.SyncFIFO(width=tl.size, depth=self.tags)
        c = Signal(command_layout(), name="c")
        active, unit_due = Signal(), Signal()
        start = self.cmd.valid & ~active
        m.d.comb += [self.cmd.ready.eq(~active), self.busy.eq(active)]
        if self.held:
            m.d.comb += c.eq(self.cmd.payload)
        with m.If(start):
            m.d.sync += [active.eq(1), unit_due.eq(1)]
            if not self.held:
                m.d.sync += c.eq(self.cmd.payload)
        m.d.comb += [unit.cmd.valid.eq(unit_due), unit.cmd.payload.eq(c.vec)]
        with m.If(unit.cmd.ready & unit_due):
            m.d.sync += unit_due.eq(0)

        # The three rings: fetcher, word queue, unpacker, staging memory.
        reqs, words, rings = [], [], []
        his = [Signal(IDX, name=f"hi{k}") for k in range(3)]
        for k in range(3):
            req, wq, ring = self._fetcher(m, c, start, k, his[k])
            reqs.append(req)
            words.append(wq)
            rings.append(ring)
        wreq, wio = self._writer(m, c, start, unit)
        grants = self._arbiter(m, wreq, reqs, tagq)
        m.d.comb += [wio["grant"].eq(grants[0])] + [
            r["grant"].eq(g) for r, g in zip(reqs, grants[1:], strict=True)
        ]
        self._router(m, tagq, words, wio)
        self._reader(m, c, start, unit, rings, his)
        m.d.comb += [
            self.stats.valid.eq(unit.stats.valid & wio["done"]),
            self.stats.payload.eq(unit.stats.payload),
            unit.stats.ready.eq(self.stats.ready & wio["done"]),
        ]
        with m.If(self.stats.valid & self.stats.ready):
            m.d.sync += active.eq(0)
        return m

    # -- the port's commands: a registered offer (kept until taken); the writer first, the
    # fetchers in turn
    def _arbiter(self, m: Module, wreq: dict, reqs: list[dict], tagq: fifo.SyncFIFO) -> list:
        pc = self.port.cmd
        offer = Signal.like(pc.payload, name="offer")
        valid = Signal(name="offer_valid")
        m.d.comb += [pc.valid.eq(valid), pc.payload.eq(offer)]
        free = (~valid | pc.ready) & tagq.w_rdy
        turn = Signal(range(3), name="turn")
        pick = []
        for k in range(3):  # round robin from ``turn``
            terms = []
            for first in range(3):
                order = [(first + o) % 3 for o in range(3)]
                blocked = Const(0)
                for j in order[: order.index(k)]:
                    blocked = blocked | reqs[j]["req"]
                terms.append((turn == first) & ~blocked)
            pick.append(reqs[k]["req"] & (terms[0] | terms[1] | terms[2]))
        grants = [Signal(name=f"grant{i}") for i in range(4)]
        m.d.comb += grants[0].eq(free & wreq["req"])
        m.d.comb += [grants[k + 1].eq(free & ~wreq["req"] & pick[k]) for k in range(3)]
        with m.If(~valid | pc.ready):
            m.d.sync += valid.eq(grants[0] | grants[1] | grants[2] | grants[3])
        cmd, tag = wreq["cmd"].as_value(), wreq["tag"].as_value()
        for k in range(3):
            g = grants[k + 1]
            cmd = Mux(g, reqs[k]["cmd"].as_value(), cmd)
            tag = Mux(g, reqs[k]["tag"].as_value(), tag)
            with m.If(g):
                m.d.sync += turn.eq((k + 1) % 3)
        with m.If(grants[0] | grants[1] | grants[2] | grants[3]):
            m.d.sync += offer.eq(cmd)
        reads = (grants[0] & wreq["read"]) | grants[1] | grants[2] | grants[3]
        m.d.comb += [tagq.w_en.eq(reads), tagq.w_data.eq(tag)]
        return grants

    # -- a fetcher: runs of its operand in bursts, unpacked into its staging ring
    def _fetcher(self, m: Module, c: data.View, start: Value, k: int, hi: Signal) -> tuple:
        bus, sh, depth = self.bus_bits, self.shift, self.depth
        op, p = c.ops[k], self.cmd.payload.ops[k]
        room = 2 * self.burst
        wl = data.StructLayout({"word": bus, "start": 1, "off": max(1, sh)})
        m.submodules[f"words{k}"] = wq = fifo.SyncFIFO(width=wl.size, depth=room)
        runs = Signal(COUNT_BITS, name=f"f{k}_runs")
        pos = Signal(position_layout(), name=f"f{k}_pos")
        base = Signal(IDX, name=f"f{k}_base")  # the run's first fetch index
        issued = Signal(32, name=f"f{k}_issued")  # the run's words asked for
        inflight = Signal(range(room + 1), name=f"f{k}_inflight")
        # The products are registers, so that no multiplier lies after the command
        # register or before the burst size (and the arbiter after it): the command's
        # (the first run's first bit, the run's and each walker step's bits, the ring
        # limit's) a cycle after it is taken, the first word count a cycle later
        # (``setup`` counts them down; the fetcher asks for nothing before), and where a
        # run ends, the next run's first bit and word count as sums of them.
        bit = Signal(FIRST_BIT_BITS + 2, name=f"f{k}_bit")
        nw = Signal(32, name=f"f{k}_nw")
        run_bits = Signal(COUNT_BITS + 6, name=f"f{k}_run_bits")
        step_bits = [Signal.like(bit, name=f"f{k}_step{lvl}_bits") for lvl in range(LEVELS)]
        base_bits = Signal(signed(42), name=f"f{k}_base_bits")
        setup = Signal(range(3), name=f"f{k}_setup")
        off = bit[:sh]
        nxt = walker_step(m, pos, op.rw, f"f{k}_next")
        first, second = walker_levels(pos, op.rw)
        bit_next = Signal.like(bit, name=f"f{k}_bit_next")
        step = Mux(first, step_bits[0], Mux(second, step_bits[1], step_bits[2]))
        m.d.comb += bit_next.eq(bit + step)

        def words(b: Value) -> Value:  # the run's words from its first bit
            return (b[:sh] + run_bits + bus - 1) >> sh

        # The ring's limit: words whose elements all lie below hi - reach + depth (whole
        # words only: a word's later elements would overwrite slots still to be read).
        # hi is taken a cycle late (it only grows during a command: a cycle's less room).
        lim = Signal(IDX, name=f"f{k}_lim")
        lim_bits = Signal(signed(42), name=f"f{k}_lim_bits")
        m.d.sync += [lim.eq(hi - op.reach + depth), lim_bits.eq((hi - op.reach + depth) * op.bits)]
        allowed = Signal(IDX, name=f"f{k}_allowed")
        m.d.comb += allowed.eq(lim - base)
        upto = Signal(signed(40), name=f"f{k}_upto")
        part = (lim_bits - base_bits + off) >> sh
        m.d.comb += upto.eq(Mux(allowed >= op.run, nw, Mux(allowed > 0, part, 0)))
        n = Signal(signed(40), name=f"f{k}_n")
        size = Const(self.burst, 40)
        for bound in (nw - issued, upto - issued):
            size = Mux(bound < size, bound, size)
        m.d.comb += n.eq(size)
        # A command only once its words fit the queue (whole bursts, not word by word).
        fits = inflight + n <= room
        tl = _tag_layout(bus, self.len_bits)
        req = {
            "req": Signal(name=f"f{k}_req"),
            "grant": Signal(name=f"f{k}_grant"),
            "cmd": Signal.like(self.port.cmd.payload, name=f"f{k}_cmd"),
            "tag": Signal(tl, name=f"f{k}_tag"),
        }
        m.d.comb += [
            req["req"].eq((setup == 0) & (runs != 0) & (n > 0) & fits),
            req["cmd"].addr.eq(bit[sh:] + issued),
            req["cmd"].length.eq(n),
            req["cmd"].write.eq(0),
            req["tag"].dest.eq(k),
            req["tag"].words.eq(n),
            req["tag"].start.eq(issued == 0),
            req["tag"].off.eq(off),
        ]
        with m.If(req["grant"]):
            with m.If(issued + n == nw):
                m.d.sync += [*_set_pos(pos, nxt), base.eq(base + op.run), issued.eq(0)]
                m.d.sync += [runs.eq(runs - 1), base_bits.eq(base_bits + run_bits)]
                m.d.sync += [bit.eq(bit_next), nw.eq(words(bit_next))]
            with m.Else():
                m.d.sync += issued.eq(issued + n)
        popped = wq.r_en & wq.r_rdy
        m.d.sync += inflight.eq(inflight + Mux(req["grant"], n, 0) - popped)

        # The unpacker: a word in, an element a cycle out (at the operand's width).
        head = data.View(wl, wq.r_data)
        buf = Signal(DATA_BITS + bus, name=f"u{k}_buf")
        have = Signal(range(DATA_BITS + bus + 1), name=f"u{k}_have")
        left = Signal(COUNT_BITS, name=f"u{k}_left")
        fetched = Signal(IDX, name=f"fetched{k}")
        emit = (left != 0) & (have >= op.bits)
        raw = buf[:DATA_BITS]
        mask = _low_mask(op.bits, DATA_BITS)
        neg = raw.bit_select((op.bits - 1)[:5], 1) & ~op.unsigned
        elem = Signal(signed(DATA_BITS), name=f"u{k}_elem")
        m.d.comb += elem.eq(Mux(neg, raw | ~mask, raw & mask))
        h1 = Signal.like(have, name=f"u{k}_h1")
        b1 = Signal.like(buf, name=f"u{k}_b1")
        left1 = Signal.like(left, name=f"u{k}_left1")
        m.d.comb += [
            h1.eq(have - Mux(emit, op.bits, 0)),
            b1.eq(Mux(emit, buf >> op.bits, buf)),
            left1.eq(left - emit),
        ]
        take = wq.r_rdy & Mux(head.start, left1 == 0, h1 <= DATA_BITS)
        m.d.comb += wq.r_en.eq(take)
        with m.If(take & head.start):
            m.d.sync += [buf.eq(head.word >> head.off), have.eq(bus - head.off), left.eq(op.run)]
        with m.Elif(take):
            m.d.sync += [buf.eq(b1 | (head.word << h1)), have.eq(h1 + bus), left.eq(left1)]
        with m.Else():
            m.d.sync += [buf.eq(b1), have.eq(h1), left.eq(left1)]
        m.d.sync += fetched.eq(fetched + emit)
        with m.If(start):
            m.d.sync += [runs.eq(Mux(p.src == Source.MEMORY, p.runs, 0)), *_set_pos(pos, p.rw)]
            m.d.sync += [base.eq(0), issued.eq(0), inflight.eq(0)]
            m.d.sync += [have.eq(0), left.eq(0), fetched.eq(0)]
            m.d.sync += [base_bits.eq(0), setup.eq(2)]
        with m.If(setup == 2):  # the command's products (the ring's limit: as every cycle)
            m.d.sync += [bit.eq(op.first_bit + op.rw.addr * op.bits), run_bits.eq(op.run * op.bits)]
            m.d.sync += [b.eq(op.rw.step[lvl] * op.bits) for lvl, b in enumerate(step_bits)]
            m.d.sync += setup.eq(1)
        with m.If(setup == 1):
            m.d.sync += [nw.eq(words(bit)), setup.eq(0)]
        m.submodules[f"ring{k}"] = ring = Memory(shape=signed(DATA_BITS), depth=depth, init=[])
        wp = ring.write_port()
        m.d.comb += [wp.addr.eq(fetched), wp.data.eq(elem), wp.en.eq(emit)]
        ports = [ring.read_port(domain="sync") for _ in range(self.lanes)]
        return req, wq, {"fetched": fetched, "ports": ports}

    # -- read data: a fetcher's words into its queue, the writer's edge words to it
    def _router(self, m: Module, tagq: fifo.SyncFIFO, words: list, wio: dict) -> None:
        head = data.View(_tag_layout(self.bus_bits, self.len_bits), tagq.r_data)
        r = self.port.r
        cnt = Signal(self.len_bits, name="r_cnt")
        room = _select(m, [w.w_rdy for w in words] + [Const(1)], head.dest, "r_room")
        m.d.comb += r.ready.eq(tagq.r_rdy & room)
        beat = r.valid & r.ready
        for k, wq in enumerate(words):
            m.d.comb += [
                wq.w_en.eq(beat & (head.dest == k)),
                wq.w_data.eq(Cat(r.payload, head.start & (cnt == 0), head.off)),
            ]
        m.d.comb += [
            wio["old_en"].eq(beat & (head.dest == WRITER)),
            wio["old_which"].eq(head.which),
            wio["old_word"].eq(r.payload),
        ]
        done = beat & (cnt == head.words - 1)
        m.d.comb += tagq.r_en.eq(done)
        with m.If(beat):
            m.d.sync += cnt.eq(Mux(done, 0, cnt + 1))

    # -- the reader: a beat a cycle from the staging rings
    def _reader(self, m: Module, c: data.View, start: Value, unit: VectorUnit, rings: list,
                his: list) -> None:  # fmt: skip
        lanes, p = self.lanes, self.cmd.payload
        going = Signal(name="rd_on")
        row, t = Signal(COUNT_BITS, name="row"), Signal(COUNT_BITS, name="t")
        gbase = Signal(COUNT_BITS + 8, name="gbase")  # the row's first group
        credit = Signal(range(self.entries + 1), name="credit", init=self.entries)
        gm = [Signal(position_layout(), name=f"gm{k}") for k in range(3)]
        tp = [Signal(position_layout(), name=f"t{k}") for k in range(3)]
        cgm, ce = Signal(_cover_group(), name="cgm"), Signal(_cover_entry(), name="ce")
        # Every lane's group position, stepped from the row's mark.
        g = [[gm[k]] for k in range(3)]
        cg = [cgm]
        for lane in range(1, lanes + 1):
            for k in range(3):
                g[k].append(walker_step(m, g[k][-1], c.ops[k].g, f"g{k}_{lane}"))
            cg.append(_cover_group_step(m, c, cg[-1], f"cg_{lane}"))
        last = t == c.length - 1
        end = last & (row == c.rows - 1)

        reads = [[None] * lanes for _ in range(3)]
        addrs = [[None] * lanes for _ in range(3)]
        consts = [[None] * lanes for _ in range(3)]
        pads, ons = [], []
        for lane in range(lanes):
            on, pad, recip, offset, cover_addr = self._lane(m, c, g[0][lane], tp[0], cg[lane], ce,
                                                            gbase + lane, lane)  # fmt: skip
            pads.append(pad)
            ons.append(on)
            for k in range(3):
                op = c.ops[k]
                a = Signal(IDX, name=f"a{k}_{lane}")
                m.d.comb += a.eq(Mux(c.cover, cover_addr, g[k][lane].addr + tp[k].addr))
                addrs[k][lane] = a
                reads[k][lane] = (op.src == Source.MEMORY) & on & ~pad
                consts[k][lane] = Mux(op.src == Source.RECIP, recip,
                                      Mux(op.src == Source.OFFSET, offset, 0))  # fmt: skip
        ready = Const(1)
        for k in range(3):
            for lane in range(lanes):
                ready = ready & (~reads[k][lane] | (addrs[k][lane] < rings[k]["fetched"]))
        fire = Signal(name="fire")
        m.d.comb += fire.eq(going & (credit != 0) & ready)
        for k in range(3):
            top = Const(0, IDX)
            for lane in range(lanes):
                a1 = Mux(reads[k][lane], addrs[k][lane] + 1, 0)
                top = Mux(a1 > top, a1, top)
            with m.If(fire & (top > his[k])):
                m.d.sync += his[k].eq(top)
            for lane, rp in enumerate(rings[k]["ports"]):
                m.d.comb += [rp.addr.eq(addrs[k][lane]), rp.en.eq(fire)]

        # One cycle later the ring data are out: the beat goes into the beat queue.
        layout = in_layout(lanes)
        m.submodules.beats = bq = fifo.SyncFIFO(width=layout.size, depth=self.entries)
        held = Signal(name="held")
        h_read = Signal(3 * lanes, name="h_read")
        h_const = [[Signal(signed(DATA_BITS), name=f"hc{k}_{i}") for i in range(lanes)]
                   for k in range(3)]  # fmt: skip
        h_pad, h_on = Signal(lanes, name="h_pad"), Signal(lanes, name="h_on")
        h_last, h_end = Signal(name="h_last"), Signal(name="h_end")
        m.d.sync += [
            held.eq(fire),
            h_read.eq(Cat(*(reads[k][i] for k in range(3) for i in range(lanes)))),
            h_pad.eq(Cat(*pads)),
            h_on.eq(Cat(*ons)),
            h_last.eq(last),
            h_end.eq(end),
        ]
        m.d.sync += [h_const[k][i].eq(consts[k][i]) for k in range(3) for i in range(lanes)]
        x = Signal(layout, name="beat")
        for k in range(3):
            for i, rp in enumerate(rings[k]["ports"]):
                m.d.comb += x.v[i][k].eq(Mux(h_read[k * lanes + i], rp.data, h_const[k][i]))
        m.d.comb += [x.pad.eq(h_pad), x.on.eq(h_on), x.last.eq(h_last), x.end.eq(h_end)]
        m.d.comb += [bq.w_en.eq(held), bq.w_data.eq(x)]
        m.d.comb += [unit.x.valid.eq(bq.r_rdy), unit.x.payload.eq(bq.r_data)]
        m.d.comb += bq.r_en.eq(unit.x.ready)
        m.d.sync += credit.eq(credit - fire + (bq.r_en & bq.r_rdy))

        # Stepping: entry, or the next row of groups.
        t_next = [walker_step(m, tp[k], c.ops[k].t, f"t{k}_next") for k in range(3)]
        ce_next = _cover_entry_step(m, c, ce)
        with m.If(fire & ~last):
            m.d.sync += [t.eq(t + 1), ce.eq(ce_next)]
            m.d.sync += [s for k in range(3) for s in _set_pos(tp[k], t_next[k])]
        with m.If(fire & last):
            m.d.sync += [t.eq(0), row.eq(row + 1), gbase.eq(gbase + lanes), ce.eq(0)]
            m.d.sync += [cgm.eq(cg[lanes])]
            for k in range(3):
                m.d.sync += _set_pos(gm[k], g[k][lanes]) + _set_pos(tp[k], c.ops[k].t)
            with m.If(end):
                m.d.sync += going.eq(0)
        with m.If(start):
            m.d.sync += [going.eq(1), row.eq(0), t.eq(0), gbase.eq(0), ce.eq(0)]
            m.d.sync += [his[k].eq(0) for k in range(3)]
            for k in range(3):
                m.d.sync += _set_pos(gm[k], p.ops[k].g) + _set_pos(tp[k], p.ops[k].t)
            pcv = p.cv
            m.d.sync += [
                cgm.eq(0), cgm.qh.eq(pcv.q0h), cgm.rh.eq(pcv.r0h), cgm.qw.eq(pcv.q0w),
                cgm.rw.eq(pcv.r0w), cgm.rhkw.eq(pcv.rhkw0), cgm.rowaddr.eq(pcv.row0),
            ]  # fmt: skip

    def _lane(self, m: Module, c: data.View, g0: data.View, t0: data.View, cg: data.View,
              ce: data.View, group: Value, lane: int) -> tuple:  # fmt: skip
        """A lane's entry: on, padding, the pooling reciprocal and window offset, and the
        covering walk's address."""
        cv = c.cv
        on = group < c.groups
        y = Signal(signed(COORD_BITS), name=f"y{lane}")
        x = Signal(signed(COORD_BITS), name=f"x{lane}")
        m.d.comb += [y.eq(g0.y + t0.y), x.eq(g0.x + t0.x)]
        inside = (y.as_unsigned() < c.height) & (x.as_unsigned() < c.width)
        i_, j_ = Signal(16, name=f"cov_i{lane}"), Signal(16, name=f"cov_j{lane}")
        oh, ow = Signal(signed(18), name=f"cov_oh{lane}"), Signal(signed(18), name=f"cov_ow{lane}")
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
        top = Mux(c.cover, cg.h - i_, g0.y).as_signed()
        left = Mux(c.cover, cg.w - j_, g0.x).as_signed()
        hsize = Signal(signed(COORD_BITS + 2), name=f"hsize{lane}")
        wsize = Signal(signed(COORD_BITS + 2), name=f"wsize{lane}")
        m.d.comb += [hsize.eq(c.lim_h - top), wsize.eq(c.lim_w - left)]
        hs = Mux(hsize > c.kh, c.kh, hsize)
        ws = Mux(wsize > c.kw, c.kw, wsize)
        recip = _select(m, list(c.recip), Cat((ws - 1)[:2], (hs - 1)[:2]), f"recip{lane}")
        return on, pad, recip, offset, cover_addr

    # -- the writer: outputs packed into words, written in bursts with their edges merged
    def _writer(self, m: Module, c: data.View, start: Value, unit: VectorUnit) -> tuple:
        lanes, bus, sh, burst = self.lanes, self.bus_bits, self.shift, self.burst
        p = self.cmd.payload
        q = Signal(data.ArrayLayout(data.ArrayLayout(signed(DATA_BITS), STREAMS), lanes), name="q")
        qon = Signal(lanes, name="qon")
        hv = Signal(name="q_valid")
        wl = Signal(range(max(2, lanes)), name="wl")
        lane_q = _select(m, list(q), wl, "lane_q")
        lane_last = (wl == lanes - 1) | ~(qon >> (wl + 1))[0]
        queues, can = [], []
        packers = []
        for k in range(STREAMS):
            res = c.res[k]
            m.submodules[f"out{k}"] = oq = fifo.SyncFIFO(width=bus, depth=2 * burst)
            buf = Signal(DATA_BITS + bus, name=f"p{k}_buf")
            have = Signal(range(DATA_BITS + bus + 1), name=f"p{k}_have")
            cnt = Signal(COUNT_BITS, name=f"p{k}_cnt")
            fin = cnt == c.groups
            full = have >= bus
            push = res.use & (full | (fin & (have != 0))) & oq.w_rdy
            h1 = Signal.like(have, name=f"p{k}_h1")
            b1 = Signal.like(buf, name=f"p{k}_b1")
            m.d.comb += [
                h1.eq(Mux(push, Mux(full, have - bus, 0), have)),
                b1.eq(Mux(push, buf >> bus, buf)),
                oq.w_en.eq(push),
                oq.w_data.eq(buf[:bus]),
            ]
            can.append(~res.use | (~fin & (h1 < bus)))
            value = Mux(res.zero, 0, lane_q[k]).as_unsigned() & _low_mask(res.bits, DATA_BITS)
            packers.append((res, buf, have, cnt, h1, b1, value))
            queues.append(oq)
        accept = hv & can[0] & can[1] & can[2]
        for res, buf, have, cnt, h1, b1, value in packers:
            with m.If(accept & res.use):
                m.d.sync += [buf.eq(b1 | (value << h1)), have.eq(h1 + res.bits), cnt.eq(cnt + 1)]
            with m.Else():
                m.d.sync += [buf.eq(b1), have.eq(h1)]
        finishing = accept & lane_last
        m.d.comb += unit.y.ready.eq(~hv | finishing)
        with m.If(accept):
            m.d.sync += wl.eq(wl + 1)
        with m.If(finishing):
            m.d.sync += [hv.eq(0), wl.eq(0)]
        with m.If(unit.y.valid & unit.y.ready):
            m.d.sync += [q.eq(unit.y.payload.q), qon.eq(unit.y.payload.on), hv.eq(1), wl.eq(0)]

        # Per result: its words, first word and the bit offsets of its two ends. The
        # lengths are registers a cycle after the command's (no multiplier after the
        # command register), the words a cycle later; the writer starts (``primed``) once
        # they are in (``settle`` counts the cycles).
        first_word, offs, tails, totals, lefts = [], [], [], [], []
        for k in range(STREAMS):
            res = c.res[k]
            end = Signal(FIRST_BIT_BITS + 2, name=f"w{k}_end")
            total = Signal(32, name=f"w{k}_total")
            m.d.sync += end.eq(res.first_bit[:sh] + c.groups * res.bits)
            m.d.sync += total.eq((end + bus - 1) >> sh)
            first_word.append(res.first_bit[sh:])
            offs.append(res.first_bit[:sh])
            tails.append(end[:sh])
            totals.append(total)
            lefts.append(Signal(32, name=f"w{k}_left"))
        primed = Signal(name="w_primed")
        settle = Signal(range(3), name="w_settle")
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        with m.Elif(~primed):
            m.d.sync += primed.eq(1)
            m.d.sync += [lefts[k].eq(Mux(c.res[k].use, totals[k], 0)) for k in range(STREAMS)]

        state = Signal(range(len(_WRITER_STATES)), name="writer_state")
        is_ = {name: state == i for i, name in enumerate(_WRITER_STATES)}

        def goto(name: str) -> Value:
            return state.eq(_WRITER_STATES.index(name))

        wk = Signal(2, name="wk")
        n = Signal(range(burst + 1), name="w_n")
        wi = Signal(range(burst + 1), name="w_i")
        efirst, elast, one = Signal(name="efirst"), Signal(name="elast"), Signal(name="one")
        old = [Signal(bus, name=f"old{i}") for i in range(2)]
        got = [Signal(name=f"old{i}_ok") for i in range(2)]
        io = {
            "old_en": Signal(name="old_en"),
            "old_which": Signal(name="old_which"),
            "old_word": Signal(bus, name="old_word"),
            "grant": Signal(name="w_grant"),
        }
        for i in range(2):
            with m.If(io["old_en"] & (io["old_which"] == i)):
                m.d.sync += [old[i].eq(io["old_word"]), got[i].eq(1)]
        sel = {
            name: _select(m, values, wk, f"w_{name}")
            for name, values in (
                ("first", first_word),
                ("off", offs),
                ("tail", tails),
                ("total", totals),
                ("left", lefts),
            )
        }
        oq = {
            "data": _select(m, [q_.r_data for q_ in queues], wk, "w_data"),
            "rdy": _select(m, [q_.r_rdy for q_ in queues], wk, "w_rdy"),
        }

        # IDLE: the first result with a burst's words (or its last words) queued.
        chosen = Const(0)
        for k in range(STREAMS):
            size = Mux(lefts[k] < burst, lefts[k], burst)
            ready = primed & c.res[k].use & (lefts[k] != 0) & (queues[k].level >= size)
            with m.If(is_["IDLE"] & ready & ~chosen):
                ef = (lefts[k] == totals[k]) & (offs[k] != 0)
                el = (lefts[k] == size) & (tails[k] != 0)
                single = totals[k] == 1
                m.d.sync += [wk.eq(k), n.eq(size), efirst.eq(ef), elast.eq(el), one.eq(single)]
                m.d.sync += [got[0].eq(0), got[1].eq(0)]
                m.d.sync += goto("IDLE")
                with m.If(ef):
                    m.d.sync += goto("READ_FIRST")
                with m.Elif(el):
                    m.d.sync += goto("READ_LAST")
                with m.Else():
                    m.d.sync += goto("WRITE")
            chosen = chosen | ready

        # DATA: the next burst's write command goes out while this burst's words do (so
        # the memory has it queued when they end: no idle port between bursts), when it
        # merges no edge (an edge is read just before its burst, by the states above).
        nk, nn, nvalid = Signal(2, name="nk"), Signal(range(burst + 1), name="nn"), Signal()
        early = Const(0)
        e_k, e_n, e_addr = Const(0, 2), Const(0, range(burst + 1)), Const(0, ADDR_BITS)
        for k in reversed(range(STREAMS)):  # the first ready result wins
            rest = lefts[k] - Mux(wk == k, n, 0)  # its words once this burst is out
            size = Mux(rest < burst, rest, burst)
            queued = Mux(wk == k, n - wi, 0) + size  # this burst's unsent words first
            edge = ((rest == totals[k]) & (offs[k] != 0)) | ((rest == size) & (tails[k] != 0))
            ready = c.res[k].use & (rest != 0) & (queues[k].level >= queued) & ~edge
            e_k = Mux(ready, k, e_k)
            e_n = Mux(ready, size, e_n)
            e_addr = Mux(ready, first_word[k] + totals[k] - rest, e_addr)
            early = early | ready
        early_req = Signal(name="w_early")
        ending = Signal(name="w_ending")  # this burst's last word goes out (below)
        m.d.comb += early_req.eq(is_["DATA"] & ~nvalid & early & ~ending)

        tl = _tag_layout(bus, self.len_bits)
        req = {
            "req": Signal(name="w_req"),
            "read": Signal(name="w_read"),
            "cmd": Signal.like(self.port.cmd.payload, name="w_cmd"),
            "tag": Signal(tl, name="w_tag"),
        }
        writing = is_["WRITE"] | early_req
        m.d.comb += [
            req["req"].eq(is_["READ_FIRST"] | is_["READ_LAST"] | writing),
            req["read"].eq(~writing),
            req["cmd"].addr.eq(
                Mux(
                    early_req,
                    e_addr,
                    sel["first"]
                    + Mux(
                        is_["READ_FIRST"],
                        0,
                        Mux(is_["READ_LAST"], sel["total"] - 1, sel["total"] - sel["left"]),
                    ),
                )
            ),  # fmt: skip
            req["cmd"].length.eq(Mux(early_req, e_n, Mux(writing, n, 1))),
            req["cmd"].write.eq(writing),
            req["tag"].dest.eq(WRITER),
            req["tag"].words.eq(1),
            req["tag"].which.eq(is_["READ_LAST"]),
        ]
        with m.If(io["grant"]):
            with m.If(is_["READ_FIRST"]):
                m.d.sync += goto("WRITE")
                with m.If(elast & ~one):
                    m.d.sync += goto("READ_LAST")
            with m.Elif(is_["READ_LAST"]):
                m.d.sync += goto("WRITE")
            with m.Elif(is_["WRITE"]):
                m.d.sync += [wi.eq(0), goto("DATA")]
            with m.Else():  # DATA: the next burst's command
                m.d.sync += [nk.eq(e_k), nn.eq(e_n), nvalid.eq(1)]

        # DATA: the burst's words, the edges merged with the words read before.
        w = self.port.w
        first_w = (wi == 0) & efirst
        last_w = (wi == n - 1) & elast
        shared = efirst & one  # the last word is the first: read once
        keep = Mux(first_w, _low_mask(sel["off"], bus), 0) | Mux(
            last_w, ~_low_mask(sel["tail"], bus), 0
        )
        oldv = Mux(first_w | shared, old[0], old[1])
        have_old = (~first_w | got[0]) & (~last_w | Mux(shared, got[0], got[1]))
        m.d.comb += [
            w.valid.eq(is_["DATA"] & oq["rdy"] & have_old),
            w.payload.eq((oq["data"] & ~keep) | (oldv & keep)),
        ]
        sent = w.valid & w.ready
        m.d.comb += ending.eq(sent & (wi == n - 1))
        for k in range(STREAMS):
            m.d.comb += queues[k].r_en.eq(sent & (wk == k))
        with m.If(sent):
            m.d.sync += wi.eq(wi + 1)
            with m.If(wi == n - 1):
                m.d.sync += goto("IDLE")
                for k in range(STREAMS):
                    with m.If(wk == k):
                        m.d.sync += lefts[k].eq(lefts[k] - n)
                # The next burst's command is out (not asked for in this cycle): its
                # words follow at once.
                with m.If(nvalid):
                    m.d.sync += [wk.eq(nk), n.eq(nn), wi.eq(0), nvalid.eq(0), goto("DATA")]
                    m.d.sync += [efirst.eq(0), elast.eq(0), one.eq(0)]
        with m.If(start):
            m.d.sync += [primed.eq(0), settle.eq(2), hv.eq(0), nvalid.eq(0), goto("IDLE")]
            for k, (_, buf, have, cnt, *_r) in enumerate(packers):
                m.d.sync += [buf.eq(0), have.eq(p.res[k].first_bit[:sh]), cnt.eq(0)]
        done = Signal(name="w_done")
        m.d.comb += done.eq(primed & is_["IDLE"] & (Cat(*(lf == 0 for lf in lefts)) == 0b111))
        return req, {**io, "done": done}
