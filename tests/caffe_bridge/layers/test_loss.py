"""Softmax, the loss layers and Accuracy with Caffe's semantics.

Cases follow BVLC/caffe's test_softmax_layer.cpp, test_softmax_with_loss_layer.cpp
(the ignore-label identity: summing the losses with each label ignored in turn gives
(classes - 1) times the full loss), test_sigmoid_cross_entropy_loss_layer.cpp (its
reference cross-entropy), test_euclidean_loss_layer.cpp, test_hinge_loss_layer.cpp,
test_multinomial_logistic_loss_layer.cpp, test_infogain_loss_layer.cpp (its reference
loss and softmax top), test_contrastive_loss_layer.cpp (its reference losses, current and
legacy) and test_accuracy_layer.cpp (its counting reference, and the per-class top).
"""

import numpy as np
import pytest

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerError
from caffe_bridge.testing import blob_from, check_gradients, gaussian
from caffe_bridge.testing import make_layer as make


def labels(shape, classes, seed=3):
    return np.random.default_rng(seed).integers(0, classes, shape).astype(np.float32)


def run(layer, bottoms, n_top: int = 1) -> list[Blob]:
    top = [Blob() for _ in range(n_top)]
    layer.check_blob_counts(bottoms, top)
    layer.setup(bottoms, top)
    layer.reshape(bottoms, top)
    layer.forward(bottoms, top)
    return top


def loss_of(text, bottoms) -> float:
    top = run(make(text), bottoms)
    assert top[0].shape == ()
    return float(top[0].data)


# --------------------------------------------------------------------------- Softmax
def test_softmax_forward_rows_normalised():
    x = gaussian((2, 10, 2, 3))  # test_softmax_layer.cpp's blob
    y = run(make('type: "Softmax"'), [blob_from(x)])[0].data
    e = np.exp(x.astype(np.float64))
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_softmax_gradient(axis):
    x = gaussian((2, 4, 3))
    check_gradients(
        make(f'type: "Softmax" softmax_param {{ axis: {axis} }}'), [blob_from(x)], [Blob()]
    )


