"""The SDRAM controller against the cycle-level chip model, on Icarus and Verilator (``--sim``).

The controller runs the ULX3S part at 100 MHz with its datasheet timings, except two
shortened so a short simulation covers them: the power-up wait (1 us) and the refresh
interval (2 us, so a refresh falls every ~160 cycles amid the traffic). Random bursts
(reads and writes, partial bursts, rows hit and missed in every bank, random stalls on
every stream) and sequential streams run in one simulation per simulator and design;
the chip model checks every timing rule, and every word read is compared with the
last word written there. Controllers built with a rule too short show that the model
catches it (Icarus only: one cheap build each).
"""

from __future__ import annotations

import gc
import random
from dataclasses import replace
from pathlib import Path

import pytest

from barista_base.errors import InputError
from barista_hw.device.memory import ULX3S_SDRAM
from barista_hw.device.rtl.sdram import (
    SdramController,
    SdramPort,
    mode_register,
    refresh_period,
    split_address,
)
from sim.sdram_run import (
    Phase,
    TrafficRun,
    build_controller,
    random_phase,
    random_port_phase,
    run,
    stream_phase,
)

DRAM = replace(ULX3S_SDRAM, clock_mhz=100.0, t_init_us=1.0, t_refi_ns=2000.0)
PER_ROW = DRAM.row_bytes // DRAM.burst_bytes
#: (bursts, rows) of the measured streams, each from the start of a row not used before.
STREAMS = [(1, 1), (8, 1), (64, 1), (128, 2), (256, 4)]


def _phases(port: bool) -> list[Phase]:
    """Random traffic with and without stalls; for the controller, then the streams."""
    rng = random.Random(22 + port)
    make = random_port_phase if port else random_phase
    phases = [make(DRAM, rng, 150, stall=0.3), make(DRAM, rng, 150, stall=0.0)]
    if not port:
        for i, (bursts, _rows) in enumerate(STREAMS):
            for write in (True, False):
                start = (100 + 8 * (2 * i + (not write))) * DRAM.banks * PER_ROW
                phases.append(stream_phase(DRAM, start, bursts, write=write, seed=i))
    return phases


def _traffic(cache: dict, sim: str, port: bool) -> TrafficRun:
    key = ("sdram", sim, port)
    if key not in cache:
        try:
            cache[key] = run(build_controller(DRAM, sim, port=port), sim, DRAM, _phases(port))
        except Exception as exc:  # reported by every test that reads it, run once
            cache[key] = exc
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


def _check_clean(r: TrafficRun) -> None:
    assert r.violation is None, r.violation
    assert r.timeout is None, r.timeout
    problem = r.mismatch()
    assert problem is None, problem
    assert sum(map(len, r.expected)) > 300  # the reads did return words


@pytest.mark.cocotb
@pytest.mark.parametrize("port", [False, True], ids=["controller", "memory-port"])
def test_random_traffic_with_refresh(sim: str, port: bool, sim_run_cache: dict) -> None:
    """No timing violation, every word read back, refreshes amid the traffic."""
    r = _traffic(sim_run_cache, sim, port)
    _check_clean(r)
    c = r.counts
    # 2 refreshes of the power-up, then one every ~160 cycles whatever the traffic.
    assert c["AUTO REFRESH"] - 2 >= r.cycles // DRAM.timing_cycles().refi
    assert c["PRECHARGE"] > c["AUTO REFRESH"]  # rows were closed for misses, not only refresh
    assert c["READ"] + c["WRITE"] >= 300
    # Open rows: fewer activates than bursts.
    assert c["ACTIVE"] < c["READ"] + c["WRITE"]


