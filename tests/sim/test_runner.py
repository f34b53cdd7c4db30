"""The simulator runner: content-keyed build cache, race-safe builds, missing-tool errors."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from barista_base.cache import LOCKS
from barista_hw.config import EngineConfig, Pass
from barista_hw.numfmt import FixedFormat
from sim import runner

CFG = EngineConfig(1, 1, FixedFormat.parse("fx8"))


def _build_in(root: str) -> str:
    return str(runner.build(Pass.FORWARD, CFG, "icarus", Path(root)).build_dir)


@pytest.mark.cocotb
def test_second_build_is_a_cache_hit_and_racing_builds_agree(tmp_path: Path) -> None:
    runner.engine_verilog(Pass.FORWARD, CFG, tmp_path)  # elaborate once: the race is the build
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:  # two processes race for the same design
        dirs = pool.map(_build_in, [str(tmp_path)] * 2)
    assert dirs[0] == dirs[1]
    final = Path(dirs[0])
    assert (final / ".complete").is_file() and (final / "sim.vvp").is_file()
    builds = [p for p in tmp_path.iterdir() if p.name not in ("verilog", ".runs", LOCKS)]
    assert builds == [final], "a temporary build directory was left behind"
    stamp = (final / "sim.vvp").stat().st_mtime_ns
    assert _build_in(str(tmp_path)) == dirs[0]
    assert (final / "sim.vvp").stat().st_mtime_ns == stamp  # not rebuilt


def test_build_dir_is_keyed_by_design_and_simulator(tmp_path: Path) -> None:
    v1, top1 = runner.engine_verilog(Pass.FORWARD, CFG, tmp_path)
    v2, _ = runner.engine_verilog(Pass.FORWARD, CFG, tmp_path)
    v3, top3 = runner.engine_verilog(Pass.WEIGHT_GRAD, CFG, tmp_path)
    assert v1 == v2 and v1 != v3  # elaborated once per design
    assert top1 == "forward_1x1_fx8_4a32" and top3 == "gradient_1x1_fx8_4a32"


def test_build_root_is_in_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BARISTA_CACHE", str(tmp_path))
    assert runner.build_root() == tmp_path / "sim"
