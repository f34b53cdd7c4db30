"""Split, Concat, Slice, Crop, Tile, Eltwise, Reduction, Flatten, Reshape, Silence and ArgMax
with Caffe's semantics.

Shapes and cases follow BVLC/caffe's test_split_layer.cpp, test_concat_layer.cpp,
test_slice_layer.cpp, test_crop_layer.cpp, test_tile_layer.cpp, test_eltwise_layer.cpp,
test_reduction_layer.cpp, test_flatten_layer.cpp, test_reshape_layer.cpp and
test_argmax_layer.cpp.
"""

import numpy as np
import pytest

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerError
from caffe_bridge.testing import blob_from, check_gradients, gaussian
from caffe_bridge.testing import make_layer as make


def run(layer, bottoms, n_top: int = 1) -> list[Blob]:
    top = [Blob() for _ in range(n_top)]
    layer.check_blob_counts(bottoms, top)
    layer.setup(bottoms, top)
    layer.reshape(bottoms, top)
    layer.forward(bottoms, top)
    return top


# --------------------------------------------------------------------------- Split
def test_split_shares_data_and_sums_diffs():
    x = gaussian((2, 3, 6, 5))
    b = blob_from(x)
    layer = make('type: "Split"')
    tops = run(layer, [b], n_top=3)
    for t in tops:
        assert t.shape == x.shape and np.shares_memory(t.data, b.data)
    diffs = [gaussian(x.shape, seed=s) for s in (1, 2, 3)]
    for t, d in zip(tops, diffs, strict=True):
        t.diff[...] = d
    layer.backward(tops, [True], [b])
    np.testing.assert_allclose(b.diff, diffs[0] + diffs[1] + diffs[2], rtol=1e-6)
    check_gradients(make('type: "Split"'), [blob_from(x)], [Blob(), Blob()])


def test_split_rejects_in_place():
    b = blob_from(np.ones((2, 2)))
    layer = make('name: "sp" type: "Split"')
    with pytest.raises(LayerError, match="in-place"):
        layer.setup([b], [Blob(), b])


# --------------------------------------------------------------------------- Concat
def concat_bottoms():
    # test_concat_layer.cpp: 2x3x6x5, 5x3x6x5 (differs in num), 2x5x6x5 (differs in channels)
    return gaussian((2, 3, 6, 5), 1), gaussian((5, 3, 6, 5), 2), gaussian((2, 5, 6, 5), 3)


@pytest.mark.parametrize(
    ("param", "which", "shape"),
    [
        ("concat_param { axis: 0 }", (0, 1), (7, 3, 6, 5)),
        ("", (0, 2), (2, 8, 6, 5)),
        ("concat_param { axis: -3 }", (0, 2), (2, 8, 6, 5)),
        ("concat_param { concat_dim: 0 }", (0, 1), (7, 3, 6, 5)),
    ],
)
def test_concat_forward_and_gradient(param, which, shape):
    arrays = concat_bottoms()
    xs = [arrays[i] for i in which]
    axis = 0 if shape[0] == 7 else 1
    top = run(make(f'type: "Concat" {param}'), [blob_from(a) for a in xs])[0]
    assert top.shape == shape
    np.testing.assert_array_equal(top.data, np.concatenate(xs, axis=axis))
    small = [a[:, :, :2, :2] for a in xs]
    check_gradients(make(f'type: "Concat" {param}'), [blob_from(a) for a in small], [Blob()])


def test_concat_single_bottom_is_trivial():
    x = gaussian((2, 3, 6, 5))
    b = blob_from(x)
    layer = make('type: "Concat"')
    top = run(layer, [b])[0]
    np.testing.assert_array_equal(top.data, x)
    top.diff[...] = 2.0
    layer.backward([top], [True], [b])
    np.testing.assert_array_equal(b.diff, 2.0)


def test_concat_shape_mismatch_names_both_shapes():
    a, _, c = concat_bottoms()
    layer = make('name: "cat" type: "Concat" concat_param { axis: 0 }')
    with pytest.raises(LayerError, match=r"cat.*\(2, 3, 6, 5\).*\(2, 5, 6, 5\)"):
        run(layer, [blob_from(a), blob_from(c)])
    with pytest.raises(LayerError, match="number of axes"):
        run(make('type: "Concat"'), [blob_from(a), blob_from(np.ones((2, 3)))])


