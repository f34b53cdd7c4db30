"""The device top in RTL runs one whole training iteration bit-exactly as the model, on
Icarus and Verilator (``--sim``).

A tiny net (a padded 3 x 3 convolution, 2 x 2 max pooling, ReLU, an inner product; batch
2, stochastic rounding) is compiled for a 4 x 3 fx16 engine with 3 vector lanes; every
DRAM tensor gets random integers. The model runs the iteration (forward, the logits to
the host, their gradient back, backward, SGD, SCALE) and pre-decodes each instruction
from its state before it runs; the RTL top gets the records with those commands, the
test bench answering the link with exactly what the model's host sent. Every DRAM bus
word afterwards and every word sent to the host are compared; a second run has random
stalls on every stream of the memory port and the host's streams.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from barista_hw.device.isa import Op
from barista_hw.device.memory import LinkConfig
from barista_hw.device.rtl.device import Device
from barista_hw.device.timing import schedule
from barista_hw.device.traffic import program_counts
from sim.device_cases import CONFIG, MODES, iteration, program
from sim.gemm_path_run import image_tensor


def run(cache: dict, sim: str, mode: str):  # noqa: ANN201 - a sim.device_run.DeviceResult
    from sim.device_run import build
    from sim.device_run import run as run_device

    key = ("device", sim, mode)
    if key not in cache:
        try:
            cache[key] = run_device(build(sim, CONFIG), iteration(MODES[mode]), seed=5)
        except Exception as exc:  # reported by every test, built once
            cache[key] = exc
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


def _where(words: np.ndarray, want: np.ndarray) -> str:
    """The tensor and elements of the first differing word."""
    prog = program()
    w = int(np.flatnonzero(words != want)[0])
    for t in prog.tensors:
        first = 8 * t["addr"] // 16
        last = (8 * t["addr"] + t["bits"] * math.prod(t["shape"]) - 1) // 16
        if first <= w <= last:
            got, exp = image_tensor(prog, words, t), image_tensor(prog, want, t)
            return f"{t['name']!r} elements {np.flatnonzero(got != exp)[:8]}"
    return f"word {w}, no tensor"


@pytest.mark.cocotb
@pytest.mark.parametrize("mode", MODES)
def test_iteration_leaves_dram_as_the_model(sim: str, mode: str, sim_run_cache: dict) -> None:
    got = run(sim_run_cache, sim, mode)
    case = got.case
    assert not np.array_equal(case.before, case.after)
    differ = np.flatnonzero(got.memory != case.after)
    assert not differ.size, (
        f"{differ.size} DRAM words differ, first in {_where(got.memory, case.after)}"
    )
    assert got.scales == 1


@pytest.mark.cocotb
@pytest.mark.parametrize("mode", MODES)
def test_iteration_sends_the_host_the_models_words(
    sim: str, mode: str, sim_run_cache: dict
) -> None:
    got = run(sim_run_cache, sim, mode)
    assert got.host_out == got.case.host_out and got.host_out


@pytest.mark.cocotb
def test_cycles_and_busy_counters(sim: str, sim_run_cache: dict) -> None:
    got = run(sim_run_cache, sim, "plain")
    c = got.counters
    prog = program()
    timing = schedule(prog, program_counts(prog, CONFIG), CONFIG.accelerator.clock_mhz)
    print(f"device top: {c['cycles']} cycles; busy " + ", ".join(f"{u} {c[u]}" for u in c))
    print(f"time model: {timing.cycles} cycles; busy {timing.busy}")
    fast = dataclasses.replace(CONFIG, link=LinkConfig(baud=300_000_000))  # the RTL has no UART
    timing = schedule(prog, program_counts(prog, fast), CONFIG.accelerator.clock_mhz)
    print(f"time model, 300 Mbaud link: {timing.cycles} cycles; busy {timing.busy}")
    assert all(0 < c[u] <= c["cycles"] for u in c if u != "cycles")


def test_every_instruction_of_the_net_is_pre_decoded() -> None:
    case = iteration(0.0)
    assert len(case.records) == len(program().instructions)
    ops = {i.op for i in program().instructions}
    assert {Op.LOAD, Op.STORE, Op.GEMM, Op.VEC, Op.HOST_IN, Op.HOST_OUT, Op.SCALE} <= ops


def test_device_verilog_is_lint_clean() -> None:
    from sim.lint import lint
    from sim.runner import component_verilog

    top = "device_lint"
    path = component_verilog(lambda: Device(CONFIG), top, f"{CONFIG!r}")
    assert lint(path, top) == []
