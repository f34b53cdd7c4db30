"""The device top Verilated with its C++ host and DRAM model runs the cocotb bench's
two iterations (:mod:`sim.device_cases`: the decoder's register writes, then each
iteration's register writes and the start of its records' fetch from DRAM, SCALE between)
bit-exactly as the model.

Every DRAM bus word at each SCALE and at the end, the words sent to the host by each
SCALE and in all are compared with the model's, without stalls, with random stalls on the
host's streams and on every stream of the memory port, and behind a slow memory (long
latency, 2/5 of a word a cycle). The first build takes about 3 minutes (cached after:
each run is under a second), so the
module is ``slow``; ``test_device_ports.py`` is its quick form.
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction

import numpy as np
import pytest

from barista_hw.device.rtl.decode import decoder_sizes
from sim.device_cases import CONFIG, ITERATIONS, MODES, bench_iterations, iteration, program
from sim.device_ports import MemoryTiming
from sim.device_run import IterationCase

pytestmark = pytest.mark.slow
FULL = os.environ.get("BARISTA_FULL") == "1"
# The cocotb comparison reads tests/barista_hw/device/rtl/test_device.py's run of the top on
# the same worker (conftest.py).
SIM_RUN_GROUP = "device-top"

SLOW_MEMORY = MemoryTiming(latency=9, rate=Fraction(2, 5), burst=4)


@pytest.fixture(scope="module")
def cases() -> dict[str, IterationCase]:
    return {mode: iteration(stall) for mode, stall in MODES.items()}


def _check(got, case: IterationCase, iterations: int = ITERATIONS) -> None:  # noqa: ANN001
    assert got.scales == iterations == len(got.scale_records) == len(got.snapshots)
    previous = case.before
    for i, (words, want) in enumerate(zip(got.snapshots, case.afters, strict=True)):
        assert not np.array_equal(previous, want)
        differ = np.flatnonzero(words != want)
        assert not differ.size, f"iteration {i}: {differ.size} DRAM words differ, {differ[:8]}"
        previous = want
    assert np.array_equal(got.memory, case.after)
    assert got.host_out == case.host_out and got.host_out
    assert got.outs == case.outs and len(set(got.outs)) == iterations
    at = [0, *got.scale_cycles]
    assert at == sorted(set(at)) and at[-1] <= got.counters["cycles"] <= got.edges


@pytest.mark.parametrize("mode", MODES)
def test_iteration_is_the_model_bit_for_bit(dsim, cases: dict, mode: str) -> None:  # noqa: ANN001
    from sim.device_verilator import run

    got = run(dsim, cases[mode], seed=5)
    _check(got, cases[mode])
    assert (got.memory_stalls > 0) == (MODES[mode] > 0)
    assert got.read_words and got.write_words and got.memory_commands


def test_a_slow_memory_changes_the_time_not_the_bits(dsim, cases: dict) -> None:  # noqa: ANN001
    from sim.device_verilator import run

    case = cases["plain"]
    fast = run(dsim, case)
    slow = run(dsim, case, timing=SLOW_MEMORY)
    _check(slow, case)
    assert slow.edges > fast.edges
    # The port moves at most rate words a cycle (beyond the first burst).
    moved = slow.read_words + slow.write_words
    assert moved <= SLOW_MEMORY.rate * slow.edges + SLOW_MEMORY.burst


def test_a_hang_is_a_timeout_naming_the_case(dsim, cases: dict) -> None:  # noqa: ANN001
    from sim.device_verilator import SimulationTimeout, run

    with pytest.raises(SimulationTimeout, match="'plain'.*did not finish in 200 cycles"):
        run(dsim, cases["plain"], max_cycles=200)


def test_a_command_outside_dram_is_a_protocol_error(dsim, cases: dict) -> None:  # noqa: ANN001
    from sim.device_verilator import ProtocolError, run

    case = dataclasses.replace(cases["plain"], before=cases["plain"].before[:16])
    with pytest.raises(ProtocolError, match="outside the 16-word DRAM"):
        run(dsim, case)


@pytest.mark.cocotb
def test_the_cocotb_bench_takes_the_same_cycles(sim: str, sim_run_cache: dict, dsim) -> None:  # noqa: ANN001
    """PortMemory and the C++ memory at a word a cycle, no stalls: cycle for cycle alike."""
    from sim.device_run import build
    from sim.device_run import run as run_cocotb
    from sim.device_verilator import run

    case = iteration(MODES["plain"], bench_iterations(sim, FULL))
    key = ("device", sim, "plain")  # test_device.py's run, when both modules run
    if key not in sim_run_cache:
        unit = build(sim, CONFIG, **decoder_sizes(program()))
        sim_run_cache[key] = run_cocotb(unit, case, seed=5)
    cocotb = sim_run_cache[key]
    if isinstance(cocotb, Exception):
        raise cocotb
    got = run(dsim, case, seed=5)
    assert got.counters == cocotb.counters
    assert got.scale_cycles == cocotb.scale_cycles
    assert got.memory_commands == cocotb.memory_commands


def test_beats_of_another_width_are_refused(dsim, cases: dict, tmp_path) -> None:  # noqa: ANN001
    import subprocess

    from sim.device_verilator import SimulatorCrash, read_output, write_input

    case = cases["plain"]
    inp, out = tmp_path / "in.bin", tmp_path / "out.bin"
    write_input(inp, dsim, case, MemoryTiming(), seed=0, max_cycles=100)
    raw = bytearray(inp.read_bytes())
    raw[8:16] = (dsim.beat_words + 1).to_bytes(8, "little")  # the header's words per beat
    inp.write_bytes(bytes(raw))
    subprocess.run([str(dsim.path), str(inp), str(out)], check=True)
    with pytest.raises(SimulatorCrash, match="this build's prog payload takes"):
        read_output(out, dsim, case)


def test_a_trained_build_trains_on_the_case_it_is_given(dsim, cases: dict, tmp_path) -> None:  # noqa: ANN001
    """``simulator(train=...)``'s recipe runs the executable on the case's input file:
    the run it profiles is the case's, every bit the model's."""
    import subprocess

    from sim.device_verilator import device_build, read_output

    case = cases["plain"]
    recipe, _ = device_build(CONFIG, train=(case, MemoryTiming()), **decoder_sizes(program()))
    plain, _ = device_build(CONFIG, **decoder_sizes(program()))
    assert recipe.key() != plain.key() and not plain.train
    for name, data in recipe.train_files:
        (tmp_path / name).write_bytes(data)
    subprocess.run([str(dsim.path), *recipe.train], cwd=tmp_path, check=True)
    _check(read_output(tmp_path / recipe.train[1], dsim, case), case)
