"""The Accelerator Verilated into a shared library with a C++ host: whole GEMM passes, no Python
per cycle.

Python hands over a *program* (:class:`Program`): the chunk commands of
:func:`barista_hw.schedule.schedule_gemm`, the buffer-write segments before each
(operand words packed by :func:`~barista_hw.schedule.pack_a` / ``pack_b``) and,
per segment, the last chunk that reads the buffer half it overwrites. The C++
driver (``sim/driver/driver.cpp``) runs it cycle by cycle and returns the ``o``
beats and the edges at which each command was accepted and finished;
:class:`VerilatedAccelerator` assembles the ``(m, n)`` result as
:func:`sim.beats.assemble` does per output block.

Host protocol (``host="overlap"``, the default): one write beat per cycle, a
segment starting as soon as the last chunk reading its buffer half has finished
(``busy`` fell), so the next chunk's operands stream in while a chunk runs; a
command offered once its writes have landed (or in the cycle of its last write)
and held until accepted; ``o`` always ready. This is the host of the cycle model
in :mod:`barista_hw.plan`. It is slightly more eager than "chunk i+2's writes
only after command i+1 was accepted" (a segment may go ahead of an earlier,
still waiting command when its half is free) and just as safe: a half is only
overwritten after every chunk that reads it has finished. ``host="serial"`` is
the simple host of :func:`sim.pysim.run_accelerator` (writes, then the command
the cycle after, then wait for ``busy`` low). Whatever the host, the per-command
cycles (acceptance to ``busy`` low, :attr:`GemmRun.engine_cycles`) are what
``run_accelerator`` counts.

Port packing: Verilator flattens the ports (``wr__payload`` ...; C++ names
escape ``__`` as ``___05F``). Every field's bit offset and width is read from the
Amaranth layouts (:class:`PortLayout`) and written into a generated header, and
the library reports the layout it was built with, which is checked on load.

Builds are cached under ``verilator/<top>-<hash>/`` in the user's cache
(:mod:`barista_base.cache`), the hash covering the Verilog, the driver source,
the generated header, the build flags and the Verilator version; an entry whose
library is missing, altered or fails to load is rebuilt; builds happen in a
temporary directory renamed into place, so concurrent builders are safe.

The library is called through :mod:`ctypes`: there is one call per pass
(microseconds of overhead against milliseconds to seconds of simulation), and
ctypes is in the standard library, so nothing is compiled for Python itself.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from barista_base.cache import atomic_directory, cache_dir, write_text_atomic
from barista_base.errors import InputError, log_tail
from barista_hw.accelerator import Accelerator, run_layout, write_layout
from barista_hw.config import AcceleratorConfig
from barista_hw.engine import CYCLE_BITS, output_layout
from barista_hw.model import output_beats
from barista_hw.plan import command_cycles
from barista_hw.rtl import SOURCE_HASH, to_verilog
from barista_hw.schedule import Chunk, block_seed, pack_a, pack_b, schedule_gemm

from .lint import waiver_control_text
from .tools import (
    X_POISON,
    SimulationError,
    SimulatorNotFound,
    simulator_version,
    tool_env,
    verilator_root,
)

DRIVER_SOURCE = Path(__file__).resolve().parent / "driver" / "driver.cpp"
LIBRARY = "libbarista_sim.so"
MARKER = "build.json"
HOSTS = ("overlap", "serial")
SIM_TOP = "barista_sim_top"  # the wrapper Verilated around the accelerator

#: Verilator options: :data:`~sim.runner.X_POISON`, fast initial values (the design initialises
#: every register), no assertions (Amaranth emits none), warnings logged but not fatal
#: (linting is sim.lint's job). The board simulator uses them too.
VERILATOR_FLAGS = [*X_POISON, "--x-initial", "fast", "--noassert", "-Wno-fatal"]
# -O2 on the model: about 2x the simulation speed of Verilator's default -Os for a
# longer first build; the training loop runs a build many times.
MAKE_FLAGS = ["OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2"]
_CFLAGS = "-fPIC -DVL_USER_FATAL -DVL_USER_STOP -DVL_USER_FINISH"
_LDFLAGS = "-shared -Wl,-z,defs"


class RtlSimulationError(SimulationError):
    """A Verilated run failed; the message names the pass (``label``) and the chunk."""


class SimulationTimeout(RtlSimulationError):
    """A cycle budget (the cycle model times a margin) ran out: a hang, not a slow run."""


class ProtocolError(RtlSimulationError):
    """The accelerator broke the stream protocol (unexpected ``o`` beats, ``last`` flags...)."""


class SimulatorCrash(RtlSimulationError):
    """The model stopped ($fatal, $stop, $finish, a Verilator fatal) or the driver threw."""


class VerilatorBuildError(SimulationError):
    """Verilating or compiling the library failed; the message carries the end of the log."""


# -- port layout ------------------------------------------------------------------------------


def _fields(layout: object) -> dict[str, tuple[int, int]]:
    return {name: (f.offset, f.width) for name, f in layout}  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PortLayout:
    """Bit offsets and widths of the Accelerator's stream payloads (from the Amaranth layouts)."""

    cmd_fields: tuple[tuple[str, int, int], ...]  # (name, offset, width), declaration order
    cmd_width: int
    wr_sel: tuple[int, int]
    wr_addr: tuple[int, int]
    wr_data: int  # offset of lane 0
    wr_lanes: int
    wr_width: int
    o_data: int
    o_lanes: int
    o_last: int
    o_width: int
    lane_width: int

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig) -> PortLayout:
        run, wr, out = run_layout(cfg), write_layout(cfg), output_layout(cfg.engine)
        cmd = _fields(run)
        w = _fields(wr)
        o = _fields(out)
        lane = cfg.engine.fmt.width
        wr_lanes = max(cfg.engine.rows, cfg.engine.cols)
        if w["data"][1] != wr_lanes * lane or o["data"][1] != cfg.engine.cols * lane:
            raise InputError("write/output layouts do not hold whole lanes (layout changed?)")
        return cls(
            cmd_fields=tuple((n, off, wd) for n, (off, wd) in cmd.items()),
            cmd_width=run.size,
            wr_sel=w["sel"],
            wr_addr=w["addr"],
            wr_data=w["data"][0],
            wr_lanes=wr_lanes,
            wr_width=wr.size,
            o_data=o["data"][0],
            o_lanes=cfg.engine.cols,
            o_last=o["last"][0],
            o_width=out.size,
            lane_width=lane,
        )

    @property
    def cmd_names(self) -> tuple[str, ...]:
        return tuple(n for n, _, _ in self.cmd_fields)

    def to_json(self) -> str:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["cmd_fields"] = [list(f) for f in self.cmd_fields]
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def wrapper(self, top: str) -> str:
        """Verilog of the simulation top: ``top`` with its synchronous reset tied low.

        Registers start from their declared initial values (a failed run recreates
        the model instead of resetting it); a constant reset lets Verilator fold the
        reset multiplexer out of every register's next-state logic, which otherwise
        is input-dependent and re-evaluated on every ``eval``.
        """
        ins = [("clk", 1), ("wr__valid", 1), ("wr__payload", self.wr_width)]
        ins += [("cmd__valid", 1), ("cmd__payload", self.cmd_width), ("o__ready", 1)]
        outs = [("wr__ready", 1), ("cmd__ready", 1), ("o__valid", 1)]
        outs += [("o__payload", self.o_width), ("busy", 1), ("cycles", CYCLE_BITS)]
        ports = [n for n, _ in ins + outs]

        def decl(kind: str, name: str, width: int) -> str:
            return f"  {kind} {f'[{width - 1}:0] ' if width > 1 else ''}{name};"

        lines = [f"module {SIM_TOP}({', '.join(ports)});"]
        lines += [decl("input", n, w) for n, w in ins]
        lines += [decl("output", n, w) for n, w in outs]
        conns = [f".{n}({n})" for n in ports] + [".rst(1'b0)"]
        lines.append(f"  {top} dut ({', '.join(conns)});")
        lines.append("endmodule")
        return "\n".join(lines) + "\n"

    def header(self, top: str) -> str:
        """The generated C++ header: top class, escaped port names, field constants."""
        if max(self.cmd_width, self.wr_width, self.o_width) > 64 * 32:
            raise InputError("a stream payload is wider than the driver's 2048-bit limit")

        def port(name: str) -> str:
            return name.replace("__", "___05F")  # Verilator's C++ escape of "__"

        offs = ", ".join(str(off) for _, off, _ in self.cmd_fields)
        widths = ", ".join(str(wd) for _, _, wd in self.cmd_fields)
        lines = [
            "// Generated by sim/verilator_driver.py from the Amaranth layouts. Do not edit.",
            "#pragma once",
            f'#define BARISTA_TOP_HEADER "V{SIM_TOP}.h"',
            f"#define BARISTA_TOP_CLASS V{SIM_TOP}",
        ]
        for stream in ("wr", "cmd", "o"):
            for part in ("valid", "ready", "payload"):
                lines.append(
                    f"#define BS_{stream.upper()}_{part.upper()} {port(f'{stream}__{part}')}"
                )
        lines += [
            f"#define BS_CMD_FIELDS {len(self.cmd_fields)}",
            f"static const int BS_CMD_OFF[BS_CMD_FIELDS] = {{{offs}}};",
            f"static const int BS_CMD_W[BS_CMD_FIELDS] = {{{widths}}};",
            f"#define BS_WR_SEL_OFF {self.wr_sel[0]}",
            f"#define BS_WR_SEL_W {self.wr_sel[1]}",
            f"#define BS_WR_ADDR_OFF {self.wr_addr[0]}",
            f"#define BS_WR_ADDR_W {self.wr_addr[1]}",
            f"#define BS_WR_DATA_OFF {self.wr_data}",
            f"#define BS_WR_LANES {self.wr_lanes}",
            f"#define BS_O_DATA_OFF {self.o_data}",
            f"#define BS_O_LANES {self.o_lanes}",
            f"#define BS_O_LAST_OFF {self.o_last}",
            f"#define BS_LANE_W {self.lane_width}",
            f"#define BS_LAYOUT_JSON {json.dumps(self.to_json())}",
            "",
        ]
        return "\n".join(lines)


