"""boards.traffic: the link bytes counted from the schedule are those the host really sends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, EngineConfig, parse_engine_format
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.plan import GemmLayer, NetPlan, plan_net
from barista_hw.schedule import DEFAULT_OPTIONS, ScheduleOptions, chunk_limit, schedule_gemm
from barista_hw.targets import LINK_RESULT_DEPTH, get_target
from boards import protocol as P
from boards.traffic import Traffic, describe, gemm_traffic, iteration_traffic

LENET = Path(__file__).resolve().parents[2] / "examples" / "mnist" / "lenet_train_test.prototxt"

# Small buffers, so that GEMMs split into several chunks and frames.
CFG = AcceleratorConfig(
    EngineConfig(4, 4, FixedFormat.parse("fx8"), acc_depth=32), 256, 256, 50.0, "traffic"
)
SIM_DIVISOR = 4


def _enumerated(
    cfg: AcceleratorConfig,
    gemm: tuple[int, int, int, int],  # m, k, n, images
    *,
    result_depth: int = LINK_RESULT_DEPTH,
    max_words: int = P.MAX_WORDS,
    options: ScheduleOptions = DEFAULT_OPTIONS,
) -> Traffic:
    """The oracle: the frames of :meth:`boards.host.BoardLink.gemm`, chunk by chunk."""
    geo = P.LinkGeometry.from_config(cfg, result_depth)
    rows, cols = cfg.engine.rows, cfg.engine.cols
    total = Traffic()

    def frames(count: int, per_frame: int) -> list[int]:
        return [min(per_frame, count - i) for i in range(0, count, per_frame)]

    def exchange(request_payload: int, response_payload: int) -> Traffic:
        return Traffic(P.request_bytes(request_payload), P.response_bytes(response_payload), 1)

    for c in schedule_gemm(cfg, *gemm, options=options):
        for write, words, word_bytes in (
            (c.write_a, -(-c.m // rows) * c.kt, geo.a_word_bytes),
            (c.write_b, -(-c.n // cols) * c.kt, geo.b_word_bytes),
        ):
            for count in frames(words, max_words) if write else ():
                total = total + exchange(count * word_bytes, 0)
        total = total + exchange(geo.run_bytes, 0)
        if c.acc_last:
            for count in frames(c.m * -(-c.n // cols), geo.read_step(max_words)):
                total = total + exchange(0, count * geo.beat_bytes)
        total = total + exchange(0, P.STATUS_LEN)
    return total


def _enumerated_iteration(plan: NetPlan) -> Traffic:
    total = Traffic()
    for p in plan.passes:
        w = p.workload
        total = total + _enumerated(plan.config, (w.m, w.k, w.n, w.images)) * w.groups
    return total


FORMATS = ("fx4", "fx8", "fx12.6", "fx16", "fx18", "e4m3", "e5m2", "e2m1")


def _random_case(
    rng: np.random.Generator,
) -> tuple[AcceleratorConfig, tuple[int, int, int, int], dict]:
    """A small accelerator and GEMM: ragged edges, reductions shorter than a piece, split
    in whole images or within one, operands written in several frames."""
    rows, cols = (int(v) for v in rng.integers(1, 9, 2))
    fmt = parse_engine_format(str(rng.choice(FORMATS)))
    acc_depth = rows * int(rng.integers(1, 9))
    a_depth, b_depth = (int(v) for v in rng.integers(2, 200, 2))
    cfg = AcceleratorConfig(EngineConfig(rows, cols, fmt, acc_depth=acc_depth), a_depth, b_depth)
    most = chunk_limit(cfg)
    limit = None if rng.random() < 0.5 else int(rng.integers(1, most + 1))
    tiles = [None if rng.random() < 0.6 else int(rng.integers(1, 4)) for _ in range(2)]
    options = ScheduleOptions(
        limit, *tiles, stationary=str(rng.choice(["a", "b"])), reuse=bool(rng.random() < 0.5)
    )
    gemm = (
        int(rng.integers(1, 40)),
        int(rng.integers(1, 3 * most + 2)),
        int(rng.integers(1, 40)),
        int(rng.integers(1, 5)),
    )
    link = dict(
        result_depth=1 << int(rng.integers(1, 16)),
        max_words=int(rng.integers(1, 2 * P.MAX_WORDS if rng.random() < 0.5 else 40)),
        options=options,
    )
    return cfg, gemm, link


def test_closed_form_is_the_chunk_by_chunk_count_for_random_gemms() -> None:
    rng = np.random.default_rng(2026)
    for case in range(400):
        cfg, gemm, link = _random_case(rng)
        want = _enumerated(cfg, gemm, **link)
        assert gemm_traffic(cfg, *gemm, **link) == want, (case, cfg, gemm, link)


def test_closed_form_counts_the_default_schedule_of_one_chunk_and_of_many() -> None:
    # K shorter than one piece (one chunk a block), and K split into ragged pieces.
    for m, k, n, images in ((9, 3, 30, 1), (6, 20, 7, 3), (13, 300, 11, 2), (5, 129, 5, 1)):
        assert gemm_traffic(CFG, m, k, n, images) == _enumerated(CFG, (m, k, n, images))
    assert gemm_traffic(CFG, 1, 1, 1) == _enumerated(CFG, (1, 1, 1, 1))


@pytest.mark.parametrize(
    "cfg",
    [
        get_target("ulx3s-85f").preset,
        get_target("ulx3s-25f").preset,
        pytest.param(CFG, marks=pytest.mark.slow, id="small-buffers"),  # 184k chunks
    ],
    ids=lambda cfg: cfg.name,
)
def test_lenet_iteration_traffic_is_the_chunk_by_chunk_count(cfg: AcceleratorConfig) -> None:
    from barista.backends.plan import gemm_layers
    from caffe_bridge.net import Net

    net = Net(LENET, "TRAIN", data_shapes={"data": (64, 1, 28, 28), "label": (64,)})
    plan = plan_net(cfg, gemm_layers(net))
    assert iteration_traffic(plan) == _enumerated_iteration(plan)


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
