"""What each instruction costs: link and DRAM bytes, DRAM bursts, scratchpad bits, unit cycles.

:func:`instruction_counts` is the one definition: the device model calls it as it runs
each instruction and :func:`program_counts` calls it without running, so the two agree
by construction (and a test checks it). :func:`tile_index` is the DMA address
generation of a LOAD or STORE, shared the same way.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields

import numpy as np

from barista_hw.plan import command_cycles

from . import dma, vector
from .geometry import ConvGeometry, Space
from .isa import ACC_LAST, ON_C, Instruction, Op, Program, View
from .memory import DeviceConfig
from .vector import VecOp


@dataclass
class InstCounts:
    """One instruction's actions (see the module docstring)."""

    link_bytes: int = 0
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    dram_bursts: int = 0
    dram_rows: int = 0  # rows (pages) opened
    spad_read_bits: int = 0
    spad_write_bits: int = 0
    macs: int = 0
    vector_ops: int = 0
    cycles: int = 0  # of the instruction's own unit (link: at the device's clock)
    port_words: int = 0  # the RTL port's words for it, both ways (read again: again)

    def __iadd__(self, other: InstCounts) -> InstCounts:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def dram_bytes(self) -> int:
        return self.dram_read_bytes + self.dram_write_bytes


@dataclass
class Counts:
    """Counts of a run: the total and per (layer, pass) section of the program."""

    total: InstCounts = field(default_factory=InstCounts)
    sections: dict[str, InstCounts] = field(default_factory=dict)
    per_instruction: list[InstCounts] = field(default_factory=list)

    def add(self, section: str, c: InstCounts) -> None:
        self.total += c
        self.sections.setdefault(section, InstCounts())
        self.sections[section] += c
        self.per_instruction.append(c)


