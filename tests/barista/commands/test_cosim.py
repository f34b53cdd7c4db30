"""``barista cosim`` and ``barista demo``: exit 0 if bit-exact, 1 on a mismatch, 2 on bad input."""

from __future__ import annotations

import argparse

import pytest

from barista import cli
from barista.commands import cosim, demo_engines
from barista_hw.config import EngineConfig
from barista_hw.numfmt import FixedFormat
from sim import cases


@pytest.fixture
def barista(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - the runner function
    """``barista`` with only the simulation subcommands."""
    monkeypatch.setattr(cli, "SUBCOMMANDS", (cosim, demo_engines))
    return cli.main


SMALL = "--array 2x3 --format fx8 --shape 5,4,7".split()  # the suite's fwd-2x3-fx8 build


@pytest.mark.parametrize("command", [cosim, demo_engines])
def test_default_array_and_format_are_the_engine_defaults(command) -> None:  # noqa: ANN001
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([])
    e = EngineConfig()
    assert EngineConfig.parse_array(args.array) == (e.rows, e.cols)
    assert FixedFormat.parse(args.format) == e.fmt


@pytest.mark.cocotb
@pytest.mark.parametrize(
    "extra",
    [  # the designs of tests/sim/test_engines.py, so no extra builds
        "--array 2x3 --format fx8 --engine forward --rounding stochastic --stall 0.3",
        "--array 3x2 --format fx12.6a24 --engine backward --rounding floor --shift 0",
        "--array 4x4 --format fx16 --engine gradient --images 3 --operands extreme",
    ],
    ids=["forward", "backward", "gradient"],
)
def test_cosim_matches(barista, capsys: pytest.CaptureFixture[str], sim: str, extra: str) -> None:
    assert barista(["cosim", "--sim", sim, "--shape", "5,4,7", *extra.split()]) == 0
    out = capsys.readouterr().out
    assert "matched 35/35 elements" in out
    assert "PE utilisation" in out and "(upper bound without stalls: " in out


@pytest.mark.cocotb
def test_cosim_exit_1_on_mismatch(
    barista, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that disagrees in one element makes the command fail and name the element."""
    real = cases.model.forward

    def off_by_one(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        y = real(*args, **kwargs).copy()
        y[3, 5] += 1
        return y

    monkeypatch.setattr(cases.model, "forward", off_by_one)
    assert barista(["cosim", *SMALL, "--sim", "icarus"]) == 1
    out = capsys.readouterr().out
    assert "matched 34/35" in out
    assert "(i, j) = (3, 5)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shape", "0,3,4"], "must be positive"),
        (["--shape", "3,-1,4"], "must be positive"),
        (["--shape", "3,4"], "must look like M,K,N"),
        (["--shape", "a,b,c"], "must look like M,K,N"),
        (["--array", "3by4"], "must look like RxC"),
        (["--array", "0x4"], "must be positive"),
        (["--array", "65x1"], "out of range"),
        (["--format", "fx20"], "operand width 20 out of range"),
        (["--format", "float7"], "unknown number format"),
        (["--engine", "sideways"], "unknown engine"),
        (["--rounding", "up"], "unknown rounding mode"),
        (["--images", "0"], "out of range"),
        (["--images", "2"], "only the gradient engine"),
        (["--shift", "32"], "out of range"),
        (["--stall", "1"], "must be in [0, 1)"),
        (["--sim", "modelsim"], "unknown simulator"),
        (["--shape", "70000,1,1"], "exceeds"),
    ],
)
def test_cosim_bad_arguments_exit_2(
    barista, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert barista(["cosim", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("barista cosim: error:")
    assert message in err


@pytest.mark.slow
@pytest.mark.cocotb
def test_demo_runs_bit_exact(barista, capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # noqa: ANN001
    assert barista(["demo-engines", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "all bit-exact" in out
    assert sorted(p.name for p in tmp_path.glob("*.v")) == [
        "backward_4x4_fx16_8a48.v",
        "forward_4x4_fx16_8a48.v",
        "gradient_4x4_fx16_8a48.v",
    ]
