"""The Accelerator Verilated into a shared library with a C++ host: whole GEMM passes, no Python
per cycle.

:func:`simulator` builds (or takes from the cache) and loads the library of an
:class:`~barista_hw.config.AcceleratorConfig` or of a ``barista generate`` output;
:meth:`VerilatedAccelerator.run_gemm` runs one GEMM on it. The pass is the host
program of :mod:`barista_hw.host` (the ``overlap`` or ``serial`` host policy
described there), flattened by :mod:`sim.verilator_program` and run cycle by cycle
by the C++ driver ``sim/driver/driver.cpp``, which returns the ``o`` beats and the
edges at which each command was accepted and finished (:class:`~sim.gemm_run.GemmRun`).
Whatever the host, the per-command cycles (acceptance to ``busy`` low,
``GemmRun.engine_cycles``) are what :func:`sim.pysim.run_accelerator` counts.

The ports are packed as :mod:`sim.verilator_ports` lays them out (the library
reports the layout it was built with, checked on load). Libraries are built by
:mod:`sim.verilator_build` under ``verilator/<top>-<hash>/`` in the user's cache
(:mod:`barista_base.cache`), the hash covering the Verilog, the driver source,
the generated header and wrapper, the flags and the Verilator version.

The library is called through :mod:`ctypes`: there is one call per pass
(microseconds of overhead against milliseconds to seconds of simulation), and
ctypes is in the standard library, so nothing is compiled for Python itself.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from barista_base.cache import cache_dir, write_text_atomic
from barista_base.errors import InputError
from barista_hw.accelerator import Accelerator
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig
from barista_hw.host import HOSTS
from barista_hw.rtl import SOURCE_HASH, identifier, to_verilog

from .gemm_run import GemmRun
from .lint import waiver_control_text
from .tools import SimulationError, SimulatorNotFound
from .verilator_build import LIGHT_MAKE_FLAGS, VerilatorBuild, VerilatorBuildError, build
from .verilator_ports import SIM_TOP, PortLayout
from .verilator_program import CProgram, Outputs, Program, c_program, make_program

__all__ = [
    "HOSTS",
    "LIBRARY",
    "Build",
    "GemmRun",
    "ProtocolError",
    "RtlSimulationError",
    "SimulationTimeout",
    "SimulatorCrash",
    "VerilatedAccelerator",
    "VerilatorBuildError",
    "accelerator_verilog",
    "build_entry",
    "build_library",
    "library_build",
    "cache_root",
    "simulator",
]

DRIVER_SOURCE = Path(__file__).resolve().parent / "driver" / "driver.cpp"
#: The helpers every C++ host of a Verilated design includes.
IO_HEADER = Path(__file__).resolve().parent / "driver" / "verilated_io.h"
LIBRARY = "libbarista_sim.so"
_CFLAGS = "-fPIC -DVL_USER_FATAL -DVL_USER_STOP -DVL_USER_FINISH"
_LDFLAGS = "-shared -Wl,-z,defs"
# Status codes of driver.cpp's bs_run.
_TIMEOUTS = {1, 2, 3}
_PROTOCOL = {4, 5, 6}


class RtlSimulationError(SimulationError):
    """A Verilated run failed; the message names the pass (``label``) and the chunk."""


class SimulationTimeout(RtlSimulationError):
    """A cycle budget (the cycle model times a margin) ran out: a hang, not a slow run."""


class ProtocolError(RtlSimulationError):
    """The accelerator broke the stream protocol (unexpected ``o`` beats, ``last`` flags...)."""


class SimulatorCrash(RtlSimulationError):
    """The model stopped ($fatal, $stop, $finish, a Verilator fatal) or the driver threw."""


# -- Verilog sources ----------------------------------------------------------------------------


def cache_root() -> Path:
    """Root of the build cache: ``verilator`` in the user's cache (:mod:`barista_base.cache`)."""
    return cache_dir("verilator")


def _top_name(cfg: AcceleratorConfig) -> str:
    e = cfg.engine
    return f"accelerator_{e.rows}x{e.cols}_{identifier(e.fmt.name)}"


def accelerator_verilog(cfg: AcceleratorConfig, root: Path | None = None) -> tuple[str, str]:
    """(Verilog text, top module) of ``Accelerator(cfg)``, elaborated once per hardware source."""
    root = cache_root() if root is None else root
    top = _top_name(cfg)
    key = hashlib.sha256(f"{SOURCE_HASH}|{cfg.to_json()}".encode()).hexdigest()[:20]
    path = root / "verilog" / f"{top}-{key}.v"
    try:
        return path.read_text(), top
    except OSError:
        pass
    text = to_verilog(Accelerator(cfg), top, undefined_collisions=True)
    write_text_atomic(path, text)
    return text, top


# -- builds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """A built library: where it is and what it simulates."""

    path: Path  # the shared library
    top: str
    layout: PortLayout
    trace: bool
    key: str


