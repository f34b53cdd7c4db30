"""LRN, BatchNorm, Scale and Bias with Caffe's semantics.

Cases follow BVLC/caffe's test_lrn_layer.cpp (its direct reference implementation,
rewritten here), test_batch_norm_layer.cpp (zero mean / unit variance per channel),
test_scale_layer.cpp and test_bias_layer.cpp (broadcast shapes), plus gradient checks.
"""

import numpy as np
import pytest

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerError
from caffe_bridge.testing import blob_from, check_gradients, gaussian
from caffe_bridge.testing import make_layer as make


def run(layer, bottoms, top=None) -> Blob:
    top = [Blob()] if top is None else top
    layer.check_blob_counts(bottoms, top)
    layer.setup(bottoms, top)
    layer.reshape(bottoms, top)
    layer.forward(bottoms, top)
    return top[0]


# --------------------------------------------------------------------------- LRN
def lrn_reference(x, size, alpha, beta, k, within):
    """test_lrn_layer.cpp's ReferenceLRNForward: explicit loops over every output."""
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    y = np.empty_like(x)
    pre = (size - 1) // 2
    for i in range(n):
        for ch in range(c):
            for hh in range(h):
                for ww in range(w):
                    if within:
                        h0, h1 = max(0, hh - pre), min(h, hh - pre + size)
                        w0, w1 = max(0, ww - pre), min(w, ww - pre + size)
                        s = 1.0 + alpha / (size * size) * (x[i, ch, h0:h1, w0:w1] ** 2).sum()
                    else:
                        c0, c1 = max(0, ch - pre), min(c, ch - pre + size)
                        s = k + alpha / size * (x[i, c0:c1, hh, ww] ** 2).sum()
                    y[i, ch, hh, ww] = x[i, ch, hh, ww] * s**-beta
    return y


LRN_CASES = [
    # (local_size, alpha, beta, k, region) -- Caffe's default, its large-region case, others
    (5, 1.0, 0.75, 1.0, "ACROSS_CHANNELS"),
    (15, 1.0, 0.75, 1.0, "ACROSS_CHANNELS"),
    (3, 0.5, 0.6, 2.0, "ACROSS_CHANNELS"),
    (3, 1.0, 0.75, 1.0, "WITHIN_CHANNEL"),
    (5, 2.0, 0.5, 7.0, "WITHIN_CHANNEL"),  # k is ignored within channels
]


def lrn_text(size, alpha, beta, k, region):
    return (
        f'type: "LRN" lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} '
        f"norm_region: {region} }}"
    )


@pytest.mark.parametrize(("size", "alpha", "beta", "k", "region"), LRN_CASES)
def test_lrn_forward_matches_reference(size, alpha, beta, k, region):
    x = gaussian((2, 7, 3, 3))  # test_lrn_layer.cpp's blob
    y = run(make(lrn_text(size, alpha, beta, k, region)), [blob_from(x)])
    assert y.shape == x.shape
    ref = lrn_reference(x, size, alpha, beta, k, region == "WITHIN_CHANNEL")
    np.testing.assert_allclose(y.data, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("size", "alpha", "beta", "k", "region"), LRN_CASES)
def test_lrn_gradient(size, alpha, beta, k, region):
    x = gaussian((2, 7, 3, 3))
    check_gradients(
        make(lrn_text(size, alpha, beta, k, region)), [blob_from(x)], [Blob()], threshold=1e-2
    )


def test_lrn_rejects_even_size_and_non_4d():
    with pytest.raises(LayerError, match="local_size"):
        run(
            make('name: "n" type: "LRN" lrn_param { local_size: 4 }'),
            [blob_from(np.ones((1, 2, 2, 2)))],
        )
    with pytest.raises(LayerError, match="4 axes"):
        run(make('type: "LRN"'), [blob_from(np.ones((2, 5)))])


# --------------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("in_place", [False, True])
def test_batchnorm_train_normalises_each_channel(in_place):
    # test_batch_norm_layer.cpp: per channel, mean ~ 0 and variance ~ 1 within 1e-3.
    x = gaussian((5, 2, 3, 4), std=3.0, mean=2.0)
    b = blob_from(x)
    top = run(make('type: "BatchNorm"'), [b], top=[b] if in_place else None)
    y = top.data.astype(np.float64)
    for c in range(2):
        ch = y[:, c]
        assert abs(ch.mean()) < 1e-3
        assert abs(ch.var() - 1) < 1e-3