# -- Verilog sources ----------------------------------------------------------------------------


def cache_root() -> Path:
    """Root of the build cache: ``verilator`` in the user's cache (:mod:`barista_base.cache`)."""
    return cache_dir("verilator")


def _top_name(cfg: AcceleratorConfig) -> str:
    e = cfg.engine
    return f"accelerator_{e.rows}x{e.cols}_{e.fmt.name.replace('.', '_')}"


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


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entry_ok(entry: Path) -> bool:
    """A complete cache entry: marker present and the library's hash as recorded."""
    try:
        marker = json.loads((entry / MARKER).read_text())
        return _sha256_file(entry / LIBRARY) == marker["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _discard(entry: Path) -> None:
    """Move a broken entry out of the way (atomically), then delete it."""
    if not entry.exists():
        return
    trash = entry.with_name(f".{entry.name}.broken-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(entry, trash)
    except OSError:
        return  # another process moved it already
    shutil.rmtree(trash, ignore_errors=True)


def build_entry(
    verilog: str, top: str, layout: PortLayout, *, trace: bool = False, root: Path | None = None
) -> Path:
    """The cache directory of a build: a hash of everything that goes into the library."""
    root = cache_root() if root is None else root
    flags = [
        *VERILATOR_FLAGS,
        *(["--trace-fst"] if trace else []),
        _CFLAGS,
        _LDFLAGS,
        *MAKE_FLAGS,
    ]
    key = hashlib.sha256()
    for part in (
        verilog,
        top,
        DRIVER_SOURCE.read_text(),
        layout.header(top),
        layout.wrapper(top),
        simulator_version("verilator"),
        json.dumps(flags),
    ):
        key.update(part.encode() + b"\0")
    return root / f"{top}-{'fst-' if trace else ''}{key.hexdigest()[:24]}"


def build_library(
    verilog: str,
    top: str,
    layout: PortLayout,
    *,
    trace: bool = False,
    root: Path | None = None,
    force: bool = False,
) -> Build:
    """Verilate ``verilog`` with the driver into a shared library (cached, race-safe)."""
    if trace and not any(
        Path(d, "lz4.h").is_file() for d in ("/usr/include", "/usr/local/include")
    ):
        # The wheel's FST writer compresses with LZ4 and needs its header to build.
        raise SimulatorNotFound("FST tracing needs lz4.h: apt-get install liblz4-dev")
    entry = build_entry(verilog, top, layout, trace=trace, root=root)
    root, digest = entry.parent, entry.name.rsplit("-", 1)[1]
    if force:
        _discard(entry)
    if _entry_ok(entry):
        return Build(entry / LIBRARY, top, layout, trace, digest)
    _discard(entry)

    with atomic_directory(entry) as tmp:
        log = tmp / "build.log"
        (tmp / f"{top}.v").write_text(verilog)
        (tmp / "barista_layout.h").write_text(layout.header(top))
        (tmp / f"{SIM_TOP}.v").write_text(layout.wrapper(top))
        shutil.copyfile(DRIVER_SOURCE, tmp / "driver.cpp")
        (tmp / "waivers.vlt").write_text(waiver_control_text())
        env = tool_env()
        obj = tmp / "obj"
        verilate = [
            str(verilator_root() / "bin" / "verilator"),
            "--cc",
            "--exe",
            *VERILATOR_FLAGS,
            *(["--trace-fst"] if trace else []),
            "--top-module",
            SIM_TOP,
            "-Mdir",
            str(obj),
            "-o",
            LIBRARY,
            "-CFLAGS",
            f"{_CFLAGS} -I{tmp}",
            "-LDFLAGS",
            _LDFLAGS,
            str(tmp / "waivers.vlt"),
            str(tmp / f"{SIM_TOP}.v"),
            str(tmp / f"{top}.v"),
            str(tmp / "driver.cpp"),
        ]
        jobs = str(min(4, os.cpu_count() or 1))
        # The wheel's verilated.mk leaves the "include precompiled header" option empty.
        make = ["make", "-C", str(obj), "-f", f"V{SIM_TOP}.mk", "-j", jobs]
        make.append("CFG_CXXFLAGS_PCH_I=-include")
        with log.open("w") as f:
            for cmd in (verilate, [*make, *MAKE_FLAGS]):
                f.write("$ " + " ".join(cmd) + "\n")
                f.flush()
                done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
                if done.returncode:
                    keep = root / f"{entry.name}.failed.log"
                    shutil.copyfile(log, keep)
                    raise VerilatorBuildError(
                        f"building {top} failed ({Path(cmd[0]).name} exit {done.returncode}); "
                        f"end of {keep}:\n{log_tail(log, 30)}"
                    )
        built = obj / LIBRARY
        os.replace(built, tmp / LIBRARY)
        shutil.rmtree(obj, ignore_errors=True)  # objects are large and never reused
        marker = {"sha256": _sha256_file(tmp / LIBRARY), "top": top, "trace": trace, "key": digest}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
    return Build(entry / LIBRARY, top, layout, trace, digest)


# -- the program and its C view -------------------------------------------------------------------


class _Program(ctypes.Structure):
    _fields_ = [
        ("n_chunks", ctypes.c_int64),
        ("cmd", ctypes.c_void_p),
        ("chunk_seg", ctypes.c_void_p),
        ("expect", ctypes.c_void_p),
        ("budget", ctypes.c_void_p),
        ("n_segs", ctypes.c_int64),
        ("segs", ctypes.c_void_p),
        ("n_words", ctypes.c_int64),
        ("words", ctypes.c_void_p),
        ("serial", ctypes.c_int64),
        ("o_stall", ctypes.c_double),
        ("wr_gap", ctypes.c_double),
        ("stall_seed", ctypes.c_int64),
        ("max_cycles", ctypes.c_int64),
        ("accept_budget", ctypes.c_int64),
        ("trace_path", ctypes.c_char_p),
        ("fatal_at", ctypes.c_int64),
        ("out_cap", ctypes.c_int64),
        ("out_data", ctypes.c_void_p),
        ("out_last", ctypes.c_void_p),
        ("chunk_accept", ctypes.c_void_p),
        ("chunk_done", ctypes.c_void_p),
        ("chunk_beats", ctypes.c_void_p),
        ("result", ctypes.c_void_p),
        ("message", ctypes.c_char_p),
        ("message_len", ctypes.c_int64),
    ]


_TIMEOUTS = {1, 2, 3}
_PROTOCOL = {4, 5, 6}


@dataclass
class Program:
    """One GEMM pass as the C++ host runs it (arrays are C-contiguous int64 unless noted)."""

    chunks: list[Chunk]
    cmd: np.ndarray  # (chunks, fields) in run_layout order
    chunk_seg: np.ndarray  # (chunks, 2): [first, end) segment of each chunk
    expect: np.ndarray  # (chunks,) o beats each chunk emits
    budget: np.ndarray  # (chunks,) cycles from acceptance to busy low
    segs: np.ndarray  # (segments, 5): sel, base, first word, count, wait_chunk
    words: np.ndarray  # (words, lanes) int32 operand words
    m: int
    n: int
    serial: bool

    @property
    def write_beats(self) -> int:
        return int(self.segs[:, 3].sum()) if len(self.segs) else 0


def make_program(
    cfg: AcceleratorConfig,
    a: np.ndarray,
    b: np.ndarray,
    *,
    images: int = 1,
    shift: int,
    rounding: int,
    seed: int = 0,
    host: str = "overlap",
    margin: float = 4.0,
    what: str = "GEMM",
) -> Program:
    """The program of ``a @ b`` (``a``: M x images*k, ``b``: images*k x N) on ``cfg``."""
    if host not in HOSTS:
        raise InputError(f"unknown host protocol {host!r} (use {' or '.join(HOSTS)})")
    R, C = cfg.engine.rows, cfg.engine.cols
    m, kt = a.shape
    n = b.shape[1]
    if b.shape[0] != kt or kt % images:
        raise InputError(f"{what}: operand shapes {a.shape} and {b.shape} do not chain")
    chunks = schedule_gemm(cfg, m, kt // images, n, images, what=what)
    layout = PortLayout.from_config(cfg)
    lanes = layout.wr_lanes
    halves = (cfg.a_depth // 2, cfg.b_depth // 2)
    serial = host == "serial"

    values = {"shift": shift, "rounding": int(rounding)}
    cmd = np.zeros((len(chunks), len(layout.cmd_fields)), dtype=np.int64)
    chunk_seg = np.zeros((len(chunks), 2), dtype=np.int64)
    expect = np.zeros(len(chunks), dtype=np.int64)
    budget = np.zeros(len(chunks), dtype=np.int64)
    segs: list[tuple[int, int, int, int, int]] = []
    blocks: list[np.ndarray] = []
    placed: dict[tuple, int] = {}  # operand block -> first word (written again, stored once)
    n_words = 0
    last_reader = [[-1, -1], [-1, -1]]  # (buffer, half) -> last chunk reading it so far
    for i, c in enumerate(chunks):
        values.update(
            m=c.m,
            k=c.k,
            n=c.n,
            images=c.images,
            seed=block_seed(seed, c.block),
            acc_first=int(c.acc_first),
            acc_last=int(c.acc_last),
            a_base=c.a_base,
            b_base=c.b_base,
        )
        for j, (name, _, width) in enumerate(layout.cmd_fields):
            v = int(values[name])
            if not 0 <= v < 1 << width:
                raise InputError(f"{what}: command field {name} = {v} does not fit {width} bits")
            cmd[i, j] = v
        chunk_seg[i, 0] = len(segs)
        for sel, write, base, key in (
            (0, c.write_a, c.a_base, ("a", c.m0, c.m1, c.kt0, c.kt1)),
            (1, c.write_b, c.b_base, ("b", c.n0, c.n1, c.kt0, c.kt1)),
        ):
            if not write:
                continue
            if key not in placed:
                if sel == 0:
                    packed = pack_a(a[c.m0 : c.m1, c.kt0 : c.kt1], R)
                else:
                    packed = pack_b(b[c.kt0 : c.kt1, c.n0 : c.n1], C)
                block = np.zeros((packed.shape[0], lanes), dtype=np.int32)
                block[:, : packed.shape[1]] = packed
                placed[key] = n_words
                blocks.append(block)
                n_words += block.shape[0]
            count = -(-(c.m if sel == 0 else c.n) // (R if sel == 0 else C)) * c.kt
            half = int(base >= halves[sel])
            wait = i - 1 if serial else last_reader[sel][half]
            segs.append((sel, base, placed[key], count, wait))
        chunk_seg[i, 1] = len(segs)
        last_reader[0][int(c.a_base >= halves[0])] = i
        last_reader[1][int(c.b_base >= halves[1])] = i
        expect[i] = c.m * -(-c.n // C) if c.acc_last else 0
        # The exact, stall-free cycle model times the margin (run() scales it for stalls).
        cycles = command_cycles(cfg.engine, c.m, c.n, c.kt, acc_last=c.acc_last)
        budget[i] = int(cycles * margin)
    words = np.concatenate(blocks) if blocks else np.zeros((0, lanes), dtype=np.int32)
    return Program(
        chunks=chunks,
        cmd=cmd,
        chunk_seg=chunk_seg,
        expect=expect,
        budget=budget,
        segs=np.array(segs, dtype=np.int64).reshape(-1, 5),
        words=np.ascontiguousarray(words, dtype=np.int32),
        m=m,
        n=n,
        serial=serial,
    )


@dataclass
class GemmRun:
    """What one pass did on the simulated accelerator."""

    result: np.ndarray  # (m, n) int64
    cycles: int  # clock edges from the first write to the last ``busy`` low
    engine_cycles: int  # sum over commands of acceptance to ``busy`` low
    chunk_accept: np.ndarray  # edge that accepted each command
    chunk_done: np.ndarray  # edge after which each command's ``busy`` was low
    write_beats: int
    out_beats: int
    wall_seconds: float  # inside the C++ call
    # The engine's own ``cycles`` counter after the last command (what the cocotb suite
    # reads): from the cycle after acceptance to its last output transfer.
    last_counter: int = 0

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.wall_seconds if self.wall_seconds > 0 else 0.0


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
        lib.bs_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program)]
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
        """Run ``prog``; errors raise :class:`RtlSimulationError` subclasses naming ``label``."""
        if self._handle is None:
            raise RtlSimulationError(f"{label}: the simulator is closed")
        if trace is not None and not self.build.trace:
            raise InputError(f"{label}: tracing needs a --trace-fst build (trace=True)")
        n_chunks = len(prog.chunks)
        slow_o = 1.0 / max(1e-3, 1.0 - o_stall)
        slow_w = 1.0 / max(1e-3, 1.0 - wr_gap)
        budget = np.ascontiguousarray((prog.budget * slow_o).astype(np.int64))
        max_cycles = int(budget.sum() + prog.write_beats * slow_w) + 1000
        out_cap = int(prog.expect.sum())
        lanes = self.build.layout.o_lanes
        out_data = np.zeros((max(out_cap, 1), lanes), dtype=np.int32)
        out_last = np.zeros(max(out_cap, 1), dtype=np.uint8)
        accept = np.zeros(n_chunks, dtype=np.int64)
        done = np.zeros(n_chunks, dtype=np.int64)
        beats = np.zeros(n_chunks, dtype=np.int64)
        result = np.zeros(8, dtype=np.int64)
        message = ctypes.create_string_buffer(1024)
        arrays = [prog.cmd, prog.chunk_seg, prog.expect, prog.segs, prog.words]
        for arr in arrays:
            assert arr.flags.c_contiguous
        trace_bytes = None
        if trace is not None:
            Path(trace).parent.mkdir(parents=True, exist_ok=True)
            trace_bytes = str(trace).encode()
        p = _Program(
            n_chunks=n_chunks,
            cmd=prog.cmd.ctypes.data,
            chunk_seg=prog.chunk_seg.ctypes.data,
            expect=prog.expect.ctypes.data,
            budget=budget.ctypes.data,
            n_segs=len(prog.segs),
            segs=prog.segs.ctypes.data,
            n_words=len(prog.words),
            words=prog.words.ctypes.data,
            serial=int(prog.serial),
            o_stall=o_stall,
            wr_gap=wr_gap,
            stall_seed=stall_seed,
            max_cycles=max_cycles,
            accept_budget=int(budget.max(initial=0)) + 16,
            trace_path=trace_bytes,
            fatal_at=fatal_at,
            out_cap=out_cap,
            out_data=out_data.ctypes.data,
            out_last=out_last.ctypes.data,
            chunk_accept=accept.ctypes.data,
            chunk_done=done.ctypes.data,
            chunk_beats=beats.ctypes.data,
            result=result.ctypes.data,
            message=ctypes.cast(message, ctypes.c_char_p),
            message_len=len(message),
        )
        t0 = time.perf_counter()
        code = self._lib.bs_run(self._handle, ctypes.byref(p))
        wall = time.perf_counter() - t0
        if code:
            raise self._error(code, message.value.decode(errors="replace"), label, prog, result)
        if result[1] != out_cap:
            raise ProtocolError(
                f"{label}: the accelerator emitted {result[1]} o beats, "
                f"the schedule expects {out_cap}"
            )
        bad = np.flatnonzero(beats != prog.expect)
        if bad.size:
            i = int(bad[0])
            raise ProtocolError(
                f"{label}: {self._where(prog, i)} emitted {beats[i]} o beats, expected "
                f"{prog.expect[i]}"
            )
        out = self._assemble(prog, out_data, out_last, label)
        return GemmRun(
            result=out,
            cycles=int(result[0]),
            engine_cycles=int((done - accept).sum()),
            chunk_accept=accept,
            chunk_done=done,
            write_beats=int(result[3]),
            out_beats=int(result[1]),
            wall_seconds=wall,
            last_counter=int(result[4]),
        )

    def run_gemm(
        self,
        a: np.ndarray,
        b: np.ndarray,
        *,
        images: int = 1,
        shift: int,
        rounding: int,
        seed: int = 0,
        host: str = "overlap",
        margin: float = 4.0,
        label: str = "GEMM",
        **run_options: object,
    ) -> GemmRun:
        """``a @ b`` (integer operands in the format's range) as the schedule runs it."""
        prog = make_program(
            self.cfg,
            a,
            b,
            images=images,
            shift=shift,
            rounding=rounding,
            seed=seed,
            host=host,
            margin=margin,
            what=label,
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

    def _error(
        self, code: int, text: str, label: str, prog: Program, result: np.ndarray
    ) -> RtlSimulationError:
        where = self._where(prog, int(result[2]))
        msg = f"{label}: {text} [{where}]"
        if code in _TIMEOUTS:
            return SimulationTimeout(msg)
        if code in _PROTOCOL:
            return ProtocolError(msg)
        return SimulatorCrash(msg)

    def _assemble(
        self, prog: Program, data: np.ndarray, last: np.ndarray, label: str
    ) -> np.ndarray:
        """Output beats -> (m, n), block by block (:func:`sim.beats.assemble`, vectorised)."""
        R, C = self.cfg.engine.rows, self.cfg.engine.cols
        out = np.zeros((prog.m, prog.n), dtype=np.int64)
        start = 0
        for i, c in enumerate(prog.chunks):
            count = int(prog.expect[i])
            if not count:
                continue
            flags = last[start : start + count]
            if flags[-1] != 1 or flags[:-1].any():
                raise ProtocolError(
                    f"{label}: {self._where(prog, i)}: o.last is not set on exactly the final beat"
                )
            beats = data[start : start + count]
            idx = output_beats(c.m, c.n, R, C)
            out[c.m0 : c.m1, c.n0 : c.n1] = beats[idx, np.arange(c.n)[None, :] % C]
            start += count
        return out


def simulator(
    cfg: AcceleratorConfig,
    *,
    verilog: tuple[str, str] | None = None,
    trace: bool = False,
    root: Path | None = None,
) -> VerilatedAccelerator:
    """Build (or take from the cache) and load the simulator of ``cfg``.

    ``verilog``: (text, top module) of the accelerator as written (e.g. by ``barista
    generate``); by default ``Accelerator(cfg)`` is elaborated here. A cache entry that
    cannot be loaded is discarded and rebuilt once.
    """
    verilog, top = verilog if verilog is not None else accelerator_verilog(cfg, root)
    layout = PortLayout.from_config(cfg)
    build = build_library(verilog, top, layout, trace=trace, root=root)
    try:
        return VerilatedAccelerator(cfg, build)
    except VerilatorBuildError:
        build = build_library(verilog, top, layout, trace=trace, root=root, force=True)
        return VerilatedAccelerator(cfg, build)


def useful_macs(chunks: Sequence[Chunk]) -> int:
    """Multiply-accumulates a schedule really needs (no tile padding)."""
    return sum(c.m * c.kt * c.n for c in chunks)
