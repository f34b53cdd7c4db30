"""Scratchpads: their geometry per space from the device configuration, double-buffer
halves as the compiler numbers them, and the block RAM's reads (pysim)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.geometry import Space
from barista_hw.device.memory import DeviceConfig
from barista_hw.device.rtl.scratchpad import Scratchpad, SpadGeometry, geometry, half_base

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=64)


def test_geometry_follows_the_device_config() -> None:
    config = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f", c_depth=32, v_depth=16)
    width = ACC.engine.fmt.width
    assert geometry(config, Space.A) == SpadGeometry(4, width, ACC.a_depth)
    assert geometry(config, Space.B) == SpadGeometry(3, width, ACC.b_depth)
    assert geometry(config, Space.C) == SpadGeometry(3, width, 32)
    v = config.scratchpads
    assert geometry(config, Space.V) == SpadGeometry(v.vector_lanes, v.v_lane_bits, 16)
    assert geometry(config, Space.C).word_bits == 3 * width
    assert geometry(config, Space.V).addr_bits == 4
    with pytest.raises(InputError, match="DRAM is not a scratchpad"):
        geometry(config, Space.DRAM)


def test_halves_start_where_the_compiler_puts_them() -> None:
    """The compiler's halves of A, B and C: ``depth // 2`` words each (gemm_lowering)."""
    g = SpadGeometry(3, 16, 64)
    assert (half_base(g, 0), half_base(g, 1)) == (0, 32)
    assert half_base(SpadGeometry(3, 16, 65), 1) == 32
    with pytest.raises(InputError, match="halves 0 and 1"):
        half_base(g, 2)
    with pytest.raises(InputError, match="must be positive"):
        SpadGeometry(0, 16, 64)


def test_reads_return_the_word_written_one_cycle_later() -> None:
    geom = SpadGeometry(3, 5, 20)
    dut = Scratchpad(geom)
    rng = np.random.default_rng(3)
    writes = [(a, int(rng.integers(0, 1 << geom.word_bits))) for a in range(geom.depth)]
    got: list[int] = []

    async def bench(ctx) -> None:  # noqa: ANN001
        for a, w in writes:
            ctx.set(dut.w_addr, a)
            ctx.set(dut.w_data, w)
            ctx.set(dut.w_en, 1)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        for a in reversed(range(geom.depth)):
            ctx.set(dut.r_addr, a)
            await ctx.tick()
            got.append(ctx.get(dut.r_data))  # Scratchpad.READ_LATENCY = 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert Scratchpad.READ_LATENCY == 1
    assert got == [w for _, w in reversed(writes)]
