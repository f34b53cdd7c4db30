"""Accelerator in the Amaranth simulator: buffers, controller walk, chunked schedules."""

import numpy as np
import pytest

from barista_hw import model
from barista_hw.accelerator import Accelerator
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.schedule import schedule_gemm
from sim.pysim import run_accelerator

FMT = FixedFormat(8, 4, 24)


@pytest.mark.parametrize(
    "m, k, n, images, depth",
    [
        (5, 4, 7, 1, 64),  # one block, one chunk
        (5, 6, 9, 1, 16),  # several output blocks
        (3, 5, 4, 3, 16),  # gradient: whole images per chunk, accumulated
        (2, 11, 3, 1, 12),  # reduction split inside an image
    ],
)
def test_accelerator_matches_model(m: int, k: int, n: int, images: int, depth: int) -> None:
    cfg = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=depth, b_depth=depth)
    rng = np.random.default_rng(m * 100 + n)
    a = FMT.random_operands(rng, (m, k * images))
    b = FMT.random_operands(rng, (k * images, n))
    cmd = GemmCommand(shift=5, rounding=Rounding.STOCHASTIC, seed=17, images=images)
    got = run_accelerator(Accelerator(cfg), a, b, cmd, stall=0.2).result
    np.testing.assert_array_equal(got, model.gemm_on_accelerator(a, b, cfg, cmd))
    chunks = schedule_gemm(cfg, m, k, n, images)
    if depth < 64:
        assert len(chunks) > 1


def test_unsplit_schedule_equals_plain_engine_gemm() -> None:
    cfg = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=512, b_depth=512)
    rng = np.random.default_rng(0)
    a = FMT.random_operands(rng, (5, 9))
    b = FMT.random_operands(rng, (9, 7))
    cmd = {"shift": 4, "rounding": Rounding.STOCHASTIC, "seed": 3}
    np.testing.assert_array_equal(
        model.gemm_on_accelerator(a, b, cfg, GemmCommand(**cmd)),
        model.gemm(a, b, cfg.engine, **cmd),
    )


@pytest.mark.parametrize(("k", "images"), [(100, 1), (50, 3)])
def test_mx_reduction_chunks_start_at_blocks(k: int, images: int) -> None:
    """An MX accelerator whose buffers split the reduction: the chunks start at multiples of
    the block (the gradient's across images), and the result equals the model's."""
    from barista_hw.mxformat import MXGemmFormat
    from sim.cases import mx_words

    fmt = MXGemmFormat.parse("mxfp4k256_wm8_8")
    cfg = AcceleratorConfig(EngineConfig(2, 2, fmt, acc_depth=8), a_depth=80, b_depth=80)
    rng = np.random.default_rng(k)
    a = mx_words(rng, fmt, (3, k * images), "tiny", "a")
    b = mx_words(rng, fmt, (3, k * images), "tiny", "b").T
    cmd = GemmCommand(shift=0, rounding=Rounding.NEAREST_EVEN, images=images)
    chunks = schedule_gemm(cfg, 3, k, 3, images)
    assert len({c.kt0 for c in chunks}) > 2 and all(c.kt0 % 32 == 0 for c in chunks)
    got = run_accelerator(Accelerator(cfg), a, b, cmd, stall=0.2).result
    want = model.gemm_on_accelerator(a, b, cfg, cmd)
    np.testing.assert_array_equal(got, want)
    assert np.unique(want).size > 3
