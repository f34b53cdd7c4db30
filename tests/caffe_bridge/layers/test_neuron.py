"""Element-wise neuron layers with Caffe's semantics.

Cases follow BVLC/caffe's test_neuron_layer.cpp (including ELU and BNLL),
test_threshold_layer.cpp and test_power_layer.cpp: forward
against the closed-form reference, gradients against finite differences (Caffe's
GradientChecker settings), in-place runs against out-of-place ones.
"""

import numpy as np
import pytest

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerError
from caffe_bridge.testing import blob_from, check_gradients
from caffe_bridge.testing import make_layer as make

SHAPE = (2, 3, 4, 5)  # Caffe's neuron tests use a 2x3x4x5 blob


def gaussian(shape=SHAPE, seed=1701, std=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * std).astype(np.float32)


def away_from_zero(shape=SHAPE, seed=1701, margin=0.05):
    """Gaussian values pushed at least ``margin`` from 0, clear of ReLU/AbsVal's kink."""
    x = gaussian(shape, seed)
    return np.where(x >= 0, x + margin, x - margin).astype(np.float32)


def run(layer, bottoms, in_place: bool = False) -> Blob:
    top = [bottoms[0]] if in_place else [Blob()]
    layer.check_blob_counts(bottoms, top)
    layer.setup(bottoms, top)
    layer.reshape(bottoms, top)
    layer.forward(bottoms, top)
    return top[0]


def backward(layer, bottoms, top: Blob, dy: np.ndarray) -> np.ndarray:
    top.diff[...] = dy
    layer.backward([top], [True], bottoms)
    return bottoms[0].diff.copy()


def in_place_matches(text: str, x: np.ndarray, phase: str = "TRAIN") -> None:
    """Forward and backward in place give exactly what the out-of-place run gives."""
    dy = gaussian(x.shape, seed=7)
    ref_layer = make(text, phase)
    bottom = blob_from(x)
    top = run(ref_layer, [bottom])
    y_ref = top.data.copy()
    dx_ref = backward(ref_layer, [bottom], top, dy)

    layer = make(text, phase)
    shared = blob_from(x)
    out = run(layer, [shared], in_place=True)
    assert out is shared
    np.testing.assert_array_equal(shared.data, y_ref)
    dx = backward(layer, [shared], shared, dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- ReLU
def test_relu_forward_is_max_with_zero():
    x = gaussian()
    y = run(make('type: "ReLU"'), [blob_from(x)]).data
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert (y >= 0).all() and (y[x > 0] == x[x > 0]).all()


def test_relu_negative_slope_forward():
    x = gaussian()
    y = run(make('type: "ReLU" relu_param { negative_slope: 0.01 }'), [blob_from(x)]).data
    expected = np.where(x > 0, x, np.float32(0.01) * x)
    np.testing.assert_allclose(y, expected, rtol=1e-6)


@pytest.mark.parametrize("slope", [0.0, 0.01])
def test_relu_gradient(slope):
    layer = make(f'type: "ReLU" relu_param {{ negative_slope: {slope} }}')
    check_gradients(
        layer, [blob_from(away_from_zero())], [Blob()], threshold=1e-3, kink=0.0, kink_range=0.01
    )


def test_relu_in_place():
    in_place_matches('type: "ReLU" relu_param { negative_slope: 0.1 }', away_from_zero())


# --------------------------------------------------------------------------- PReLU
def test_prelu_default_slope_and_forward():
    x = gaussian()
    layer = make('type: "PReLU"')
    y = run(layer, [blob_from(x)]).data
    assert layer.blobs[0].shape == (3,)
    np.testing.assert_array_equal(layer.blobs[0].data, np.full(3, 0.25, np.float32))
    np.testing.assert_allclose(y, np.where(x > 0, x, np.float32(0.25) * x), rtol=1e-6)


def test_prelu_channel_shared_is_one_scalar():
    layer = make('type: "PReLU" prelu_param { channel_shared: true }')
    run(layer, [blob_from(gaussian())])
    assert layer.blobs[0].shape == ()
    assert float(layer.blobs[0].data) == 0.25


def test_prelu_filler_and_per_channel_forward():
    x = gaussian()
    layer = make('type: "PReLU" prelu_param { filler { type: "gaussian" std: 0.5 } }')
    y = run(layer, [blob_from(x)]).data
    slope = layer.blobs[0].data
    assert not np.allclose(slope, 0.25)  # the filler was used
    expected = np.where(x > 0, x, slope[None, :, None, None] * x)
    np.testing.assert_allclose(y, expected, rtol=1e-6)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_gradient(shared):
    layer = make(
        f'type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} '
        'filler { type: "uniform" min: 0.1 max: 0.6 } }'
    )
    check_gradients(layer, [blob_from(away_from_zero())], [Blob()], kink=0.0, kink_range=0.01)


def test_prelu_consistent_with_relu():
    # Caffe's TestPReLUConsistencyReLU: PReLU with slope 0.25 equals ReLU with slope 0.25.
    x = away_from_zero()
    dy = gaussian(seed=3)
    prelu, relu = make('type: "PReLU"'), make('type: "ReLU" relu_param { negative_slope: 0.25 }')
    bp, br = blob_from(x), blob_from(x)
    tp, tr = run(prelu, [bp]), run(relu, [br])
    np.testing.assert_allclose(tp.data, tr.data, rtol=1e-6)
    np.testing.assert_allclose(backward(prelu, [bp], tp, dy), backward(relu, [br], tr, dy))


def test_prelu_in_place_keeps_slope_gradient():
    x, dy = away_from_zero(), gaussian(seed=3)
    ref = make('type: "PReLU"')
    b = blob_from(x)
    t = run(ref, [b])
    dx_ref = backward(ref, [b], t, dy)
    layer = make('type: "PReLU"')
    shared = blob_from(x)
    run(layer, [shared], in_place=True)
    dx = backward(layer, [shared], shared, dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[0].diff, ref.blobs[0].diff, rtol=1e-5)
    assert np.abs(layer.blobs[0].diff).sum() > 0


def test_prelu_rejects_1d_bottom():
    with pytest.raises(LayerError, match="at least 2 axes"):
        run(make('name: "p" type: "PReLU"'), [blob_from(np.ones(4))])


# --------------------------------------------------------------------------- Sigmoid, TanH
def test_sigmoid_forward_and_gradient():
    x = gaussian()
    y = run(make('type: "Sigmoid"'), [blob_from(x)]).data
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6, atol=1e-7)
    assert ((y > 0) & (y < 1)).all()
    check_gradients(make('type: "Sigmoid"'), [blob_from(x)], [Blob()])


