"""Build an engine's Verilog for Icarus or Verilator through ``cocotb_tools.runner``, and run cases.

* :func:`engine_verilog` elaborates an engine once per content of
  ``barista_hw`` (cached: elaborating an 8 x 8 array takes seconds);
* :func:`build` compiles it for a simulator into one directory per design,
  ``<root>/<top>-<sim>-<hash>``, where the hash covers the Verilog text, the
  simulator and cocotb versions and the build options, so a second run does
  not rebuild. The root is ``sim`` in the user's cache (:mod:`barista_base.cache`). A
  build happens in a temporary directory renamed into place when complete, so
  two processes racing for the same design both end up with a whole build;
* :func:`run_cases` streams a list of :class:`GemmCase` back to back through
  one simulation of :mod:`sim.engine_test` and returns the results, and
  :func:`mismatch` compares one of them with the model's answer.

Verilator's warnings are waived by the named list of :mod:`sim.lint` instead of
``-Wno-fatal``, so a new kind of warning stops the build.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.lib import wiring

from barista_base.cache import (
    atomic_directory,
    cache_dir,
    entry_lock,
    sources_hash,
    write_text_atomic,
)
from barista_base.environ import environ
from barista_base.errors import log_tail
from barista_hw.command import GemmCommand
from barista_hw.config import EngineConfig, Pass
from barista_hw.engine import ENGINES, command_layout, cycle_bound
from barista_hw.intmath import join_raw
from barista_hw.numfmt import Rounding

from .lint import waiver_control_text
from .tb import layout_fields, result_matrix, twos_complement
from .tools import (
    X_POISON,
    SimulationError,
    check_simulator,
    simulator_env,
    simulator_version,
)

CASES_ENV = "BARISTA_SIM_CASES"  # read by sim.engine_test
RESULTS_ENV = "BARISTA_SIM_RESULTS"
TEST_MODULE = "sim.engine_test"
TIMESCALE = ("1ns", "1ps")  # Amaranth's Verilog has no `timescale; Icarus needs one
# Make variables of verilated.mk for Verilator's C++ (``build_verilog``'s ``cxx``; build and
# run times in docs/testing.md). QUICK: no optimisation, for engines and units run a few
# thousand cycles; LIGHT: -O1 on the model's evaluation code, for tops run tens of thousands.
QUICK_CXX = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
LIGHT_CXX = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0"


# -- tools -----------------------------------------------------------------------


def build_root() -> Path:
    """Cache root of the builds: ``sim`` in the user's cache (:func:`barista_base.cache_dir`)."""
    return cache_dir("sim")


# -- Verilog and builds ------------------------------------------------------------


def engine_verilog(
    kind: Pass, cfg: EngineConfig, root: Path | None = None, family: str | None = None
) -> tuple[Path, str]:
    """The engine's Verilog file and top module name, elaborated once per hardware source.

    Memories read ``x`` on a read-during-write (see :func:`barista_hw.rtl.to_verilog`).

    ``family``: as a board of that FPGA family gets it (see :func:`barista_hw.rtl.write_engine`).
    """
    from barista_hw.rtl import SOURCE_HASH, engine_module_name, engine_text

    root = build_root() if root is None else root
    key = hashlib.sha256(f"{SOURCE_HASH}|{kind.value}|{cfg.to_json()}|{family}".encode())
    top = engine_module_name(kind, cfg, family)
    path = root / "verilog" / f"{top}-{key.hexdigest()[:16]}.v"
    if not path.is_file():
        # Written atomically, so a racing process sees a whole file or none.
        write_text_atomic(path, engine_text(kind, cfg, family, undefined_collisions=True)[0])
    return path, top


@dataclass(frozen=True)
class Design:
    """A built engine: what it is and where its simulator build lives."""

    kind: Pass
    cfg: EngineConfig
    sim: str
    top: str
    build_dir: Path
    family: str | None = None

    @property
    def label(self) -> str:
        c = self.cfg
        form = f" ({self.family} DSP form)" if self.family else ""
        return f"{self.kind.value} {c.rows}x{c.cols} {c.fmt.name}{form} on {self.sim}"