@pytest.mark.cocotb
def test_streams_match_the_time_model(sim: str, sim_run_cache: dict) -> None:
    """Sequential write and read streams take the cycles of DramConfig.transfer_cycles.

    Each stream starts at a row not used before; a phase runs from its first command
    offered to its last word read or written at the pins (the read data's pipeline
    included). Streams of a row or more are within 5% of the model.
    """
    r = _traffic(sim_run_cache, sim, False)
    _check_clean(r)
    for i, (bursts, rows) in enumerate(STREAMS):
        for j, write in enumerate((True, False)):
            got = r.phase_cycles[2 + 2 * i + j]
            model = DRAM.transfer_cycles(bursts=bursts, rows_opened=rows, write=write)
            assert got >= bursts * DRAM.burst_length
            if bursts >= PER_ROW:
                assert abs(got - model) <= 0.05 * model, (bursts, write, got, model)


#: A controller with six rules broken: four timings too short, refresh too rare, and
#: the power-up wait cut short.
BROKEN = replace(
    DRAM,
    t_rcd_ns=5.0,
    t_rp_ns=5.0,
    t_wr_ns=0.0,
    t_wr_clocks=0,
    t_rfc_ns=20.0,
    t_refi_ns=6000.0,
    t_init_us=0.5,
)


@pytest.mark.cocotb
def test_the_chip_model_catches_rules_set_too_short() -> None:
    """A controller built with rules too short breaks each of them in the chip model.

    The model records every violation (one build, on Icarus, for all six rules); the
    late refresh declares the data lost.
    """
    rng = random.Random(5)
    phases = [random_phase(BROKEN, rng, 60)]
    build = build_controller(BROKEN, "icarus")
    r = run(build, "icarus", BROKEN, phases, chip=DRAM, record=True, max_cycles=4000)
    broken = {v["rule"].split(":")[0] for v in r.violations}
    assert {"tINIT", "tRCD", "tRP", "tWR", "tRFC", "tREFI"} <= broken, r.violations[:5]
    assert any("lost" in v["rule"] for v in r.violations if v["rule"].startswith("tREFI"))
    assert all(isinstance(v["cycle"], int) and v["command"] for v in r.violations)


def test_address_map_and_mode_register() -> None:
    """Burst address = row | bank | column: a stream crosses to the next bank at a row's end."""
    assert split_address(DRAM, 0) == (0, 0, 0)
    assert split_address(DRAM, 1) == (0, 0, 8)
    assert split_address(DRAM, PER_ROW - 1) == (0, 0, 504)
    assert split_address(DRAM, PER_ROW) == (1, 0, 0)
    assert split_address(DRAM, DRAM.banks * PER_ROW + 3) == (0, 1, 24)
    # Burst length 8 (code 3), sequential, CAS latency 2, programmed-length writes.
    assert mode_register(DRAM) == 0b000_0_00_010_0_011
    assert mode_register(replace(DRAM, cas_latency=3, clock_mhz=100.0, max_clock_mhz=143.0)) == (
        0b011_0011
    )


def test_refresh_period_leaves_a_margin() -> None:
    t = ULX3S_SDRAM.timing_cycles()
    period = refresh_period(t)
    assert 0 < period < t.refi
    with pytest.raises(InputError, match="refresh interval"):
        refresh_period(replace(DRAM, t_refi_ns=100.0).timing_cycles())


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_bad_configurations_are_input_errors() -> None:
    with pytest.raises(InputError, match="burst_length"):
        SdramController(replace(DRAM, burst_length=16, row_bytes=1024))
    with pytest.raises(InputError, match="cas_latency"):
        SdramController(replace(DRAM, cas_latency=1))
    with pytest.raises(InputError, match="addr_bits"):
        SdramPort(DRAM, addr_bits=16)
    gc.collect()  # the half-built components warn when collected: here, under the filter


def test_verilog_is_lint_clean(tmp_path: Path) -> None:
    """The port's Verilog (controller inside) at the board's timings passes the lint."""
    from barista_hw.rtl import to_verilog
    from sim.lint import lint

    path = tmp_path / "sdram_port.v"
    path.write_text(to_verilog(SdramPort(replace(ULX3S_SDRAM, clock_mhz=100.0)), "sdram_port"))
    assert lint(path, "sdram_port") == []