# --------------------------------------------------------------------------- Slice
def test_slice_equal_parts_across_num():
    x = gaussian((6, 12, 2, 3))  # test_slice_layer.cpp's bottom
    tops = run(make('type: "Slice" slice_param { axis: 0 }'), [blob_from(x)], n_top=3)
    for i, t in enumerate(tops):
        assert t.shape == (2, 12, 2, 3)
        np.testing.assert_array_equal(t.data, x[2 * i : 2 * i + 2])


@pytest.mark.parametrize(
    "param",
    [
        "slice_param { slice_point: 2 slice_point: 8 }",
        "slice_param { slice_dim: 1 slice_point: 2 slice_point: 8 }",
    ],
)
def test_slice_points_across_channels(param):
    x = gaussian((6, 12, 2, 3))
    tops = run(make(f'type: "Slice" {param}'), [blob_from(x)], n_top=3)
    assert [t.shape[1] for t in tops] == [2, 6, 4]
    np.testing.assert_array_equal(tops[1].data, x[:, 2:8])
    np.testing.assert_array_equal(tops[2].data, x[:, 8:])


def test_slice_gradient_and_trivial():
    x = gaussian((4, 6, 2, 2))
    check_gradients(
        make('type: "Slice" slice_param { axis: 1 slice_point: 1 slice_point: 4 }'),
        [blob_from(x)],
        [Blob(), Blob(), Blob()],
    )
    top = run(make('type: "Slice"'), [blob_from(x)])[0]
    np.testing.assert_array_equal(top.data, x)


@pytest.mark.parametrize(
    ("param", "n_top", "message"),
    [
        ("slice_param { slice_point: 5 slice_point: 3 }", 3, "strictly increasing"),
        ("slice_param { slice_point: 3 }", 3, "needs 2"),
        ("slice_param { slice_point: 12 }", 2, "inside axis"),
        ("", 5, "equal slices"),
    ],
)
def test_slice_bad_points(param, n_top, message):
    x = blob_from(np.ones((6, 12, 2, 3)))
    with pytest.raises(LayerError, match=message):
        run(make(f'name: "sl" type: "Slice" {param}'), [x], n_top=n_top)


# --------------------------------------------------------------------------- Eltwise
def eltwise_bottoms(seed=0):
    rng = np.random.default_rng(seed)  # test_eltwise_layer.cpp: three 2x3x4x5 uniform blobs
    return [rng.uniform(-1, 1, (2, 3, 4, 5)).astype(np.float32) for _ in range(3)]


def test_eltwise_prod_sum_coeff_max_forward():
    a, b, c = eltwise_bottoms()
    prod = run(
        make('type: "Eltwise" eltwise_param { operation: PROD }'), [blob_from(v) for v in (a, b, c)]
    )
    np.testing.assert_allclose(prod[0].data, a * b * c, rtol=1e-6)
    s = run(
        make('type: "Eltwise" eltwise_param { operation: SUM }'), [blob_from(v) for v in (a, b, c)]
    )
    np.testing.assert_allclose(s[0].data, a + b + c, rtol=1e-6)
    coeff = 'type: "Eltwise" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }'
    sc = run(make(coeff), [blob_from(v) for v in (a, b, c)])
    np.testing.assert_allclose(sc[0].data, a - 0.5 * b + 2 * c, rtol=1e-5, atol=1e-6)
    m = run(
        make('type: "Eltwise" eltwise_param { operation: MAX }'), [blob_from(v) for v in (a, b, c)]
    )
    np.testing.assert_array_equal(m[0].data, np.maximum(np.maximum(a, b), c))


@pytest.mark.parametrize(
    "param",
    [
        "operation: PROD stable_prod_grad: true",
        "operation: PROD stable_prod_grad: false",
        "operation: SUM",
        "operation: SUM coeff: 1 coeff: -0.5 coeff: 2",
        "operation: MAX",
    ],
)
def test_eltwise_gradient(param):
    bottoms = [blob_from(v) for v in eltwise_bottoms()]
    threshold = 1e-2 if "MAX" in param else 1e-3
    stepsize = 1e-4 if "MAX" in param else 1e-2  # Caffe's TestMaxGradient checker
    check_gradients(
        make(f'type: "Eltwise" eltwise_param {{ {param} }}'),
        bottoms,
        [Blob()],
        stepsize=stepsize,
        threshold=threshold,
    )


