"""Dynamic fixed point: operand fractions and the output-scale tracker."""

import numpy as np

from barista_hw.numfmt import FixedFormat
from barista_hw.scaling import ScaleTracker, exponent, tensor_frac

FMT = FixedFormat(8, 4, 32)


def test_tensor_frac_fits_the_largest_value() -> None:
    for peak in (0.01, 0.5, 1.0, 3.7, 100.0):
        x = np.array([peak, -peak / 3])
        frac = tensor_frac(x, FMT)
        assert peak * 2**frac < 2 ** (FMT.width - 1)
        assert peak * 2 ** (frac + 1) >= 2 ** (FMT.width - 1)  # and uses the top bit
    assert exponent(0.0) < -32


def test_tracker_calibrates_then_adapts() -> None:
    t = ScaleTracker(FMT)
    shift, frac_out = t.plan_shift("conv1/forward", 6, 6, lambda: 5.0)  # 5 < 2**3
    assert frac_out == FMT.width - 2 - 3 and shift == 12 - frac_out
    t.observe("conv1/forward", np.array([127, -3]), frac_out)  # saturated: back off
    assert t.frac["conv1/forward"] == frac_out - 2
    t.observe("conv1/forward", np.array([3]), 1)  # 2 bits used of 6: four more
    assert t.frac["conv1/forward"] == 1 + 4
    state = t.state_dict()
    u = ScaleTracker(FMT)
    u.load_state_dict(state)
    assert u.state_dict() == state and u.call_index("conv1/forward") == 2