def _build_options(sim: str) -> list[str]:
    # A collision's undefined word reads as all ones (Icarus keeps it x).
    return list(X_POISON) if sim == "verilator" else []


def build(
    kind: Pass, cfg: EngineConfig, sim: str, root: Path | None = None, family: str | None = None
) -> Design:
    """Compile the engine of ``kind`` and ``cfg`` for ``sim`` (cached; race-safe).

    ``family``: the engine as a board of that FPGA family gets it, simulated with our
    models of the family's primitives (:mod:`sim.vendor_models`).
    """
    from .vendor_models import models_verilog

    root = build_root() if root is None else root
    verilog, top = engine_verilog(kind, cfg, root, family)
    # Unoptimised C++: the build dominates an engine's run (the bench's Python, per cycle).
    build_dir = build_verilog(verilog, top, sim, root, models=models_verilog(family), cxx=QUICK_CXX)
    return Design(kind, cfg, sim, top, build_dir, family)


def build_verilog(
    verilog: Path, top: str, sim: str, root: Path, *, models: str = "", cxx: str = ""
) -> Path:
    """Compile the Verilog file ``verilog`` (top module ``top``, plus the Verilog text
    ``models``) for ``sim`` into ``root/<top>-<sim>-<hash>`` (cached; race-safe: a second
    builder waits for the first); its path.

    ``cxx``: make variables for Verilator's C++ (:data:`QUICK_CXX`, :data:`LIGHT_CXX`;
    empty: Verilator's default -Os)."""
    check_simulator(sim)
    control = waiver_control_text() if sim == "verilator" else ""
    key = hashlib.sha256()
    for part in (
        verilog.read_text(),
        models,
        sim,
        simulator_version(sim),
        importlib.metadata.version("cocotb"),
        control,
        json.dumps(_build_options(sim) + ([cxx] if cxx else [])),
        json.dumps(TIMESCALE),
    ):
        key.update(part.encode())
        key.update(b"\0")
    final = root / f"{top}-{sim}-{key.hexdigest()[:16]}"
    with entry_lock(final):
        if not (final / ".complete").is_file():
            _compile(final, verilog, top, sim, models, control, cxx)
    return final


def _compile(
    final: Path, verilog: Path, top: str, sim: str, models: str, control: str, cxx: str
) -> None:
    """Build ``verilog`` with cocotb's runner into a temporary directory renamed ``final``."""
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    with atomic_directory(final) as tmp:
        src = tmp / f"{top}.v"
        shutil.copyfile(verilog, src)
        sources: list[object] = [src]
        if models:
            (tmp / "vendor_models.v").write_text(models)
            sources.append(tmp / "vendor_models.v")
        if control:
            waivers = tmp / "waivers.vlt"
            waivers.write_text(control)
            sources = [VerilatorControlFile(waivers), *sources]
        flags = {"MAKEFLAGS": f"{os.environ.get('MAKEFLAGS', '')} {cxx}".strip()}
        with environ(flags if cxx else {}), simulator_env(sim):
            runner = get_runner(sim)
            try:
                runner.build(
                    sources=sources,
                    hdl_toplevel=top,
                    build_dir=tmp,
                    build_args=_build_options(sim),
                    timescale=TIMESCALE,
                    log_file=tmp / "build.log",
                )
            except (RuntimeError, SystemExit, subprocess.CalledProcessError) as exc:
                raise SimulationError(
                    f"{sim} build of {top} failed ({exc}); end of its log:\n"
                    f"{log_tail(tmp / 'build.log')}"
                ) from None
        (tmp / ".complete").write_text(json.dumps({"top": top, "sim": sim}))