def test_tanh_forward_and_gradient():
    x = gaussian()
    y = run(make('type: "TanH"'), [blob_from(x)]).data
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=1e-6, atol=1e-7)
    check_gradients(make('type: "TanH"'), [blob_from(x)], [Blob()])


@pytest.mark.parametrize("kind", ["Sigmoid", "TanH", "Exp"])
def test_output_based_layers_in_place(kind):
    in_place_matches(f'type: "{kind}"', gaussian())


# --------------------------------------------------------------------------- AbsVal
def test_absval_forward_gradient_and_no_in_place():
    x = away_from_zero()
    np.testing.assert_array_equal(run(make('type: "AbsVal"'), [blob_from(x)]).data, np.abs(x))
    check_gradients(make('type: "AbsVal"'), [blob_from(x)], [Blob()], kink=0.0, kink_range=0.01)
    with pytest.raises(LayerError, match="in-place"):
        run(make('name: "abs" type: "AbsVal"'), [blob_from(x)], in_place=True)


# --------------------------------------------------------------------------- Power
POWER_CASES = [
    # (power, scale, shift): test_power_layer.cpp's cases
    (0.37, 0.83, -2.4),
    (0.37, 0.83, 0.0),
    (0.0, 0.83, -2.4),
    (0.0, 0.0, -2.4),  # diff_scale 0: constant output
    (1.0, 0.83, -2.4),
    (2.0, 0.34, -2.4),
    (2.0, 0.5, 0.0),
    (-2.0, 0.83, 1.0),
]


@pytest.mark.parametrize(("power", "scale", "shift"), POWER_CASES)
def test_power_forward(power, scale, shift):
    x = gaussian()
    layer = make(f'type: "Power" power_param {{ power: {power} scale: {scale} shift: {shift} }}')
    y = run(layer, [blob_from(x)]).data
    p, s, t = np.float32(power), np.float32(scale), np.float32(shift)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.power(t + s * x.astype(np.float64), float(p))
    if power in (0.0, 1.0, 2.0):
        assert not np.isnan(y).any()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("power", "scale", "shift"), POWER_CASES)
def test_power_gradient(power, scale, shift):
    x = gaussian()
    if power not in (0.0, 1.0, 2.0):
        # Caffe's TestPowerGradient: keep shift + scale * x positive (and away from 0).
        inner = np.float32(shift) + np.float32(scale) * x
        x = np.where(inner < 0.5, x + (0.5 - inner) / np.float32(scale) + 0.1, x)
        x = x.astype(np.float32)
    layer = make(f'type: "Power" power_param {{ power: {power} scale: {scale} shift: {shift} }}')
    check_gradients(layer, [blob_from(x)], [Blob()], threshold=1e-2)


