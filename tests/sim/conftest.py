"""Fixtures shared by the tests of the simulators' drivers."""

from __future__ import annotations

import pytest

from sim.tools import SimulatorNotFound, simulator_version


@pytest.fixture(scope="session")
def dsim():  # noqa: ANN201 - a sim.device_verilator.DeviceSimulator
    """The test net's device top Verilated with its C++ host (built once, cached)."""
    try:
        simulator_version("verilator")
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))
    from barista_hw.device.rtl.decode import decoder_sizes
    from sim.device_cases import CONFIG, program
    from sim.device_verilator import simulator

    return simulator(CONFIG, **decoder_sizes(program()))
