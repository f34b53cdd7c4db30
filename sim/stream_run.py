"""Run instructions through a stream unit (``cmd``/``x`` in, ``y``/``stats`` out) on Icarus or
Verilator: the pytest side of :mod:`sim.stream_test`.

:func:`run_instructions` streams packed instructions through one simulation of it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

from .runner import UnitBuild, new_run_dir, run_test_module
from .tools import SimulationError

TEST_MODULE = "sim.stream_test"
CASES_ENV = "BARISTA_SIM_CASES"
RESULTS_ENV = "BARISTA_SIM_RESULTS"


@dataclass(frozen=True)
class Instruction:
    """One instruction as streamed: the command word, the element words, the stall
    probability (gaps before its beats; ``y`` and ``stats`` not ready)."""

    cmd: int
    x: Sequence[int]
    stall: float = 0.0


@dataclass
class InstructionResult:
    y: list[int]
    stats: int
    cycle: int  # the cycle the stats were read (from the end of reset)


@dataclass
class UnitRun:
    results: list[InstructionResult]
    sim_cycles: int
    seconds: float
    extra: dict = field(default_factory=dict)


def run_instructions(
    unit: UnitBuild, instructions: Sequence[Instruction], *, tb_seed: int = 0
) -> UnitRun:
    """Stream ``instructions`` back to back through one simulation; results in order."""
    if not instructions:
        raise ValueError("no instructions to run")
    run_dir = new_run_dir()
    cases, results = run_dir / "cases.json", run_dir / "results.json"
    beats = sum(len(i.x) + 1 for i in instructions)
    worst = max(i.stall for i in instructions)
    spec = {
        "tb_seed": tb_seed,
        # each stalled stream waits ~1/(1-p) a beat; plus the pipeline and stats per instruction
        "max_cycles": int(beats * 4 / max(1e-3, 1.0 - worst) ** 2) + 64 * len(instructions),
        "instructions": [{"cmd": i.cmd, "x": list(i.x), "stall": i.stall} for i in instructions],
    }
    cases.write_text(json.dumps(spec))
    env = {CASES_ENV: str(cases), RESULTS_ENV: str(results)}
    label = f"{unit.top} on {unit.sim}"
    seconds = run_test_module(unit.build_dir, unit.top, unit.sim, TEST_MODULE, run_dir, env, label)
    if not results.is_file():
        raise SimulationError(f"{label}: no results; log {run_dir / 'sim.log'}")
    out = json.loads(results.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    got = [InstructionResult(r["y"], r["stats"], r["cycle"]) for r in out["instructions"]]
    return UnitRun(got, out["sim_cycles"], seconds)