def test_softmax_in_place():
    x, dy = gaussian((2, 5, 3)), gaussian((2, 5, 3), seed=2)
    ref = make('type: "Softmax"')
    b = blob_from(x)
    t = run(ref, [b])[0]
    t.diff[...] = dy
    ref.backward([t], [True], [b])
    layer = make('type: "Softmax"')
    s = blob_from(x)
    layer.setup([s], [s])
    layer.reshape([s], [s])
    layer.forward([s], [s])
    np.testing.assert_array_equal(s.data, t.data)
    s.diff[...] = dy
    layer.backward([s], [True], [s])
    np.testing.assert_allclose(s.diff, b.diff, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- SoftmaxWithLoss
X_SHAPE, L_SHAPE = (10, 5, 2, 3), (10, 1, 2, 3)  # test_softmax_with_loss_layer.cpp


def softmax_loss_terms(x, lab):
    """-log p[label] per (n, h, w), in float64."""
    x = x.astype(np.float64)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    idx = lab.astype(int)
    return -np.log(np.take_along_axis(p, idx, axis=1))[:, 0]


def test_softmax_with_loss_default_valid_normalisation():
    x, lab = gaussian(X_SHAPE, std=10), labels(L_SHAPE, 5)
    loss = loss_of('type: "SoftmaxWithLoss"', [blob_from(x), blob_from(lab)])
    np.testing.assert_allclose(loss, softmax_loss_terms(x, lab).mean(), rtol=1e-5)


def test_softmax_with_loss_ignore_label_identity():
    # Each label ignored in turn: every location is counted in 4 of the 5 runs.
    x, lab = gaussian(X_SHAPE, std=10), labels(L_SHAPE, 5)
    base = 'type: "SoftmaxWithLoss" loss_param { normalize: false '
    full = loss_of(base + "}", [blob_from(x), blob_from(lab)])
    accum = sum(
        loss_of(base + f"ignore_label: {k} }}", [blob_from(x), blob_from(lab)]) for k in range(5)
    )
    np.testing.assert_allclose(accum, 4 * full, rtol=1e-4)


@pytest.mark.parametrize(
    ("loss_param", "divisor"),
    [
        ("normalization: FULL", lambda n_valid: 60),
        ("normalization: VALID", lambda n_valid: n_valid),
        ("normalization: BATCH_SIZE", lambda n_valid: 10),
        ("normalization: NONE", lambda n_valid: 1),
        ("normalize: true", lambda n_valid: n_valid),
        ("normalize: false", lambda n_valid: 10),
        ("normalize: false normalization: FULL", lambda n_valid: 60),  # normalization wins
    ],
)
def test_softmax_with_loss_normalisation_modes(loss_param, divisor):
    x, lab = gaussian(X_SHAPE, std=10), labels(L_SHAPE, 5)
    terms = softmax_loss_terms(x, lab)
    kept = lab[:, 0] != 2
    text = f'type: "SoftmaxWithLoss" loss_param {{ ignore_label: 2 {loss_param} }}'
    loss = loss_of(text, [blob_from(x), blob_from(lab)])
    np.testing.assert_allclose(loss, terms[kept].sum() / divisor(int(kept.sum())), rtol=1e-5)


@pytest.mark.parametrize(
    "loss_param", ["", "normalize: false", "ignore_label: 1", "normalization: FULL ignore_label: 0"]
)
def test_softmax_with_loss_gradient(loss_param):
    x, lab = gaussian((4, 5, 2, 1), std=2), labels((4, 1, 2, 1), 5)
    layer = make(f'type: "SoftmaxWithLoss" loss_param {{ {loss_param} }}')
    check_gradients(
        layer, [blob_from(x), blob_from(lab)], [Blob()], check_bottom=[0], threshold=1e-2
    )


def test_softmax_with_loss_axis_and_prob_top():
    x, lab = gaussian((3, 4, 6)), labels((3, 4), 6)
    text = 'type: "SoftmaxWithLoss" softmax_param { axis: 2 }'
    loss, prob = run(make(text), [blob_from(x), blob_from(lab)], n_top=2)
    e = np.exp(x.astype(np.float64))
    p = e / e.sum(axis=2, keepdims=True)
    np.testing.assert_allclose(prob.data, p, rtol=1e-5, atol=1e-7)
    picked = np.take_along_axis(p, lab.astype(int)[..., None], axis=2)
    np.testing.assert_allclose(float(loss.data), -np.log(picked).mean(), rtol=1e-5)


def test_softmax_with_loss_scales_by_loss_weight():
    x, lab = gaussian((4, 3)), labels((4,), 3)
    grads = []
    for weight in (1.0, 3.0):
        layer = make('type: "SoftmaxWithLoss"')
        b = blob_from(x)
        top = run(layer, [b, blob_from(lab)])
        top[0].diff[...] = weight
        layer.backward(top, [True, False], [b, blob_from(lab)])
        grads.append(b.diff.copy())
    np.testing.assert_allclose(grads[1], 3 * grads[0], rtol=1e-6)
    e = np.exp(x.astype(np.float64))
    expected = e / e.sum(axis=1, keepdims=True)
    expected[np.arange(4), lab.astype(int)] -= 1
    np.testing.assert_allclose(grads[0], expected / 4, rtol=1e-5, atol=1e-7)


def test_softmax_with_loss_errors():
    x = blob_from(gaussian((4, 3)))
    with pytest.raises(LayerError, match="number of labels"):
        run(make('name: "loss" type: "SoftmaxWithLoss"'), [x, blob_from(np.zeros((4, 2)))])
    with pytest.raises(LayerError, match="label value 3"):
        run(make('type: "SoftmaxWithLoss"'), [x, blob_from([0, 1, 3, 2])])
    layer = make('type: "SoftmaxWithLoss"')
    lab = blob_from([0, 1, 2, 2])
    top = run(layer, [x, lab])
    assert layer.is_loss and not layer.allow_force_backward(1) and layer.allow_force_backward(0)
    with pytest.raises(LayerError, match="label"):
        layer.backward(top, [True, True], [x, lab])


# --------------------------------------------------------------------------- SigmoidCrossEntropy
def sigmoid_ce_reference(x, t):
    p = 1 / (1 + np.exp(-x.astype(np.float64)))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def test_sigmoid_cross_entropy_forward():
    x = gaussian((10, 5, 1, 1), std=1)
    t = np.random.default_rng(4).uniform(0, 1, (10, 5, 1, 1)).astype(np.float32)
    loss = loss_of('type: "SigmoidCrossEntropyLoss"', [blob_from(x), blob_from(t)])
    np.testing.assert_allclose(loss, sigmoid_ce_reference(x, t).sum() / 10, rtol=1e-5)  # BATCH_SIZE


def test_sigmoid_cross_entropy_stable_for_large_inputs():
    x = np.array([[-100.0, 100.0, -30.0, 30.0]], np.float32)
    t = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
    loss = loss_of('type: "SigmoidCrossEntropyLoss"', [blob_from(x), blob_from(t)])
    np.testing.assert_allclose(loss, 60.0, rtol=1e-5)


def test_sigmoid_cross_entropy_ignore_and_gradient():
    x = gaussian((6, 4), std=2)
    t = np.random.default_rng(4).integers(0, 2, (6, 4)).astype(np.float32)
    t[:3] = -1  # TestIgnoreGradient: the first half carries the ignore label
    text = 'type: "SigmoidCrossEntropyLoss" loss_param { ignore_label: -1 normalization: VALID }'
    layer = make(text)
    b = blob_from(x)
    top = run(layer, [b, blob_from(t)])
    kept = t != -1
    np.testing.assert_allclose(
        float(top[0].data), sigmoid_ce_reference(x, t)[kept].sum() / kept.sum(), rtol=1e-5
    )
    top[0].diff[...] = 1
    layer.backward(top, [True, False], [b, blob_from(t)])
    assert (b.diff[:3] == 0).all() and (b.diff[3:] != 0).all()
    check_gradients(make(text), [blob_from(x), blob_from(t)], [Blob()], check_bottom=[0])


# --------------------------------------------------------------------------- EuclideanLoss
def test_euclidean_loss_forward_and_gradient():
    a, b = gaussian((10, 5, 1, 1), 1), gaussian((10, 5, 1, 1), 2)
    loss = loss_of('type: "EuclideanLoss"', [blob_from(a), blob_from(b)])
    np.testing.assert_allclose(loss, ((a - b).astype(np.float64) ** 2).sum() / 10 / 2, rtol=1e-5)
    layer = make('type: "EuclideanLoss"')
    assert layer.allow_force_backward(1)
    check_gradients(layer, [blob_from(a), blob_from(b)], [Blob()])


def test_euclidean_loss_weight_scales_gradient():
    a, b = gaussian((4, 3), 1), gaussian((4, 3), 2)
    layer = make('type: "EuclideanLoss"')
    ba, bb = blob_from(a), blob_from(b)
    top = run(layer, [ba, bb])
    top[0].diff[...] = 3.0
    layer.backward(top, [True, True], [ba, bb])
    np.testing.assert_allclose(ba.diff, 3 * (a - b) / 4, rtol=1e-6)
    np.testing.assert_allclose(bb.diff, -3 * (a - b) / 4, rtol=1e-6)


# --------------------------------------------------------------------------- HingeLoss
def hinge_inputs():
    x = gaussian((10, 5, 1, 1), std=10)  # test_hinge_loss_layer.cpp: std 10, 5 classes
    x = np.where(np.abs(np.abs(x) - 1) < 0.05, x * 1.2, x).astype(np.float32)  # off the kink
    return x, labels((10,), 5)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss_forward_and_gradient(norm):
    x, lab = hinge_inputs()
    sign = -np.ones((10, 5))
    sign[np.arange(10), lab.astype(int)] = 1
    margin = np.maximum(0, 1 - sign * x.reshape(10, 5).astype(np.float64))
    expected = (margin**2 if norm == "L2" else margin).sum() / 10
    text = f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}'
    np.testing.assert_allclose(loss_of(text, [blob_from(x), blob_from(lab)]), expected, rtol=1e-5)
    check_gradients(
        make(text), [blob_from(x), blob_from(lab)], [Blob()], check_bottom=[0], threshold=2e-3
    )