def section_names(program: Program) -> list[str]:
    """The section (``layer/pass``) of every instruction, from the compiler's marks."""
    marks = program.meta.get("sections", [])
    out: list[str] = []
    for i, (start, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(program.instructions)
        out += [name] * (end - start)
    return out + ["other"] * (len(program.instructions) - len(out))


def dram_tensor(inst: Instruction, program: Program) -> dict:
    """The tensor a LOAD or STORE addresses (its view's descriptor names it)."""
    return program.tensors[program.descriptors[inst["desc"]]["tensor"]]


def folded_index(
    channels: int, pixels: int, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """Offsets of rows ``rows`` (channels) and columns ``cols`` (``image * pixels + pixel``)
    of an ``(images, channels, pixels)`` tensor seen as ``channels x images*pixels``."""
    r = np.arange(*rows, dtype=np.int64)[:, None]
    c = np.arange(*cols, dtype=np.int64)[None, :]
    return (c // pixels) * (channels * pixels) + r * pixels + c % pixels


def conv_geometry(d: dict) -> ConvGeometry:
    return ConvGeometry(
        d["channels"],
        d["height"],
        d["width"],
        tuple(d["kernel"]),
        tuple(d["stride"]),
        tuple(d["pad"]),
        tuple(d["dilation"]),
        d["group"],
    )


def tile_index(inst: Instruction, program: Program) -> np.ndarray:
    """The DRAM slot offsets (from ``inst["dram"]``) of a LOAD's or STORE's tile; -1: padding."""
    d = program.descriptors[inst["desc"]]
    rows = (inst["r0"], inst["r0"] + inst["rows"])
    cols = (inst["c0"], inst["c0"] + inst["cols"])
    if inst["flags"] & 1:  # the tile is the view transposed
        rows, cols = cols, rows
    if inst.sub == View.MATRIX:
        index = dma.dense_index(
            rows[1] - rows[0], cols[1] - cols[0], d["row_stride"], d["col_stride"]
        )
        index = index + rows[0] * d["row_stride"] + cols[0] * d["col_stride"]
    elif inst.sub == View.FOLDED:
        index = folded_index(d["channels"], d["pixels"], rows, cols)
    else:
        geom = conv_geometry(d)
        index = dma.im2col_index(
            geom, images=d["images"], group=inst["group"], rows=rows, cols=cols
        )
    return index.T if inst["flags"] & 1 else index


@dataclass(frozen=True)
class StagePlan:
    """An im2col LOAD staged (docs/device.md, "The im2col staging buffer"): its input
    footprint read from DRAM once, ``segments`` runs of ``length`` elements, the first
    from element ``first`` (from ``inst["dram"]``), each ``stride`` (an image) after the
    previous, into the DMA's stage buffer (run ``j`` at stage element ``j * length``);
    an element at offset ``rel`` of image ``image0 + j`` is stage element
    ``j * length + rel - skip``. ``words`` and ``walked``: the scratchpad words the
    staged walk writes (a cycle each) and the positions the element walk would step."""

    first: int
    length: int
    segments: int
    stride: int
    skip: int
    image0: int
    words: int
    walked: int
    blocks: int

    @property
    def elements(self) -> int:
        return self.segments * self.length


def stage_depth(config: DeviceConfig, space: int) -> int:
    """Elements of the stage buffer of the DMA that LOADs into ``space``: B's (every im2col
    LOAD goes to B) has the config's ``im2col_stage``, the others none."""
    return config.scratchpads.im2col_stage if space == Space.B else 0


def config_stage_plan(
    inst: Instruction, program: Program, config: DeviceConfig, index: np.ndarray | None = None
) -> StagePlan | None:
    """:func:`stage_plan` of ``inst`` on the device of ``config``."""
    space = inst["space"]
    return stage_plan(inst, program, spad_lanes(config, space), stage_depth(config, space), index)


def stage_index(plan: StagePlan) -> np.ndarray:
    """The footprint of a staged LOAD: its elements (from ``inst["dram"]``) in the order
    phase 1 reads them (stage element order)."""
    runs = plan.first + plan.stride * np.arange(plan.segments, dtype=np.int64)
    return (runs[:, None] + np.arange(plan.length, dtype=np.int64)[None, :]).ravel()


def stage_runs(plan: StagePlan, t: dict, base: int, config: DeviceConfig) -> PortRuns:
    """A staged LOAD's port commands (phase 1): each run of its footprint in commands of
    ``dma_burst`` elements, back to back (``at``: their first elements' stage indices)."""
    port = config.port
    burst = port.dma_burst
    pieces = -(-plan.length // burst)
    k = np.arange(pieces, dtype=np.int64)
    n = np.tile(np.minimum(burst, plan.length - k * burst), plan.segments)
    first = base + np.repeat(plan.first + plan.stride * np.arange(plan.segments), pieces)
    first = first + np.tile(k * burst, plan.segments)
    words, merged = run_words(first, n, t["bits"], 8 * t["addr"], port.bits)
    off = (8 * t["addr"] + first * t["bits"]) % port.bits
    return PortRuns(np.cumsum(n) - n, n, words, merged, off, t["bits"])


def stage_cycles(
    plan: StagePlan,
    t: dict,
    base: int,
    config: DeviceConfig,
    index: np.ndarray,
    axis: int,
    *,
    sdram: int = 0,
    latency: int,
) -> int:
    """A staged LOAD's cycles (``DmaEngine._staged``), its phases overlapped. Phase 1 reads
    the footprint (:func:`stage_runs`, back to back): stage element ``e`` is in the buffer
    ``stage_fetch + latency + e`` cycles after the start plus the unpacker's waits at the
    runs up to its own (:func:`unpack_waits`' per run). Phase 2 writes a word a cycle once
    its lanes' elements are in (:func:`stage_needs`); a block of ``do`` words at a time,
    whose lanes are stepped one a cycle from the previous block's start (``lanes + 1``
    cycles: a block starts no sooner), and the whole footprint, read or not, is in. Then
    ``stage_stages``; never less than the SDRAM's ``sdram``."""
    port = config.port
    runs = stage_runs(plan, t, base, config)
    bus = port.bits
    extra = np.maximum(-(-(runs.off + runs.bits) // bus) - 1, runs.words - runs.n)
    first = latency + port.stage_fetch
    arrive = first + np.arange(plan.elements) + np.repeat(np.cumsum(extra), runs.n)
    need = stage_needs(plan, index, axis)
    lanes = plan.walked // plan.words
    ready = np.where(need >= 0, arrive[np.maximum(need, 0)], 0)  # (blocks, do)
    do = need.shape[1]
    gate = np.maximum.accumulate(ready - np.arange(do), axis=1)[:, -1]
    load = last = lanes  # the cycle a block's lanes are taken: the first's stepped from 0
    for b in range(plan.blocks):
        last = do - 1 + max(load + 1, int(gate[b]))  # the block's last word
        load = max(last, load + lanes + 1)
    # It ends once the whole footprint is in: the last element's cycle is its last word's
    # plus the three the word takes to the scratchpad and the count.
    last = max(last, int(arrive[-1]) - 3)
    return max(last, sdram) + port.stage_stages


def stage_needs(plan: StagePlan, index: np.ndarray, axis: int) -> np.ndarray:
    """``(blocks, do)``: the last stage element each word of a staged LOAD reads (-1: all
    padding), in walk order (:func:`walk_order` of its :func:`tile_index` ``index``)."""
    lanes = plan.walked // plan.words
    order = walk_order(index, lanes, axis)
    image, rel = np.divmod(order, plan.stride)
    at = np.where(order >= 0, (image - plan.image0) * plan.length + rel - plan.skip, -1)
    return at.reshape(plan.blocks, -1, lanes).max(axis=2)


def stage_plan(
    inst: Instruction, program: Program, lanes: int, depth: int, index: np.ndarray | None = None
) -> StagePlan | None:
    """How a LOAD into a scratchpad of ``lanes`` lanes uses a stage buffer of ``depth``
    elements (0: none), or None: it takes the per-element path (not an im2col LOAD, all
    padding, a footprint past ``depth``, or staging no faster: its footprint and words
    at least the positions the per-element walk steps). The footprint: the images the
    tile's pixels span, in each the same run from the first to the last element it reads
    (its channels and input rows)."""
    if not depth or inst.op is not Op.LOAD or inst.sub != View.IM2COL:
        return None
    index = tile_index(inst, program) if index is None else index
    valid = index[index >= 0]
    if not valid.size:
        return None
    g = conv_geometry(program.descriptors[inst["desc"]])
    stride = g.channels * g.height * g.width
    image, rel = np.divmod(valid, stride)
    skip, image0 = int(rel.min()), int(image.min())
    length, segments = int(rel.max()) - skip + 1, int(image.max()) - image0 + 1
    axis = lane_axis(inst["space"])
    blocks = -(-index.shape[axis] // lanes)
    words = blocks * index.shape[1 - axis]
    plan = StagePlan(
        image0 * stride + skip, length, segments, stride, skip, image0, words, words * lanes, blocks
    )
    if plan.elements > depth or plan.elements + words >= plan.walked:
        return None
    return plan


def instruction_counts(
    inst: Instruction, program: Program, config: DeviceConfig, *, index: np.ndarray | None = None
) -> InstCounts:
    """The actions of ``inst`` (module docstring); ``index``: a LOAD's or STORE's
    :func:`tile_index`, when the caller has it."""
    if inst.op in (Op.LOAD, Op.STORE):
        return _dma_counts(inst, program, config, index)
    if inst.op is Op.GEMM:
        return _gemm_counts(inst, config)
    if inst.op is Op.VEC:
        return _vec_counts(inst, program, config)
    if inst.op is Op.FETCH:
        return _fetch_counts(inst, program, config)
    if inst.op in (Op.HOST_IN, Op.HOST_OUT):
        nbytes = inst["bytes"]
        seconds = config.link.seconds(nbytes)
        cycles = math.ceil(seconds * config.accelerator.clock_mhz * 1e6)
        t = program.tensors[inst["tensor"]]
        tr = stream(t, 0, math.prod(t["shape"]), config, store=inst.op is Op.HOST_IN)
        words = tr.words + tr.merged if inst.op is Op.HOST_IN else tr.words
        rw = "dram_write_bytes" if inst.op is Op.HOST_IN else "dram_read_bytes"
        return InstCounts(
            link_bytes=nbytes, cycles=cycles, port_words=words, **{rw: _bytes(words, config)}
        )
    return InstCounts(cycles=1)


def _bytes(words: int, config: DeviceConfig) -> int:
    return words * config.dram.bus_bits // 8


def packed_transfer(
    t: dict,
    index: np.ndarray,
    base: int,
    config: DeviceConfig,
    *,
    store: bool = False,
    absolute: bool = True,
) -> dma.Transfer:
    """:func:`dma.transfer` of elements ``base + index`` of tensor ``t`` (its slots from
    ``t["dram"]``), packed at its width from its byte address; ``absolute``: bursts and
    rows counted by the DRAM's own (else every word its own)."""
    dram = config.dram
    word_bytes = dram.bus_bits // 8
    return dma.transfer(
        index,
        base,
        burst_words=dram.burst_length if absolute else 1,
        row_words=dram.row_bytes // word_bytes if absolute else 1,
        bits=t["bits"],
        bus_bits=dram.bus_bits,
        first_bit=8 * t["addr"],
        size=math.prod(t["shape"]),
        store=store,
    )


def stream(t: dict, first: int, end: int, config: DeviceConfig, *, store: bool) -> dma.Transfer:
    """A vector unit's or the link's stream over elements ``[first, end)`` of tensor ``t``."""
    return packed_transfer(t, np.arange(first, end, dtype=np.int64), 0, config, store=store)


def _dma_counts(
    inst: Instruction, program: Program, config: DeviceConfig, index: np.ndarray | None
) -> InstCounts:
    """A LOAD or STORE moves its port commands' words (:func:`dma_port`: the DRAM bytes
    are what the port moves, a word read again counted again; a staged LOAD's, its
    footprint's). Its cycles: the SDRAM's time or the RTL port's, whichever is longer;
    the SDRAM's time, its bursts and rows from the tile's distinct words (a floor: the
    SDRAM serves the port's commands in the rows and bursts they touch)."""
    t = dram_tensor(inst, program)
    dram = config.dram
    index = tile_index(inst, program) if index is None else index
    col2im = inst.op is Op.STORE and inst.sub == View.IM2COL
    store = inst.op is Op.STORE and not col2im
    plan = config_stage_plan(inst, program, config, index)
    moved = index if plan is None else stage_index(plan)  # staged: its footprint
    tr = packed_transfer(t, moved, inst["dram"] - t["dram"], config, store=store)
    lanes_bits = int(index.size) * config.accelerator.engine.fmt.width
    c = InstCounts(dram_bursts=tr.bursts + tr.merged, dram_rows=tr.rows_opened)
    if inst.op is Op.LOAD:
        c.spad_write_bits = lanes_bits
    else:
        c.spad_read_bits = lanes_bits
    write = inst.op is Op.STORE
    cycles = dram.transfer_cycles(bursts=tr.bursts, rows_opened=tr.rows_opened, write=write)
    if col2im:  # read, modify, write
        cycles += dram.transfer_cycles(bursts=tr.bursts, rows_opened=tr.rows_opened, write=False)
    elif tr.merged:  # each part-covered word: a burst of its own, in a row the store opens
        cycles += dram.transfer_cycles(bursts=tr.merged, rows_opened=0, write=False)
    port = dma_port(inst, program, config, index, config.device_cycles(cycles))
    c.cycles, c.port_words = port.cycles, port.words
    c.dram_read_bytes, c.dram_write_bytes = port.read_bytes, port.write_bytes
    return c


def spad_lanes(config: DeviceConfig, space: int) -> int:
    """Lanes of a scratchpad word: A's the engine's rows, B's and C's its columns, V's
    the vector unit's."""
    e = config.accelerator.engine
    return {Space.A: e.rows, Space.B: e.cols, Space.C: e.cols}.get(
        Space(space), config.scratchpads.vector_lanes
    )


def lane_axis(space: int) -> int:
    """The tile axis a scratchpad's lanes run along: A's rows (0), the others' columns (1)."""
    return 0 if space == Space.A else 1


def walk_order(index: np.ndarray, lanes: int, lane_axis: int) -> np.ndarray:
    """A tile's :func:`tile_index` in the order the RTL DMA's address generator walks it:
    by scratchpad word (``lanes`` elements along ``lane_axis``, 0: the tile's rows), a
    block of words along the other axis at a time; -1 also for lanes past the tile's edge
    (the generator walks them too)."""
    t = index if lane_axis == 0 else index.T
    dl, do = t.shape
    blocks = -(-dl // lanes)
    full = np.full((blocks * lanes, do), -1, dtype=np.int64)
    full[:dl] = t
    return full.reshape(blocks, lanes, do).transpose(0, 2, 1).ravel()


def port_runs(elements: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """The DMA's port commands of ``elements`` (DRAM element numbers in walk order; -1,
    padding, is no element and ends a run: the merger offers its pending command in a
    cycle that does not extend it): runs of consecutive numbers of at most ``most``;
    (first elements, lengths)."""
    keep = elements >= 0
    e = elements[keep]
    if not e.size:
        return e, e
    brk = np.ones(e.size, dtype=bool)
    brk[1:] = (np.diff(e) != 1) | (np.diff(np.flatnonzero(keep)) != 1)
    seg_start = np.flatnonzero(brk)
    pos = np.arange(e.size) - seg_start[np.cumsum(brk) - 1]
    starts = np.flatnonzero(brk | (pos % most == 0))
    return e[starts], np.diff(np.append(starts, e.size))


def run_words(
    first: np.ndarray, n: np.ndarray, bits: int, first_bit: int, port_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Port words of each run of ``n`` elements from ``first`` (packed at ``bits`` from
    ``first_bit``), and the part-covered end words a write of it reads first."""
    lo, end = first_bit + first * bits, first_bit + (first + n) * bits
    words = (end - 1) // port_bits - lo // port_bits + 1
    head, tail = lo % port_bits != 0, end % port_bits != 0
    merged = head.astype(np.int64) + tail - (head & tail & (words == 1))
    return words, merged


@dataclass(frozen=True)
class PortRuns:
    """A LOAD's or STORE's port commands as the RTL DMA issues them, in walk order:
    ``at``, the walk position of each one's first element (the walk visits one position a
    cycle, padding and lanes past the tile's edge included); ``n``, its elements;
    ``words``, its port words; ``merged``, the part-covered end words a write of it reads
    first; ``off``, its first element's bit offset in its first word; ``bits``, the
    elements' width."""

    at: np.ndarray
    n: np.ndarray
    words: np.ndarray
    merged: np.ndarray
    off: np.ndarray
    bits: int


def dma_port_runs(
    inst: Instruction, program: Program, config: DeviceConfig, index: np.ndarray
) -> PortRuns:
    """The :class:`PortRuns` of a LOAD or STORE (not col2im)."""
    t = dram_tensor(inst, program)
    lanes = spad_lanes(config, inst["space"])
    order = walk_order(index, lanes, lane_axis(inst["space"]))
    base = inst["dram"] - t["dram"]
    first, n = port_runs(np.where(order >= 0, order + base, -1), config.port.dma_burst)
    words, merged = run_words(first, n, t["bits"], 8 * t["addr"], config.port.bits)
    data_at = np.flatnonzero(order >= 0)
    at = data_at[np.cumsum(n) - n] if n.size else n
    off = (8 * t["addr"] + first * t["bits"]) % config.port.bits
    return PortRuns(at, n, words, merged, off, t["bits"])


def dma_port_commands(
    inst: Instruction, program: Program, config: DeviceConfig, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The port commands of a LOAD or STORE (not col2im) as the RTL DMA issues them (a
    staged LOAD's: :func:`stage_runs`): each one's words, and the part-covered end words a
    write of it reads first."""
    plan = config_stage_plan(inst, program, config, index)
    if plan is not None:
        t = dram_tensor(inst, program)
        r = stage_runs(plan, t, inst["dram"] - t["dram"], config)
    else:
        r = dma_port_runs(inst, program, config, index)
    return r.words, r.merged


def unpack_waits(runs: PortRuns, bus: int) -> int:
    """Cycles a LOAD's element stream waits for ``PackedPort``'s unpacker: a run whose
    first element ends past its first word (offset + bits > the bus: fx12 at bit 8 or 12)
    takes a cycle a word before it offers that element, and a run of more words than
    elements (elements wider than the bus) a cycle a word. The unpacker takes the next
    run's first words while the DMA takes padding, so padding just before a run hides
    that many of its cycles."""
    if not runs.n.size:
        return 0
    extra = np.maximum(-(-(runs.off + runs.bits) // bus) - 1, runs.words - runs.n)
    ends = runs.at + runs.n  # one past each run's last element (its data are contiguous)
    pads = runs.at - np.concatenate([[0], ends[:-1]])
    return int(np.maximum(0, extra - pads).sum())


@functools.lru_cache(maxsize=4096)
def write_cycles(off: int, n: int, bits: int, bus: int, gap: int = 1) -> tuple[int, bool]:
    """``PackedPort``'s writer on a command of ``n`` elements from bit ``off`` of its first
    word (one element a cycle in, one word a cycle out, its rules stepped): cycles from
    its start to the cycle it sends its last word (``gap``: the start's cycle), and
    whether that word is a part-covered tail merged from the old-word FIFO (the next
    command cannot start in that cycle)."""
    have, left, cycles = off, n, gap
    while True:
        tail = left == 0 and 0 < have < bus
        if tail:
            end_part = (off + n * bits) % bus != 0
            return cycles, end_part and not (off != 0 and off + n * bits < bus)
        h1 = have - bus if have >= bus else have
        if left == 0 and h1 == 0:
            return cycles, False
        if left and h1 < bus:
            h1, left = h1 + bits, left - 1
        have, cycles = h1, cycles + 1


def store_write_cycles(runs: PortRuns, config: DeviceConfig, latency: int) -> tuple[int, int]:
    """A STORE's port side: (cycles from its walk's start to the writer's last word, the
    last command's writer cycles). ``PackedPort``'s writer takes one command at a time
    (:func:`write_cycles`); a command whose first word is part-covered starts only once
    that word's read arrived (``PortConfig.old_wait`` after the previous command's last
    word, as the memory reads it in command order; the first command: a cycle after it
    was sent plus ``latency``); a tail merged from the FIFO costs the next start a cycle.
    The writer starts a cycle after the walk passed the first command's last element."""
    port = config.port
    costs = []
    for k in range(runs.n.size):
        c, pop = write_cycles(
            int(runs.off[k]), int(runs.n[k]), runs.bits, port.bits, port.write_gap
        )
        if k + 1 < runs.n.size:
            c += port.old_wait if runs.off[k + 1] else int(pop)
        costs.append(c)
    first_wait = latency + 1 if runs.off[0] else 0
    return int(runs.at[0] + runs.n[0]) + first_wait + sum(costs), c


@dataclass(frozen=True)
class PortCost:
    """A DMA instruction on the RTL's port (:func:`dma_port`): its cycles, and the port
    words its commands read and write (a word read again counts again)."""

    cycles: int
    read: int
    written: int
    word_bits: int

    @property
    def words(self) -> int:
        return self.read + self.written

    @property
    def read_bytes(self) -> int:
        return self.read * self.word_bits // 8

    @property
    def write_bytes(self) -> int:
        return self.written * self.word_bits // 8


def dma_port(
    inst: Instruction,
    program: Program,
    config: DeviceConfig,
    index: np.ndarray,
    sdram: int = 0,
    *,
    latency: int | None = None,
) -> PortCost:
    """A LOAD's or STORE's cycles on the RTL's port (docs/device.md, "The time model
    charges the port"), and the port words its commands move: the one count of its DRAM
    traffic (a word read again counts again: an unstaged im2col LOAD reads an input
    element once per kernel tap that reaches it; a staged LOAD reads its footprint's
    runs; a STORE also reads its part-covered end words first). Cycles: the address
    generator walks every lane of its scratchpad words, one a cycle, while the port moves
    one word a cycle; the longer of those and the SDRAM's ``sdram`` (accelerator cycles),
    plus the pipeline's fixed stages. A LOAD's
    stream also waits for the unpacker (:func:`unpack_waits`) and its last command's words
    follow its walk; a STORE's writer (:func:`store_write_cycles`) follows the walk's
    elements. A col2im STORE walks the tile (pass 1), then reads and writes its footprint
    (pass 2; on a device whose ``col2im_elements`` bounds nothing, the words its tile adds
    into). ``latency``: the memory's read latency (default: the config's,
    ``read_latency``)."""
    port = config.port
    latency = config.read_latency if latency is None else latency
    lanes, axis = spad_lanes(config, inst["space"]), lane_axis(inst["space"])
    walked = -(-index.shape[axis] // lanes) * lanes * index.shape[1 - axis]
    t = dram_tensor(inst, program)
    if inst.op is Op.STORE and inst.sub == View.IM2COL:
        moved = _footprint_words(t, index, inst["dram"] - t["dram"], config)  # read, write
        cycles = max(sdram, walked + 2 * moved) + port.col2im_stages + (latency if moved else 0)
        return PortCost(cycles, moved, moved, port.bits)
    plan = config_stage_plan(inst, program, config, index)
    if plan is not None:
        base = inst["dram"] - t["dram"]
        cycles = stage_cycles(plan, t, base, config, index, axis, sdram=sdram, latency=latency)
        return PortCost(cycles, int(stage_runs(plan, t, base, config).words.sum()), 0, port.bits)
    runs = dma_port_runs(inst, program, config, index)
    if not runs.n.size:
        busy = max(walked, sdram)  # all padding: no command
        stages = port.load_stages + latency if inst.op is Op.LOAD else port.store_stages
        return PortCost(busy + stages, 0, 0, port.bits)
    last, words = int(runs.words[-1]), int(runs.words.sum())
    if inst.op is Op.LOAD:
        busy = max(walked + unpack_waits(runs, port.bits), words, sdram)
        return PortCost(busy + last + port.load_stages + latency, words, 0, port.bits)
    written, last_cycles = store_write_cycles(runs, config, latency)
    last_walk = int(runs.at[-1] + runs.n[-1]) - 1 + last_cycles  # its last element, then it
    cycles = max(walked, last_walk, written, sdram + last) + port.store_stages
    return PortCost(cycles, int(runs.merged.sum()), words, port.bits)


def _footprint_words(t: dict, index: np.ndarray, base: int, config: DeviceConfig) -> int:
    """The port words of a col2im STORE's footprint in tensor ``t``: first to last element
    it adds into; on a device whose ``col2im_elements`` bounds nothing (no RTL builds one:
    a footprint may span the whole tensor), the words it adds into."""
    valid = index[index >= 0]
    if not valid.size:
        return 0
    if config.scratchpads.col2im_elements is None:
        return packed_transfer(t, index, base, config).words
    span = np.array([int(valid.max() - valid.min()) + 1])
    first = base + valid.min(keepdims=True)
    return int(run_words(first, span, t["bits"], 8 * t["addr"], config.port.bits)[0][0])


def _fetch_counts(inst: Instruction, program: Program, config: DeviceConfig) -> InstCounts:
    """A FETCH reads its records and writes them into the batch tensor, in DRAM. Counted
    from the dataset's first record: where the batch starts moves the count by at most a
    burst, and counts do not depend on the data."""
    dst, src = program.tensors[inst["tensor"]], program.tensors[inst["source"]]
    size = math.prod(dst["shape"])
    read = stream(src, 0, size, config, store=False)
    write = stream(dst, 0, size, config, store=True)
    dram = config.dram
    cycles = dram.transfer_cycles(bursts=read.bursts, rows_opened=read.rows_opened, write=False)
    cycles += dram.transfer_cycles(bursts=write.bursts, rows_opened=write.rows_opened, write=True)
    if write.merged:  # a part-covered last word: a burst of its own
        cycles += dram.transfer_cycles(bursts=write.merged, rows_opened=0, write=False)
    return InstCounts(
        dram_read_bytes=_bytes(read.words + write.merged, config),
        dram_write_bytes=_bytes(write.words, config),
        dram_bursts=read.bursts + write.bursts + write.merged,
        dram_rows=read.rows_opened + write.rows_opened,
        cycles=config.device_cycles(cycles),
    )


def _gemm_counts(inst: Instruction, config: DeviceConfig) -> InstCounts:
    e = config.accelerator.engine
    m, n, kt = inst["m"], inst["n"], inst["k"] * inst["images"]
    tm, tn = -(-m // e.rows), -(-n // e.cols)
    bits = e.fmt.width
    last = bool(inst["mode"] & ACC_LAST)
    return InstCounts(
        macs=m * n * kt,
        # every tile pass reads its A and B words once
        spad_read_bits=tn * tm * kt * (e.rows + e.cols) * bits,
        spad_write_bits=m * n * bits if last else 0,
        cycles=command_cycles(e, m, n, kt, acc_last=last),
    )


def _epilogue_counts(inst: Instruction, program: Program, config: DeviceConfig) -> InstCounts:
    """A VEC on a result block in C (``isa.ON_C``): it reads the block and its bias rows."""
    op = VecOp(inst.sub)
    t = program.tensors[inst["dst"]]
    elements = inst["images"] * inst["src"]
    bias = 0
    if inst["src2"] != 0xFFFF:  # rows [i0, i0 + images) of the bias
        rows = (inst["i0"], inst["i0"] + inst["images"])
        bias = _bytes(
            stream(program.tensors[inst["src2"]], *rows, config, store=False).words, config
        )
    return InstCounts(
        dram_read_bytes=bias,
        spad_read_bits=elements * t["bits"],
        spad_write_bits=elements * t["bits"],
        vector_ops=elements,
        cycles=vector.cycles(op, elements, elements, config.scratchpads.vector_lanes),
    )


def _vec_counts(inst: Instruction, program: Program, config: DeviceConfig) -> InstCounts:
    """A VEC streams its operands from DRAM through V and its results back: its cycles are
    the longest of the SDRAM's time, the vector unit's and the port's words (one a cycle:
    VecMem's reads and write bursts follow back to back), plus the pipeline's fixed stages
    and, for a reduction, its drain (docs/device.md, "The time model charges the port")."""
    op = VecOp(inst.sub)
    if inst["desc"] == ON_C:
        return _epilogue_counts(inst, program, config)
    tensors = program.tensors
    batch = program.meta["batch"]
    reads = [inst[k] for k in ("src", "src2") if inst[k] != 0xFFFF]
    writes = [inst[k] for k in ("dst", "dst2") if inst[k] != 0xFFFF]
    if op is VecOp.SGD:
        reads, writes = reads + [inst["dst"]], writes + [inst["src2"]]
    if op is VecOp.CONVERT and inst["param"] & 1:  # read-and-clear: the source back as zeros
        writes = writes + [inst["src"]]

    d = program.descriptors[inst["desc"]] if inst["desc"] != 0xFF else {}

    def moved(i: int, store: bool) -> tuple[int, dma.Transfer]:
        """Elements of tensor ``i`` the operation streams, and the transfer."""
        t = tensors[i]
        if d.get("kind") == "channels":  # BIAS_GRAD of a range of channels
            index = channel_index(t["shape"], d["c0"], d["channels"])
            return index.size, packed_transfer(t, index, 0, config, store=store)
        n = math.prod(t["shape"])
        first = 0
        if (
            t["shape"][0] == batch
            and op not in (VecOp.BIAS_GRAD, VecOp.SGD)
            and len(t["shape"]) > 1
            and not (op is VecOp.BIAS_ADD and i == inst["src2"])
        ):
            first, n = n // batch * inst["i0"], n // batch * inst["images"]
        return n, stream(t, first, first + n, config, store=store)

    ins = [moved(i, False) for i in reads]
    outs = [moved(i, True) for i in writes]
    window = math.prod(d.get("kernel", [1]))
    cover = vector.covering_windows(d["kernel"], d["stride"]) if "stride" in d else 1
    lanes = config.scratchpads.vector_lanes
    e_in, e_out = max(n for n, _ in ins), max(n for n, _ in outs)
    elements = sum(n for n, _ in ins) + sum(n for n, _ in outs)
    # Streams: each operand is read and each result written sequentially, in bursts; a
    # result's part-covered edge words are read first (merged).
    read = sum(tr.words for _, tr in ins) + sum(tr.merged for _, tr in outs)
    written = sum(tr.words for _, tr in outs)
    dram = config.dram
    bursts = sum(tr.bursts + tr.merged for _, tr in ins + outs)
    rows = sum(tr.rows_opened for _, tr in ins + outs)
    stream_cycles = config.device_cycles(
        dram.transfer_cycles(bursts=bursts, rows_opened=rows, write=False)
    )
    port = config.port
    # A reduction (fewer results than operand elements: pooling, sums) leaves the writer
    # no backlog when the reads end: its last results cross the whole pipeline after them.
    drain = port.vec_drain if e_out < e_in else 0
    return InstCounts(
        dram_read_bytes=_bytes(read, config),
        dram_write_bytes=_bytes(written, config),
        dram_bursts=bursts,
        dram_rows=rows,
        spad_read_bits=elements * 32,
        spad_write_bits=elements * 32,
        vector_ops=e_out * window if window > 1 else max(e_in, e_out),
        port_words=read + written,
        cycles=max(
            stream_cycles,
            vector.cycles(op, e_in, e_out, lanes, window, cover),
            read + written + drain,
        )
        + port.vec_stages
        + config.read_latency,
    )


def channel_index(shape: list[int], c0: int, channels: int) -> np.ndarray:
    """The elements of channels ``[c0, c0 + channels)`` of a tensor of ``shape``, in
    order: ``(images, C, ...)``, or a ``(C,)`` vector."""
    if len(shape) == 1:
        return np.arange(c0, c0 + channels, dtype=np.int64)
    flat = np.arange(math.prod(shape), dtype=np.int64).reshape(shape[0], shape[1], -1)
    return flat[:, c0 : c0 + channels].ravel()


def program_counts(program: Program, config: DeviceConfig) -> Counts:
    """The counts of one run of ``program``, without running it."""
    counts = Counts()
    for section, inst in zip(section_names(program), program.instructions, strict=True):
        counts.add(section, instruction_counts(inst, program, config))
    return counts
