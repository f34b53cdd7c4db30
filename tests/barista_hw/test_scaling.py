"""Dynamic fixed point (operand fractions, the output-scale tracker) and static fixed point."""

import contextlib
import math

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import native
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.scaling import (
    DYNAMIC,
    STATIC,
    ScaleTracker,
    StaticScales,
    exponent,
    max_abs,
    parse_scaling,
    quantize_fitted,
    quantize_static,
    tensor_frac,
)

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


def test_max_abs_in_every_layout() -> None:
    """The compiled pass (dense arrays in any axis order) and numpy's (the rest) agree,
    with infinities and NaN."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    x[1, 2, 3] = -9.25
    for fused in (True, False):
        with contextlib.nullcontext() if fused else native.disabled():
            for view in (x, x.transpose(2, 0, 1), x[:, ::2], x[::-1], x.astype(np.float64)):
                assert max_abs(view) == float(np.abs(view).max())
            assert max_abs(np.zeros((0, 3), np.float32)) == 0.0
            y = x.copy()
            y[0, 0, 0] = -np.inf
            assert max_abs(y) == math.inf
            y[3, 5, 4] = np.nan
            assert math.isnan(max_abs(y)) and math.isnan(max_abs(y.T))


def test_observe_peak_is_observe() -> None:
    q = np.array([[5, -40], [17, 2]])
    t, u = ScaleTracker(FMT), ScaleTracker(FMT)
    t.observe("k", q, 9)
    u.observe_peak("k", 40.0, 9)
    assert t.state_dict() == u.state_dict()


def test_quantize_fitted_is_quantize_at_the_fitting_frac() -> None:
    """Right, wrong and missing guesses all give the integers, frac and peak of the
    definition (tensor_frac, then quantise); a non-finite tensor reports its peak."""
    fmt = FixedFormat(16, 8, 48)
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((5, 9, 4)) * 0.3).astype(np.float32).transpose(1, 0, 2)
    frac = tensor_frac(x, fmt)
    want = fmt.quantize(x, frac, dtype=np.float64)
    for fused in (True, False):
        with contextlib.nullcontext() if fused else native.disabled():
            for guess in (None, frac, frac + 1, frac - 3, -64):
                out = np.empty(x.shape)
                q, got_frac, peak = quantize_fitted(x, fmt, guess, out)
                assert got_frac == frac and peak == max_abs(x)
                np.testing.assert_array_equal(q, want)
            y = x.copy()
            y[2, 3, 1] = np.nan
            assert math.isnan(quantize_fitted(y, fmt, frac)[2])


def test_quantize_static_uses_the_written_fraction_bits() -> None:
    """Static: the integers are round-half-even(x * 2**frac), saturated, whatever the peak."""
    fmt = FixedFormat(8, 4, 32)
    x = np.array([[0.03125, -0.09375, 1.5], [100.0, -100.0, 0.0]], dtype=np.float32)
    # 0.03125*16 = 0.5 -> 0 (half to even), -1.5 -> -2, 24, saturated 127 and -128.
    want = np.array([[0.0, -2.0, 24.0], [127.0, -128.0, 0.0]])
    for fused in (True, False):
        with contextlib.nullcontext() if fused else native.disabled():
            q, frac, peak = quantize_static(x, fmt)
            assert frac == 4 and peak == 100.0
            np.testing.assert_array_equal(q, want)
            assert not math.isfinite(quantize_static(np.array([np.nan, 1.0]), fmt)[2])


def test_quantize_static_rounds_as_the_engines() -> None:
    """Floor rounds down; stochastic keeps a quarter LSB on average (seeded: same draws
    for the same seed), where nearest makes it zero; both saturate."""
    fmt = FixedFormat(8, 4, 32)
    x = np.full(10_000, 2.0**-6, dtype=np.float32)  # a quarter of an LSB of fx8.4
    assert not quantize_static(x, fmt)[0].any()
    q, frac, _ = quantize_static(x, fmt, rounding=Rounding.STOCHASTIC, seed=3)
    assert frac == 4 and set(np.unique(q)) == {0.0, 1.0} and 0.23 < q.mean() < 0.27
    again = quantize_static(x, fmt, rounding=Rounding.STOCHASTIC, seed=3)[0]
    np.testing.assert_array_equal(q, again)
    big = np.array([-0.03, 0.07, 100.0, -100.0])
    np.testing.assert_array_equal(
        quantize_static(big, fmt, rounding=Rounding.FLOOR)[0], [-1.0, 1.0, 127.0, -128.0]
    )
    assert quantize_static(big, fmt, rounding=Rounding.STOCHASTIC)[0][2:].tolist() == [127, -128]


def test_static_scales_keep_the_format_and_count_calls() -> None:
    t = StaticScales(FMT)
    for peak in (127.0, 0.0, 3.0):  # saturated, underflowed, small: no adaptation
        assert t.plan_shift("ip1/forward", 4, 4, lambda: 1000.0) == (4, 4)
        t.observe_peak("ip1/forward", peak, 4)
    assert t.call_index("ip1/forward") == 3


def test_parse_scaling() -> None:
    assert parse_scaling("Static") == STATIC and parse_scaling("dynamic") == DYNAMIC
    with pytest.raises(InputError, match="unknown scaling 'fixed'"):
        parse_scaling("fixed")
