"""The target registry: one record per board owns its budget, platform and preset."""

from dataclasses import replace
from pathlib import Path

import pytest

from barista_hw.generate import generate
from barista_hw.presets import PRESETS
from barista_hw.resources import estimate
from barista_hw.targets import DEFAULT_TARGET, TARGETS, get_target


def test_every_target_preset_fits_its_budget_by_the_estimate() -> None:
    for name, t in TARGETS.items():
        assert estimate(t.preset, t.budget).fits(t.budget), name


LENET = Path(__file__).resolve().parents[2] / "examples" / "mnist" / "lenet_train_test.prototxt"


def test_every_target_preset_runs_lenet() -> None:
    """A board's preset runs every pass of the project's own LeNet (batch 64)."""
    from barista.commands.generate import load_layers

    name, layers = load_layers(str(LENET), {"data": (64, 1, 28, 28), "label": (64,)})
    for target in TARGETS:
        design = generate(layers, target=target, preset=target, name=name)
        assert design.config.engine.acc_depth > 0, target
        assert len(design.plan.passes) == 11 and design.plan.cycles > 0, target


def test_a_record_carries_its_name_and_clock_everywhere() -> None:
    for name, t in TARGETS.items():
        assert t.name == t.budget.name == t.preset.name == t.preset.target == name
        assert t.preset.clock_mhz == t.budget.mhz
        assert PRESETS[name] is t.preset  # the presets take it from the record
        module, _, cls = t.platform.partition(":")
        assert module.startswith("amaranth_boards.") and cls
        assert t.family in ("ecp5", "ice40") and t.clk_mhz > 0


def test_a_record_whose_parts_disagree_is_refused() -> None:
    t = TARGETS["ulx3s-45f"]
    with pytest.raises(ValueError, match="carry its name"):
        replace(t, preset=TARGETS["ulx3s-25f"].preset)
    with pytest.raises(ValueError, match="carry its name"):
        replace(t, name="ulx3s-45f-b")


def test_default_target_is_registered() -> None:
    assert get_target(DEFAULT_TARGET).name == DEFAULT_TARGET
