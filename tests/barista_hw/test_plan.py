"""Workloads, tiling and the cycle model of barista_hw.plan (cycles checked in pysim)."""

import random

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.accelerator import Accelerator
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, EngineConfig, Pass
from barista_hw.numfmt import FixedFormat
from barista_hw.plan import (
    GemmLayer,
    Workload,
    gemm_cycles,
    plan_net,
    plan_pass,
    simulate_chunks,
    tiling,
)
from barista_hw.schedule import schedule_gemm
from sim.pysim import run_accelerator

FMT = FixedFormat(8, 4, 24)


def test_lenet_like_workloads() -> None:
    conv = GemmLayer("conv2", "conv", batch=64, m=50, k=500, p=64)
    fwd, bwd, grad = conv.workloads()
    assert (fwd.kind, fwd.m, fwd.k, fwd.n, fwd.images) == (Pass.FORWARD, 50, 500, 64 * 64, 1)
    assert (bwd.kind, bwd.m, bwd.k, bwd.n) == (Pass.BACKWARD_DATA, 500, 50, 64 * 64)
    assert (grad.kind, grad.m, grad.k, grad.n, grad.images) == (Pass.WEIGHT_GRAD, 50, 64, 500, 64)
    assert fwd.macs == bwd.macs == grad.macs == 50 * 500 * 64 * 64
    assert fwd.bytes_moved(16) == {"a": 50 * 500 * 2, "b": 500 * 4096 * 2, "c": 50 * 4096 * 2}
    first = GemmLayer("conv1", "conv", batch=64, m=20, k=25, p=576, backward_data=False)
    assert [w.kind for w in first.workloads()] == [Pass.FORWARD, Pass.WEIGHT_GRAD]
    # InnerProduct: the batch is the forward N and the gradient's reduction (images = 1).
    fc = GemmLayer("ip1", "fc", batch=64, m=500, k=800)
    f, b, g = fc.workloads()
    assert (f.m, f.k, f.n) == (500, 800, 64)
    assert (b.m, b.k, b.n) == (800, 500, 64)
    assert (g.m, g.k, g.n, g.images) == (500, 64, 800, 1)


def test_grouped_conv_is_one_gemm_per_group() -> None:
    conv = GemmLayer("conv2", "conv", batch=8, m=128, k=48 * 25, p=27 * 27, group=2)
    fwd = conv.workloads()[0]
    assert (fwd.m, fwd.k, fwd.n, fwd.groups) == (128, 1200, 8 * 729, 2)
    assert fwd.macs == 2 * 128 * 1200 * 8 * 729
    cfg = AcceleratorConfig(EngineConfig(4, 4, FMT, acc_depth=32), a_depth=256, b_depth=256)
    p = plan_pass(cfg, fwd)
    single = gemm_cycles(cfg, fwd)
    assert p.cycles == 2 * single["cycles"] and p.chunks == 2 * single["chunks"]


def test_bad_layers_are_named() -> None:
    with pytest.raises(InputError, match="layer x"):
        GemmLayer("x", "pool", batch=1, m=1, k=1)
    with pytest.raises(InputError, match="layer y.*group"):
        GemmLayer("y", "fc", batch=1, m=1, k=1, group=2)


def _measure(cfg: AcceleratorConfig, a: np.ndarray, b: np.ndarray, images: int) -> int:
    """Cycles of the double-buffered host of the plan's docstring (the overlap host of
    barista_hw.host), on the RTL in pysim. Checks the result against the model as well."""
    cmd = GemmCommand(shift=3, rounding=0, seed=5, images=images)
    run = run_accelerator(Accelerator(cfg), a, b, cmd, host="overlap")
    np.testing.assert_array_equal(run.result, model.gemm_on_accelerator(a, b, cfg, cmd))
    return run.cycles