# --------------------------------------------------------------------------- Accuracy
def accuracy_reference(x, lab, top_k, ignore=None):
    """test_accuracy_layer.cpp: a hit when fewer than top_k classes score higher."""
    hits = count = 0
    per_hit, per_count = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for row, label in zip(x, lab.astype(int), strict=True):
        if ignore is not None and label == ignore:
            continue
        count += 1
        per_count[label] += 1
        if (row > row[label]).sum() < top_k:
            hits += 1
            per_hit[label] += 1
    per_class = np.divide(per_hit, per_count, out=np.zeros_like(per_hit), where=per_count > 0)
    return hits / count, per_class


@pytest.mark.parametrize("top_k", [1, 3])
def test_accuracy_top_k_and_per_class(top_k):
    x = np.random.default_rng(5).uniform(0, 1, (100, 10)).astype(np.float32)
    lab = labels((100,), 10)
    acc, per_class = run(
        make(f'type: "Accuracy" accuracy_param {{ top_k: {top_k} }}'),
        [blob_from(x), blob_from(lab)],
        n_top=2,
    )
    exp_acc, exp_per = accuracy_reference(x, lab, top_k)
    assert per_class.shape == (10,)
    np.testing.assert_allclose(float(acc.data), exp_acc, rtol=1e-6)
    np.testing.assert_allclose(per_class.data, exp_per, rtol=1e-6)