def test_power_in_place_gradient_uses_input():
    x = np.abs(gaussian()) + np.float32(0.5)
    in_place_matches('type: "Power" power_param { power: 0.37 scale: 0.83 shift: 1 }', x)


# --------------------------------------------------------------------------- Exp, Log
EXP_CASES = [(-1, 1, 0), (-1, 3, 0), (-1, 1, 1), (-1, 0.5, -2), (2, 1, 0), (2, 3, 1), (2, 0.5, -2)]


@pytest.mark.parametrize(("base", "scale", "shift"), EXP_CASES)
def test_exp_forward_and_gradient(base, scale, shift):
    x = gaussian()
    text = f'type: "Exp" exp_param {{ base: {base} scale: {scale} shift: {shift} }}'
    y = run(make(text), [blob_from(x)]).data
    b = np.e if base == -1 else base
    np.testing.assert_allclose(y, b ** (shift + scale * x.astype(np.float64)), rtol=1e-5)
    check_gradients(make(text), [blob_from(x)], [Blob()])


@pytest.mark.parametrize(("base", "scale", "shift"), EXP_CASES)
def test_log_forward_and_gradient(base, scale, shift):
    # Inputs keep shift + scale * x >= 0.5 so the log and its slope stay tame.
    x = (np.abs(gaussian()) + np.float32(0.5) - np.float32(shift)) / np.float32(scale)
    x = x.astype(np.float32)
    text = f'type: "Log" log_param {{ base: {base} scale: {scale} shift: {shift} }}'
    y = run(make(text), [blob_from(x)]).data
    b = np.e if base == -1 else base
    np.testing.assert_allclose(
        y, np.log(shift + scale * x.astype(np.float64)) / np.log(b), rtol=1e-5
    )
    check_gradients(make(text), [blob_from(x)], [Blob()], threshold=1e-2)


def test_exp_then_log_is_identity():
    x = gaussian()
    y = run(make('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }'), [blob_from(x)])
    z = run(make('type: "Log" log_param { base: 2 scale: 1 shift: 0 }'), [y]).data
    np.testing.assert_allclose(z, 1 + 0.5 * x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["Exp", "Log"])
def test_exp_log_reject_bad_base(kind):
    with pytest.raises(LayerError, match=f"{kind.lower()}_param.base"):
        run(make(f'type: "{kind}" {kind.lower()}_param {{ base: -2 }}'), [blob_from(np.ones(3))])


