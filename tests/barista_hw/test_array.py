"""SystolicArray in the Amaranth simulator: skew, tile capture, double buffering, drain."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw.array import SystolicArray
from barista_hw.numfmt import FixedFormat


def _run_tiles(rows: int, cols: int, tiles: list[tuple[np.ndarray, np.ndarray]]) -> list:
    fmt = FixedFormat(8, 4, 24)
    arr = SystolicArray(rows, cols, fmt)
    results: list[np.ndarray] = []

    async def drain_all(ctx) -> None:  # noqa: ANN001
        # Back-to-back pulses; each pulse's row shows DRAIN_DELAY cycles after it.
        rows_out = []
        for t in range(rows + SystolicArray.DRAIN_DELAY):
            if t >= SystolicArray.DRAIN_DELAY:
                rows_out.append([ctx.get(arr.row0[c]) for c in range(cols)])
            ctx.set(arr.drain, t < rows)
            await ctx.tick()
        results.append(np.array(rows_out))

    async def tb(ctx) -> None:  # noqa: ANN001
        for a, b in tiles:
            k = a.shape[1]
            for i in range(k):
                ctx.set(arr.a, a[:, i].tolist())
                ctx.set(arr.b, b[i].tolist())
                ctx.set(arr.valid, 1)
                ctx.set(arr.last, i == k - 1)
                await ctx.tick()
                ctx.set(arr.valid, 0)  # a bubble between beats changes nothing
                ctx.set(arr.last, 0)
                await ctx.tick()
            while not ctx.get(arr.tile_done):
                await ctx.tick()
            await ctx.tick()
            await drain_all(ctx)

    sim = Simulator(arr)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return results


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (3, 2)])
def test_array_computes_tiles_back_to_back(rows: int, cols: int) -> None:
    rng = np.random.default_rng(rows * 10 + cols)
    tiles = [
        (rng.integers(-128, 128, (rows, k)), rng.integers(-128, 128, (k, cols))) for k in (5, 1, 3)
    ]
    for (a, b), got in zip(tiles, _run_tiles(rows, cols, tiles), strict=True):
        np.testing.assert_array_equal(got, a @ b)


def test_only_output_stationary_is_built() -> None:
    with pytest.raises(InputError, match="not built"):
        SystolicArray(2, 2, FixedFormat(), dataflow="ws")  # type: ignore[arg-type]
