"""Verilator builds in the cache: content keys, entry checks, failed builds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from barista_base.cache import LOCKS
from sim.tools import SimulatorNotFound, simulator_version
from sim.verilator_build import (
    MARKER,
    VerilatorBuild,
    VerilatorBuildError,
    build,
    discard,
    entry_ok,
    sha256_file,
)

RECIPE = VerilatorBuild(
    name="broken",
    top="broken",
    sources=(("broken.v", "module broken(input clk);\n  this is not verilog\nendmodule\n"),),
    output="broken_bin",
)


@pytest.fixture(autouse=True)
def verilator() -> None:
    try:
        simulator_version("verilator")
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))


def test_key_covers_sources_options_and_flags() -> None:
    key = RECIPE.key()
    assert key == dataclasses.replace(RECIPE).key()
    changed = [
        dataclasses.replace(RECIPE, sources=(("broken.v", "module broken; endmodule\n"),)),
        dataclasses.replace(RECIPE, sources=(("other.v", RECIPE.sources[0][1]),)),
        dataclasses.replace(RECIPE, options=("--trace-fst",)),
        dataclasses.replace(RECIPE, cflags="-DX"),
        dataclasses.replace(RECIPE, ldflags="-shared"),
        dataclasses.replace(RECIPE, output="other"),
        dataclasses.replace(RECIPE, make_flags=("OPT_FAST=-O3",)),
    ]
    assert len({key} | {r.key() for r in changed}) == 1 + len(changed)
    assert RECIPE.entry(Path("/c")) == Path("/c") / f"broken-{key}"


def test_entries_are_checked_against_their_marker(tmp_path: Path) -> None:
    entry = tmp_path / "e"
    entry.mkdir()
    (entry / "lib.so").write_bytes(b"library")
    assert not entry_ok(entry)  # no marker
    marker = {"output": "lib.so", "sha256": sha256_file(entry / "lib.so")}
    (entry / MARKER).write_text(json.dumps(marker))
    assert entry_ok(entry)
    (entry / "lib.so").write_bytes(b"altered")
    assert not entry_ok(entry)
    discard(entry)
    assert not entry.exists() and not list(tmp_path.iterdir())


def test_failed_build_names_the_top_and_keeps_its_log(tmp_path: Path) -> None:
    with pytest.raises(VerilatorBuildError, match=r"building broken failed \(verilator exit"):
        build(RECIPE, tmp_path)
    entry = RECIPE.entry(tmp_path)
    assert not entry.exists()
    log = entry.with_name(f"{entry.name}.failed.log")
    assert "$ " in log.read_text() and "broken.v" in log.read_text()
    left = [p.name for p in tmp_path.iterdir() if p.name != LOCKS]
    assert left == [log.name]  # no temporary directory left


def test_on_build_is_called_only_when_a_build_starts(tmp_path: Path) -> None:
    entry = RECIPE.entry(tmp_path)
    started: list[Path] = []
    with pytest.raises(VerilatorBuildError):
        build(RECIPE, tmp_path, on_build=started.append)  # no entry: a build starts (and fails)
    assert started == [entry]
    # A complete entry is used as it is: no build, no call.
    entry.mkdir()
    (entry / RECIPE.output).write_bytes(b"built")
    marker = {"output": RECIPE.output, "sha256": sha256_file(entry / RECIPE.output)}
    (entry / MARKER).write_text(json.dumps(marker))
    assert build(RECIPE, tmp_path, on_build=started.append) == entry / RECIPE.output
    assert started == [entry]
