"""Convolution, Deconvolution, InnerProduct, Embed, Pooling and SPP with Caffe's semantics.

Expected values come from BVLC/caffe's test_pooling_layer.cpp,
test_convolution_layer.cpp, test_deconvolution_layer.cpp, test_embed_layer.cpp and
test_spp_layer.cpp; conv results are also checked against an einsum
reference, and every layer's gradients against finite differences.
"""

import numpy as np
import pytest

from caffe_bridge.backend import CpuBackend
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


def distinct(shape, seed=1701):
    """Values spaced 0.1 apart in random order: no ties, no kinks within a 1e-2 step."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1 - n * 0.05).astype(
        np.float32
    )


# --------------------------------------------------------------------------- reference conv
def reference_conv(x, w, b, pad, stride, dil, group):
    """Direct convolution in float64 by fancy indexing + einsum (test-only)."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ho = (h + 2 * pad[0] - (dil[0] * (kh - 1) + 1)) // stride[0] + 1
    wo = (wd + 2 * pad[1] - (dil[1] * (kw - 1) + 1)) // stride[1] + 1
    hi = (np.arange(ho) * stride[0])[:, None] + np.arange(kh) * dil[0]  # (ho, kh)
    wi = (np.arange(wo) * stride[1])[:, None] + np.arange(kw) * dil[1]  # (wo, kw)
    patches = xp[:, :, hi[:, None, :, None], wi[None, :, None, :]]  # (n, c, ho, wo, kh, kw)
    patches = patches.reshape(n, group, cg, ho, wo, kh, kw)
    wg = w.reshape(group, m // group, cg, kh, kw)
    y = np.einsum("ngchwij,gmcij->ngmhw", patches, wg).reshape(n, m, ho, wo)
    if b is not None:
        y = y + b[:, None, None]

    def backward(dy):
        dyg = dy.astype(np.float64).reshape(n, group, m // group, ho, wo)
        dw = np.einsum("ngchwij,ngmhw->gmcij", patches, dyg).reshape(w.shape)
        dpatch = np.einsum("ngmhw,gmcij->ngchwij", dyg, wg).reshape(n, c, ho, wo, kh, kw)
        dxp = np.zeros_like(xp)
        rows = np.broadcast_to(hi[:, None, :, None], (ho, wo, kh, kw))
        cols = np.broadcast_to(wi[None, :, None, :], (ho, wo, kh, kw))
        np.add.at(dxp, (slice(None), slice(None), rows, cols), dpatch)
        dx = dxp[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + wd]
        db = dy.astype(np.float64).sum(axis=(0, 2, 3))
        return dx, dw, db

    return y, backward


CONV_CASES = [
    # (input shape, convolution_param body, pad, stride, dilation, group)
    ((2, 3, 6, 4), "kernel_size: 3 stride: 2 num_output: 4", (0, 0), (2, 2), (1, 1), 1),
    ((2, 3, 7, 6), "kernel_size: 3 pad: 1 num_output: 2", (1, 1), (1, 1), (1, 1), 1),
    (
        (2, 4, 7, 8),
        "kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1 num_output: 4 group: 2",
        (1, 0),
        (2, 1),
        (1, 1),
        2,
    ),
    ((2, 3, 9, 8), "kernel_size: 3 dilation: 2 pad: 2 num_output: 3", (2, 2), (1, 1), (2, 2), 1),
    (
        (1, 6, 8, 7),
        "kernel_size: 3 kernel_size: 2 stride: 2 stride: 1 dilation: 1 dilation: 2 "
        "pad: 1 pad: 2 num_output: 6 group: 3",
        (1, 2),
        (2, 1),
        (1, 2),
        3,
    ),
    ((3, 5, 4, 4), "kernel_size: 1 num_output: 3", (0, 0), (1, 1), (1, 1), 1),
    # K = 16 * 3 * 3 >= BATCH_LAST_MIN_ROWS: the cpu backend gets batch-last operands.
    ((3, 16, 6, 5), "kernel_size: 3 pad: 1 num_output: 4", (1, 1), (1, 1), (1, 1), 1),
    ((2, 32, 5, 5), "kernel_size: 3 stride: 2 num_output: 4 group: 2", (0, 0), (2, 2), (1, 1), 2),
]


@pytest.mark.parametrize("shape,body,pad,stride,dil,group", CONV_CASES)
def test_convolution_matches_reference(shape, body, pad, stride, dil, group):
    layer = make(
        f'name: "conv" type: "Convolution" convolution_param {{ {body} '
        'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }'
    )
    x = gaussian(shape)
    bottom = [blob_from(x)]
    (top,) = run(layer, bottom)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    y, backward = reference_conv(x, w, b, pad, stride, dil, group)
    assert top.shape == y.shape
    np.testing.assert_allclose(top.data, y, rtol=1e-4, atol=1e-4)

    dy = gaussian(top.shape, seed=5)
    top.diff[...] = dy
    layer.backward([top], [True], bottom)
    dx, dw, db = backward(dy)
    np.testing.assert_allclose(bottom[0].diff, dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.blobs[0].diff, dw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.blobs[1].diff, db, rtol=1e-4, atol=1e-4)

    # Parameter diffs accumulate as in Caffe; the bottom diff is overwritten.
    layer.backward([top], [True], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * dw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * db, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bottom[0].diff, dx, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "shape,body",
    [
        ((2, 3, 6, 4), "kernel_size: 3 stride: 2 num_output: 2"),  # Caffe's TestGradient
        ((2, 3, 5, 6), "kernel_size: 3 dilation: 2 num_output: 2"),  # TestDilatedGradient
        ((2, 3, 6, 4), "kernel_size: 3 stride: 2 num_output: 3 group: 3"),  # TestGradientGroup
        (
            (1, 4, 5, 6),
            "kernel_h: 2 kernel_w: 3 pad_h: 1 pad_w: 2 stride_h: 2 num_output: 2 "
            "group: 2 stride_w: 1",
        ),
        ((2, 3, 4, 3), "kernel_size: 1 num_output: 2"),  # Test1x1Gradient
    ],
)
def test_convolution_gradients(shape, body):
    layer = make(
        f'name: "conv" type: "Convolution" convolution_param {{ {body} '
        'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }'
    )
    bottom = [blob_from(gaussian(shape))]
    check_gradients(layer, bottom, [Blob()], stepsize=1e-2, threshold=1e-3)


def test_convolution_two_bottoms_share_weights():
    # Caffe's TestSimpleConvolution shapes: two (2,3,6,4) bottoms, kernel 3 stride 2.
    layer = make(
        'name: "conv" type: "Convolution" convolution_param { kernel_size: 3 stride: 2 '
        'num_output: 4 weight_filler { type: "gaussian" } '
        'bias_filler { type: "constant" value: 0.1 } }'
    )
    x1, x2 = gaussian((2, 3, 6, 4)), gaussian((2, 3, 6, 4), seed=2)
    bottoms = [blob_from(x1), blob_from(x2)]
    tops = run(layer, bottoms, n_top=2)
    assert tops[0].shape == (2, 4, 2, 1) == tops[1].shape
    w, b = layer.blobs[0].data, layer.blobs[1].data
    for x, t in zip((x1, x2), tops, strict=True):
        y, _ = reference_conv(x, w, b, (0, 0), (2, 2), (1, 1), 1)
        np.testing.assert_allclose(t.data, y, atol=1e-4)
    # Setting group must not change the shape (Caffe's TestSetup).
    layer = make(
        'name: "conv" type: "Convolution" convolution_param { kernel_size: 3 stride: 2 '
        "num_output: 3 group: 3 }"
    )
    tops = run(layer, [blob_from(x1), blob_from(x2)], n_top=2)
    assert tops[0].shape == (2, 3, 2, 1)


def test_sobel_full_equals_separable():
    # Caffe's TestSobelConvolution: a 3x3 Sobel G_x filter equals a 3x1 [1 2 1] column
    # filter followed by a 1x3 [-1 0 1] row filter (with matching strides).
    x = gaussian((2, 3, 6, 4)) + 1.0
    full = make(
        'name: "sobel" type: "Convolution" convolution_param { kernel_size: 3 stride: 2 '
        "num_output: 1 bias_term: false }"
    )
    full.blobs = [blob_from(np.broadcast_to([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], (1, 3, 3, 3)))]
    (top_full,) = run(full, [blob_from(x)])
    col = make(
        'name: "col" type: "Convolution" convolution_param { kernel_h: 3 kernel_w: 1 '
        "stride_h: 2 stride_w: 1 num_output: 1 bias_term: false }"
    )
    col.blobs = [blob_from(np.broadcast_to(np.array([1, 2, 1])[:, None], (1, 3, 3, 1)))]
    (mid,) = run(col, [blob_from(x)])
    row = make(
        'name: "row" type: "Convolution" convolution_param { kernel_h: 1 kernel_w: 3 '
        "stride_h: 1 stride_w: 2 num_output: 1 bias_term: false }"
    )
    row.blobs = [blob_from(np.array([-1, 0, 1]).reshape(1, 1, 1, 3))]
    (top_sep,) = run(row, [mid])
    assert top_full.shape == top_sep.shape == (2, 1, 2, 1)
    np.testing.assert_allclose(top_full.data, top_sep.data, atol=1e-4)
    # And the hand-computed value of the first output: sum_c G_x * x[c, 0:3, 0:3].
    gx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    assert top_full.data[0, 0, 0, 0] == pytest.approx(float((x[0, :, :3, :3] * gx).sum()), abs=1e-4)


def test_convolution_axis_two_matches_folded_batch():
    x = gaussian((2, 3, 4, 5, 5))
    text = (
        'name: "conv" type: "Convolution" convolution_param { kernel_size: 3 num_output: 2 '
        'axis: AXIS weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }'
    )
    layer = make(text.replace("AXIS", "2"))
    (top,) = run(layer, [blob_from(x)])
    assert top.shape == (2, 3, 2, 3, 3)
    flat = make(text.replace("AXIS", "1"))
    flat.blobs = layer.blobs
    (ref,) = run(flat, [blob_from(x.reshape(6, 4, 5, 5))])
    np.testing.assert_allclose(top.data.reshape(ref.shape), ref.data, atol=1e-5)


class RecordingBackend(CpuBackend):
    """The CPU backend, recording which passes each layer asked for and their shapes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple, tuple]] = []

    def forward(self, w, x, *, layer=""):
        self.calls.append(("forward", layer, w.shape, x.shape))
        return super().forward(w, x, layer=layer)

    def backward_data(self, w, dy, *, layer=""):
        self.calls.append(("backward_data", layer, w.shape, dy.shape))
        return super().backward_data(w, dy, layer=layer)

    def weight_grad(self, dy, x, *, layer=""):
        self.calls.append(("weight_grad", layer, dy.shape, x.shape))
        return super().weight_grad(dy, x, layer=layer)


def test_convolution_gemms_go_through_the_backend_per_group():
    backend = RecordingBackend()
    layer = make(
        'name: "c2" type: "Convolution" convolution_param { kernel_size: 3 num_output: 4 '
        'group: 2 weight_filler { type: "gaussian" } }',
        backend=backend,
    )
    bottom = [blob_from(gaussian((5, 6, 7, 7)))]
    (top,) = run(layer, bottom)
    top.diff[...] = 1
    layer.backward([top], [True], bottom)
    # M = 4/2, K = 6/2 * 3 * 3, N = 5 * 5 output pixels, B = 5 images.
    assert backend.calls == [
        ("forward", "c2", (2, 27), (5, 27, 25)),
        ("forward", "c2", (2, 27), (5, 27, 25)),
        ("weight_grad", "c2", (5, 2, 25), (5, 27, 25)),
        ("weight_grad", "c2", (5, 2, 25), (5, 27, 25)),
        ("backward_data", "c2", (2, 27), (5, 2, 25)),
        ("backward_data", "c2", (2, 27), (5, 2, 25)),
    ]
    # Without propagate_down, the bottom diff is left alone and no backward-data GEMM runs.
    backend.calls.clear()
    bottom[0].diff[...] = 42
    layer.backward([top], [False], bottom)
    assert [c[0] for c in backend.calls] == ["weight_grad", "weight_grad"]
    np.testing.assert_array_equal(bottom[0].diff, 42)


def test_inner_product_gemms_fold_the_batch():
    backend = RecordingBackend()
    layer = make(
        'name: "ip" type: "InnerProduct" inner_product_param { num_output: 10 '
        'weight_filler { type: "gaussian" } }',
        backend=backend,
    )
    bottom = [blob_from(gaussian((64, 4, 2, 2)))]
    (top,) = run(layer, bottom)
    top.diff[...] = 1
    layer.backward([top], [True], bottom)
    assert backend.calls == [
        ("forward", "ip", (10, 16), (1, 16, 64)),
        ("weight_grad", "ip", (1, 10, 64), (1, 16, 64)),
        ("backward_data", "ip", (10, 16), (1, 10, 64)),
    ]


@pytest.mark.parametrize(
    "body,match",
    [
        ("kernel_size: 7 num_output: 2", "kernel extent 7.*larger than the padded input 6"),
        ("kernel_size: 3", "num_output must be given"),
        ("kernel_size: 3 num_output: 4 group: 2", "group 2 does not divide the 3 input channels"),
        ("kernel_size: 3 num_output: 4 group: 3", "group 3 does not divide num_output 4"),
        ("kernel_size: 3 kernel_h: 3 kernel_w: 3 num_output: 2", "either kernel_size or kernel_h"),
        ("kernel_h: 3 num_output: 2", "kernel_h and kernel_w must be given together"),
        ("num_output: 2", "kernel_size is missing"),
        ("kernel_size: 3 kernel_size: 3 kernel_size: 3 num_output: 2", "once per spatial"),
        ("kernel_size: 3 stride: 0 num_output: 2", "stride must be >= 1"),
        ("kernel_size: 3 stride: 1 stride_h: 2 stride_w: 2 num_output: 2", "either stride or"),
    ],
)
def test_convolution_errors(body, match):
    layer = make(f'name: "bad" type: "Convolution" convolution_param {{ {body} }}')
    with pytest.raises(LayerError, match=rf"layer 'bad' \(Convolution\).*{match}"):
        run(layer, [blob_from(gaussian((1, 3, 6, 6)))])


def test_convolution_rejects_other_than_2d_and_wrong_preset_blobs():
    layer = make(
        'name: "c3" type: "Convolution" convolution_param { kernel_size: 3 num_output: 2 }'
    )
    with pytest.raises(LayerError, match="only 2-D convolution.*3 spatial axes"):
        run(layer, [blob_from(gaussian((1, 3, 5, 6, 6)))])
    layer = make('name: "c" type: "Convolution" convolution_param { kernel_size: 3 num_output: 2 }')
    layer.blobs = [Blob((2, 3, 3, 3)), Blob((3,))]
    with pytest.raises(LayerError, match=r"incorrect bias shape: expected \(2,\)"):
        run(layer, [blob_from(gaussian((1, 3, 6, 6)))])
    layer = make('name: "c" type: "Convolution" convolution_param { kernel_size: 3 num_output: 2 }')
    (top,) = run(layer, [blob_from(gaussian((1, 3, 6, 6)))])
    with pytest.raises(LayerError, match="input has 4 channels.*set up for 3"):
        layer.reshape([blob_from(gaussian((1, 4, 6, 6)))], [top])


# --------------------------------------------------------------------------- InnerProduct
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("axis,shape", [(1, (2, 3, 4, 5)), (2, (2, 3, 4, 5)), (-1, (3, 2, 4))])
def test_inner_product_forward_and_gradients(transpose, axis, shape):
    layer = make(
        f'name: "ip" type: "InnerProduct" inner_product_param {{ num_output: 7 axis: {axis} '
        f"transpose: {'true' if transpose else 'false'} "
        'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }'
    )
    x = gaussian(shape)
    (top,) = run(layer, [blob_from(x)])
    ax = axis % len(shape)
    k = int(np.prod(shape[ax:]))
    w = layer.blobs[0].data
    assert w.shape == ((k, 7) if transpose else (7, k))
    wmat = w.T if transpose else w
    expected = x.reshape(-1, k).astype(np.float64) @ wmat.T + layer.blobs[1].data
    assert top.shape == shape[:ax] + (7,)
    np.testing.assert_allclose(top.data.reshape(-1, 7), expected, rtol=1e-5, atol=1e-5)
    check_gradients(layer, [blob_from(x)], [Blob()], stepsize=1e-2, threshold=1e-3)


def test_inner_product_transpose_is_the_same_map():
    text = (
        'name: "ip" type: "InnerProduct" inner_product_param { num_output: 5 '
        'transpose: T weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }'
    )
    x = gaussian((4, 6))
    plain = make(text.replace("T", "false"))
    (y1,) = run(plain, [blob_from(x)])
    trans = make(text.replace("T", "true"))
    trans.blobs = [blob_from(plain.blobs[0].data.T), plain.blobs[1]]
    (y2,) = run(trans, [blob_from(x)])
    np.testing.assert_allclose(y1.data, y2.data, atol=1e-6)
    dy = gaussian(y1.shape, seed=9)
    for layer, y in ((plain, y1), (trans, y2)):
        y.diff[...] = dy
        layer.backward([y], [False], [blob_from(x)])
    np.testing.assert_allclose(plain.blobs[0].diff, trans.blobs[0].diff.T, atol=1e-5)


def test_inner_product_errors():
    layer = make('name: "fc" type: "InnerProduct" inner_product_param { }')
    with pytest.raises(LayerError, match=r"layer 'fc' \(InnerProduct\).*num_output"):
        run(layer, [blob_from(gaussian((2, 3)))])
    layer = make('name: "fc" type: "InnerProduct" inner_product_param { num_output: 2 }')
    (top,) = run(layer, [blob_from(gaussian((2, 3)))])
    with pytest.raises(LayerError, match="has 4 inputs from axis 1.*set up for 3"):
        layer.reshape([blob_from(gaussian((2, 4)))], [top])
    layer = make('name: "fc" type: "InnerProduct" inner_product_param { num_output: 2 axis: 3 }')
    with pytest.raises(LayerError, match="inner_product_param.axis"):
        run(layer, [blob_from(gaussian((2, 3)))])


# --------------------------------------------------------------------------- Pooling
MAGIC6 = np.array(
    [
        [35, 1, 6, 26, 19, 24],
        [3, 32, 7, 21, 23, 25],
        [31, 9, 2, 22, 27, 20],
        [8, 28, 33, 17, 10, 15],
        [30, 5, 34, 12, 14, 16],
        [4, 36, 29, 13, 18, 11],
    ]
)


def pool_layer(body: str):
    return make(f'name: "pool" type: "Pooling" pooling_param {{ {body} }}')


@pytest.mark.parametrize(
    "body,image,expected,mask",
    [
        (  # TestForwardSquare
            "kernel_size: 2 pool: MAX",
            [[1, 2, 5, 2, 3], [9, 4, 1, 4, 8], [1, 2, 5, 2, 3]],
            [[9, 5, 5, 8], [9, 5, 5, 8]],
            [[5, 2, 2, 9], [5, 12, 12, 9]],
        ),
        (  # TestForwardRectHigh
            "kernel_h: 3 kernel_w: 2 pool: MAX",
            MAGIC6,
            [
                [35, 32, 26, 27, 27],
                [32, 33, 33, 27, 27],
                [31, 34, 34, 27, 27],
                [36, 36, 34, 18, 18],
            ],
            [[0, 7, 3, 16, 16], [7, 20, 20, 16, 16], [12, 26, 26, 16, 16], [31, 31, 26, 34, 34]],
        ),
        (  # TestForwardRectWide
            "kernel_h: 2 kernel_w: 3 pool: MAX",
            MAGIC6,
            [
                [35, 32, 26, 26],
                [32, 32, 27, 27],
                [33, 33, 33, 27],
                [34, 34, 34, 17],
                [36, 36, 34, 18],
            ],
            [[0, 7, 3, 3], [7, 7, 16, 16], [20, 20, 20, 16], [26, 26, 26, 21], [31, 31, 26, 34]],
        ),
    ],
)
@pytest.mark.parametrize("with_mask", [False, True])
def test_pooling_caffe_forward_max(body, image, expected, mask, with_mask):
    x = np.broadcast_to(np.asarray(image, dtype=np.float32), (2, 2) + np.shape(image))
    tops = run(pool_layer(body), [blob_from(x)], n_top=2 if with_mask else 1)
    exp = np.broadcast_to(np.asarray(expected, dtype=np.float32), (2, 2) + np.shape(expected))
    np.testing.assert_array_equal(tops[0].data, exp)
    if with_mask:
        np.testing.assert_array_equal(tops[1].data, np.broadcast_to(mask, exp.shape))


def test_pooling_caffe_forward_max_padded():
    x = np.array([[1, 2, 4], [2, 3, 2], [4, 2, 1]], dtype=np.float32)[None, None]
    (top,) = run(pool_layer("kernel_size: 3 stride: 2 pad: 2 pool: MAX"), [blob_from(x)])
    np.testing.assert_array_equal(top.data[0, 0], [[1, 4, 4], [4, 4, 4], [4, 4, 1]])


def test_pooling_caffe_forward_ave_padded_divisor():
    # TestForwardAve: a constant 2 image, 3x3 windows with pad 1 divide by 9 everywhere.
    x = np.full((1, 1, 3, 3), 2, dtype=np.float32)
    (top,) = run(pool_layer("kernel_size: 3 stride: 1 pad: 1 pool: AVE"), [blob_from(x)])
    e, s = 8.0 / 9, 4.0 / 3
    np.testing.assert_allclose(top.data[0, 0], [[e, s, e], [s, 2, s], [e, s, e]], atol=1e-5)


def test_pooling_ave_ceil_window_divisor_is_clipped_to_padded_image():
    # 4x4 input, 3x3/2 pad 1: output 3x3 (CEIL: (4+2-3)/2 = 1.5 -> 2, +1 = 3; the last
    # window starts at 3 < 4+1). Its rows 3..5 are clipped to 3..4 (= h + pad): divisor 2*2.
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    (top,) = run(pool_layer("kernel_size: 3 stride: 2 pad: 1 pool: AVE"), [blob_from(x)])
    assert top.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(
        top.data[0, 0],
        [[4 / 9, 4 / 6, 2 / 6], [4 / 6, 9 / 9, 3 / 6], [2 / 6, 3 / 6, 1 / 4]],
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "shape,body,out",
    [
        ((2, 3, 6, 5), "kernel_size: 3 stride: 2", (3, 2)),  # TestSetup
        ((2, 3, 6, 5), "kernel_size: 3 stride: 2 pad: 1 pool: AVE", (4, 3)),  # TestSetupPadded
        ((1, 1, 32, 32), "kernel_size: 3 stride: 2", (16, 16)),  # CIFAR-10 pool1
        ((1, 1, 32, 32), "kernel_size: 3 stride: 2 pad: 1", (17, 17)),  # ceil(31/2)+1, no clip
        ((1, 1, 5, 5), "kernel_size: 2 stride: 2 pad: 1", (3, 3)),  # clipped: 4 -> 3
        ((1, 1, 32, 32), "kernel_size: 3 stride: 2 round_mode: FLOOR", (15, 15)),
        ((1, 1, 24, 24), "kernel_size: 2 stride: 2", (12, 12)),  # LeNet pool1
        ((1, 1, 6, 5), "kernel_size: 3 stride: 2 pad_h: 1 pad_w: 0", (4, 2)),
        ((1, 1, 7, 9), "global_pooling: true pool: AVE", (1, 1)),
    ],
)
def test_pooling_output_sizes(shape, body, out):
    tops = run(pool_layer(body), [blob_from(gaussian(shape))])
    assert tops[0].shape == shape[:2] + out


def test_global_pooling_values_and_gradients():
    x = distinct((2, 3, 4, 5))
    tops = run(pool_layer("global_pooling: true pool: MAX"), [blob_from(x)], n_top=2)
    np.testing.assert_array_equal(tops[0].data[..., 0, 0], x.reshape(2, 3, -1).max(axis=2))
    np.testing.assert_array_equal(tops[1].data[..., 0, 0], x.reshape(2, 3, -1).argmax(axis=2))
    (top,) = run(pool_layer("global_pooling: true pool: AVE"), [blob_from(x)])
    np.testing.assert_allclose(top.data[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    for pool in ("MAX", "AVE"):
        check_gradients(
            pool_layer(f"global_pooling: true pool: {pool}"),
            [blob_from(x)],
            [Blob()],
            check_params=False,
        )


@pytest.mark.parametrize("kh", [3, 4])
@pytest.mark.parametrize("kw", [3, 4])
def test_pooling_max_gradients(kh, kw):
    # Caffe's TestGradientMax (stride 2, pad 1) on its (2, 3, 6, 5) input, with distinct values.
    body = f"kernel_h: {kh} kernel_w: {kw} stride: 2 pad: 1 pool: MAX"
    check_gradients(pool_layer(body), [blob_from(distinct((2, 3, 6, 5)))], [Blob()])
    # TestGradientMaxTopMask: no padding, mask as a second top.
    body = f"kernel_h: {kh} kernel_w: {kw} stride: 2 pool: MAX"
    check_gradients(pool_layer(body), [blob_from(distinct((2, 3, 6, 5)))], [Blob(), Blob()])


@pytest.mark.parametrize("kh", [3, 4])
@pytest.mark.parametrize("kw", [3, 4])
@pytest.mark.parametrize("pad", [0, 2])
def test_pooling_ave_gradients(kh, kw, pad):
    body = f"kernel_h: {kh} kernel_w: {kw} stride: 2 pad: {pad} pool: AVE"
    check_gradients(pool_layer(body), [blob_from(gaussian((2, 3, 6, 5)))], [Blob()], threshold=1e-2)


def test_pooling_max_backward_routes_to_first_maximum():
    # Ties: Caffe keeps the first maximum in row-major order and routes the gradient there.
    x = np.array([[3, 3], [3, 1]], dtype=np.float32)[None, None]
    layer = pool_layer("kernel_size: 2 pool: MAX")
    bottom = [blob_from(x)]
    (top,) = run(layer, bottom)
    top.diff[...] = 5
    layer.backward([top], [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff[0, 0], [[5, 0], [0, 0]])


@pytest.mark.parametrize(
    "body,n_top,match",
    [
        ("kernel_size: 3 pool: STOCHASTIC", 1, "STOCHASTIC pooling is not supported"),
        ("kernel_size: 3 kernel_h: 3 kernel_w: 3", 1, "kernel_size OR kernel_h and kernel_w"),
        ("kernel_h: 3", 1, "both kernel_h and kernel_w are required"),
        ("stride: 2", 1, "kernel_size .* is missing"),
        ("kernel_size: 2 pool: AVE", 2, "only MAX pooling can output a second"),
        ("global_pooling: true kernel_size: 2", 1, "global_pooling, kernel size cannot"),
        ("global_pooling: true stride: 2", 1, "only pad = 0 and stride = 1"),
        ("kernel_size: 3 pad: 3", 1, "pad .* must be smaller than the kernel"),
        ("kernel_size: 9", 1, "kernel 9 is larger than the padded input 6"),
        ("kernel_size: 2 stride: 1 stride_h: 2 stride_w: 2", 1, "stride is stride OR"),
    ],
)
def test_pooling_errors(body, n_top, match):
    with pytest.raises(LayerError, match=rf"layer 'pool' \(Pooling\).*{match}"):
        run(pool_layer(body), [blob_from(gaussian((1, 1, 6, 6)))], n_top=n_top)


def test_pooling_rejects_non_4d_input():
    with pytest.raises(LayerError, match="must have 4 axes"):
        run(pool_layer("kernel_size: 2"), [blob_from(gaussian((2, 6, 6)))])


# --------------------------------------------------------------------------- Deconvolution
DECONV = """type: "Deconvolution" convolution_param {{ num_output: {out} kernel_size: {k}
    stride: {s} {extra} weight_filler {{ type: "gaussian" }}
    bias_filler {{ type: "gaussian" }} }}"""


def test_deconvolution_shapes_follow_caffe():
    # test_deconvolution_layer.cpp TestSetup: 2x3x6x4, kernel 3, stride 2 -> 13x9.
    layer = make(DECONV.format(out=4, k=3, s=2, extra=""))
    tops = run(layer, [blob_from(gaussian((2, 3, 6, 4))), blob_from(gaussian((2, 3, 6, 4), 2))], 2)
    assert [t.shape for t in tops] == [(2, 4, 13, 9)] * 2
    assert layer.blobs[0].shape == (3, 4, 3, 3)  # (channels, num_output/group, kh, kw)
    grouped = make(DECONV.format(out=3, k=3, s=2, extra="group: 3"))
    (top,) = run(grouped, [blob_from(gaussian((2, 3, 6, 4)))])
    assert top.shape == (2, 3, 13, 9) and grouped.blobs[0].shape == (3, 1, 3, 3)


def test_deconvolution_caffe_simple_values():
    # TestSimpleDeconvolution: ones in, weights 1, bias 0.1; overlaps add 3 or 9.
    text = """type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 stride: 2
        weight_filler { type: "constant" value: 1 } bias_filler { type: "constant" value: 0.1 } }"""
    (top,) = run(make(text), [blob_from(np.ones((2, 3, 6, 4), np.float32))])
    h, w = np.arange(13), np.arange(9)
    h_overlap = (h % 2 == 0) & (h > 0) & (h < 12)
    w_overlap = (w % 2 == 0) & (w > 0) & (w < 8)
    expected = 3.1 + np.where(
        h_overlap[:, None] & w_overlap[None, :],
        9,
        np.where(h_overlap[:, None] | w_overlap[None, :], 3, 0),
    )
    np.testing.assert_allclose(top.data, np.broadcast_to(expected, top.shape), atol=1e-4)


@pytest.mark.parametrize(
    "extra,k,s,shape",
    [
        ("", 2, 1, (2, 3, 6, 4)),
        ("pad: 1 dilation: 2", 3, 2, (2, 4, 3, 3)),
        ("group: 2", 3, 2, (1, 4, 3, 2)),
    ],
)
def test_deconvolution_gradients(extra, k, s, shape):
    # TestGradient: kernel 2, stride 1, one output, gaussian fillers; plus pad/dilation/group.
    out = 2 if "group" in extra else 1
    check_gradients(
        make(DECONV.format(out=out, k=k, s=s, extra=extra)),
        [blob_from(gaussian(shape)), blob_from(gaussian(shape, seed=2))],
        [Blob(), Blob()],
    )


def test_deconvolution_is_the_adjoint_of_convolution():
    # <conv(x), y> == <x, deconv(y)> with the same weights and geometry, no bias.
    body = "num_output: 3 kernel_size: 3 stride: 2 pad: 1 group: 1 bias_term: false"
    conv = make(
        f'type: "Convolution" convolution_param {{ {body} weight_filler {{ type: "gaussian" }} }}'
    )
    x = gaussian((2, 4, 7, 9))  # odd sizes: stride 2 loses no pixel
    (y,) = run(conv, [blob_from(x)])
    deconv = make(f'type: "Deconvolution" convolution_param {{ num_output: 4 {body[14:]} }}')
    deconv.blobs = conv.blobs  # conv (3, 4, 3, 3) is deconv's (channels 3, num_output 4, 3, 3)
    r = gaussian(y.shape, seed=5)
    (xt,) = run(deconv, [blob_from(r)])
    assert xt.shape == x.shape
    np.testing.assert_allclose(
        np.vdot(y.data.astype(np.float64), r), np.vdot(x.astype(np.float64), xt.data), rtol=1e-5
    )


def test_deconvolution_gemms_go_through_the_backend_swapped():
    backend = RecordingBackend()
    layer = make(
        'name: "up" type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 '
        'stride: 2 group: 2 weight_filler { type: "gaussian" } }',
        backend=backend,
    )
    bottom = blob_from(gaussian((2, 6, 5, 4)))
    (top,) = run(layer, [bottom])
    # Forward is the convolution's backward-data GEMM, per group: W_g (3, 2*3*3), X_g (2, 3, 20).
    assert backend.calls == [("backward_data", "up", (3, 18), (2, 3, 20))] * 2
    backend.calls.clear()
    top.diff[...] = gaussian(top.shape, seed=4)
    layer.backward([top], [True], [bottom])
    # Weight gradient (bottom data as "dY", the top gradient's columns as "X"), then the
    # bottom gradient as the convolution's forward GEMM.
    assert (
        backend.calls
        == [("weight_grad", "up", (2, 3, 20), (2, 18, 20))] * 2
        + [("forward", "up", (3, 18), (2, 18, 20))] * 2
    )


def test_deconvolution_errors():
    layer = make('type: "Deconvolution" convolution_param { num_output: 2 kernel_size: 1 pad: 1 }')
    with pytest.raises(LayerError, match="output height -1 is not positive"):
        run(layer, [blob_from(gaussian((1, 2, 1, 3)))])
    layer = make('type: "Deconvolution" convolution_param { kernel_size: 2 }')
    with pytest.raises(LayerError, match="num_output must be given"):
        run(layer, [blob_from(gaussian((1, 2, 3, 3)))])


# --------------------------------------------------------------------------- Embed
EMBED = """type: "Embed" embed_param {{ num_output: 10 input_dim: 5 bias_term: {bias}
    weight_filler {{ type: "uniform" min: -10 max: 10 }}
    bias_filler {{ type: "uniform" min: -10 max: 10 }} }}"""


@pytest.mark.parametrize("bias", ["false", "true"])
def test_embed_forward_picks_rows(bias):
    # test_embed_layer.cpp: a (4, 1, 1, 1) bottom of indices; top (4, 1, 1, 1, 10).
    layer = make(EMBED.format(bias=bias))
    idx = np.array([4, 2, 2, 3], np.float32).reshape(4, 1, 1, 1)
    (top,) = run(layer, [blob_from(idx)])
    assert top.shape == (4, 1, 1, 1, 10) and layer.blobs[0].shape == (5, 10)
    expected = layer.blobs[0].data[[4, 2, 2, 3]]
    if bias == "true":
        expected = expected + layer.blobs[1].data
    np.testing.assert_allclose(top.data.reshape(4, 10), expected, rtol=1e-6)


@pytest.mark.parametrize("bias", ["false", "true"])
def test_embed_gradients(bias):
    idx = np.array([4, 2, 2, 3], np.float32).reshape(4, 1, 1, 1)
    check_gradients(make(EMBED.format(bias=bias)), [blob_from(idx)], [Blob()], check_bottom=[])


def test_embed_errors():
    with pytest.raises(LayerError, match="not an index in"):
        run(make(EMBED.format(bias="true")), [blob_from(np.array([1.5, 5], np.float32))])
    with pytest.raises(LayerError, match="input_dim must be given"):
        run(make('type: "Embed" embed_param { num_output: 3 }'), [blob_from(np.zeros(2))])
    layer = make(EMBED.format(bias="false"))
    bottom = blob_from(np.array([1, 2], np.float32))
    (top,) = run(layer, [bottom])
    with pytest.raises(LayerError, match="cannot backpropagate to the input"):
        layer.backward([top], [True], [bottom])


# --------------------------------------------------------------------------- SPP
@pytest.mark.parametrize(
    "shape,height,channels",
    [((2, 3, 9, 8), 3, 63), ((4, 3, 1024, 765), 5, 1023), ((10, 3, 7, 7), 3, 63)],
)
def test_spp_output_shapes_follow_caffe(shape, height, channels):
    # test_spp_layer.cpp: C * (4^h - 1) / 3 outputs per image.
    layer = make(f'type: "SPP" spp_param {{ pyramid_height: {height} }}')
    top = [Blob()]
    bottom = [Blob(shape)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    assert top[0].shape == (shape[0], channels)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_spp_values_are_the_levels_poolings_concatenated(pool):
    x = distinct((2, 3, 9, 8))
    (top,) = run(
        make(f'type: "SPP" spp_param {{ pyramid_height: 2 pool: {pool} }}'), [blob_from(x)]
    )
    # Level 0: the whole image; level 1: 2x2 bins of kernel (5, 4), stride = kernel, pad (1, 0).
    whole = x.max(axis=(2, 3)) if pool == "MAX" else x.mean(axis=(2, 3))
    np.testing.assert_allclose(top.data[:, :3], whole, rtol=1e-6)
    level1 = make(
        f'type: "Pooling" pooling_param {{ pool: {pool} kernel_h: 5 kernel_w: 4 stride_h: 5 '
        "stride_w: 4 pad_h: 1 pad_w: 0 }"
    )
    (ref,) = run(level1, [blob_from(x)])
    np.testing.assert_allclose(top.data[:, 3:], ref.data.reshape(2, 12), rtol=1e-6)


def test_spp_single_level_keeps_four_axes():
    (top,) = run(
        make('type: "SPP" spp_param { pyramid_height: 1 }'), [blob_from(gaussian((2, 3, 5, 4)))]
    )
    assert top.shape == (2, 3, 1, 1)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_spp_gradients(pool):
    # TestGradient: pyramid height 3 on a 2x3x9x8 blob (distinct values keep max pooling smooth).
    check_gradients(
        make(f'type: "SPP" spp_param {{ pyramid_height: 3 pool: {pool} }}'),
        [blob_from(distinct((2, 3, 9, 8)))],
        [Blob()],
    )


def test_spp_errors():
    with pytest.raises(LayerError, match="pyramid_height must be given"):
        run(make('type: "SPP"'), [blob_from(gaussian((1, 1, 4, 4)))])
    with pytest.raises(LayerError, match="too small for pyramid level 2"):
        run(
            make('type: "SPP" spp_param { pyramid_height: 3 }'), [blob_from(gaussian((1, 1, 3, 3)))]
        )
    with pytest.raises(LayerError, match="STOCHASTIC"):
        run(
            make('type: "SPP" spp_param { pyramid_height: 2 pool: STOCHASTIC }'),
            [blob_from(gaussian((1, 1, 4, 4)))],
        )


class KeepingBackend(CpuBackend):
    """The CPU backend asking for the forward pass's columns back, recording the X arrays."""

    keeps_columns = True

    def __init__(self) -> None:
        self.xs: list[tuple[str, np.ndarray]] = []

    def forward(self, w, x, *, layer=""):
        self.xs.append(("forward", x))
        return super().forward(w, x, layer=layer)

    def weight_grad(self, dy, x, *, layer=""):
        self.xs.append(("weight_grad", x))
        return super().weight_grad(dy, x, layer=layer)


def test_convolution_hands_back_the_forward_columns_while_the_bottom_is_unchanged():
    body = 'name: "c" type: "Convolution" convolution_param { kernel_size: 3 num_output: 4 }'
    backend = KeepingBackend()
    layer = make(body, backend=backend)
    bottom = [blob_from(gaussian((2, 3, 6, 6)))]
    (top,) = run(layer, bottom)
    top.diff[...] = gaussian(top.shape, seed=2)
    layer.backward([top], [True], bottom)
    (_, fwd), (_, grad) = backend.xs
    assert grad.base is fwd.base and grad.shape == fwd.shape  # the same memory, read-only
    assert not fwd.flags.writeable and not grad.flags.writeable
    wdiff = layer.blobs[0].diff.copy()
    # A bottom changed since the forward pass gets fresh columns, and the gradient of the
    # changed data, as without the backend's request.
    backend.xs.clear()
    layer.blobs[0].diff[...] = 0
    run(layer, bottom)
    bottom[0].data[0, 0, 0, 0] += 1
    layer.backward([top], [True], bottom)
    (_, fwd), (_, grad) = backend.xs
    assert not np.shares_memory(fwd, grad) and grad.flags.writeable
    plain = make(body, backend=CpuBackend())
    run(plain, bottom)  # sets the layer up
    for mine, theirs in zip(plain.blobs, layer.blobs, strict=True):
        mine.data[...] = theirs.data
    run(plain, bottom)
    plain.backward([top], [True], bottom)
    np.testing.assert_array_equal(layer.blobs[0].diff, plain.blobs[0].diff)
    assert not np.array_equal(wdiff, plain.blobs[0].diff)
