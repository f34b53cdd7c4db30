"""What each instruction costs: link and DRAM bytes, DRAM bursts, scratchpad bits, unit cycles.

:func:`instruction_counts` is the one definition: the device model calls it as it runs
each instruction and :func:`program_counts` calls it without running, so the two agree
by construction (and a test checks it). :func:`tile_index` is the DMA address
generation of a LOAD or STORE, shared the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from barista_hw.plan import command_cycles

from . import dma, vector
from .geometry import ConvGeometry
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
        return InstCounts(link_bytes=nbytes, cycles=cycles, **{rw: _bytes(words, config)})
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
    """A LOAD or STORE moves the bus words of its tile's elements, packed; a STORE first
    reads the words it covers only in part, a col2im STORE all of them (it adds)."""
    t = dram_tensor(inst, program)
    dram = config.dram
    index = tile_index(inst, program) if index is None else index
    col2im = inst.op is Op.STORE and inst.sub == View.IM2COL
    store = inst.op is Op.STORE and not col2im
    tr = packed_transfer(t, index, inst["dram"] - t["dram"], config, store=store)
    nbytes = _bytes(tr.words, config)
    lanes_bits = tr.elements * config.accelerator.engine.fmt.width
    c = InstCounts(dram_bursts=tr.bursts + tr.merged, dram_rows=tr.rows_opened)
    if inst.op is Op.LOAD:
        c.dram_read_bytes, c.spad_write_bits = nbytes, lanes_bits
    else:
        c.dram_write_bytes, c.spad_read_bits = nbytes, lanes_bits
        c.dram_read_bytes = nbytes if col2im else _bytes(tr.merged, config)
    write = inst.op is Op.STORE
    cycles = dram.transfer_cycles(bursts=tr.bursts, rows_opened=tr.rows_opened, write=write)
    if col2im:  # read, modify, write
        cycles += dram.transfer_cycles(bursts=tr.bursts, rows_opened=tr.rows_opened, write=False)
    elif tr.merged:  # each part-covered word: a burst of its own, in a row the store opens
        cycles += dram.transfer_cycles(bursts=tr.merged, rows_opened=0, write=False)
    c.cycles = config.device_cycles(cycles)
    return c


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
    """A VEC streams its operands from DRAM through V and its results back."""
    op = VecOp(inst.sub)
    if inst["desc"] == ON_C:
        return _epilogue_counts(inst, program, config)
    tensors = program.tensors
    batch = program.meta["batch"]
    reads = [inst[k] for k in ("src", "src2") if inst[k] != 0xFFFF]
    writes = [inst[k] for k in ("dst", "dst2") if inst[k] != 0xFFFF]
    if op is VecOp.SGD:
        reads, writes = reads + [inst["dst"]], writes + [inst["src2"]]

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
    return InstCounts(
        dram_read_bytes=_bytes(read, config),
        dram_write_bytes=_bytes(written, config),
        dram_bursts=bursts,
        dram_rows=rows,
        spad_read_bits=elements * 32,
        spad_write_bits=elements * 32,
        vector_ops=e_out * window if window > 1 else max(e_in, e_out),
        cycles=max(stream_cycles, vector.cycles(op, e_in, e_out, lanes, window, cover)),
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
