"""The device top's resource estimate: its units, the memories it counts as block RAM, how
the decoder and the command FIFOs grow, and the one synthesis it is fitted to."""

from __future__ import annotations

import json
from pathlib import Path

from barista_hw.device.memory import RTL_UNITS, DeviceConfig
from barista_hw.device.rtl.design import LENET_CONFIG
from barista_hw.device.rtl.device import unit_entry_layout
from barista_hw.device.rtl.resources import (
    DEC_FIXED,
    DEC_TENSOR,
    MODEL,
    decoder_memories,
    estimate_device,
    fifo_bits,
)
from barista_hw.device.rtl.sequencer import UNITS as QUEUED
from barista_hw.resources import estimate, lutram_cells
from barista_hw.targets import get_target

CALIBRATION = Path(__file__).resolve().parents[3] / "data" / "device_resource_calibration.json"
UNITS = {
    "engine", "dma", "packed", "vector", "decoder", "sequencer", "fifos", "fetch", "link",
    "arbiter",
}  # fmt: skip


def test_units_and_memories_of_lenets_top() -> None:
    budget = get_target("ulx3s-85f").budget
    r = estimate_device(LENET_CONFIG, tensors=48, registers=2084, budget=budget)
    engine = estimate(LENET_CONFIG.accelerator, budget, link=False, board=False)
    assert set(r.lut_detail) == UNITS and r.luts == sum(r.lut_detail.values())
    # The PEs', a multiplier a DMA's addresses, the decoder's lr x decay, VecMem's.
    assert r.mults == engine.mults + 3 + 1 + 24 + 12  # one lane
    # Scratchpad C: 1024 words of 4 x 16 bits; col2im: 1024 slots of 30 bits; three
    # 512 x 32-bit rings, one copy a lane (a read port each), a DP16KD (512 x 36) each;
    # the decoder's 2,084 host registers of 32 bits: five 512 x 36; its 64-entry peak and
    # saturated memories (32 bits: more than distributed RAM's 1,024 bits): one each; the
    # im2col stage: 1024 elements of 16 bits a lane of B's 4, a DP16KD each.
    assert r.bram_detail == {
        **{f"engine.{k}": v for k, v in engine.bram_detail.items()},
        "scratch_c": 4,
        "col2im": 2,
        "im2col_stage": 4,
        "vec_rings": 3,
        "decoder": 7,
    }
    assert r.bram_blocks == sum(r.bram_detail.values())
    assert r.to_dict(budget)["model"] == MODEL and r.fits(budget)
    acc = LENET_CONFIG.accelerator.derive(cols=8)
    wide = DeviceConfig.for_accelerator(acc, target="ulx3s-85f", vector_lanes=1, **RTL_UNITS)
    # What the top's design takes 4 columns for.
    assert not estimate_device(wide, tensors=48, registers=2084).fits(budget)


def test_decoder_and_fifos_grow_with_their_sizes() -> None:
    small = estimate_device(LENET_CONFIG, tensors=48, registers=100)
    big = estimate_device(LENET_CONFIG, tensors=48, registers=2084)
    # Host registers are block RAM past 32 of them; entries 64 deep for 48 tensors: frac 8,
    # stored 11, width 6 and overflow 12 bits distributed RAM, peak and saturated block RAM.
    cells = DEC_FIXED[0] + 48 * DEC_TENSOR[0] + 4 * (2 + 3 + 2 + 3) * 8
    assert big.lut_detail["decoder"] == small.lut_detail["decoder"] == cells
    assert (small.bram_detail["decoder"], big.bram_detail["decoder"]) == (2 + 1, 2 + 5)
    assert big.ffs == small.ffs
    aspects = get_target("ulx3s-85f").budget.bram_aspects
    assert decoder_memories(24, 32, aspects) == (2 * (2 + 3 + 2 + 8 + 8 + 3 + 8) * 8, 0)
    deep = estimate_device(LENET_CONFIG, depth=32)  # past a 16-word distributed RAM
    queued = [unit_entry_layout(LENET_CONFIG, u).size for u in QUEUED if u != "vector"]
    assert deep.lut_detail["fifos"] == sum(2 * lutram_cells(4, bits) + 23 for bits in queued) + 4
    assert fifo_bits(LENET_CONFIG) == sum(queued) + unit_entry_layout(LENET_CONFIG, "vector").size


def test_estimate_against_its_synthesis() -> None:
    """The units measured within 0.5% (VecMem, the FIFOs, the sequencer and the decoder
    re-measured alone after the shrink, the others in the top); the accelerator within its
    model's 8% plus the GEMM unit's logic."""
    rec = json.loads(CALIBRATION.read_text())
    cfg = DeviceConfig.from_dict(rec["device"])
    r = estimate_device(cfg, **rec["design"]["decoder"])
    measured = rec["units"]
    for unit in ("dma", "packed", "vector", "decoder", "sequencer", "fifos", "link", "arbiter"):
        assert abs(r.lut_detail[unit] / measured[unit]["luts"] - 1) <= 0.005, unit
    assert abs(r.lut_detail["engine"] / measured["engine"]["luts"] - 1) <= 0.10
    assert r.bram_blocks == sum(u["bram"] for u in measured.values())
    assert r.mults == sum(u["mults"] for u in measured.values())