def library_build(verilog: str, top: str, layout: PortLayout, *, trace: bool) -> VerilatorBuild:
    """What goes into the library of ``top``: its Verilog, the wrapper, the driver, the header."""
    return VerilatorBuild(
        name=f"{top}-fst" if trace else top,
        top=SIM_TOP,
        sources=(
            ("waivers.vlt", waiver_control_text()),
            (f"{SIM_TOP}.v", layout.wrapper(top)),
            (f"{top}.v", verilog),
            ("driver.cpp", DRIVER_SOURCE.read_text()),
            ("barista_layout.h", layout.header(top)),
            (IO_HEADER.name, IO_HEADER.read_text()),
        ),
        output=LIBRARY,
        cflags=_CFLAGS,
        ldflags=_LDFLAGS,
        options=("--trace-fst",) if trace else (),
        make_flags=LIGHT_MAKE_FLAGS,
    )


def build_entry(
    verilog: str, top: str, layout: PortLayout, *, trace: bool = False, root: Path | None = None
) -> Path:
    """The cache directory of a build: a hash of everything that goes into the library."""
    root = cache_root() if root is None else root
    return library_build(verilog, top, layout, trace=trace).entry(root)


def build_library(
    verilog: str,
    top: str,
    layout: PortLayout,
    *,
    trace: bool = False,
    root: Path | None = None,
    force: bool = False,
    on_build: Callable[[Path], None] | None = None,
) -> Build:
    """Verilate ``verilog`` with the driver into a shared library (cached, race-safe);
    ``on_build(entry)`` is called when a build starts (see :func:`sim.verilator_build.build`)."""
    if trace and not any(
        Path(d, "lz4.h").is_file() for d in ("/usr/include", "/usr/local/include")
    ):
        # The wheel's FST writer compresses with LZ4 and needs its header to build.
        raise SimulatorNotFound("FST tracing needs lz4.h: apt-get install liblz4-dev")
    recipe = library_build(verilog, top, layout, trace=trace)
    path = build(recipe, cache_root() if root is None else root, force=force, on_build=on_build)
    return Build(path, top, layout, trace, recipe.key())


# -- the simulator ---------------------------------------------------------------------------


