"""The device top's serve mode (:class:`sim.device_verilator.DeviceSession`): one
Verilated device and its DRAM alive across iterations, driven as a training host drives
it, bit-exactly as the model.

The cocotb bench's two iterations (:mod:`sim.device_cases`), sent an iteration at a
time: the DRAM image (with the program's) and the exponent file, then per iteration its
register writes and the start of the records' fetch; the host waits for each HOST_IN's
turn (the words the model's host received before it), then sends its words; after each
SCALE the DRAM read back equals the model's, and at the end every exponent-entry word
read back through ``readback`` equals the model's
:class:`~barista_hw.device.scaling.ScaleTable`. Shares the executable of
``test_device_verilator.py`` (slow: its first build takes minutes).
"""

from __future__ import annotations

import numpy as np
import pytest

from barista_hw.device.rtl.decode import READ, RegisterMap, decoder_sizes, exponent_writes
from barista_hw.device.rtl.device import pack_write
from sim.device_cases import CONFIG, ITERATIONS, program, setup
from sim.device_run import iterations_case

pytestmark = pytest.mark.slow


def test_a_session_runs_iterations_interactively_as_the_model(dsim) -> None:  # noqa: ANN001
    from sim.device_verilator import DeviceSession

    prog = program()
    m, hosts, scalars = setup(prog, CONFIG, ITERATIONS)
    case = iterations_case("session", m, hosts, scalars, **decoder_sizes(program()))
    first = 4 * len(prog.tensors)
    chunk = RegisterMap.of(prog).size + 2  # the registers, the fetch's address and run
    assert len(case.writes) == first + ITERATIONS * chunk
    assert len(case.host_in) == 2 * ITERATIONS
    with DeviceSession(dsim, case.before.size, seed=3) as s:
        s.write(0, case.before)
        s.prog(case.writes[:first])
        host_out: list[int] = []
        for i in range(ITERATIONS):
            s.prog(case.writes[first + i * chunk : first + (i + 1) * chunk])
            for after, words in case.host_in[2 * i : 2 * i + 2]:
                host_out += s.run(host_out=after).host_out
                assert len(host_out) == after
                s.host_in(words)
            got = s.run(scales=i + 1)
            host_out += got.host_out
            assert len(got.scale_records) == 1 and len(host_out) == case.outs[i]
            dram = s.read(0, case.before.size)
            assert np.array_equal(dram, case.afters[i]), f"iteration {i}: DRAM differs"
        assert host_out == case.host_out
        want = exponent_writes(m.scales, prog)
        s.prog([pack_write(a | READ, 0) for a in want])
        back = s.run(readback=len(want)).readback
        assert back == list(want.values())
        counters = s.counters()
        assert counters["cycles"] > 0 and all(v > 0 for v in counters.values())


def test_a_session_times_out_and_refuses_bad_ranges(dsim) -> None:  # noqa: ANN001
    from sim.device_verilator import (
        DeviceSession,
        ProtocolError,
        SimulationTimeout,
        SimulatorCrash,
    )

    with DeviceSession(dsim, 64) as s:
        with pytest.raises(SimulationTimeout, match="did not reach its target in 100 cycles"):
            s.run(host_out=1, max_cycles=100)
        with pytest.raises(SimulatorCrash, match="closed"):
            s.read(0, 1)
    with DeviceSession(dsim, 64) as s, pytest.raises(ProtocolError, match="outside the 64-word"):
        s.read(60, 8)
