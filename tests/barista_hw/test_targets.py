"""The target registry: one record per board owns its budget, platform and preset."""

from dataclasses import replace

import pytest

from barista_hw.presets import PRESETS
from barista_hw.resources import estimate
from barista_hw.targets import DEFAULT_TARGET, TARGETS, get_target


def test_every_target_preset_fits_its_budget_by_the_estimate() -> None:
    for name, t in TARGETS.items():
        assert estimate(t.preset, t.budget).fits(t.budget), name


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
