"""VEC instructions from memory in simulation: the build of :class:`~barista_hw.device.rtl.
vecmem.VecMem` and runs of its cases in :mod:`sim.vecmem_test`.

* :func:`build` elaborates and compiles the unit for Icarus or Verilator (cached, as
  :func:`sim.runner.component_build` does);
* :func:`run_cases` runs :class:`VecCase` s back to back in one simulation, the memory
  side played by :class:`sim.port_model.PortMemory` on the DRAM's bus words.

Nothing is compared here: the tests compare with the device model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from barista_hw.device.memory import PortConfig
from barista_hw.device.rtl.port import ADDR_BITS, LEN_BITS
from barista_hw.device.rtl.vecmem import STAGE_DEPTH, VecMem, cycles_bound, pack_command

from .runner import UnitBuild, component_build, run_json_module

CASES_ENV = "BARISTA_VECMEM_CASES"  # read by sim.vecmem_test
RESULTS_ENV = "BARISTA_VECMEM_RESULTS"
TEST_MODULE = "sim.vecmem_test"
BUS_BITS = PortConfig.bits  # the memory port's word


def build(sim: str, lanes: int, depth: int = STAGE_DEPTH) -> UnitBuild:
    """The unit of ``lanes`` lanes and staging rings of ``depth`` elements on the ULX3S's
    bus, compiled for ``sim`` (cached)."""
    top = f"vecmem_{lanes}x{BUS_BITS}_{depth}"
    make = lambda: VecMem(lanes, bus_bits=BUS_BITS, depth=depth)  # noqa: E731
    return component_build(make, top, f"{lanes}-{depth}", sim)


@dataclass
class VecCase:
    """One instruction's command (:func:`~barista_hw.device.rtl.vecmem.command` fields) on
    the DRAM's unsigned bus words ``memory``; ``stall``: the probability of a gap on every
    stream of the memory port and of ``stats`` not ready; ``latency``: the read latency."""

    name: str
    command: dict
    memory: np.ndarray
    stall: float = 0.0
    latency: int = 3


@dataclass
class VecResult:
    """What a case left: the memory's words, the stats word, the cycles from the
    command's offer to the stats' transfer, the port's command count."""

    case: VecCase
    memory: np.ndarray
    stats: int
    cycles: int
    commands: int


def run_cases(
    unit: UnitBuild, lanes: int, cases: Sequence[VecCase], *, seed: int = 0
) -> list[VecResult]:
    """Run ``cases`` back to back in one simulation; results in case order."""
    header = {
        "addr_bits": ADDR_BITS,
        "len_bits": LEN_BITS,
        "seed": seed,
        "cases": [
            {
                "command": str(pack_command(c.command)),
                "memory": [int(w) for w in c.memory],
                "stall": c.stall,
                "latency": c.latency,
                "max_cycles": int(
                    cycles_bound(c.command, latency=c.latency, lanes=lanes) * (1 + 10 * c.stall)
                ),
            }
            for c in cases
        ],
    }
    out = run_json_module(unit, TEST_MODULE, header, (CASES_ENV, RESULTS_ENV))
    results = [
        VecResult(c, np.array(r["memory"], np.int64), r["stats"], r["cycles"], r["commands"])
        for c, r in zip(cases, out["cases"], strict=True)
    ]
    return results