# -- other units' harnesses -----------------------------------------------------------
@functools.cache
def _unit_sources_hash() -> str:
    """SHA-256 of the hardware packages' sources below the top level (``SOURCE_HASH`` covers
    ``barista_hw/*.py`` only), taken once, as ``SOURCE_HASH`` is."""
    import barista_hw

    return sources_hash(Path(barista_hw.__file__).resolve().parent, "*/**/*.py")


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
    make: Callable[[], wiring.Component], top: str, key: str, sim: str, *, cxx: str = QUICK_CXX
) -> UnitBuild:
    """Build :func:`component_verilog` for ``sim`` (Verilator's C++ as ``cxx`` says:
    unoptimised by default, a unit test runs few cycles)."""
    path = component_verilog(make, top, key)
    return UnitBuild(top, sim, build_verilog(path, top, sim, build_root(), cxx=cxx))


# -- cases ---------------------------------------------------------------------------


@dataclass
class GemmCase:
    """One GEMM with its operands as streamed (``a``: M x K*images, ``b``: K*images x N).

    ``expected`` is the model's answer (filled by the caller); ``stall`` the
    probability of a random gap before each operand/command beat and of ``o``
    not being ready in a cycle; ``pad_seed`` fills the lanes past the matrix
    edges with random values, which the engine must ignore. ``raw``: an accumulator
    read-out (``expected`` then holds the accumulators); ``pieces``: the reduction cut
    into that many commands that accumulate in the accumulator memory (whole images when
    ``images > 1``).
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    shift: int
    rounding: Rounding
    seed: int = 0
    images: int = 1
    stall: float = 0.0
    pad_seed: int = 0
    expected: np.ndarray | None = None
    raw: bool = False
    pieces: int = 1
    pass_id: int = 0  # the command's pass (a per-pass engine's formats; PASS_IDS)

    @property
    def m(self) -> int:
        return int(self.a.shape[0])

    @property
    def k(self) -> int:
        """Reduction length per image (the command's ``k``)."""
        return int(self.a.shape[1]) // self.images

    @property
    def n(self) -> int:
        return int(self.b.shape[1])

    @property
    def gemm_command(self) -> GemmCommand:
        return GemmCommand(
            self.shift, self.rounding, self.seed, self.images, pass_id=self.pass_id, raw=self.raw
        )

    def command(self, cfg: EngineConfig, batched: bool) -> dict[str, int]:
        """The field values of the case's one self-contained engine command (checked)."""
        return self.commands(cfg, batched)[0][0]

    def commands(self, cfg: EngineConfig, batched: bool) -> list[tuple[dict[str, int], slice]]:
        """Each command's field values (checked) and the reduction columns it streams."""
        per = self.images if self.images > 1 else self.k  # what the pieces cut
        bounds = np.linspace(0, per, self.pieces + 1).round().astype(int)
        out = []
        for i in range(self.pieces):
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            k, images = (self.k, hi - lo) if self.images > 1 else (hi - lo, 1)
            span = k * images
            start = lo * (self.k if self.images > 1 else 1)
            piece = dataclasses.replace(self.gemm_command, images=images).engine(
                self.m, k, self.n, acc_first=i == 0, acc_last=i == self.pieces - 1
            )
            fields = piece.fields(command_layout(cfg, batched), what=f"case {self.name}")
            out.append((fields, slice(start, start + span)))
        return out

    def describe(self) -> str:
        img = f" x {self.images} images" if self.images > 1 else ""
        more = (", raw read-out" if self.raw else "") + (
            f", {self.pieces} commands" if self.pieces > 1 else ""
        )
        return (
            f"{self.name} [M,K,N = {self.m},{self.k},{self.n}{img}, shift {self.shift}, "
            f"{Rounding(self.rounding).label}, seed {self.seed}, stall {self.stall}, "
            f"pad seed {self.pad_seed}{more}]"
        )


@dataclass
class CaseResult:
    """What the engine returned for one case."""

    case: GemmCase
    got: np.ndarray  # (M, N)
    beyond_n: np.ndarray  # output lanes past N (must be zero)
    last: np.ndarray  # ``last`` flag of each output beat
    cycles: int


@dataclass
class SimRun:
    """All results of one simulation, plus how long it took."""

    design: Design
    results: list[CaseResult]
    sim_cycles: int
    wall_seconds: float  # the clocked loop inside the simulator
    total_seconds: float  # including simulator start-up
    stats: dict = field(default_factory=dict)

    @property
    def cycles_per_second(self) -> float:
        return self.sim_cycles / self.wall_seconds if self.wall_seconds else 0.0


def _max_cycles(cfg: EngineConfig, cases: Sequence[GemmCase]) -> int:
    total = 0
    for c in cases:
        bound = c.pieces * cycle_bound(cfg, c.m, c.k, c.n, c.images, raw=c.raw)
        # Each stalled stream waits ~1/(1-p) per beat; stalls compound across a, b and o.
        total += int(bound * 4 / max(1e-3, 1.0 - c.stall) ** 3) + 64
    return total + 100


def write_cases(path: Path, design: Design, cases: Sequence[GemmCase], tb_seed: int = 0) -> None:
    """The ``.npz`` read by :mod:`sim.engine_test`."""
    engine = ENGINES[design.kind]
    cfg = design.cfg
    header = {
        "rows": cfg.rows,
        "cols": cfg.cols,
        "width": cfg.fmt.width,
        "out_width": cfg.fmt.output_shape.width,
        "out_signed": cfg.fmt.output_shape.signed,
        "cmd_fields": layout_fields(command_layout(cfg, engine.BATCHED)),
        "tb_seed": tb_seed,
        "max_cycles": _max_cycles(cfg, cases),
        "cases": [],  # one entry per command: a case of several pieces has several
    }
    arrays = {}
    width = cfg.fmt.width
    for c in cases:
        for fields, cols in c.commands(cfg, engine.BATCHED):
            i = len(header["cases"])
            header["cases"].append({"command": fields, "stall": c.stall, "pad_seed": c.pad_seed})
            # Lanes travel as two's complement (minifloat codes too).
            arrays[f"a{i}"] = twos_complement(np.asarray(c.a[:, cols], dtype=np.int64), width)
            arrays[f"b{i}"] = twos_complement(np.asarray(c.b[cols], dtype=np.int64), width)
    arrays["header"] = np.array(json.dumps(header))
    np.savez(path, **arrays)


def new_run_dir() -> Path:
    """A fresh directory for one simulation run, under the build root."""
    (build_root() / ".runs").mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=build_root() / ".runs"))


