"""boards.traffic: the link bytes counted from the schedule are those the host really sends."""

from __future__ import annotations

import numpy as np
import pytest

from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.plan import GemmLayer, plan_net
from boards import protocol as P
from boards.traffic import Traffic, describe, gemm_traffic, iteration_traffic

# Small buffers, so that GEMMs split into several chunks and frames.
CFG = AcceleratorConfig(
    EngineConfig(4, 4, FixedFormat.parse("fx8"), acc_depth=32), 256, 256, 50.0, "traffic"
)
SIM_DIVISOR = 4


def test_traffic_adds_and_scales() -> None:
    t = Traffic(10, 4, 2) + Traffic(1, 1, 1) * 3
    assert (t.to_board, t.from_board, t.requests, t.bytes) == (13, 7, 5, 20)
    assert t.seconds(1000) == pytest.approx(20 * 10 / 1000)


def test_iteration_traffic_counts_every_pass_and_group() -> None:
    layers = [
        GemmLayer("conv", "conv", 4, 8, 54, 36, group=2),
        GemmLayer("ip", "fc", 4, 10, 72),
    ]
    plan = plan_net(CFG, layers)
    total = iteration_traffic(plan)
    parts = [
        gemm_traffic(CFG, p.workload.m, p.workload.k, p.workload.n, p.workload.images)
        * p.workload.groups
        for p in plan.passes
    ]
    assert total == sum(parts, Traffic())
    # At least the plan's own packed operand and result bytes cross the line.
    assert total.to_board > sum(p.transfer_bytes["write"] for p in plan.passes)
    assert total.from_board > sum(p.transfer_bytes["read"] for p in plan.passes)
    text = describe(plan, baud=1_000_000)
    assert "array alone (one buffer word per cycle)" in text and "1,000,000 baud" in text


@pytest.mark.slow
def test_counted_bytes_are_those_the_host_sends_to_the_simulated_board() -> None:
    from boards.host import BoardLink
    from boards.sim_board import SimulatedBoard, build_bridge
    from sim.tools import SimulatorNotFound

    try:
        build_bridge(CFG, SIM_DIVISOR)
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(1)
    with SimulatedBoard(CFG, divisor=SIM_DIVISOR) as board, BoardLink(board.url, CFG) as link:
        for m, k, n, images in ((9, 40, 30, 1), (6, 20, 7, 3)):
            a = rng.integers(-128, 128, (m, k * images))
            b = rng.integers(-128, 128, (k * images, n))
            before = (link.stats.bytes_out, link.stats.bytes_in, link.stats.requests)
            link.gemm(a, b, GemmCommand(shift=6, rounding=Rounding.FLOOR, images=images))
            sent = link.stats.bytes_out - before[0]
            got = link.stats.bytes_in - before[1]
            made = link.stats.requests - before[2]
            want = gemm_traffic(CFG, m, k, n, images)
            # Beyond the count, only the further STATUS polls of a busy accelerator.
            polls = made - want.requests
            assert polls >= 0 and link.stats.retries == 0
            assert sent == want.to_board + polls * P.request_bytes(0)
            assert got == want.from_board + polls * P.response_bytes(P.STATUS_LEN)
