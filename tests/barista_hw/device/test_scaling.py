"""barista_hw.device.scaling: next iteration's exponents land peaks in the target range."""

from __future__ import annotations

import json

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.device.scaling import (
    MAX_FRAC,
    MIN_FRAC,
    ZERO_GROWTH,
    ScaleTable,
    next_frac,
    probe_frac,
)
from barista_hw.device.vector import Rounder, Stats, convert
from barista_hw.numfmt import Rounding

NE = Rounder(Rounding.NEAREST_EVEN)


def _in_target(peak: float, width: int) -> bool:
    return 2 ** (width - 3) <= peak < 2 ** (width - 2)


@pytest.mark.parametrize("width", [8, 16, 32])
def test_grown_and_shrunk_peaks_land_in_the_target_range(width: int) -> None:
    for peak in [1, 2, 3, 5, 2 ** (width - 3), 2 ** (width - 2) - 1, 2 ** (width - 1) - 1]:
        frac = 10
        new = next_frac(frac, peak, 0, width)
        value = peak * 2.0**-frac  # the same value at the new exponent
        assert _in_target(value * 2.0**new, width), (peak, new)
    assert next_frac(10, 2 ** (width - 3), 0, width) == 10  # already in range: unchanged


def test_a_saturated_tensor_loses_what_it_overflowed() -> None:
    width, frac = 16, 20
    rng = np.random.default_rng(21)
    for scale in (1.5, 3.0, 40.0, 1e4):
        values = rng.normal(0, scale, size=500)
        exact = np.round(values * 2.0**40).astype(np.int64)  # the values at frac 40
        q, st = convert(exact, 40, frac, width, NE)
        assert st.saturated > 0 and st.overflow >= 1
        new = next_frac(frac, st.peak, st.saturated, width, overflow=st.overflow)
        assert new <= frac - 2
        q2, st2 = convert(exact, 40, new, width, NE)
        assert st2.saturated == 0
        assert 2 ** (width - 3) <= st2.peak <= 2 ** (width - 2)  # rounding may reach the top
    # without the overflow count it still loses at least one bit beyond the headroom
    assert next_frac(frac, 2**15, 3, width) == frac - 2


def test_zero_tensors_grow_by_a_bounded_step_and_fracs_clamp() -> None:
    assert next_frac(5, 0, 0, 16) == 5 + ZERO_GROWTH
    assert next_frac(MAX_FRAC, 0, 0, 16) == MAX_FRAC
    assert next_frac(60, 1, 0, 32) == MAX_FRAC
    assert next_frac(MIN_FRAC + 1, 2**15, 10, 16, overflow=9) == MIN_FRAC


def test_probe_agrees_with_the_delayed_rule() -> None:
    rng = np.random.default_rng(22)
    for _ in range(200):
        width = int(rng.integers(4, 33))
        frac = int(rng.integers(-20, 40))
        peak = int(rng.integers(1, 2 ** (width - 1)))
        assert probe_frac(peak * 2.0**-frac, width) == next_frac(frac, peak, 0, width)
    assert probe_frac(0.0, 16) == 8
    assert _in_target(0.3 * 2.0 ** probe_frac(-0.3, 16), 16)
    with pytest.raises(InputError, match="non-finite"):
        probe_frac(float("inf"), 16)


def test_scale_table_combines_writes_and_advances() -> None:
    table = ScaleTable()
    table.add("conv1.w", 12, 16)
    table.add("conv1.dw", 20, 16)
    table.add("unused", 7, 16)
    table.record("conv1.w", Stats(100, 0))
    table.record("conv1.w", Stats(5000, 0))  # a second tile: the larger peak counts
    table.record("conv1.dw", Stats(2**15, 2, 1))
    table.record("conv1.dw", Stats(2**15 - 1, 1, 3))
    table.advance()
    assert table.frac("conv1.w") == next_frac(12, 5000, 0, 16)
    assert table.frac("conv1.dw") == 20 - 4
    assert table.frac("unused") == 7  # not written this iteration
    table.advance()  # nothing written since: unchanged
    assert table.frac("conv1.w") == next_frac(12, 5000, 0, 16)
    with pytest.raises(ValueError, match="already"):
        table.add("unused", 1, 16)


def test_scale_table_round_trips_through_json() -> None:
    table = ScaleTable()
    table.add("a", 3, 16)
    table.add("b", -4, 32)
    table.record("a", Stats(7, 0))
    table.set_frac("b", 99)
    text = json.dumps(table.state_dict())
    other = ScaleTable()
    other.load_state_dict(json.loads(text))
    assert other.state_dict() == table.state_dict()
    assert other.frac("b") == MAX_FRAC
    table.advance()
    other.advance()
    assert other.state_dict() == table.state_dict()
    assert table.frac("a") == next_frac(3, 7, 0, 16)