def test_batchnorm_running_statistics_and_global_use():
    x1 = gaussian((4, 3, 2, 2), seed=1, std=2.0, mean=1.0)
    x2 = gaussian((4, 3, 2, 2), seed=2, std=0.5, mean=-1.0)
    layer = make('type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.9 }')
    b, t = blob_from(x1), Blob()
    run(layer, [b], [t])
    b.data[...] = x2
    layer.forward([b], [t])
    m = 16  # values per channel
    mean = lambda a: a.astype(np.float64).mean(axis=(0, 2, 3))  # noqa: E731
    var = lambda a: a.astype(np.float64).var(axis=(0, 2, 3))  # noqa: E731
    np.testing.assert_allclose(layer.blobs[2].data, [0.9 + 1], rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[0].data, 0.9 * mean(x1) + mean(x2), rtol=1e-5)
    exp_var = 0.9 * var(x1) * m / (m - 1) + var(x2) * m / (m - 1)
    np.testing.assert_allclose(layer.blobs[1].data, exp_var, rtol=1e-5)

    # TEST phase uses the stored estimates blobs[i] / blobs[2].
    test_layer = make('type: "BatchNorm"', phase="TEST")
    bt = blob_from(x1)
    tt = Blob()
    test_layer.setup([bt], [tt])
    for dst, src in zip(test_layer.blobs, layer.blobs, strict=True):
        dst.data[...] = src.data
    test_layer.reshape([bt], [tt])
    test_layer.forward([bt], [tt])
    s = layer.blobs[2].data[0]
    mu = layer.blobs[0].data / s
    sd = np.sqrt(layer.blobs[1].data / s + 1e-5)
    np.testing.assert_allclose(
        tt.data, (x1 - mu[None, :, None, None]) / sd[None, :, None, None], rtol=1e-5, atol=1e-6
    )


def test_batchnorm_statistics_are_not_learnable():
    layer = make('type: "BatchNorm"')
    run(layer, [blob_from(gaussian((2, 3, 2, 2)))])
    assert [p.lr_mult for p in layer.param.param] == [0.0, 0.0, 0.0]
    bad = make('name: "bn" type: "BatchNorm" param { lr_mult: 1 }')
    with pytest.raises(LayerError, match="lr_mult"):
        run(bad, [blob_from(gaussian((2, 3, 2, 2)))])


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_batchnorm_gradient(phase):
    x = gaussian((3, 2, 3, 2), std=2.0)
    layer = make('type: "BatchNorm" batch_norm_param { eps: 1e-3 }', phase=phase)
    if phase == "TEST":
        # Global statistics: give the layer some stored estimates first.
        layer.setup([blob_from(x)], [Blob()])
        layer.blobs[0].data[...] = [0.5, -1.0]
        layer.blobs[1].data[...] = [2.0, 0.5]
        layer.blobs[2].data[...] = 1.0  # kept by the setup check_gradients runs (as Caffe)
    check_gradients(layer, [blob_from(x)], [Blob()], check_params=False, threshold=4e-3)


