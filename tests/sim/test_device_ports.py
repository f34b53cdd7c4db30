"""The device top's ports for its C++ host, and the C++ memory model's timing."""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

import pytest

from barista_base.errors import InputError
from barista_hw.device.rtl.decode import write_layout
from barista_hw.device.rtl.decoder import REPORTS
from barista_hw.device.rtl.device import Device
from sim.device_cases import CONFIG
from sim.device_ports import SIM_TOP, DevicePorts, MemoryTiming
from sim.device_run import LostReports, counter_values


@pytest.fixture(scope="module")
def ports() -> DevicePorts:
    return DevicePorts.of(Device(CONFIG))


def test_widths_come_from_the_signature(ports: DevicePorts) -> None:
    assert ports.width("prog__payload") == write_layout().size
    assert ports.width("port__cmd__payload") == sum(w for _, _, w in ports.cmd_fields)
    header = ports.header()
    assert f"#define BD_PROG_W {write_layout().size}" in header
    assert "#define BD_BUS_W 16" in header
    assert "#define BD_CMD_LENGTH_OFF 24" in header
    assert "BD_PROG_PAYLOAD prog___05Fpayload" in header
    with pytest.raises(InputError, match="no port 'nope'"):
        ports.width("nope")


def test_counters_are_cycles_each_units_busy_count_and_the_lost_reports(
    ports: DevicePorts,
) -> None:
    assert ports.counters[0] == "cycles"
    assert {c.removeprefix("busy_") for c in ports.counters[1:]} == {
        "dma_in",
        "dma_out",
        "engine",
        "vector",
        "link",
        "lost",
    }
    assert f"#define BD_N_COUNTERS {len(ports.counters)}" in ports.header()


def test_a_lost_report_raises_naming_its_reporter(ports: DevicePorts) -> None:
    names = ports.counters
    values = [7 if n != "lost" else 0 for n in names]
    got = counter_values(names, values, "plain")
    assert got == {n.removeprefix("busy_"): 7 for n in names if n != "lost"}
    lost = [1 << (REPORTS - 2) if n == "lost" else 7 for n in names]  # the GEMM unit's
    with pytest.raises(LostReports, match="'plain'.*lost a statistics report of the GEMM unit"):
        counter_values(names, lost, "plain")


def test_wrapper_declares_every_port_and_ties_reset_low(ports: DevicePorts) -> None:
    text = ports.wrapper("dev")
    assert text.startswith(f"module {SIM_TOP}(clk, ")
    for name, is_in, width in ports.ports:
        kind = "input" if is_in else "output"
        bits = rf"\[{width - 1}:0\] " if width > 1 else ""
        assert re.search(rf"  {kind} {bits}{name};", text), name
    assert ".rst(1'b0)" in text


def test_memory_timing_of_the_ulx3s_sdram() -> None:
    # 100 MHz SDRAM, 16 bits, against a 50 MHz device on a 16-bit port: a word a cycle;
    # tRCD 15 ns (2 SDRAM clocks) + CAS 2 = 4 SDRAM clocks = 2 device cycles.
    t = MemoryTiming.for_config(CONFIG, 16)
    assert (t.latency, t.rate, t.burst, t.stall) == (2, Fraction(1), 8, 0.0)
    slow = dataclasses.replace(CONFIG, dram=dataclasses.replace(CONFIG.dram, clock_mhz=20.0))
    t = MemoryTiming.for_config(slow, 16, stall=0.1)
    # At 20 MHz: tRCD 1 clock + CAS 2 = 3 SDRAM clocks = 7.5 device cycles, rounded up;
    # 20 MHz x 16 bits over 50 MHz x 16 bits = 2/5 of a word a cycle.
    assert (t.latency, t.rate, t.stall) == (8, Fraction(2, 5), 0.1)


@pytest.mark.parametrize(
    "kwargs, what",
    [
        ({"latency": 0}, "latency"),
        ({"burst": 0}, "burst"),
        ({"rate": Fraction(3, 2)}, "rate"),
        ({"rate": Fraction(0)}, "rate"),
        ({"stall": 1.0}, "stall"),
    ],
)
def test_bad_memory_timing_is_an_input_error(kwargs: dict, what: str) -> None:
    with pytest.raises(InputError, match=what):
        MemoryTiming(**kwargs)
