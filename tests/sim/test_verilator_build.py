"""Verilator builds in the cache: content keys, entry checks, failed builds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from barista_base.cache import LOCKS
from sim.tools import SimulatorNotFound, simulator_version
from sim.verilator_build import (
    LOG,
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
        dataclasses.replace(RECIPE, train=("in.txt",)),
        dataclasses.replace(RECIPE, train=("in.txt",), train_files=(("in.txt", b"1"),)),
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


COUNTER = """module counter(input clk, output reg [31:0] count = 0);
  always @(posedge clk) count <= count + 1;
endmodule
"""
# Clocks the counter as often as the file named first says; prints its count.
COUNTER_MAIN = """#include <cstdio>
#include "Vcounter.h"
#include "verilated.h"
int main(int argc, char** argv) {
    long n = 0;
    FILE* f = std::fopen(argv[1], "r");
    if (!f || std::fscanf(f, "%ld", &n) != 1) return 2;
    Vcounter top;
    for (long i = 0; i < n; ++i) {
        top.clk = 0;
        top.eval();
        top.clk = 1;
        top.eval();
    }
    std::printf("%u\\n", top.count);
    return 0;
}
"""


def test_a_trained_build_compiles_with_the_profile_of_its_run(tmp_path: Path) -> None:
    """``train``: compiled instrumented, run on its files, compiled with the profile."""
    import subprocess

    recipe = VerilatorBuild(
        name="counter",
        top="counter",
        sources=(("counter.v", COUNTER), ("main.cpp", COUNTER_MAIN)),
        output="counter_bin",
        make_flags=("OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0"),  # quick to compile
        train=("in.txt",),
        train_files=(("in.txt", b"5000"),),
    )
    out = build(recipe, tmp_path)
    log = (out.parent / LOG).read_text().split("\n$ ")
    assert "-fprofile-generate" in log[1] and "-fprofile-use" not in log[1]
    run = log[2].split("\n")[0].split()
    assert run[0].endswith("/obj/counter_bin") and run[1:] == ["in.txt"]  # the training run
    assert log[2].split("\n")[1] == "5000"  # (its output)
    assert "-fprofile-use" in log[3] and "-fprofile-generate" not in log[3]
    assert not (out.parent / "train").exists()  # the run's files are not kept
    (tmp_path / "n.txt").write_text("1234")
    done = subprocess.run([str(out), str(tmp_path / "n.txt")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "1234"
