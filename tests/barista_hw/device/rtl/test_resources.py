"""The device top's resource estimate: its units, the memories it counts as block RAM,
and how the decoder and the command FIFOs grow."""

from __future__ import annotations

from barista_hw.device.rtl.resources import (
    DEC_REGISTER_LUTS,
    FIFO_BIT_LUTS,
    MODEL,
    estimate_device,
    fifo_bits,
)
from barista_hw.resources import estimate
from barista_hw.targets import get_target
from sim.device_cases import LENET_CONFIG

UNITS = {"engine", "dma", "packed", "vector", "decoder", "sequencer", "fifos", "link", "arbiter"}


def test_units_and_memories_of_lenets_top() -> None:
    budget = get_target("ulx3s-85f").budget
    r = estimate_device(LENET_CONFIG, tensors=48, registers=2084, budget=budget)
    engine = estimate(LENET_CONFIG.accelerator, budget, link=False, board=False)
    assert set(r.lut_detail) == UNITS and r.luts == sum(r.lut_detail.values())
    assert r.mults == 64 == engine.mults and r.lut_detail["engine"] == engine.luts
    # Scratchpad C: 1024 words of 8 x 16 bits; col2im: 1024 sums; three 512 x 32-bit
    # rings, one copy a lane (a read port each), a DP16KD (512 x 36) each.
    assert r.bram_detail == {
        **{f"engine.{k}": v for k, v in engine.bram_detail.items()},
        "scratch_c": 8,
        "col2im": 4,
        "vec_rings": 3 * 4,
    }
    assert r.bram_blocks == sum(r.bram_detail.values())
    assert r.to_dict(budget)["model"] == MODEL


def test_decoder_and_fifos_grow_with_their_sizes() -> None:
    small = estimate_device(LENET_CONFIG, tensors=48, registers=100)
    big = estimate_device(LENET_CONFIG, tensors=48, registers=2084)
    grown = big.lut_detail["decoder"] - small.lut_detail["decoder"]
    assert grown == round(1984 * DEC_REGISTER_LUTS)
    assert big.ffs - small.ffs == 1984 * 32  # a host register is 32 flip-flops
    deep = estimate_device(LENET_CONFIG, depth=8)
    assert fifo_bits(LENET_CONFIG, 8) == fifo_bits(LENET_CONFIG, 4) * 9 // 5
    assert deep.lut_detail["fifos"] == round(fifo_bits(LENET_CONFIG, 8) * FIFO_BIT_LUTS)