def test_eltwise_max_ties_follow_caffe():
    # bottom[1] wins a tie with bottom[0]; bottom[2] needs to be strictly greater.
    a = blob_from([1.0, 2.0, 3.0])
    b = blob_from([1.0, 1.0, 3.0])
    c = blob_from([1.0, 2.0, 3.0])
    layer = make('type: "Eltwise" eltwise_param { operation: MAX }')
    top = run(layer, [a, b, c])[0]
    top.diff[...] = [10.0, 20.0, 30.0]
    layer.backward([top], [True, True, True], [a, b, c])
    np.testing.assert_array_equal(a.diff, [0, 20, 0])
    np.testing.assert_array_equal(b.diff, [10, 0, 30])
    np.testing.assert_array_equal(c.diff, [0, 0, 0])


def test_eltwise_bad_parameters():
    bs = [blob_from(v) for v in eltwise_bottoms()]
    with pytest.raises(LayerError, match="coeff has 2"):
        run(make('type: "Eltwise" eltwise_param { coeff: 1 coeff: 2 }'), bs)
    with pytest.raises(LayerError, match="only for operation SUM"):
        run(
            make('type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 2 coeff: 3 }'), bs
        )
    with pytest.raises(LayerError, match=r"\(2, 3, 4, 5\).*\(2, 3\)"):
        run(make('type: "Eltwise"'), [bs[0], blob_from(np.ones((2, 3)))])


# --------------------------------------------------------------------------- Flatten
@pytest.mark.parametrize(
    ("param", "shape"),
    [
        ("", (2, 90)),
        ("flatten_param { axis: 2 }", (2, 3, 30)),
        ("flatten_param { end_axis: -2 }", (2, 18, 5)),
        ("flatten_param { axis: 0 end_axis: -2 }", (36, 5)),
    ],
)
def test_flatten_shapes_values_and_gradient(param, shape):
    x = gaussian((2, 3, 6, 5))  # test_flatten_layer.cpp's bottom
    b = blob_from(x)
    layer = make(f'type: "Flatten" {param}')
    top = run(layer, [b])[0]
    assert top.shape == shape
    np.testing.assert_array_equal(top.data, x.reshape(shape))
    assert np.shares_memory(top.data, b.data)
    dy = gaussian(shape, seed=4)
    top.diff[...] = dy
    layer.backward([top], [True], [b])
    np.testing.assert_array_equal(b.diff, dy.reshape(x.shape))
    check_gradients(make(f'type: "Flatten" {param}'), [blob_from(x[:, :, :2])], [Blob()])


def test_flatten_errors():
    b = blob_from(np.ones((2, 3, 4)))
    with pytest.raises(LayerError, match="in-place"):
        make('type: "Flatten"').setup([b], [b])
    with pytest.raises(LayerError, match="end_axis"):
        run(make('type: "Flatten" flatten_param { axis: 2 end_axis: 1 }'), [b])


# --------------------------------------------------------------------------- Reshape
@pytest.mark.parametrize(
    ("param", "shape"),
    [
        # test_reshape_layer.cpp, bottom 2x3x6x5
        ("shape { dim: 0 dim: -1 dim: 1 dim: 1 }", (2, 90, 1, 1)),
        ("shape { dim: 0 dim: 0 dim: 0 dim: 0 }", (2, 3, 6, 5)),
        ("shape { dim: 0 dim: 3 dim: 10 dim: -1 }", (2, 3, 10, 3)),
        ("axis: 1 shape { dim: 3 dim: 10 dim: -1 }", (2, 3, 10, 3)),
        ("axis: 0 num_axes: 0 shape { dim: 1 dim: 1 dim: 1 }", (1, 1, 1, 2, 3, 6, 5)),
        ("axis: 2 num_axes: 0 shape { dim: 1 dim: 1 dim: 1 }", (2, 3, 1, 1, 1, 6, 5)),
        ("axis: -1 num_axes: 0 shape { dim: 1 dim: 1 dim: 1 }", (2, 3, 6, 5, 1, 1, 1)),
        ("axis: 1 num_axes: 2 shape { dim: -1 }", (2, 18, 5)),
        ("axis: 1 num_axes: 1 shape { dim: 3 dim: 1 }", (2, 3, 1, 6, 5)),
        ("shape { dim: 6 dim: 2 dim: 3 dim: 5 }", (6, 2, 3, 5)),
    ],
)
def test_reshape_shapes_and_values(param, shape):
    x = gaussian((2, 3, 6, 5))
    b = blob_from(x)
    layer = make(f'type: "Reshape" reshape_param {{ {param} }}')
    top = run(layer, [b])[0]
    assert top.shape == shape
    np.testing.assert_array_equal(top.data.reshape(-1), x.reshape(-1))
    assert np.shares_memory(top.data, b.data)


