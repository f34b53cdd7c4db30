"""``barista build``'s arguments, and its step down when a design does not fit, with a
stand-in for the board build (the builds themselves: tests/boards/test_build.py)."""

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from barista.commands import build
from barista_hw.config import AcceleratorConfig
from barista_hw.presets import PRESETS
from barista_hw.targets import TARGETS
from boards.protocol import DEFAULT_BAUD


def test_board_choices_are_the_registry() -> None:
    parser = argparse.ArgumentParser()
    build.add_arguments(parser)
    text = parser.format_help()
    assert "{" + ",".join(sorted(TARGETS)) + "}" in text
    assert "{" + ",".join(sorted(PRESETS)) + "}" in text
    for name in TARGETS:
        args = parser.parse_args(["net.prototxt", "--board", name])
        assert args.board == name and args.baud == DEFAULT_BAUD


LENET = Path(__file__).resolve().parents[3] / "examples" / "mnist" / "lenet_train_test.prototxt"
SHAPES = ["--data-shape", "data=64,1,28,28", "--data-shape", "label=64"]


class FakeBuilds:
    """Stands in for boards.build.build_board on the iCEBreaker: ``used(n)`` gives the
    ICESTORM_LC and ICESTORM_RAM counts the n-th build (from 0) reports; more than the
    UP5K has (5280, 30) is a no-fit."""

    def __init__(self, used: Callable[[int], tuple[int, int]]) -> None:
        self.used = used
        self.configs: list[AcceleratorConfig] = []

    def __call__(self, cfg: AcceleratorConfig, board: object, *, out: Path, **_: object):
        from boards.report import REPORT, BuildReport

        lcs, rams = self.used(len(self.configs))
        self.configs.append(cfg)
        report = BuildReport(
            "ok", "icebreaker", "iCE40UP5K", cfg.to_dict(), "00", {}, DEFAULT_BAUD, 24, 256
        )
        report.utilisation = {
            "ICESTORM_LC": {"used": lcs, "available": 5280},
            "ICESTORM_RAM": {"used": rams, "available": 30},
            "ICESTORM_DSP": {"used": cfg.engine.pes, "available": 8},
        }
        over = [f"{c} {u['used']} / {u['available']}" for c, u in report.utilisation.items()
                if u["used"] > u["available"]]  # fmt: skip
        if over:
            report.status = "no-fit"
            report.messages.append(f"does not fit iCE40UP5K: needs {', '.join(over)}")
        else:
            report.fmax = {"clk": {"achieved_mhz": 30.0, "constraint_mhz": 24.0}}
        Path(out).mkdir(parents=True, exist_ok=True)
        report.write(Path(out) / REPORT)
        return report


def _build(argv: list[str], fake: FakeBuilds, monkeypatch: pytest.MonkeyPatch) -> int:
    import boards.build
    from barista.cli import build_parser

    monkeypatch.setattr(boards.build, "build_board", fake)
    return build.run(build_parser().parse_args(["build", *argv]))


def test_build_steps_down_when_a_design_does_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from barista.commands.generate import load_layers
    from barista.manifest import load_accelerator
    from barista_hw.generate import generate

    name, layers = load_layers(str(LENET), {"data": (64, 1, 28, 28), "label": (64,)})
    planned = generate(layers, target="icebreaker", name=name)
    assert planned.dse is not None
    first = planned.dse.best
    overshoot = 5300  # nextpnr's count of the first design: more than the UP5K's 5280
    expected = planned.dse.step_down([first.config], {"luts": overshoot / first.resources.luts})
    assert expected is not None

    fake = FakeBuilds(lambda n: (overshoot if n == 0 else 4900, 20))
    out = tmp_path / "o"
    assert (
        _build([str(LENET), "--board", "icebreaker", *SHAPES, "-o", str(out)], fake, monkeypatch)
        == 0
    )
    assert fake.configs == [first.config, expected.config]
    # The design built is the one written out, and the report says how it was reached.
    assert load_accelerator(str(out / "rtl")).config == expected.config
    step = (
        f"{first.label} did not fit iCE40UP5K: ICESTORM_LC {overshoot} / 5280 where "
        f"{first.resources.luts} were estimated; stepping down to {expected.label}"
    )
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "ok" and report["messages"][0].startswith(step)
    assert report["config"] == expected.config.to_dict()
    printed = capsys.readouterr().out
    assert f"barista build: {step}" in printed
    assert printed.index(step) < printed.rindex("status ok")


def test_build_step_downs_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    argv = [str(LENET), "--board", "icebreaker", *SHAPES, "-o", str(tmp_path / "o")]
    # Far more logic than estimated: after one step down nothing is estimated to fit.
    fake = FakeBuilds(lambda n: (5300, 20))
    assert _build(argv, fake, monkeypatch) == 1
    assert len(fake.configs) == 2 and fake.configs[0] != fake.configs[1]
    err = capsys.readouterr().err
    assert "no other design of the Pareto front is estimated to fit" in err
    # Always one block RAM too many: each step down corrects the estimate a little more,
    # and the builds stop at the limit.
    fake = FakeBuilds(lambda n: (4900, 31))
    assert _build(argv, fake, monkeypatch) == 1
    assert len(fake.configs) == build.MAX_STEP_DOWNS + 1
    assert len(set(fake.configs)) == len(fake.configs)  # never the same design twice
    err = capsys.readouterr().err
    assert f"stopped after stepping down {build.MAX_STEP_DOWNS} times" in err


def test_a_fixed_design_that_does_not_fit_is_reported_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake = FakeBuilds(lambda n: (5300, 20))
    argv = [str(LENET), "--board", "icebreaker", *SHAPES, "-o", str(tmp_path / "o")]
    assert _build([*argv, "--preset", "icebreaker"], fake, monkeypatch) == 1
    assert fake.configs == [replace(PRESETS["icebreaker"], name="LeNet")]
    err = capsys.readouterr().err
    assert "does not fit iCE40UP5K: needs ICESTORM_LC 5300 / 5280" in err
    assert "stepping down" not in err
