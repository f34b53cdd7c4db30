"""Resource estimate of an :class:`~barista_hw.config.AcceleratorConfig` on a :class:`Budget`.

* **Multipliers**: one multiplier block per PE when the operands fit it (ECP5
  MULT18X18D: 18 bits; iCE40 SB_MAC16: 16 bits), else ``ceil(width/block)**2``.
* **Block RAM**: each memory (buffer A: ``a_depth`` x ``rows*width`` bits, buffer B:
  ``b_depth`` x ``cols*width``, the accumulator memory: ``acc_depth`` x
  ``cols*acc_width``) is tiled with the aspect ratio of the target's block that
  needs the fewest blocks. Memories of at most :data:`LUTRAM_MAX_BITS` bits are
  assumed to go to distributed RAM and are costed in LUTs instead.
* **LUTs**: a sum of per-element constants (LUT4s, or iCE40 logic cells, per bit):
  per PE, the accumulator adder and the capture/drain multiplexer of the result
  bank; per output column, the requantiser (bias adder, barrel shifter, saturation),
  the LFSR lane (32 bits of a ~15-input XOR each, ~5 LUT4s, plus the seed load) and,
  with an accumulator memory, the partial-sum adder and its multiplexer; per input
  lane, the edge-zeroing gate; plus the controller's counters and comparators.

The constants are first estimates from the structure of the RTL, not yet fitted to
synthesis results: issue "Boards" calibrates them against Yosys/nextpnr reports
(and should replace this docstring's numbers with the fitted ones).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import lfsr
from .config import AcceleratorConfig
from .numfmt import SHIFT_BITS
from .targets import Budget

#: Memories this small are left to distributed (LUT) RAM.
LUTRAM_MAX_BITS = 1024
#: LUTs per bit of distributed RAM (ECP5 TRELLIS_DPR16X4: 16 x 4 bits in ~3 LUT4 slots).
LUTRAM_LUTS_PER_BIT = 3 / 64

# -- LUT constants (per bit unless said otherwise) ------------------------------
PE_ACC_ADDER = 1.0  # accumulator adder, one LUT4 per bit of a carry chain
PE_BANK_MUX = 1.0  # bank <= capture ? total : shift_in
PE_CONTROL = 4  # per PE: valid/last decode, clear
REQUANT_PER_BIT = 1.0 + SHIFT_BITS + 1.0  # bias adder, 5-stage shifter, saturation compare
REQUANT_LANE = 40  # per lane: bias select (32-bit mask and mux) beyond the per-bit part
LFSR_XOR_LUTS = 5  # a ~15-input XOR as a LUT4 tree
LFSR_LOAD = 1  # seed load multiplexer per bit
ACCMEM_PER_BIT = 2.0  # partial-sum adder + first/accumulate multiplexer
INPUT_GATE_PER_BIT = 1.0  # zeroing of lanes past the matrix edge
CONTROL_PER_DIM_BIT = 30  # engine + controller: ~10 counters/comparators of dim_bits each
CONTROL_PER_ADDR_BIT = 8  # buffer address counters and bases
CONTROL_FIXED = 200  # handshakes, flags, cycle counter glue


@dataclass(frozen=True)
class Resources:
    """Estimated use of one accelerator (see the module docstring for the model)."""

    mults: int
    bram_blocks: int
    luts: int
    bram_detail: dict[str, int]
    lut_detail: dict[str, int]

    def fits(self, budget: Budget) -> bool:
        return (
            self.mults <= budget.mults
            and self.bram_blocks <= budget.bram_blocks
            and self.luts <= budget.luts
        )

    def shortfall(self, budget: Budget) -> list[str]:
        """What exceeds ``budget``, one phrase each (empty when it fits)."""
        out = []
        for what, used, have in (
            (budget.mult_kind, self.mults, budget.mults),
            (budget.bram_kind, self.bram_blocks, budget.bram_blocks),
            (budget.lut_kind, self.luts, budget.luts),
        ):
            if used > have:
                out.append(f"{used} {what} (budget {have})")
        return out

    def to_dict(self, budget: Budget | None = None) -> dict:
        d = {
            "mults": self.mults,
            "bram_blocks": self.bram_blocks,
            "luts": self.luts,
            "bram_detail": dict(sorted(self.bram_detail.items())),
            "lut_detail": dict(sorted(self.lut_detail.items())),
            "model": "barista_hw.resources (uncalibrated constants)",
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


def memory_blocks(depth: int, width: int, aspects: tuple[tuple[int, int], ...]) -> int:
    """Fewest blocks of one of ``aspects`` (depth, width) that hold ``depth x width`` bits."""
    if depth <= 0 or width <= 0:
        return 0
    return min(-(-depth // d) * -(-width // w) for d, w in aspects)


def estimate(cfg: AcceleratorConfig, budget: Budget) -> Resources:
    """Multipliers, block RAM and LUTs of ``cfg`` on ``budget`` 's kind of device."""
    e = cfg.engine
    R, C = e.rows, e.cols
    w, acc = e.fmt.width, e.fmt.acc_width
    per_pe = (-(-w // budget.mult_width)) ** 2
    mults = e.pes * per_pe

    memories = {
        "buf_a": (cfg.a_depth, R * w),
        "buf_b": (cfg.b_depth, C * w),
        "accmem": (e.acc_depth, C * acc),
    }
    bram: dict[str, int] = {}
    lutram = 0.0
    for name, (depth, width) in memories.items():
        if depth == 0:
            continue
        if depth * width <= LUTRAM_MAX_BITS:
            lutram += depth * width * LUTRAM_LUTS_PER_BIT
            bram[name] = 0
        else:
            bram[name] = memory_blocks(depth, width, budget.bram_aspects)

    addr_bits = cfg.a_addr_bits + cfg.b_addr_bits
    luts = {
        "pes": round(e.pes * (acc * (PE_ACC_ADDER + PE_BANK_MUX) + PE_CONTROL)),
        "requant": round(C * (acc * REQUANT_PER_BIT + REQUANT_LANE)),
        "lfsr": C * lfsr.STATE_BITS * (LFSR_XOR_LUTS + LFSR_LOAD),
        "accmem": round(C * acc * ACCMEM_PER_BIT) if e.acc_depth else 0,
        "input_gates": round((R + C) * w * INPUT_GATE_PER_BIT),
        "control": CONTROL_FIXED
        + CONTROL_PER_DIM_BIT * e.dim_bits
        + CONTROL_PER_ADDR_BIT * addr_bits,
        "lutram": round(lutram),
    }
    return Resources(mults, sum(bram.values()), sum(luts.values()), bram, luts)