def test_reshape_follows_new_bottom_shape_and_gradient():
    # TestForwardAfterReshape: a second reshape with a new bottom shape re-infers dims.
    layer = make('type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }')
    b = blob_from(gaussian((2, 3, 6, 5)))
    top = run(layer, [b])[0]
    b.reshape(4, 3, 6, 5)
    b.data[...] = gaussian((4, 3, 6, 5), seed=3)
    layer.reshape([b], [top])
    layer.forward([b], [top])
    assert top.shape == (4, 90)
    np.testing.assert_array_equal(top.data, b.data.reshape(4, 90))
    check_gradients(
        make('type: "Reshape" reshape_param { shape { dim: -1 dim: 2 } }'),
        [blob_from(gaussian((2, 3, 2)))],
        [Blob()],
    )


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("shape { dim: -1 dim: -1 }", "more than one -1"),
        ("shape { dim: 7 dim: -1 }", "not divisible"),
        ("shape { dim: 0 dim: 0 dim: 0 dim: 0 dim: 0 }", "no axis 4"),
        ("shape { dim: 2 dim: 3 }", "count"),
    ],
)
def test_reshape_errors(param, message):
    with pytest.raises(LayerError, match=message):
        run(
            make(f'name: "rs" type: "Reshape" reshape_param {{ {param} }}'),
            [blob_from(np.ones((2, 3, 6, 5)))],
        )


# --------------------------------------------------------------------------- Silence
def test_silence_zeroes_bottom_diffs():
    a, b = blob_from(np.ones((2, 3))), blob_from(np.ones(4))
    a.diff[...] = 5
    b.diff[...] = 5
    layer = make('type: "Silence"')
    layer.check_blob_counts([a, b], [])
    layer.setup([a, b], [])
    layer.reshape([a, b], [])
    layer.forward([a, b], [])
    layer.backward([], [True, False], [a, b])
    assert (a.diff == 0).all() and (b.diff == 5).all()


# --------------------------------------------------------------------------- ArgMax
def caffe_top_k(row, k):
    """std::partial_sort over (value, index) pairs with std::greater, as a plain sort."""
    pairs = sorted(((float(v), i) for i, v in enumerate(row)), reverse=True)
    return [i for _, i in pairs[:k]], [v for v, _ in pairs[:k]]


@pytest.mark.parametrize("out_max_val", [False, True])
@pytest.mark.parametrize("top_k", [1, 5])
def test_argmax_over_flattened_item(top_k, out_max_val):
    x = gaussian((10, 10, 4, 5))  # test_argmax_layer.cpp uses a 10-item batch
    text = (
        f'type: "ArgMax" argmax_param {{ top_k: {top_k} out_max_val: {str(out_max_val).lower()} }}'
    )
    top = run(make(text), [blob_from(x)])[0]
    assert top.shape == (10, 2 if out_max_val else 1, top_k, 1)
    for n in range(10):
        idx, val = caffe_top_k(x[n].reshape(-1), top_k)
        np.testing.assert_array_equal(top.data[n, 0, :, 0], idx)
        if out_max_val:
            np.testing.assert_array_equal(top.data[n, 1, :, 0], np.float32(val))


@pytest.mark.parametrize("out_max_val", [False, True])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_argmax_along_axis(axis, out_max_val):
    x = gaussian((4, 6, 3, 5))
    flag = str(out_max_val).lower()
    text = f'type: "ArgMax" argmax_param {{ axis: {axis} top_k: 2 out_max_val: {flag} }}'
    top = run(make(text), [blob_from(x)])[0]
    expected_shape = list(x.shape)
    expected_shape[axis] = 2
    assert top.shape == tuple(expected_shape)
    moved = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
    got = np.moveaxis(top.data, axis, -1).reshape(-1, 2)
    for row, out in zip(moved, got, strict=True):
        idx, val = caffe_top_k(row, 2)
        np.testing.assert_array_equal(out, np.float32(val) if out_max_val else idx)


