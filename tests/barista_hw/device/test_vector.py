"""barista_hw.device.vector: each operation against a float64 (or Caffe) reference within
its quantisation bound, bit-exact where the definition is exact.

Bounds, in LSBs of the output: nearest-even 1/2, floor in (-1, 0], stochastic below 1 either
way, plus the
stated extra terms (scalar and reciprocal mantissas, the SGD's guard bits).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import lfsr
from barista_hw.device.geometry import PoolGeometry
from barista_hw.device.vector import (
    GUARD,
    LATENCY,
    RECIP_BITS,
    SCALAR_BITS,
    Rounder,
    Stats,
    VecOp,
    argmax_plane_index,
    avepool,
    avepool_back,
    bias_add,
    bias_grad,
    convert,
    covering_windows,
    cycles,
    encode_scalar,
    mask_bits,
    maxpool,
    maxpool_back,
    mean_sub,
    relu,
    relu_back,
    scalar_from_param,
    scalar_param,
    sgd,
    shift_round,
)
from barista_hw.model import requantize
from barista_hw.numfmt import FixedFormat, Rounding

NE = Rounder(Rounding.NEAREST_EVEN)
FL = Rounder(Rounding.FLOOR)
SR = Rounder(Rounding.STOCHASTIC, seed=0x1234, lanes=16)


def _bound_ok(err: np.ndarray, rounding: Rounding, extra: float | np.ndarray = 0.0) -> bool:
    """``err = result - exact`` (in LSBs) within the rounding's bound plus ``extra``."""
    if rounding is Rounding.NEAREST_EVEN:
        return bool(np.all(np.abs(err) <= 0.5 + extra))
    if rounding is Rounding.FLOOR:
        return bool(np.all((err > -1 - extra) & (err <= extra)))
    return bool(np.all(np.abs(err) < 1 + extra))