def run_test_module(
    build_dir: Path,
    top: str,
    sim: str,
    test_module: str,
    run_dir: Path,
    env: dict[str, str],
    label: str,
) -> float:
    """Run the cocotb ``test_module`` on the build in ``build_dir``; its wall seconds.

    ``env`` reaches the test module (none of its names may be set in this process);
    the results (``results.xml``) and the log (``sim.log``) go to ``run_dir``. A failed
    test or simulation raises :class:`SimulationError` with the end of the log.
    """
    import time

    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    xml, log = run_dir / "results.xml", run_dir / "sim.log"
    for k in env:
        if k in os.environ:  # the runner lets os.environ override extra_env
            raise SimulationError(f"unset {k}: it would override the input of this run")
    start = time.perf_counter()
    with simulator_env(sim):
        runner = get_runner(sim)
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=top,
                hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=run_dir,
                results_xml=str(xml),
                extra_env=env,
                log_file=log,
                timescale=TIMESCALE if sim == "icarus" else None,
            )
            tests, failed = get_results(xml)
        except (RuntimeError, SystemExit, subprocess.CalledProcessError) as exc:
            raise SimulationError(
                f"{label}: simulation failed ({exc}); log {log}:\n{log_tail(log)}"
            ) from None
    if failed or not tests:
        raise SimulationError(f"{label}: simulation failed; log {log}:\n{log_tail(log)}")
    return time.perf_counter() - start