def test_argmax_ties_rank_higher_index_first():
    x = np.array([[3.0, 1.0, 3.0, 2.0, 3.0]], np.float32)
    top = run(make('type: "ArgMax" argmax_param { top_k: 3 }'), [blob_from(x)])[0]
    np.testing.assert_array_equal(top.data.reshape(-1), [4, 2, 0])


def test_argmax_errors():
    x = blob_from(np.ones((2, 3)))
    with pytest.raises(LayerError, match="top_k"):
        run(make('type: "ArgMax" argmax_param { top_k: 4 }'), [x])
    with pytest.raises(LayerError, match="top_k"):
        run(make('type: "ArgMax" argmax_param { axis: 0 top_k: 3 }'), [x])
    layer = make('type: "ArgMax"')
    top = run(layer, [x])
    with pytest.raises(LayerError, match="no gradient"):
        layer.backward(top, [True], [x])


# --------------------------------------------------------------------------- Crop
CROP_DATA, CROP_REF = (2, 4, 5, 4), (2, 3, 4, 2)  # test_crop_layer.cpp's bottoms


def crop(text, data_shape=CROP_DATA, ref_shape=CROP_REF):
    x = gaussian(data_shape)
    (top,) = run(make(f'type: "Crop" {text}'), [blob_from(x), blob_from(gaussian(ref_shape, 2))])
    return x, top


@pytest.mark.parametrize(
    "text,shape",
    [
        ("crop_param { axis: 0 }", (2, 3, 4, 2)),  # TestSetupShapeAll
        ("", (2, 4, 4, 2)),  # TestSetupShapeDefault: axis 2
        ("crop_param { axis: -1 }", (2, 4, 5, 2)),  # TestSetupShapeNegativeIndexing
    ],
)
def test_crop_shapes_follow_caffe(text, shape):
    assert crop(text)[1].shape == shape


def test_crop_ignores_the_size_of_uncropped_axes():
    # TestDimensionsCheck: bottom[1] has more channels, but channels are not cropped.
    assert crop("", ref_shape=(2, 5, 4, 2))[1].shape == (2, 4, 4, 2)


@pytest.mark.parametrize(
    "text,index",
    [
        ("crop_param { axis: 0 }", np.s_[:2, :3, :4, :2]),  # TestCropAll
        (
            "crop_param { axis: 0 offset: 0 offset: 1 offset: 1 offset: 2 }",
            np.s_[:2, 1:4, 1:5, 2:4],
        ),  # TestCropAllOffset
        ("crop_param { axis: 2 offset: 1 offset: 2 }", np.s_[:, :, 1:5, 2:4]),  # TestCropHW
        ("crop_param { offset: 1 }", np.s_[:, :, 1:5, 1:3]),  # one offset for every axis
    ],
)
def test_crop_values(text, index):
    x, top = crop(text)
    np.testing.assert_array_equal(top.data, x[index])


def test_crop_5d():
    # TestCrop5D: an extra axis of 2 (data) and 1 (size); offsets 1, 2, 0 from axis 2.
    x, top = crop(
        "crop_param { axis: 2 offset: 1 offset: 2 offset: 0 }", (2, 4, 5, 4, 2), (2, 3, 4, 2, 1)
    )
    np.testing.assert_array_equal(top.data, x[:, :, 1:5, 2:4, 0:1])


@pytest.mark.parametrize(
    "text,data_shape,ref_shape",
    [
        ("crop_param { axis: 0 }", CROP_DATA, CROP_REF),  # TestCropAllGradient
        ("crop_param { axis: 2 offset: 1 offset: 2 }", CROP_DATA, CROP_REF),  # TestCropHWGradient
        ("crop_param { axis: 2 offset: 1 offset: 2 offset: 0 }", (2, 4, 5, 4, 2), (2, 3, 4, 2, 1)),
    ],
)
def test_crop_gradients(text, data_shape, ref_shape):
    # Both bottoms: bottom[1] only gives the size, so its gradient is zero.
    check_gradients(
        make(f'type: "Crop" {text}'),
        [blob_from(gaussian(data_shape)), blob_from(gaussian(ref_shape, 2))],
        [Blob()],
    )