@pytest.mark.parametrize(
    "rows, cols, acc_depth, a_depth, b_depth, m, k, n, images",
    [
        (2, 3, 8, 64, 64, 5, 4, 7, 1),  # one chunk
        (2, 3, 8, 16, 16, 5, 6, 9, 1),  # several output blocks, A reused across them
        (2, 3, 8, 16, 16, 3, 5, 4, 3),  # gradient: whole images per chunk, accumulated
        (2, 3, 8, 12, 12, 2, 11, 3, 1),  # reduction split inside an image
        (2, 2, 4, 8, 8, 3, 5, 5, 3),  # per-image pieces, accumulating drains
        (3, 2, 6, 20, 12, 7, 3, 10, 1),  # unequal buffers, partial tiles
        (2, 2, 0, 64, 64, 4, 20, 4, 1),  # no accumulator memory
    ],
)
def test_cycle_model_matches_rtl(rows, cols, acc_depth, a_depth, b_depth, m, k, n, images) -> None:
    cfg = AcceleratorConfig(
        EngineConfig(rows, cols, FMT, acc_depth=acc_depth), a_depth=a_depth, b_depth=b_depth
    )
    rng = np.random.default_rng(m * 7 + n)
    a = FMT.random_operands(rng, (m, k * images))
    b = FMT.random_operands(rng, (k * images, n))
    measured = _measure(cfg, a, b, images)
    predicted = gemm_cycles(cfg, Workload("t", Pass.FORWARD, m, k, n, images))["cycles"]
    assert predicted == measured


def test_compressed_model_equals_chunk_by_chunk() -> None:
    """The run-compressed model agrees with the model stepped over schedule_gemm's chunks."""
    rnd = random.Random(7)
    checked = 0
    while checked < 150:
        R, C = rnd.randint(1, 5), rnd.randint(1, 5)
        cfg = AcceleratorConfig(
            EngineConfig(R, C, FMT, acc_depth=rnd.choice([0, R, 3 * R, 64])),
            a_depth=rnd.randint(2, 80),
            b_depth=rnd.randint(2, 80),
        )
        m, k, n = rnd.randint(1, 30), rnd.randint(1, 30), rnd.randint(1, 150)
        images = rnd.choice([1, 2, 5])
        try:
            chunks = schedule_gemm(cfg, m, k, n, images)
        except InputError:
            with pytest.raises(InputError):
                tiling(cfg, m, k, n, images)
            continue
        t = tiling(cfg, m, k, n, images)
        assert t.chunks == len(chunks)
        assert t.block_m == max(c.m for c in chunks) or t.blocks_m == 1
        fast = gemm_cycles(cfg, Workload("t", Pass.FORWARD, m, k, n, images))
        assert fast == simulate_chunks(cfg, chunks), (R, C, cfg.a_depth, m, k, n, images)
        checked += 1


def test_utilisation_and_errors() -> None:
    cfg = AcceleratorConfig(EngineConfig(4, 4, FMT, acc_depth=32), a_depth=512, b_depth=512)
    layers = [
        GemmLayer("conv1", "conv", 8, 20, 25, 576, backward_data=False),
        GemmLayer("ip1", "fc", 8, 500, 800),
    ]
    plan = plan_net(cfg, layers)
    for p in plan.passes:
        assert 0 < p.utilisation <= 1
        assert p.utilisation == pytest.approx(p.workload.macs / (16 * p.cycles))
        assert p.cycles >= p.engine_cycles / p.workload.groups / p.chunks  # sanity: positive
    assert plan.utilisation == pytest.approx(plan.macs / (16 * plan.cycles))
    assert plan.images_per_second == pytest.approx(8 / (plan.cycles / 50e6))
    small = AcceleratorConfig(EngineConfig(2, 2, FMT, dim_bits=8, acc_depth=0), 64, 64)
    with pytest.raises(
        InputError, match=r"layer ip1, forward pass: K = 800 exceeds.*dim_bits >= 10"
    ):
        plan_net(small, [GemmLayer("ip1", "fc", 8, 50, 800)])
    with pytest.raises(InputError, match=r"layer ip1, forward pass: a reduction of 200.*acc_depth"):
        plan_net(small, [GemmLayer("ip1", "fc", 8, 50, 200)])