def run_json_module(
    unit: UnitBuild, test_module: str, spec: dict, envs: tuple[str, str], label: str = ""
) -> dict:
    """Run the cocotb ``test_module`` on ``unit`` (anything with ``top``, ``sim`` and
    ``build_dir``) with ``spec`` written as JSON; the JSON it wrote back.

    ``envs`` names the variables that carry the cases file's and the results file's
    paths to the test module. The run directory goes once the results are read.
    """
    label = label or f"{unit.top} on {unit.sim}"
    run_dir = new_run_dir()
    cases_path, results_path = run_dir / "cases.json", run_dir / "results.json"
    cases_path.write_text(json.dumps(spec))
    env = {envs[0]: str(cases_path), envs[1]: str(results_path)}
    run_test_module(unit.build_dir, unit.top, unit.sim, test_module, run_dir, env, label)
    if not results_path.is_file():
        raise SimulationError(f"{label}: no results; log {run_dir / 'sim.log'}")
    out = json.loads(results_path.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def run_cases(
    design: Design, cases: Sequence[GemmCase], *, tb_seed: int = 0, keep: bool = False
) -> SimRun:
    """Run ``cases`` back to back in one simulation of ``design``; results in case order.

    The run directory (case file, results, log) is removed afterwards unless
    ``keep`` is set or the run failed (its path is then in the error).
    """
    if not cases:
        raise ValueError("no cases to run")
    run_dir = new_run_dir()
    cases_path, results_path = run_dir / "cases.npz", run_dir / "results.npz"
    write_cases(cases_path, design, cases, tb_seed)
    env = {CASES_ENV: str(cases_path), RESULTS_ENV: str(results_path)}
    total = run_test_module(
        design.build_dir, design.top, design.sim, TEST_MODULE, run_dir, env, design.label
    )
    if not results_path.is_file():
        log = run_dir / "sim.log"
        raise SimulationError(f"{design.label}: no results; log {log}:\n{log_tail(log)}")

    commands = sum(c.pieces for c in cases)
    with np.load(results_path) as f:
        info = json.loads(str(f["header"]))
        cycles = f["cycles"].tolist()
        outs = [(f[f"out{i}"], f[f"last{i}"]) for i in range(commands)]
    results = []
    first = 0
    for case in cases:  # a case's commands ran back to back; only its last one emits
        span = range(first, first + case.pieces)
        first += case.pieces
        beats = np.concatenate([outs[i][0].reshape(-1, design.cfg.cols) for i in span])
        last = np.concatenate([outs[i][1] for i in span])
        if case.raw:
            cfg = design.cfg
            beats = join_raw(beats, cfg.raw_beats, cfg.fmt.width, cfg.fmt.acc_width)
        got, beyond = result_matrix(beats, case.m, case.n, design.cfg.rows)
        results.append(CaseResult(case, got, beyond, last, sum(cycles[i] for i in span)))
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return SimRun(design, results, info["sim_cycles"], info["wall_seconds"], total, info["stats"])


def mismatch(design: Design, result: CaseResult) -> str | None:
    """None if the result is bit-exact with ``case.expected``, else a one-paragraph report."""
    case = result.case
    where = f"{design.label}: {case.describe()}"
    if case.expected is None:
        raise ValueError(f"{where}: no expected result to compare with")
    exp = np.asarray(case.expected)
    if result.got.shape != exp.shape:
        return f"{where}: result shape {result.got.shape}, model {exp.shape}"
    bad = np.argwhere(result.got != exp)
    if bad.size:
        i, j = (int(x) for x in bad[0])
        return (
            f"{where}: {len(bad)} of {exp.size} elements differ; first at (i, j) = ({i}, {j}): "
            f"rtl {int(result.got[i, j])}, model {int(exp[i, j])}"
        )
    if result.beyond_n.any():
        i, j = (int(x) for x in np.argwhere(result.beyond_n)[0])
        return f"{where}: output lane {case.n + j} (past N) of row {i} is {result.beyond_n[i, j]}"
    flags = result.last.tolist()
    if flags[-1:] != [1] or any(flags[:-1]):
        return f"{where}: 'last' flags {flags} (want it on the final beat only)"
    return None
