"""barista_hw.device.traffic: a DMA instruction's DRAM bytes are its port's words."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.compiler import compile_net
from barista_hw.device.geometry import ConvGeometry
from barista_hw.device.isa import Op, View
from barista_hw.device.layers import Conv
from barista_hw.device.memory import DeviceConfig
from barista_hw.device.traffic import (
    config_stage_plan,
    instruction_counts,
    program_counts,
    tile_index,
)
from barista_hw.numfmt import Rounding

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=64, acc_depth=16)


def _program():
    """A 3 x 3 convolution over 2 x 8 x 8 images, batch 2, on a device with B's stage."""
    geom = ConvGeometry(2, 8, 8, (3, 3), (1, 1), (1, 1))
    config = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f")
    compiled = compile_net(
        [Conv("conv", "data", "c", 4, geom=geom)],
        config,
        batch=2,
        inputs={"data": (2, 8, 8)},
        output="c",
        rounding=Rounding.NEAREST_EVEN,
    )
    return compiled.program, config


def test_a_dma_instructions_dram_bytes_are_its_port_words() -> None:
    """One count: every LOAD's and STORE's DRAM bytes are the words its port commands
    move, read and written (16-bit words)."""
    program, config = _program()
    counts = program_counts(program, config)
    dma = [
        c
        for inst, c in zip(program.instructions, counts.per_instruction, strict=True)
        if inst.op in (Op.LOAD, Op.STORE)
    ]
    assert dma and all(c.dram_bytes == 2 * c.port_words for c in dma)
    assert any(c.dram_write_bytes for c in dma)


def test_a_staged_load_reads_its_footprint_once_an_unstaged_one_every_tap() -> None:
    """fx16 on a 16-bit port: a staged im2col LOAD's DRAM bytes are its footprint's
    elements (each read once: the run from the first to the last element it reads, so a
    small tile may read more than its taps); the same LOAD without the stage buffer reads
    an element for every tile entry that is not padding (once per kernel tap that reaches
    it), more than the distinct elements it reads."""
    program, config = _program()
    plain = replace(config, scratchpads=replace(config.scratchpads, im2col_stage=0))
    loads = [i for i in program.instructions if i.op is Op.LOAD and i.sub == View.IM2COL]
    taps = distinct = footprints = staged_taps = 0
    for inst in loads:
        index = tile_index(inst, program)
        n = int(np.count_nonzero(index >= 0))
        assert instruction_counts(inst, program, plain).dram_read_bytes == 2 * n
        taps, distinct = taps + n, distinct + np.unique(index[index >= 0]).size
        plan = config_stage_plan(inst, program, config, index)
        if plan is not None:
            assert instruction_counts(inst, program, config).dram_read_bytes == 2 * plan.elements
            footprints, staged_taps = footprints + plan.elements, staged_taps + n
    assert distinct < taps  # the distinct elements are not what the port reads
    assert 0 < footprints < staged_taps