class VerilatedAccelerator:
    """A loaded library with one live model; :meth:`run_gemm` runs a pass on it.

    The model keeps its state between passes, as the hardware would; a failed
    pass makes the next one start from a fresh model.
    """

    def __init__(self, cfg: AcceleratorConfig, build: Build) -> None:
        self.cfg = cfg
        self.build = build
        try:
            lib = ctypes.CDLL(str(build.path))
        except OSError as exc:
            raise VerilatorBuildError(f"{build.path}: cannot load the library ({exc})") from None
        lib.bs_layout.restype = ctypes.c_char_p
        lib.bs_create.restype = ctypes.c_void_p
        lib.bs_destroy.argtypes = [ctypes.c_void_p]
        lib.bs_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(CProgram)]
        lib.bs_run.restype = ctypes.c_int64
        got = lib.bs_layout().decode()
        if got != build.layout.to_json():
            raise VerilatorBuildError(
                f"{build.path}: built for another port layout (stale cache entry?)"
            )
        self._lib = lib
        self._handle = lib.bs_create()
        if not self._handle:
            raise SimulatorCrash(f"{build.path}: the model could not be created")

    def close(self) -> None:
        """Free the model (the library stays loaded: ctypes cannot unload it safely)."""
        if getattr(self, "_handle", None):
            self._lib.bs_destroy(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()

    def run_program(
        self,
        prog: Program,
        *,
        label: str = "GEMM",
        o_stall: float = 0.0,
        wr_gap: float = 0.0,
        stall_seed: int = 0,
        trace: Path | str | None = None,
        fatal_at: int = -1,
    ) -> GemmRun:
        """Run ``prog``; errors raise :class:`RtlSimulationError` subclasses naming ``label``.

        ``o_stall``: probability that ``o.ready`` is low in a cycle; ``wr_gap``: that the
        host skips a write cycle; ``fatal_at``: a test hook, a Verilator fatal at that edge.
        """
        if self._handle is None:
            raise RtlSimulationError(f"{label}: the simulator is closed")
        if trace is not None and not self.build.trace:
            raise InputError(f"{label}: tracing needs a --trace-fst build (trace=True)")
        # Stalls stretch the stall-free budgets (the cycle model times a margin).
        slow_o = 1.0 / max(1e-3, 1.0 - o_stall)
        slow_w = 1.0 / max(1e-3, 1.0 - wr_gap)
        budget = np.ascontiguousarray((prog.budget * slow_o).astype(np.int64))
        trace_bytes = None
        if trace is not None:
            Path(trace).parent.mkdir(parents=True, exist_ok=True)
            trace_bytes = str(trace).encode()
        out = Outputs.for_program(prog, self.build.layout.o_lanes)
        c = c_program(
            prog,
            out,
            budget,
            max_cycles=int(budget.sum() + prog.write_beats * slow_w) + 1000,
            o_stall=o_stall,
            wr_gap=wr_gap,
            stall_seed=stall_seed,
            trace=trace_bytes,
            fatal_at=fatal_at,
        )
        t0 = time.perf_counter()
        code = self._lib.bs_run(self._handle, ctypes.byref(c))
        wall = time.perf_counter() - t0
        if code:
            text = out.message.value.decode(errors="replace")
            raise self._error(code, text, label, prog, int(out.result[2]))
        self._check_beats(prog, out, label)
        return GemmRun(
            result=self._assemble(prog, out, label),
            cycles=int(out.result[0]),
            engine_cycles=int((out.done - out.accept).sum()),
            chunk_accept=out.accept,
            chunk_done=out.done,
            write_beats=int(out.result[3]),
            out_beats=int(out.result[1]),
            wall_seconds=wall,
            last_counter=int(out.result[4]),
        )

    def run_gemm(
        self,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        *,
        host: str = HOSTS[0],
        margin: float = 4.0,
        label: str = "GEMM",
        blocks: Collection[int] | None = None,
        **run_options: object,
    ) -> GemmRun:
        """``a @ b`` (integer operands in the format's range) as the schedule runs it.

        ``host``: the host policy of :mod:`barista_hw.host`; ``margin``: each command's
        cycle budget over the stall-free cycle model; ``blocks``: run only these output
        blocks (:func:`barista_hw.schedule.share_blocks`; the rest of the result stays 0);
        ``run_options``: those of :meth:`run_program`.
        """
        prog = make_program(
            self.cfg, a, b, cmd, host=host, margin=margin, what=label, blocks=blocks
        )
        return self.run_program(prog, label=label, **run_options)  # type: ignore[arg-type]

    # -- helpers -----------------------------------------------------------------------
    def _where(self, prog: Program, i: int) -> str:
        if not 0 <= i < len(prog.chunks):
            return "the program"
        c = prog.chunks[i]
        return (
            f"chunk {i + 1} of {len(prog.chunks)} (block {c.block}, m {c.m}, k {c.k}, "
            f"n {c.n}, images {c.images})"
        )

    def _error(self, code: int, text: str, label: str, prog: Program, i: int) -> RtlSimulationError:
        msg = f"{label}: {text} [{self._where(prog, i)}]"
        if code in _TIMEOUTS:
            return SimulationTimeout(msg)
        if code in _PROTOCOL:
            return ProtocolError(msg)
        return SimulatorCrash(msg)

    def _check_beats(self, prog: Program, out: Outputs, label: str) -> None:
        """Every chunk emitted the beats the program expects."""
        expected = int(prog.expect.sum())
        if out.result[1] != expected:
            raise ProtocolError(
                f"{label}: the accelerator emitted {out.result[1]} o beats, "
                f"the schedule expects {expected}"
            )
        bad = np.flatnonzero(out.beats != prog.expect)
        if bad.size:
            i = int(bad[0])
            raise ProtocolError(
                f"{label}: {self._where(prog, i)} emitted {out.beats[i]} o beats, expected "
                f"{prog.expect[i]}"
            )

    def _assemble(self, prog: Program, out: Outputs, label: str) -> np.ndarray:
        """Output beats -> (m, n): each chunk's beats placed by the program."""
        result = prog.gemm.new_result()
        start = 0
        for i in range(len(prog.chunks)):
            count = int(prog.expect[i])
            if not count:
                continue
            flags = out.last[start : start + count]
            if flags[-1] != 1 or flags[:-1].any():
                raise ProtocolError(
                    f"{label}: {self._where(prog, i)}: o.last is not set on exactly the final beat"
                )
            prog.gemm.place(result, i, out.data[start : start + count])
            start += count
        shape = self.cfg.engine.fmt.output_shape
        if not shape.signed:  # the driver sign-extends every lane; codes are unsigned
            result &= (1 << shape.width) - 1
        return result


def simulator(
    cfg: AcceleratorConfig,
    *,
    verilog: tuple[str, str] | None = None,
    trace: bool = False,
    root: Path | None = None,
    on_build: Callable[[Path], None] | None = None,
) -> VerilatedAccelerator:
    """Build (or take from the cache) and load the simulator of ``cfg``.

    ``verilog``: (text, top module) of the accelerator as written (e.g. by ``barista
    generate``); by default ``Accelerator(cfg)`` is elaborated here. A cache entry that
    cannot be loaded is discarded and rebuilt once. ``on_build(entry)`` is called when a
    build starts, and only then.
    """
    verilog, top = verilog if verilog is not None else accelerator_verilog(cfg, root)
    layout = PortLayout.from_config(cfg)
    build = build_library(verilog, top, layout, trace=trace, root=root, on_build=on_build)
    try:
        return VerilatedAccelerator(cfg, build)
    except VerilatorBuildError:
        build = build_library(
            verilog, top, layout, trace=trace, root=root, force=True, on_build=on_build
        )
        return VerilatedAccelerator(cfg, build)
