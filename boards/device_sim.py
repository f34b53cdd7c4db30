"""The whole device board in simulation: the board's core Verilated, the host class on its
UART line, the SDRAM chip model on its pins (cocotb module :mod:`boards.device_tb`).

:func:`build` compiles :class:`~boards.device_board.DeviceBoardCore` of a device
configuration (cached); :func:`run` plays an :class:`~sim.device_run.IterationCase` (the
iterations' ``prog`` beats, DRAM image, HOST_IN words) through it and returns what the
host read back: the DRAM, the HOST_OUT words, the last STATUS, the link's counters.
Nothing is compared here: the tests compare with the model's case.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from barista_base.cache import write_text_atomic
from barista_hw.device.memory import DeviceConfig
from sim.device_run import IterationCase
from sim.runner import (
    LIGHT_CXX,
    UnitBuild,
    build_root,
    build_verilog,
    component_verilog,
    run_json_module,
)

from . import device_protocol as D
from .device_board import DEVICE_MHZ, board_core

TEST_MODULE = "boards.device_tb"
ENVS = ("BARISTA_BOARD_JOB", "BARISTA_BOARD_RESULTS")
#: Cycles per UART bit in simulation: the shortest the UART takes.
SIM_DIVISOR = 4


def _dram(config: DeviceConfig):  # noqa: ANN202 - a DramConfig
    return replace(config.dram, clock_mhz=DEVICE_MHZ)


def build(config: DeviceConfig, tensors: int, registers: int, geo: D.DeviceGeometry) -> UnitBuild:
    """The board core of ``config`` compiled for Verilator (cached)."""
    top = f"device_board_{tensors}_{registers}"
    key = f"{config!r} {tensors} {registers} {geo!r} {SIM_DIVISOR}"

    def make():  # noqa: ANN202
        return board_core(config, tensors, registers, geo, SIM_DIVISOR, _dram(config))

    path = component_verilog(make, top, key)
    # The UART's and the link's FSMs leave states out of some cases (Verilator's
    # CASEINCOMPLETE; the host-driven board's Verilator build runs with -Wno-fatal).
    waived = path.with_name(f"waived-{path.name}")
    if not waived.is_file():
        write_text_atomic(waived, "// verilator lint_off CASEINCOMPLETE\n" + path.read_text())
    built = build_verilog(waived, top, "verilator", build_root(), cxx=LIGHT_CXX)  # ~2M cycles
    return UnitBuild(top, "verilator", built)


def run(
    unit: UnitBuild,
    config: DeviceConfig,
    case: IterationCase,
    *,
    tensors: int,
    registers: int,
    geo: D.DeviceGeometry,
    iterations: int,
    link_words: int = 64,
    seed: int = 0,
) -> dict:
    """Play ``case`` through the simulated board (module docstring; ``link_words``: the
    DRAM words loaded and read back over the line, the rest preloaded into the chip
    model); the host's results and the whole DRAM from the chip model."""
    job = {
        "config": config.to_dict(),
        "dram": _dram(config).to_dict(),
        "geometry": asdict(geo),
        "tensors": tensors,
        "registers": registers,
        "divisor": SIM_DIVISOR,
        "link_words": link_words,
        "seed": seed,
        "case": {
            "writes": [str(r) for r in case.writes],
            "memory": [int(w) & 0xFFFF for w in case.before],
            "host_in": case.host_in,
            "host_out_words": len(case.host_out),
            "iterations": iterations,
        },
    }
    return run_json_module(unit, TEST_MODULE, job, ENVS, "the device board")