# -- shift_round ---------------------------------------------------------------
@pytest.mark.parametrize("shift", [1, 5, 17, 31])
def test_shift_round_matches_the_engines_requantisation(shift: int) -> None:
    rng = np.random.default_rng(shift)
    x = rng.integers(-(1 << 40), 1 << 40, size=1000, dtype=np.int64)
    fmt = FixedFormat(16, 8, 56)
    words = lfsr.lane_words(SR.seed, SR.lanes, -(-x.size // SR.lanes), shift).reshape(-1)
    for rnd in (NE, FL, SR):
        q, _ = shift_round(x, shift, 16, rnd)
        expect = requantize(x, fmt, shift, rnd.rounding, words[: x.size])
        np.testing.assert_array_equal(q, expect)


@pytest.mark.parametrize("rnd", [NE, FL, SR], ids=lambda r: r.rounding.label)
def test_shift_round_within_bound_and_stats(rnd: Rounder) -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(-(1 << 30), 1 << 30, size=5000, dtype=np.int64)
    for shift in (11, 16, 33, 45):
        q, st = shift_round(x, shift, 21, rnd)
        exact = x / 2.0**shift
        assert _bound_ok(q - exact, rnd.rounding)
        assert st == Stats(int(np.abs(q).max()), 0)
    q, st = shift_round(x, 3, 16, rnd)  # most of them saturate
    raw, _ = shift_round(x, 3, 62, rnd)  # the same rounding, unsaturated
    assert _bound_ok(raw - x / 8.0, rnd.rounding)
    np.testing.assert_array_equal(q, np.clip(raw, -(2**15), 2**15 - 1))
    assert st.saturated == np.count_nonzero((raw < -(2**15)) | (raw >= 2**15))
    assert st.peak == 2**15
    assert st.overflow == int(np.abs(raw).max()).bit_length() - 15


def test_saturation_count_is_exact() -> None:
    x = np.array([100, 127, 128, -128, -129, 0, 5000, -5000], dtype=np.int64)
    q, st = shift_round(x, 0, 8, NE)
    np.testing.assert_array_equal(q, [100, 127, 127, -128, -128, 0, 127, -128])
    assert st == Stats(128, 4, (5000).bit_length() - 7)
    q, st = shift_round(x, 1, 8, NE)  # 64 and -64.5 -> -64 (even); 2500 saturates
    np.testing.assert_array_equal(q, [50, 64, 64, -64, -64, 0, 127, -128])
    assert st == Stats(128, 2, (2500).bit_length() - 7)


def test_zero_tensors_and_empty() -> None:
    for rnd in (NE, FL, SR):
        for shift in (-70, -3, 0, 4, 40, 100):
            q, st = shift_round(np.zeros((3, 4), np.int64), shift, 16, rnd)
            assert not q.any() and q.shape == (3, 4) and st == Stats(0, 0, 0)
    q, st = shift_round(np.zeros(0, np.int64), 5, 16, SR)
    assert q.size == 0 and st == Stats(0, 0, 0)


def test_negative_shifts_are_exact_and_saturate() -> None:
    x = np.array([3, -3, 1, -1, 0, 1000], dtype=np.int64)
    q, st = shift_round(x, -4, 16, FL)
    np.testing.assert_array_equal(q, x * 16)
    assert st == Stats(16000, 0)
    q, st = shift_round(x, -14, 16, NE)  # 3 * 2**14 saturates, -2**14 and 2**14 fit
    np.testing.assert_array_equal(q, [32767, -32768, 16384, -16384, 0, 32767])
    assert st == Stats(32768, 3, (1000).bit_length() + 14 - 15)
    q, st = shift_round(x, -70, 16, NE)  # beyond int64: saturation, no wrap
    np.testing.assert_array_equal(q, [32767, -32768, 32767, -32768, 0, 32767])
    assert st == Stats(32768, 5, (1000).bit_length() + 70 - 15)


def test_huge_right_shifts() -> None:
    x = np.array([(1 << 61) - 1, -(1 << 61), 5, -5, 0], dtype=np.int64)
    np.testing.assert_array_equal(shift_round(x, 70, 16, NE)[0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(shift_round(x, 70, 16, FL)[0], [0, -1, 0, -1, 0])
    np.testing.assert_array_equal(shift_round(x, 62, 16, NE)[0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(shift_round(x, 61, 16, NE)[0], [1, -1, 0, 0, 0])
    with pytest.raises(ValueError, match="2\\*\\*62"):
        shift_round(np.array([1 << 62]), 3, 16, NE)


def test_convert_between_exponents() -> None:
    rng = np.random.default_rng(3)
    q = rng.integers(-30000, 30000, size=400, dtype=np.int64)
    out, _ = convert(q, 12, 7, 16, NE)  # coarser: rounded
    assert _bound_ok(out - q / 2.0**5, Rounding.NEAREST_EVEN)
    out, st = convert(q, 7, 12, 32, NE)  # finer: exact
    np.testing.assert_array_equal(out, q * 32)
    assert st.saturated == 0


# -- stochastic rounding -------------------------------------------------------
def _stepped_words(seed: int, lanes: int, n: int) -> list[int]:
    """Element i's word by stepping the Galois LFSR: lane i % lanes, beat i // lanes."""
    out = []
    for i in range(n):
        state = lfsr.lane_seed(seed, i % lanes)
        for _ in range((i // lanes) * lfsr.LEAP):
            state = lfsr.galois_step(state)
        out.append(state)
    return out


def test_stochastic_words_are_the_lanes_and_beats() -> None:
    rnd = Rounder(Rounding.STOCHASTIC, seed=0xBEEF, lanes=4)
    x = np.arange(-7, 7, dtype=np.int64).reshape(2, 7) * 37
    words = _stepped_words(rnd.seed, rnd.lanes, x.size)
    for shift in (1, 9, 32, 40):
        q, _ = shift_round(x, shift, 20, rnd)
        if shift <= 32:
            expect = [
                (int(v) + (w & ((1 << shift) - 1))) >> shift
                for v, w in zip(x.flat, words, strict=True)
            ]
        else:  # the word sits at the top of the dropped bits
            expect = [
                ((int(v) >> (shift - 32)) + w) >> 32 for v, w in zip(x.flat, words, strict=True)
            ]
        assert q.reshape(-1).tolist() == expect


def test_stochastic_rounding_is_unbiased_where_nearest_even_is_not() -> None:
    n, shift = 200_000, 8
    x = np.full(n, 5 * 256 + 77, dtype=np.int64)  # 5.30078125 LSB
    exact = x[0] / 256
    q, _ = shift_round(x, shift, 16, SR)
    p = 77 / 256
    se = np.sqrt(p * (1 - p) / n)
    assert set(np.unique(q)) == {5, 6}
    assert abs(q.mean() - exact) < 4 * se
    qn, _ = shift_round(x, shift, 16, NE)
    assert qn.mean() - exact == -77 / 256  # every element rounds down: biased
    rng = np.random.default_rng(11)
    y = rng.integers(-(1 << 20), 1 << 20, size=n, dtype=np.int64)
    err = shift_round(y, 12, 16, SR)[0] - y / 4096
    assert abs(err.mean()) < 4 * err.std() / np.sqrt(n)
    floor_err = shift_round(y, 12, 16, FL)[0] - y / 4096
    assert floor_err.mean() < -0.45  # floor: biased by about half an LSB


def test_stochastic_seed_matters() -> None:
    x = np.arange(1000, dtype=np.int64) * 3
    a, _ = shift_round(x, 4, 16, SR)
    b, _ = shift_round(x, 4, 16, Rounder(Rounding.STOCHASTIC, seed=SR.seed + 2))
    assert (a != b).any()
    np.testing.assert_array_equal(shift_round(x, 4, 16, Rounder(2, SR.seed))[0], a)  # as the ISA
    with pytest.raises(ValueError, match="lane"):
        Rounder(Rounding.STOCHASTIC, lanes=0)


# -- element operations --------------------------------------------------------
@pytest.mark.parametrize("rnd", [NE, FL, SR], ids=lambda r: r.rounding.label)
def test_bias_add(rnd: Rounder) -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(-8000, 8000, size=(2, 3, 50), dtype=np.int64)
    bias = rng.integers(-60000, 60000, size=3, dtype=np.int64)
    for frac_bias in (13, 8, 4):  # rounded, equal, shifted up exactly
        out, st = bias_add(y, 8, bias, frac_bias, 16, rnd)
        exact = y + bias[None, :, None] * 2.0 ** (8 - frac_bias)
        inside = np.abs(exact) < 2**15 - 1
        assert _bound_ok(out[inside] - exact[inside], rnd.rounding)
        assert np.all(out[exact > 2**15] == 2**15 - 1)
        assert st.saturated == np.count_nonzero(np.abs(exact) > 2**15)
        if frac_bias <= 8:
            np.testing.assert_array_equal(out, np.clip(exact, -(2**15), 2**15 - 1))
    assert bias_add(y, 8, bias, 4, 16, rnd)[1].saturated > 0


@pytest.mark.parametrize("rnd", [NE, FL, SR], ids=lambda r: r.rounding.label)
def test_mean_sub(rnd: Rounder) -> None:
    """Images (bytes at frac 8) minus a mean image: exact at the finer exponent, one
    rounding below it, saturating."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, size=(4, 3, 5, 5), dtype=np.int64)
    mean = rng.integers(-(2**17), 2**17, size=(3, 5, 5), dtype=np.int64)  # frac 17
    for frac_out in (17, 12, 5):
        out, st = mean_sub(x, 8, mean, 17, frac_out, 18, rnd)
        exact = (x * 2.0**-8 - mean[None] * 2.0**-17) * 2.0**frac_out
        assert st.saturated == np.count_nonzero(np.abs(exact) > 2**17)
        inside = np.abs(exact) < 2**17 - 1
        assert _bound_ok(out[inside] - exact[inside], rnd.rounding)
        if frac_out == 17:
            np.testing.assert_array_equal(out, np.clip(exact, -(2**17), 2**17 - 1))
    with pytest.raises(ValueError, match="do not match"):
        mean_sub(x, 8, mean[:2], 17, 17, 18, rnd)


def test_bias_grad() -> None:
    rng = np.random.default_rng(6)
    dy = rng.integers(-30000, 30000, size=(4, 5, 30), dtype=np.int64)
    exact = dy.sum(axis=(0, 2)).astype(np.float64)
    for rnd in (NE, FL, SR):
        out, st = bias_grad(dy, 10, 3, 16, rnd)
        assert out.shape == (5,)
        assert _bound_ok(out - exact / 128, rnd.rounding)
        assert st.saturated == 0
    out, st = bias_grad(dy, 10, 10, 8, NE)  # full sums do not fit 8 bits
    assert st.saturated == np.count_nonzero(np.abs(exact) > 127)
    np.testing.assert_array_equal(out, np.clip(exact, -128, 127))


def test_relu_and_relu_back() -> None:
    rng = np.random.default_rng(8)
    x = rng.integers(-30000, 30000, size=(3, 400), dtype=np.int64)
    dy = rng.integers(-30000, 30000, size=x.shape, dtype=np.int64)
    out, st = relu(x, 16)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    assert st == Stats(int(x.max()), 0)
    back, _ = relu_back(dy, x, 16)
    np.testing.assert_array_equal(back, np.where(x > 0, dy, 0))
    slope_error = 2.0 ** -(SCALAR_BITS - 1)  # relative error of the encoded slope
    for slope in (0.1, 0.25, 1 / 3):
        for rnd in (NE, FL, SR):
            out, _ = relu(x, 16, slope, rnd=rnd)
            exact = np.where(x > 0, x, x * slope)
            assert _bound_ok(out - exact, rnd.rounding, np.abs(exact) * slope_error)
            back, _ = relu_back(dy, x, 16, slope, rnd=rnd)
            exact = np.where(x > 0, dy, dy * slope)
            assert _bound_ok(back - exact, rnd.rounding, np.abs(exact) * slope_error)


def test_encode_scalar() -> None:
    for k in range(-40, 10):
        m, e = encode_scalar(2.0**k)
        assert m * 2.0**-e == 2.0**k and m == 1 << 14
        m, e = encode_scalar(-(2.0**k))
        assert m * 2.0**-e == -(2.0**k)
    rng = np.random.default_rng(9)
    for x in np.concatenate([rng.uniform(-1, 1, 300), 10.0 ** rng.uniform(-9, 3, 300)]):
        m, e = encode_scalar(float(x), 16)
        assert -(2**15) <= m < 2**15 and abs(m) >= 2**14
        assert abs(m * 2.0**-e - x) <= abs(x) * 2.0**-15
    assert encode_scalar(0.0) == (0, 0)
    assert encode_scalar(1 - 2**-30, 8) == (64, 6)  # rounds up to 1: renormalised
    with pytest.raises(InputError, match="finite"):
        encode_scalar(float("nan"))


# -- pooling against Caffe ----------------------------------------------------
GEOMETRIES = [
    PoolGeometry(2, 7, 9, (3, 2), (2, 1), (1, 1)),
    PoolGeometry(3, 6, 6, (2, 2), (2, 2)),
    PoolGeometry(2, 6, 7, (3, 3), (2, 2)),  # CEIL mode: the last window passes the image
    PoolGeometry(1, 5, 8, (3, 4), (2, 3), (1, 2)),
    PoolGeometry(2, 4, 4, (4, 4)),  # global
]


def _caffe_pool(geom: PoolGeometry, pool: str, images: int, tops: int = 1):  # noqa: ANN202
    from caffe_bridge.blob import Blob
    from caffe_bridge.testing import make_layer

    (kh, kw), (sh, sw), (ph, pw) = geom.kernel, geom.stride, geom.pad
    layer = make_layer(
        f'type: "Pooling" pooling_param {{ pool: {pool} kernel_h: {kh} kernel_w: {kw} '
        f"stride_h: {sh} stride_w: {sw} pad_h: {ph} pad_w: {pw} }}"
    )
    bottom = [Blob((images, geom.channels, geom.height, geom.width))]
    top = [Blob() for _ in range(tops)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    return layer, bottom, top


@pytest.mark.parametrize("geom", GEOMETRIES, ids=str)
def test_maxpool_matches_caffe(geom: PoolGeometry) -> None:
    rng = np.random.default_rng(12)
    layer, bottom, top = _caffe_pool(geom, "MAX", 3, tops=2)
    x = rng.integers(-3, 4, size=bottom[0].shape, dtype=np.int64)  # many ties
    x[0, 0] = -5  # an all-negative plane: the padding must not win
    bottom[0].data[...] = x
    layer.forward(bottom, top)
    y, mask, st = maxpool(x, geom)
    np.testing.assert_array_equal(y, top[0].data)
    np.testing.assert_array_equal(argmax_plane_index(mask, geom), top[1].data)
    assert 0 <= mask.min() and mask.max() < 1 << mask_bits(geom)
    assert st == Stats(int(np.abs(y).max()), 0)
    dy = rng.integers(-100, 100, size=y.shape, dtype=np.int64)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    dx, st = maxpool_back(dy, mask, geom, 16)
    np.testing.assert_array_equal(dx, bottom[0].diff)
    assert st.saturated == 0


def test_maxpool_back_saturates_overlaps() -> None:
    geom = PoolGeometry(1, 5, 5, (3, 3), (1, 1))
    x = np.zeros((1, 1, 5, 5), np.int64)
    x[0, 0, 2, 2] = 9  # the maximum of all nine windows
    _, mask, _ = maxpool(x, geom)
    dx, st = maxpool_back(np.full((1, 1, 3, 3), 20, np.int64), mask, geom, 8)
    assert dx[0, 0, 2, 2] == 127 and dx.sum() == 127
    assert st == Stats(127, 1, (180).bit_length() - 7)


@pytest.mark.parametrize("geom", GEOMETRIES, ids=str)
@pytest.mark.parametrize("rnd", [NE, FL, SR], ids=lambda r: r.rounding.label)
def test_avepool_matches_caffe(geom: PoolGeometry, rnd: Rounder) -> None:
    rng = np.random.default_rng(13)
    layer, bottom, top = _caffe_pool(geom, "AVE", 3)
    x = rng.integers(-4000, 4000, size=bottom[0].shape, dtype=np.int64)
    bottom[0].data[...] = x
    layer.forward(bottom, top)
    ref = top[0].data.astype(np.float64)
    y, _ = avepool(x, geom, 16, rnd)
    # the reciprocal's error, and float32 Caffe's (a few ulps)
    slack = np.abs(ref) * (2.0**-RECIP_BITS + 2.0**-21)
    assert _bound_ok(y - ref, rnd.rounding, slack)
    dy = rng.integers(-4000, 4000, size=y.shape, dtype=np.int64)
    top[0].diff[...] = np.abs(dy)
    layer.backward(top, [True], bottom)
    spread = bottom[0].diff.astype(np.float64)  # sum of |dy / n| over covering windows
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    ref = bottom[0].diff.astype(np.float64)
    dx, _ = avepool_back(dy, geom, 16, rnd)
    assert _bound_ok(dx - ref, rnd.rounding, spread * (2.0**-RECIP_BITS + 2.0**-21))


def test_avepool_power_of_two_windows_are_exact_division() -> None:
    geom = PoolGeometry(1, 4, 4, (2, 2), (2, 2))
    x = np.arange(-8, 8, dtype=np.int64).reshape(1, 1, 4, 4) * 4 + 1
    y, _ = avepool(x, geom, 16, FL)
    sums = x.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(2, 2, 4).sum(axis=2)
    np.testing.assert_array_equal(y[0, 0], sums >> 2)


# -- SGD -------------------------------------------------------------------------
def _value(q: np.ndarray, frac: int) -> np.ndarray:
    return q.astype(np.float64) * 2.0**-frac


@pytest.mark.parametrize("rnd", [NE, FL, SR], ids=lambda r: r.rounding.label)
@pytest.mark.parametrize("lr,decay", [(0.01, 5e-4), (0.02, 0.0), (0.003, 1e-2)])
def test_sgd_matches_caffe_within_bound(rnd: Rounder, lr: float, decay: float) -> None:
    rng = np.random.default_rng(14)
    fm, fv, fg, fo = 28, 34, 14, 12
    w = rng.integers(-(1 << 28), 1 << 28, size=600, dtype=np.int64)
    v = np.zeros_like(w)
    scal = {"lr": encode_scalar(lr), "mom": encode_scalar(0.9), "decay": encode_scalar(decay)}
    lr_q, mom_q, decay_q = (m * 2.0**-e for m, e in scal.values())
    tol = 0.5 if rnd.rounding is Rounding.NEAREST_EVEN else 1.0
    for _ in range(4):
        g = rng.integers(-(1 << 15), 1 << 15, size=w.shape, dtype=np.int64)
        res = sgd(w, fm, v, fv, g, fg, operand_bits=16, frac_operand=fo, rnd=rnd, **scal)
        # Caffe: v = m v + lr (g + d w); w -= v
        v_ref = mom_q * _value(v, fv) + lr_q * (_value(g, fg) + decay_q * _value(w, fm))
        v_err = (_value(res.momentum, fv) - v_ref) * 2.0**fv  # in LSBs of v
        assert _bound_ok(v_err, rnd.rounding, 3 * 2.0 ** -(GUARD + 1))
        w_ref = _value(w, fm) - v_ref
        w_err = (_value(res.master, fm) - w_ref) * 2.0**fm
        assert np.all(np.abs(w_err) <= tol + 2.0**-GUARD + np.abs(v_err) * 2.0 ** (fm - fv))
        op_err = _value(res.operand, fo) - _value(res.master, fm)
        assert _bound_ok(op_err * 2.0**fo, rnd.rounding)
        assert res.momentum_stats.peak == int(np.abs(res.momentum).max())
        assert res.operand_stats.saturated == 0 and res.master_stats.saturated == 0
        w, v = res.master, res.momentum
    assert np.abs(v).max() > 1 << 20  # the momentum is not vanishing
    assert res.operand_stats.peak == int(np.abs(res.operand).max())


def test_sgd_saturates_the_operand_copy() -> None:
    w = np.array([1 << 30, -(1 << 30), 5], dtype=np.int64)
    zero = np.zeros_like(w)
    res = sgd(
        w, 24, zero, 30, zero, 10, lr=encode_scalar(0.1), mom=encode_scalar(0.9),
        decay=encode_scalar(0.0), operand_bits=16, frac_operand=12, rnd=NE,
    )  # fmt: skip
    np.testing.assert_array_equal(res.master, w)
    np.testing.assert_array_equal(res.operand, [32767, -32768, 0])
    assert res.operand_stats.saturated == 2 and res.momentum_stats == Stats(0, 0)


def test_cycles_follow_the_stated_throughput() -> None:
    assert cycles(VecOp.RELU, 100, 100, 16) == 7 + LATENCY
    # a lane a channel: 10 channels fit one beat of 16 lanes, 160 gradients each
    assert cycles(VecOp.BIAS_GRAD, 1600, 10, 16) == 160 + LATENCY
    assert cycles(VecOp.BIAS_GRAD, 1600, 20, 16) == 2 * 80 + LATENCY
    assert cycles(VecOp.MAXPOOL, 400, 100, 16, window=4) == 4 * 7 + LATENCY
    # a lane a pixel, its 2 x 2 candidate windows (3 x 3 kernel, stride 2) in turn
    cover = covering_windows((3, 3), (2, 2))
    assert cover == 4 and covering_windows((2, 2), (2, 2)) == 1
    assert cycles(VecOp.AVEPOOL_BACK, 100, 400, 16, window=9, cover=cover) == 4 * 25 + LATENCY
    assert cycles(VecOp.SGD, 3 * 64, 64, 16) == 4 + LATENCY
    assert cycles(VecOp.CONVERT, 64, 64, 32) < cycles(VecOp.CONVERT, 64, 64, 16)


@pytest.mark.parametrize("x", [0.0, 0.01, -0.25, 1 / 3, 0.1, 2.0**-20, -1.0])
def test_a_scalar_param_carries_the_encoded_scalar(x: float) -> None:
    m, e = encode_scalar(x)
    assert scalar_from_param(scalar_param(x)) == math.ldexp(m, -e)
    assert encode_scalar(scalar_from_param(scalar_param(x))) == (m, e)