@pytest.mark.parametrize(
    "text,ref_shape,match",
    [
        ("crop_param { offset: 1 offset: 2 offset: 3 }", CROP_REF, "needs one, or one per cropped"),
        ("crop_param { offset: 2 }", CROP_REF, "crop of axis 2 is out of bounds"),
        ("", (2, 3, 4), "needs at least the 4 axes"),
        ("crop_param { axis: 4 }", CROP_REF, "crop_param.axis"),
    ],
)
def test_crop_errors(text, ref_shape, match):
    with pytest.raises(LayerError, match=match):
        crop(text, ref_shape=ref_shape)


# --------------------------------------------------------------------------- Tile
@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
@pytest.mark.parametrize("tiles", [1, 3])
def test_tile_forward_is_numpy_tile_on_the_axis(axis, tiles):
    # test_tile_layer.cpp TestSetup / TestForwardNum / TestForwardChannels on 2x3x4x5.
    x = gaussian((2, 3, 4, 5))
    (top,) = run(make(f'type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}'), [blob_from(x)])
    reps = [1, 1, 1, 1]
    reps[axis] = tiles
    np.testing.assert_array_equal(top.data, np.tile(x, reps))


@pytest.mark.parametrize("axis,tiles", [(1, 1), (0, 3), (1, 3)])
def test_tile_gradients(axis, tiles):
    # TestTrivialGradient, TestGradientNum, TestGradientChannels.
    check_gradients(
        make(f'type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}'),
        [blob_from(gaussian((2, 3, 4, 5)))],
        [Blob()],
    )


@pytest.mark.parametrize(
    "text,match",
    [
        ('type: "Tile"', "tiles .* must be given"),
        ('type: "Tile" tile_param { tiles: 0 }', "must be positive"),
        ('type: "Tile" tile_param { tiles: 2 axis: 4 }', "tile_param.axis"),
    ],
)
def test_tile_errors(text, match):
    with pytest.raises(LayerError, match=match):
        run(make(text), [blob_from(gaussian((2, 3, 4, 5)))])


# --------------------------------------------------------------------------- Reduction
def uniform(shape, seed=1701):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


@pytest.mark.parametrize("axis,shape", [(0, ()), (1, (2,)), (2, (2, 3)), (-1, (2, 3, 4))])
def test_reduction_shapes_follow_caffe(axis, shape):
    # TestSetUp / TestSetUpWithAxis1 / TestSetUpWithAxis2 on 2x3x4x5.
    text = f'type: "Reduction" reduction_param {{ axis: {axis} }}'
    assert run(make(text), [blob_from(uniform((2, 3, 4, 5)))])[0].shape == shape


REDUCE = {
    "SUM": lambda x: x.sum(axis=1),
    "MEAN": lambda x: x.mean(axis=1),
    "ASUM": lambda x: np.abs(x).sum(axis=1),
    "SUMSQ": lambda x: (x * x).sum(axis=1),
}


@pytest.mark.parametrize("op", list(REDUCE))
@pytest.mark.parametrize("coeff,axis", [(1.0, 0), (2.3, 0), (2.3, 1)])
def test_reduction_forward(op, coeff, axis):
    # TestSum, TestSumCoeff, TestSumCoeffAxis1 and the same for MEAN, ASUM and SUMSQ.
    x = uniform((2, 3, 4, 5)) - np.float32(0.5)
    text = f'type: "Reduction" reduction_param {{ operation: {op} coeff: {coeff} axis: {axis} }}'
    (top,) = run(make(text), [blob_from(x)])
    num = int(np.prod(x.shape[:axis]))
    expected = REDUCE[op](x.reshape(num, -1).astype(np.float64)) * np.float32(coeff)
    np.testing.assert_allclose(top.data.reshape(num), expected, rtol=1e-6)


@pytest.mark.parametrize("op", list(REDUCE))
@pytest.mark.parametrize("coeff,axis", [(1.0, 0), (2.3, 0), (2.3, 1)])
def test_reduction_gradients(op, coeff, axis):
    # TestSumGradient etc.: GradientChecker(1e-2, 2e-3) (ASUM's kink at 0 avoided by the data).
    x = uniform((2, 3, 4, 5)) + np.float32(0.05) if op == "ASUM" else uniform((2, 3, 4, 5))
    text = f'type: "Reduction" reduction_param {{ operation: {op} coeff: {coeff} axis: {axis} }}'
    check_gradients(make(text), [blob_from(x)], [Blob()], threshold=2e-3)
