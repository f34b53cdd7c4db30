"""The DMA engine's simulation: its test harness, its build, and runs of DMA cases.

* :class:`DmaHarness` is the simulated top: a :class:`~barista_hw.device.rtl.dma.DmaEngine`
  and the :class:`~barista_hw.device.rtl.scratchpad.Scratchpad` it fills, with a second
  scratchpad port (``x_*``) through which the test bench preloads words (for a STORE)
  and reads them back (after a LOAD) while the DMA is idle;
* :func:`build` elaborates it (memories read ``x`` on a collision, as
  :func:`sim.runner.engine_verilog`) and compiles it for Icarus or Verilator, cached
  like the engines' builds;
* :func:`run_cases` runs :class:`DmaCase` s back to back in one simulation of
  :mod:`sim.dma_test`, the memory side played by :class:`sim.port_model.PortMemory`.

Nothing is compared here: the tests compare with the device model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.cache import atomic_directory, write_text_atomic
from barista_base.errors import log_tail
from barista_hw.device.rtl.dma import DmaEngine, command_layout, pack_command
from barista_hw.device.rtl.port import ADDR_BITS, LEN_BITS, port_signature
from barista_hw.device.rtl.scratchpad import Scratchpad, SpadGeometry

from .lint import waiver_control_text
from .runner import TIMESCALE, build_root
from .tools import X_POISON, SimulationError, check_simulator, simulator_env, simulator_version

CASES_ENV = "BARISTA_DMA_CASES"  # read by sim.dma_test
RESULTS_ENV = "BARISTA_DMA_RESULTS"
TEST_MODULE = "sim.dma_test"


class DmaHarness(wiring.Component):
    """A DMA engine with its scratchpad, and a test port into the scratchpad."""

    def __init__(self, geom: SpadGeometry, *, max_burst: int = 16) -> None:
        self.geom, self.max_burst = geom, max_burst
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(geom.addr_bits))),
                "port": Out(port_signature(geom.bits, ADDR_BITS, LEN_BITS)),
                "busy": Out(1),
                "x_w_addr": In(geom.addr_bits),
                "x_w_data": In(geom.word_bits),
                "x_w_en": In(1),
                "x_r_addr": In(geom.addr_bits),
                "x_r_data": Out(geom.word_bits),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        dma = DmaEngine(self.geom, max_burst=self.max_burst)
        m.submodules.dma = dma
        m.submodules.spad = spad = Scratchpad(self.geom)
        wiring.connect(m, wiring.flipped(self.cmd), dma.cmd)
        wiring.connect(m, dma.port, wiring.flipped(self.port))
        m.d.comb += [
            self.busy.eq(dma.busy),
            dma.s_r_data.eq(spad.r_data),
            self.x_r_data.eq(spad.r_data),
            spad.r_addr.eq(self.x_r_addr),
            spad.w_addr.eq(self.x_w_addr),
            spad.w_data.eq(self.x_w_data),
            spad.w_en.eq(self.x_w_en),
        ]
        with m.If(dma.busy):
            m.d.comb += spad.r_addr.eq(dma.s_r_addr)
        with m.If(dma.s_w_en):
            m.d.comb += [
                spad.w_addr.eq(dma.s_w_addr),
                spad.w_data.eq(dma.s_w_data),
                spad.w_en.eq(1),
            ]
        return m


@dataclass(frozen=True)
class DmaDesign:
    """A built harness: its geometry, simulator and build directory."""

    geom: SpadGeometry
    sim: str
    top: str
    build_dir: Path
    max_burst: int


def _top(geom: SpadGeometry, max_burst: int) -> str:
    return f"dma_{geom.lanes}x{geom.bits}_d{geom.depth}_b{max_burst}"


def build(sim: str, geom: SpadGeometry, *, max_burst: int = 16) -> DmaDesign:
    """Elaborate and compile the harness of ``geom`` for ``sim`` (cached; race-safe)."""
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    from barista_hw.rtl import to_verilog

    check_simulator(sim)
    root = build_root()
    top = _top(geom, max_burst)
    verilog = to_verilog(DmaHarness(geom, max_burst=max_burst), top, undefined_collisions=True)
    control = waiver_control_text() if sim == "verilator" else ""
    options = list(X_POISON) if sim == "verilator" else []
    key = hashlib.sha256()
    for part in (
        verilog,
        sim,
        simulator_version(sim),
        importlib.metadata.version("cocotb"),
        control,
        json.dumps(options),
        json.dumps(TIMESCALE),
    ):
        key.update(part.encode() + b"\0")
    final = root / f"{top}-{sim}-{key.hexdigest()[:16]}"
    design = DmaDesign(geom, sim, top, final, max_burst)
    if (final / ".complete").is_file():
        return design
    with atomic_directory(final) as tmp:
        src = tmp / f"{top}.v"
        write_text_atomic(src, verilog)
        sources: list[object] = [src]
        if control:
            (tmp / "waivers.vlt").write_text(control)
            sources = [VerilatorControlFile(tmp / "waivers.vlt"), *sources]
        with simulator_env(sim):
            try:
                get_runner(sim).build(
                    sources=sources,
                    hdl_toplevel=top,
                    build_dir=tmp,
                    build_args=options,
                    timescale=TIMESCALE,
                    log_file=tmp / "build.log",
                )
            except (RuntimeError, SystemExit, subprocess.CalledProcessError) as exc:
                raise SimulationError(
                    f"{sim} build of {top} failed ({exc}); end of its log:\n"
                    f"{log_tail(tmp / 'build.log')}"
                ) from None
        (tmp / ".complete").write_text(json.dumps({"top": top, "sim": sim}))
    return design


@dataclass
class DmaCase:
    """One DMA command run on a memory of bus words (``memory``, the model's slots as
    signed integers) with scratchpad words ``preload`` (a STORE's tile) at ``spad``.

    ``words``: the scratchpad words the command fills (read back after a LOAD);
    ``stall``: the probability of a random gap on every stream, both sides of the
    port; ``latency``: the memory's read latency in cycles.
    """

    name: str
    command: dict
    memory: np.ndarray
    spad: int
    words: int
    preload: list[int] = field(default_factory=list)
    stall: float = 0.0
    latency: int = 2


@dataclass
class DmaResult:
    """What a case left: the scratchpad words read back, the memory, the cycles taken."""

    case: DmaCase
    spad_words: list[int]
    memory: np.ndarray  # signed, as the case's memory
    cycles: int
    lengths: list[int]  # of the burst commands the memory took


def _unsigned(values: np.ndarray, bits: int) -> list[int]:
    return [int(v) & ((1 << bits) - 1) for v in np.asarray(values).ravel()]


def _signed(words: Sequence[int], bits: int) -> np.ndarray:
    w = np.asarray(words, dtype=np.int64)
    return np.where(w >= 1 << (bits - 1), w - (1 << bits), w)


def run_cases(design: DmaDesign, cases: Sequence[DmaCase], *, seed: int = 0) -> list[DmaResult]:
    """Run ``cases`` back to back in one simulation; results in case order."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    geom = design.geom
    (build_root() / ".runs").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="dma-", dir=build_root() / ".runs"))
    cases_path, results_path = run_dir / "cases.json", run_dir / "results.json"
    xml, log = run_dir / "results.xml", run_dir / "sim.log"
    header = {
        "lanes": geom.lanes,
        "bits": geom.bits,
        "addr_bits": ADDR_BITS,
        "len_bits": LEN_BITS,
        "seed": seed,
        "cases": [
            {
                "command": str(pack_command(c.command, geom)),
                "memory": _unsigned(c.memory, geom.bits),
                "spad": c.spad,
                "words": c.words,
                "preload": c.preload,
                "stall": c.stall,
                "latency": c.latency,
                # Each element waits at most the latency and its stalls; generous.
                "max_cycles": int(64 + 8 * (c.words * geom.lanes + 1) * (c.latency + 2))
                * int(1 + 10 * c.stall),
            }
            for c in cases
        ],
    }
    cases_path.write_text(json.dumps(header))
    env = {CASES_ENV: str(cases_path), RESULTS_ENV: str(results_path)}
    for k in env:
        if k in os.environ:  # the runner lets os.environ override extra_env
            raise SimulationError(f"unset {k}: it would override the case file of this run")
    with simulator_env(design.sim):
        try:
            get_runner(design.sim).test(
                test_module=TEST_MODULE,
                hdl_toplevel=design.top,
                hdl_toplevel_lang="verilog",
                build_dir=design.build_dir,
                test_dir=run_dir,
                results_xml=str(xml),
                extra_env=env,
                log_file=log,
                timescale=TIMESCALE if design.sim == "icarus" else None,
            )
            tests, failed = get_results(xml)
        except (RuntimeError, SystemExit, subprocess.CalledProcessError) as exc:
            raise SimulationError(
                f"DMA {design.top} on {design.sim}: simulation failed ({exc}); log {log}:\n"
                f"{log_tail(log)}"
            ) from None
    if failed or not tests or not results_path.is_file():
        raise SimulationError(
            f"DMA {design.top} on {design.sim}: simulation failed; log {log}:\n{log_tail(log)}"
        )
    out = json.loads(results_path.read_text())
    results = [
        DmaResult(c, r["spad_words"], _signed(r["memory"], geom.bits), r["cycles"], r["lengths"])
        for c, r in zip(cases, out["cases"], strict=True)
    ]
    shutil.rmtree(run_dir, ignore_errors=True)
    return results