# --------------------------------------------------------------------------- Dropout
@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_dropout_train_scales_kept_units(ratio):
    # Caffe's TestDropoutHalf / TestDropoutThreeQuarters, on a larger blob.
    x = np.abs(gaussian((20, 10, 10, 10))) + np.float32(0.1)
    layer = make(f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}')
    y = run(layer, [blob_from(x)]).data
    kept = y != 0
    scale = np.float32(1.0 / (1.0 - np.float32(ratio)))
    np.testing.assert_allclose(y[kept], x[kept] * scale, rtol=1e-6)
    frac_kept = kept.mean()
    assert abs(frac_kept - (1 - ratio)) < 0.02
    dy = gaussian(x.shape, seed=5)
    b = blob_from(x)
    top = run(make(f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}'), [b])
    layer2 = make(f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}')
    b2 = blob_from(x)
    top2 = run(layer2, [b2])
    dx = backward(layer2, [b2], top2, dy)
    mask = top2.data != 0
    np.testing.assert_allclose(dx, np.where(mask, dy * scale, 0), rtol=1e-6)
    assert top.data.shape == x.shape


def test_dropout_test_phase_is_identity():
    x, dy = gaussian(), gaussian(seed=2)
    layer = make('type: "Dropout"', phase="TEST")
    b = blob_from(x)
    top = run(layer, [b])
    np.testing.assert_array_equal(top.data, x)
    np.testing.assert_array_equal(backward(layer, [b], top, dy), dy)


def test_dropout_gradient_and_in_place():
    x = gaussian()
    check_gradients(
        make('type: "Dropout" dropout_param { dropout_ratio: 0.3 }'), [blob_from(x)], [Blob()]
    )
    # Same seed, same mask: in place gives what out of place gives.
    in_place_matches('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x)


def test_dropout_rejects_bad_ratio():
    with pytest.raises(LayerError, match="dropout_ratio"):
        run(make('type: "Dropout" dropout_param { dropout_ratio: 1.0 }'), [blob_from(np.ones(3))])


# --------------------------------------------------------------------------- ELU
def test_elu_forward_matches_caffe():
    # TestELU: alpha 0.5; x for x > 0, 0.5 (exp(x) - 1) otherwise (within 2e-4).
    x = gaussian()
    y = run(make('type: "ELU" elu_param { alpha: 0.5 }'), [blob_from(x)]).data
    np.testing.assert_array_equal(y[x > 0], x[x > 0])
    np.testing.assert_allclose(y[x <= 0], 0.5 * np.expm1(x[x <= 0].astype(np.float64)), atol=2e-4)


def test_elu_with_alpha_zero_is_relu():
    # TestELUasReLU.
    x = gaussian()
    y = run(make('type: "ELU" elu_param { alpha: 0 }'), [blob_from(x)]).data
    assert (y >= 0).all() and ((y == 0) | (y == x)).all()


@pytest.mark.parametrize("alpha", [1.0, 0.0, 0.5])
def test_elu_gradient(alpha):
    # TestELUGradient / TestELUasReLUGradient: GradientChecker(1e-2, 1e-3, 1701, 0, 0.01).
    check_gradients(
        make(f'type: "ELU" elu_param {{ alpha: {alpha} }}'),
        [blob_from(gaussian())],
        [Blob()],
        kink=0.0,
        kink_range=0.01,
    )


def test_elu_in_place():
    in_place_matches('type: "ELU" elu_param { alpha: -0.7 }', gaussian())


# --------------------------------------------------------------------------- BNLL
def test_bnll_forward_is_softplus():
    # TestBNLL: y >= 0 and y >= x; and the value log(1 + exp(x)).
    x = gaussian(std=10.0)
    y = run(make('type: "BNLL"'), [blob_from(x)]).data
    assert (y >= 0).all() and (y >= x).all()
    xd = x.astype(np.float64)
    with np.errstate(over="ignore"):
        caffe = np.where(xd > 0, xd + np.log(1.0 + np.exp(-xd)), np.log(1.0 + np.exp(xd)))
    np.testing.assert_array_equal(y, caffe.astype(np.float32))  # Caffe's double-precision form
    np.testing.assert_allclose(y, np.logaddexp(0, xd), rtol=1e-6, atol=1e-12)
    big = run(make('type: "BNLL"'), [blob_from(np.array([-100, 100, 1e4], np.float32))]).data
    np.testing.assert_array_equal(big, [0, 100, 1e4])  # no overflow; 1 + e^-100 rounds to 1


def test_bnll_gradient():
    check_gradients(make('type: "BNLL"'), [blob_from(gaussian())], [Blob()])


def test_bnll_gradient_is_the_sigmoid_clamped_at_50():
    x = np.array([-3.0, 0.0, 2.0, 60.0], np.float32)
    layer = make('type: "BNLL"')
    bottom = blob_from(x)
    top = run(layer, [bottom])
    dx = backward(layer, [bottom], top, np.ones_like(x))
    e = np.exp(np.minimum(x.astype(np.float64), 50.0))
    np.testing.assert_allclose(dx, e / (e + 1), rtol=1e-6)


def test_bnll_in_place():
    in_place_matches('type: "BNLL"', gaussian())


# --------------------------------------------------------------------------- Threshold
@pytest.mark.parametrize(
    "text,t",
    [('type: "Threshold"', 0.0), ('type: "Threshold" threshold_param { threshold: 0.5 }', 0.5)],
)
def test_threshold_forward(text, t):
    # test_threshold_layer.cpp Test / Test2: a 2x3x6x5 Gaussian blob; 1 above, 0 at or below.
    x = gaussian((2, 3, 6, 5))
    x.flat[0] = t  # a value at the threshold maps to 0 (strict '>')
    y = run(make(text), [blob_from(x)])
    assert y.shape == x.shape
    np.testing.assert_array_equal(y.data, (x > np.float32(t)).astype(np.float32))


def test_threshold_in_place_and_no_gradient():
    x = gaussian()
    layer = make('type: "Threshold"')
    shared = blob_from(x)
    out = run(layer, [shared], in_place=True)
    np.testing.assert_array_equal(out.data, (x > 0).astype(np.float32))
    layer.backward([out], [False], [shared])  # nothing asked, nothing done
    with pytest.raises(LayerError, match="Threshold has no gradient"):
        layer.backward([out], [True], [shared])