def test_accuracy_spatial_axis_and_ignore_label():
    # TestForwardWithSpatialAxes: predictions (2, 10, 4, 5), labels (2, 1, 4, 5).
    x = np.random.default_rng(6).uniform(0, 1, (2, 10, 4, 5)).astype(np.float32)
    lab = labels((2, 1, 4, 5), 10)
    lab[0, 0, 0, :3] = -1
    acc = run(
        make('type: "Accuracy" accuracy_param { axis: 1 ignore_label: -1 }'),
        [blob_from(x), blob_from(lab)],
    )[0]
    rows = np.moveaxis(x, 1, -1).reshape(-1, 10)
    exp_acc, _ = accuracy_reference(rows, lab.reshape(-1), 1, ignore=-1)
    np.testing.assert_allclose(float(acc.data), exp_acc, rtol=1e-6)


@pytest.mark.parametrize(
    ("label", "top_k", "hit"),
    [(1, 1, 0.0), (2, 1, 1.0), (1, 2, 1.0), (0, 2, 0.0), (0, 3, 1.0)],
)
def test_accuracy_ties_follow_partial_sort(label, top_k, hit):
    # Scores [1, 2, 2, 0.5]: class 2 outranks class 1 on the tie (higher index first).
    x = np.array([[1.0, 2.0, 2.0, 0.5]], np.float32)
    acc = run(
        make(f'type: "Accuracy" accuracy_param {{ top_k: {top_k} }}'),
        [blob_from(x), blob_from([label])],
    )[0]
    assert float(acc.data) == hit


def test_accuracy_errors_and_no_backward():
    x, lab = blob_from(np.ones((4, 3))), blob_from([0, 1, 2, 0])
    with pytest.raises(LayerError, match="top_k"):
        run(make('name: "acc" type: "Accuracy" accuracy_param { top_k: 4 }'), [x, lab])
    with pytest.raises(LayerError, match="number of labels"):
        run(make('type: "Accuracy"'), [blob_from(np.ones((4, 3, 2))), lab])
    layer = make('type: "Accuracy"')
    assert not layer.allow_force_backward(1)
    top = run(layer, [x, lab])
    with pytest.raises(LayerError, match="no gradient"):
        layer.backward(top, [True, False], [x, lab])


# ------------------------------------------------------------------- MultinomialLogisticLoss
def positive_unitball(shape, seed=1701):
    """Caffe's PositiveUnitballFiller: positive rows summing to 1 (probabilities)."""
    x = np.random.default_rng(seed).uniform(0, 1, shape)
    return (x / x.sum(axis=1, keepdims=True)).astype(np.float32)


def test_multinomial_logistic_loss_value():
    p = positive_unitball((10, 5))  # test_multinomial_logistic_loss_layer.cpp's blobs
    y = labels((10,), 5)
    loss = loss_of(
        'type: "MultinomialLogisticLoss"', [blob_from(p.reshape(10, 5, 1, 1)), blob_from(y)]
    )
    expected = -np.log(np.maximum(p[np.arange(10), y.astype(int)], 1e-20)).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    zero = p.copy()
    zero[0, int(y[0])] = 0  # clamped at Caffe's kLOG_THRESHOLD
    loss0 = loss_of(
        'type: "MultinomialLogisticLoss"', [blob_from(zero), blob_from(y.reshape(10, 1, 1, 1))]
    )
    assert np.isfinite(loss0) and loss0 > 4


def test_multinomial_logistic_loss_gradient():
    # TestGradientCPU: GradientChecker(1e-2, 2e-2, 1701, 0, 0.05) on bottom 0.
    check_gradients(
        make('type: "MultinomialLogisticLoss"'),
        [
            blob_from(positive_unitball((10, 5)).reshape(10, 5, 1, 1) + 0.1),
            blob_from(labels((10,), 5)),
        ],
        [Blob()],
        check_bottom=[0],
        threshold=2e-2,
        kink=0.0,
        kink_range=0.05,
    )


