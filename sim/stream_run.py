"""Run instructions through a stream unit (``cmd``/``x`` in, ``y``/``stats`` out) on Icarus or
Verilator: the pytest side of :mod:`sim.stream_test`.

:func:`component_build` elaborates an Amaranth component once per content of the hardware
sources and compiles it (both cached, as the engines' builds of :mod:`sim.runner`);
:func:`run_instructions` streams packed instructions through one simulation of it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.lib import wiring

from barista_base.cache import write_text_atomic

from .runner import build_root, build_verilog, new_run_dir, run_test
from .tools import SimulationError

TEST_MODULE = "sim.stream_test"
CASES_ENV = "BARISTA_SIM_CASES"
RESULTS_ENV = "BARISTA_SIM_RESULTS"


@functools.cache
def _unit_sources_hash() -> str:
    """SHA-256 of the hardware packages' sources below the top level (``SOURCE_HASH`` covers
    ``barista_hw/*.py`` only), taken once, as ``SOURCE_HASH`` is."""
    import barista_hw

    h = hashlib.sha256()
    top = Path(barista_hw.__file__).resolve().parent
    for path in sorted(top.glob("*/**/*.py")):
        h.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class UnitBuild:
    """A compiled unit: its top module and simulator build."""

    top: str
    sim: str
    build_dir: Path


def component_verilog(make: Callable[[], wiring.Component], top: str, key: str) -> Path:
    """The Verilog of ``make()`` as module ``top`` (for simulation: see
    :func:`barista_hw.rtl.to_verilog`), cached per ``key`` (its parameters) and the
    content of the hardware sources."""
    from barista_hw.rtl import SOURCE_HASH, to_verilog

    root = build_root()
    text = f"{SOURCE_HASH}|{_unit_sources_hash()}|{top}|{key}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = root / "verilog" / f"{top}-{digest}.v"
    if not path.is_file():
        write_text_atomic(path, to_verilog(make(), top, undefined_collisions=True))
    return path


def component_build(
    make: Callable[[], wiring.Component], top: str, key: str, sim: str
) -> UnitBuild:
    """Build :func:`component_verilog` for ``sim`` (Verilator's C++ unoptimised: a unit
    test runs few cycles)."""
    path = component_verilog(make, top, key)
    return UnitBuild(top, sim, build_verilog(path, top, sim, quick_cxx=True))


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
    seconds = run_test(unit.sim, unit.top, unit.build_dir, TEST_MODULE, run_dir, env, label)
    if not results.is_file():
        raise SimulationError(f"{label}: no results; log {run_dir / 'sim.log'}")
    out = json.loads(results.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    got = [InstructionResult(r["y"], r["stats"], r["cycle"]) for r in out["instructions"]]
    return UnitRun(got, out["sim_cycles"], seconds)
