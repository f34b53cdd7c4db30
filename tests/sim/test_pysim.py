"""The Amaranth-simulator host of the accelerator under both host policies."""

from __future__ import annotations

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
CFG = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=16, b_depth=16)


@pytest.mark.parametrize("m, k, n, images", [(5, 6, 9, 1), (3, 5, 4, 3)])
def test_both_hosts_give_the_model_and_differ_only_in_overlap(
    m: int, k: int, n: int, images: int
) -> None:
    rng = np.random.default_rng(m)
    a = FMT.random_operands(rng, (m, k * images))
    b = FMT.random_operands(rng, (k * images, n))
    cmd = GemmCommand(shift=5, rounding=Rounding.STOCHASTIC, seed=4, images=images)
    want = model.gemm_on_accelerator(a, b, CFG, cmd)
    serial = run_accelerator(Accelerator(CFG), a, b, cmd, host="serial")
    overlap = run_accelerator(Accelerator(CFG), a, b, cmd, host="overlap")
    for run in (serial, overlap):
        np.testing.assert_array_equal(run.result, want)
        assert run.out_beats == m * -(-n // 3)
        assert (run.chunk_accept[1:] > run.chunk_done[:-1]).all()  # one command at a time
    n_chunks = len(schedule_gemm(CFG, m, k, n, images))
    assert serial.engine_cycles == overlap.engine_cycles
    # Serial: every write, one handshake cycle per command, then the command itself.
    assert serial.cycles == serial.write_beats + n_chunks + serial.engine_cycles
    assert overlap.write_beats == serial.write_beats
    assert overlap.cycles < serial.cycles