def test_multinomial_logistic_loss_errors():
    text = 'type: "MultinomialLogisticLoss"'
    with pytest.raises(LayerError, match="needs one label per item"):
        run(make(text), [blob_from(positive_unitball((4, 3))), blob_from(np.zeros((4, 2)))])
    with pytest.raises(LayerError, match="outside the 3 classes"):
        run(make(text), [blob_from(positive_unitball((4, 3))), blob_from([0, 1, 3, 0])])
    layer = make(text)
    bottoms = [blob_from(positive_unitball((4, 3))), blob_from([0, 1, 2, 0])]
    (top,) = run(layer, bottoms)
    with pytest.raises(LayerError, match="cannot backpropagate to the label"):
        layer.backward([top], [True, True], bottoms)


# --------------------------------------------------------------------------- InfogainLoss
def infogain_bottoms(seed=1701):
    """test_infogain_loss_layer.cpp: data 4x2x5x2 in U(-0.5, 2), labels 4x2x1x2, H 5x5 in
    U(0.1, 2), classes on axis 2."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(-0.5, 2.0, (4, 2, 5, 2)).astype(np.float32)
    lab = rng.integers(0, 5, (4, 2, 1, 2)).astype(np.float32)
    h = rng.uniform(0.1, 2.0, (1, 1, 5, 5)).astype(np.float32)
    return data, lab, h


def infogain_reference(data, lab, h, ignore=None):
    e = np.exp(data.astype(np.float64))
    prob = e / e.sum(axis=2, keepdims=True)
    p = prob.reshape(8, 5, 2)
    lab = lab.reshape(8, 2).astype(int)
    h = h.reshape(5, 5)
    loss, count = 0.0, 0
    for i in range(8):
        for j in range(2):
            if lab[i, j] == ignore:
                continue
            loss -= (h[lab[i, j]] * np.log(np.maximum(p[i, :, j], 1e-20))).sum()
            count += 1
    return prob, loss / max(count, 1)


def test_infogain_loss_forward_matches_caffe():
    # TestInfogainLoss: the prob top is the softmax, the loss Caffe's sum over H's rows.
    data, lab, h = infogain_bottoms()
    layer = make('type: "InfogainLoss" infogain_loss_param { axis: 2 }')
    loss, prob = run(layer, [blob_from(data), blob_from(lab), blob_from(h)], n_top=2)
    ref_prob, ref_loss = infogain_reference(data, lab, h)
    assert prob.shape == data.shape
    np.testing.assert_allclose(prob.data, ref_prob, atol=1e-6)
    np.testing.assert_allclose(float(loss.data), ref_loss, atol=1e-6)


def test_infogain_loss_with_identity_is_softmax_with_loss(tmp_path):
    # H from a BlobProto file; the identity matrix gives the softmax loss exactly.
    from caffe_bridge.io import write_binaryproto

    data, lab, _ = infogain_bottoms()
    path = tmp_path / "H.binaryproto"
    write_binaryproto(path, np.eye(5, dtype=np.float32))
    text = f'type: "InfogainLoss" infogain_loss_param {{ axis: 2 source: "{path}" }}'
    a = loss_of(text, [blob_from(data), blob_from(lab)])
    b = loss_of(
        'type: "SoftmaxWithLoss" softmax_param { axis: 2 }', [blob_from(data), blob_from(lab)]
    )
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_infogain_loss_ignore_label_and_normalization():
    data, lab, h = infogain_bottoms()
    ignore = int(lab.flat[0])
    text = (
        f'type: "InfogainLoss" infogain_loss_param {{ axis: 2 }} '
        f"loss_param {{ ignore_label: {ignore} }}"
    )
    got = loss_of(text, [blob_from(data), blob_from(lab), blob_from(h)])
    np.testing.assert_allclose(got, infogain_reference(data, lab, h, ignore)[1], atol=1e-6)
    full = loss_of(
        'type: "InfogainLoss" infogain_loss_param { axis: 2 } loss_param { normalization: NONE }',
        [blob_from(data), blob_from(lab), blob_from(h)],
    )
    np.testing.assert_allclose(full, infogain_reference(data, lab, h)[1] * 16, rtol=1e-5)


@pytest.mark.parametrize("ignore", ["", "loss_param { ignore_label: 2 }"])
def test_infogain_loss_gradient(ignore):
    # TestGradient: GradientChecker(1e-4, 2e-2, 1701) on bottom 0; H as a third bottom.
    data, lab, h = infogain_bottoms()
    check_gradients(
        make(f'type: "InfogainLoss" infogain_loss_param {{ axis: 2 }} {ignore}'),
        [blob_from(data), blob_from(lab), blob_from(h)],
        [Blob()],
        check_bottom=[0],
        stepsize=1e-2,
        threshold=2e-2,
    )


def test_infogain_loss_errors(tmp_path):
    data, lab, h = infogain_bottoms()
    with pytest.raises(LayerError, match="infogain matrix is missing"):
        run(make('type: "InfogainLoss"'), [blob_from(data), blob_from(lab)])
    with pytest.raises(LayerError, match=r"infogain_loss_param.source: .*nothing"):
        run(
            make(
                f'type: "InfogainLoss" infogain_loss_param {{ source: "{tmp_path / "nothing"}" }}'
            ),
            [blob_from(data), blob_from(lab)],
        )
    with pytest.raises(LayerError, match="must have 5x5 entries"):
        run(
            make('type: "InfogainLoss" infogain_loss_param { axis: 2 }'),
            [blob_from(data), blob_from(lab), blob_from(np.eye(4))],
        )
    with pytest.raises(LayerError, match="normalize is deprecated"):
        run(
            make('type: "InfogainLoss" loss_param { normalize: true }'),
            [blob_from(data), blob_from(lab), blob_from(h)],
        )
    layer = make('type: "InfogainLoss" infogain_loss_param { axis: 2 }')
    bottoms = [blob_from(data), blob_from(lab), blob_from(h)]
    (top,) = run(layer, bottoms)
    with pytest.raises(LayerError, match="infogain matrix"):
        layer.backward([top], [True, False, True], bottoms)


# --------------------------------------------------------------------------- ContrastiveLoss
CONTRASTIVE = 'type: "ContrastiveLoss" contrastive_loss_param {{ legacy_version: {legacy} }}'


def contrastive_bottoms(seed=1701):
    """test_contrastive_loss_layer.cpp: pairs 512x2x1x1 in U(-1, 1), similarity 0 or 1."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (512, 2, 1, 1)).astype(np.float32)
    b = rng.uniform(-1, 1, (512, 2, 1, 1)).astype(np.float32)
    y = rng.integers(0, 2, (512, 1, 1, 1)).astype(np.float32)
    return a, b, y


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss_forward_matches_caffe(legacy):
    # TestForward / TestForwardLegacy (margin 1).
    a, b, y = contrastive_bottoms()
    text = CONTRASTIVE.format(legacy=str(legacy).lower())
    got = loss_of(text, [blob_from(a), blob_from(b), blob_from(y)])
    d2 = ((a - b).astype(np.float64) ** 2).reshape(512, 2).sum(axis=1)
    far = np.maximum(1 - d2, 0) if legacy else np.maximum(1 - np.sqrt(d2), 0) ** 2
    expected = np.where(y.ravel() != 0, d2, far).sum() / 512 / 2
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss_gradient(legacy):
    # TestGradient / TestGradientLegacy: GradientChecker(1e-2, 1e-2, 1701) on bottoms 0 and 1.
    a, b, y = contrastive_bottoms()
    n = 64  # a slice of the 512 pairs keeps the finite differences quick
    text = CONTRASTIVE.format(legacy=str(legacy).lower())
    check_gradients(
        make(text),
        [blob_from(a[:n]), blob_from(b[:n]), blob_from(y[:n])],
        [Blob()],
        check_bottom=[0, 1],
        threshold=1e-2,
    )


def test_contrastive_loss_takes_2d_features_and_refuses_bad_shapes():
    a, b, y = contrastive_bottoms()
    flat = loss_of(
        'type: "ContrastiveLoss"',
        [blob_from(a.reshape(512, 2)), blob_from(b.reshape(512, 2)), blob_from(y.ravel())],
    )
    four = loss_of('type: "ContrastiveLoss"', [blob_from(a), blob_from(b), blob_from(y)])
    assert flat == four
    with pytest.raises(LayerError, match="same C"):
        run(
            make('type: "ContrastiveLoss"'),
            [blob_from(a), blob_from(np.zeros((512, 3))), blob_from(y)],
        )
    with pytest.raises(LayerError, match="one similarity label per pair"):
        run(
            make('type: "ContrastiveLoss"'),
            [blob_from(a), blob_from(b), blob_from(np.zeros((512, 2)))],
        )
    assert not make('type: "ContrastiveLoss"').allow_force_backward(2)