def test_batchnorm_in_place_backward_matches():
    x, dy = gaussian((3, 2, 3, 2), std=2.0), gaussian((3, 2, 3, 2), seed=9)
    ref = make('type: "BatchNorm"')
    b = blob_from(x)
    t = run(ref, [b])
    t.diff[...] = dy
    ref.backward([t], [True], [b])
    layer = make('type: "BatchNorm"')
    shared = blob_from(x)
    run(layer, [shared], top=[shared])
    np.testing.assert_allclose(shared.data, t.data, rtol=1e-6)
    shared.diff[...] = dy
    layer.backward([shared], [True], [shared])
    np.testing.assert_allclose(shared.diff, b.diff, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- Scale and Bias
# (bottom[0] shape, operand shape, axis) in test_scale_layer.cpp / test_bias_layer.cpp.
BROADCAST_CASES = [
    ((2, 3, 4, 5), (2, 3, 4, 5), 0),  # element-wise
    ((2, 3, 4, 5), (2, 3), 0),  # broadcast begin
    ((2, 3, 4, 5), (3, 4), 1),  # broadcast middle
    ((2, 3, 4, 5), (4, 5), 2),  # broadcast end
    ((2, 3, 4, 5), (5,), -1),  # negative axis
    ((2, 3, 4, 5), (), 1),  # scalar
]


def broadcast(operand, x_shape, axis):
    if operand.ndim == 0:
        return operand
    axis = axis % len(x_shape)
    return operand.reshape(
        (1,) * axis + operand.shape + (1,) * (len(x_shape) - axis - operand.ndim)
    )


@pytest.mark.parametrize(("kind", "op"), [("Scale", np.multiply), ("Bias", np.add)])
@pytest.mark.parametrize(("x_shape", "p_shape", "axis"), BROADCAST_CASES)
def test_two_bottom_forward_and_gradient(kind, op, x_shape, p_shape, axis):
    x, s = gaussian(x_shape), gaussian(p_shape, seed=2)
    pname = kind.lower() + "_param"
    text = f'type: "{kind}" {pname} {{ axis: {axis} }}'
    y = run(make(text), [blob_from(x), blob_from(s)]).data
    np.testing.assert_allclose(y, op(x, broadcast(s, x_shape, axis)), rtol=1e-6)
    check_gradients(make(text), [blob_from(x), blob_from(s)], [Blob()], threshold=1e-2)


@pytest.mark.parametrize(("x_shape", "p_shape", "axis"), BROADCAST_CASES)
def test_scale_learned_param_with_bias(x_shape, p_shape, axis):
    num_axes = len(p_shape)
    text = (
        f'type: "Scale" scale_param {{ axis: {axis} num_axes: {num_axes} bias_term: true '
        'filler { type: "gaussian" } bias_filler { type: "gaussian" } }'
    )
    x = gaussian(x_shape)
    layer = make(text)
    y = run(layer, [blob_from(x)]).data
    scale, bias = layer.blobs
    assert scale.shape == p_shape and bias.shape == p_shape
    expected = x * broadcast(scale.data, x_shape, axis) + broadcast(bias.data, x_shape, axis)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    check_gradients(make(text), [blob_from(x)], [Blob()], threshold=1e-2)


def test_scale_defaults_and_num_axes_minus_one():
    x = gaussian((2, 3, 4, 5))
    layer = make('type: "Scale" scale_param { axis: 1 num_axes: -1 }')
    y = run(layer, [blob_from(x)])
    assert layer.blobs[0].shape == (3, 4, 5)
    np.testing.assert_array_equal(layer.blobs[0].data, 1)  # Caffe's default filler: constant 1
    np.testing.assert_array_equal(y.data, x)
    bias = make('type: "Bias"')
    run(bias, [blob_from(x)])
    assert bias.blobs[0].shape == (3,)
    np.testing.assert_array_equal(bias.blobs[0].data, 0)


def test_scale_two_bottoms_with_bias_term():
    x, s = gaussian((2, 3, 4)), gaussian((3,), seed=4)
    layer = make(
        'type: "Scale" scale_param { bias_term: true bias_filler { type: "constant" value: 0.5 } }'
    )
    y = run(layer, [blob_from(x), blob_from(s)])
    assert len(layer.blobs) == 1 and layer.blobs[0].shape == (3,)
    np.testing.assert_allclose(y.data, x * s[None, :, None] + 0.5, rtol=1e-6)


@pytest.mark.parametrize("kind", ["Scale", "Bias"])
def test_in_place_matches_out_of_place(kind):
    x, dy = gaussian((2, 3, 4, 5)), gaussian((2, 3, 4, 5), seed=6)
    text = (
        f'type: "{kind}" {kind.lower()}_param '
        '{ axis: 1 num_axes: 2 filler { type: "gaussian" } }'
    )
    ref = make(text)
    b = blob_from(x)
    t = run(ref, [b])
    t.diff[...] = dy
    ref.backward([t], [True], [b])
    layer = make(text)
    shared = blob_from(x)
    run(layer, [shared], top=[shared])
    np.testing.assert_allclose(shared.data, t.data, rtol=1e-6)
    shared.diff[...] = dy
    layer.backward([shared], [True], [shared])
    np.testing.assert_allclose(shared.diff, b.diff, rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[0].diff, ref.blobs[0].diff, rtol=1e-5)


def test_scale_param_gradient_accumulates():
    x = gaussian((2, 3))
    layer = make('type: "Scale"')
    b = blob_from(x)
    t = run(layer, [b])
    t.diff[...] = 1
    layer.backward([t], [False], [b])
    layer.backward([t], [False], [b])
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * x.sum(axis=0), rtol=1e-6)


def test_scale_and_bias_shape_errors():
    x = blob_from(np.ones((2, 3, 4)))
    with pytest.raises(LayerError, match=r"dimension mismatch.*\(3,\).*\(4,\)"):
        run(make('name: "s" type: "Scale"'), [x, blob_from(np.ones(4))])
    with pytest.raises(LayerError, match="bias_param"):
        run(make('type: "Bias" bias_param { axis: 2 num_axes: 2 }'), [x])
    with pytest.raises(LayerError, match="scale_param.num_axes"):
        run(make('type: "Scale" scale_param { num_axes: -2 }'), [x])
