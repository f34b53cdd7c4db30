"""im2col/col2im: Caffe's column layout, padding/stride/dilation, the adjoint identity, and
the batch-last layout's passes against the image-major ones."""

import numpy as np
import pytest

from caffe_bridge.im2col import (
    batch_last,
    col2im,
    conv_output_size,
    im2col,
    im2col_batch_last,
    is_batch_last,
)

CONFIGS = [
    # kernel, pad, stride, dilation
    ((3, 3), (0, 0), (1, 1), (1, 1)),
    ((3, 3), (1, 1), (2, 2), (1, 1)),
    ((2, 3), (1, 0), (1, 2), (1, 1)),
    ((3, 3), (2, 1), (1, 1), (2, 2)),
    ((5, 5), (2, 2), (3, 2), (1, 1)),
    ((1, 1), (0, 0), (1, 1), (1, 1)),
    ((1, 1), (1, 0), (2, 1), (1, 1)),
]


def reference_im2col(x, kernel, pad, stride, dilation):
    """Caffe's im2col written element by element (test-only, small inputs)."""
    b, c, h, w = x.shape
    kh, kw = kernel
    ho = (h + 2 * pad[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
    wo = (w + 2 * pad[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
    cols = np.zeros((b, c * kh * kw, ho * wo), dtype=x.dtype)
    for n in range(b):
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    row = (ch * kh + i) * kw + j
                    for oh in range(ho):
                        for ow in range(wo):
                            ih = oh * stride[0] - pad[0] + i * dilation[0]
                            iw = ow * stride[1] - pad[1] + j * dilation[1]
                            if 0 <= ih < h and 0 <= iw < w:
                                cols[n, row, oh * wo + ow] = x[n, ch, ih, iw]
    return cols


@pytest.mark.parametrize("kernel,pad,stride,dilation", CONFIGS)
def test_im2col_matches_elementwise_reference(kernel, pad, stride, dilation):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    got = im2col(x, kernel, pad, stride, dilation)
    want = reference_im2col(x, kernel, pad, stride, dilation)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel,pad,stride,dilation", CONFIGS)
def test_pixel_major_layout_holds_the_same_matrix(kernel, pad, stride, dilation):
    x = np.random.default_rng(5).standard_normal((2, 3, 7, 6)).astype(np.float32)
    cols = im2col(x, kernel, pad, stride, dilation, pixel_major=True)
    np.testing.assert_array_equal(cols, im2col(x, kernel, pad, stride, dilation))
    assert cols.transpose(0, 2, 1).flags.c_contiguous


@pytest.mark.parametrize("kernel,pad,stride,dilation", CONFIGS)
def test_col2im_is_the_adjoint_of_im2col(kernel, pad, stride, dilation):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col(x, kernel, pad, stride, dilation)
    c = rng.standard_normal(cols.shape)
    back = col2im(c, (3, 7, 6), kernel, pad, stride, dilation)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-10)


def test_col2im_sums_overlapping_windows():
    # A 3x3 stride-1 window over a 4x4 image of ones: each pixel counts its windows.
    cols = im2col(np.ones((1, 1, 4, 4)), (3, 3))
    counts = col2im(np.ones_like(cols), (1, 4, 4), (3, 3))[0, 0]
    np.testing.assert_array_equal(counts, [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])


def test_im2col_row_layout_is_channel_then_kernel_offset():
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(1, 2, 3, 3)
    cols = im2col(x, (2, 2))  # output 2x2
    # Row (c*kh + i)*kw + j, column oh*Wo + ow reads x[c, oh + i, ow + j].
    assert cols[0, (1 * 2 + 1) * 2 + 0, 1 * 2 + 1] == x[0, 1, 2, 1]
    assert cols[0, 0, 3] == x[0, 0, 1, 1]


def test_output_size_and_errors():
    assert conv_output_size(28, 5, 0, 1) == 24
    assert conv_output_size(32, 3, 1, 2) == 16
    assert conv_output_size(7, 3, 0, 1, dilation=3) == 1
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv_output_size(4, 5, 0, 1)
    with pytest.raises(ValueError, match="dilation 2"):
        conv_output_size(4, 3, 0, 1, dilation=2)


def test_col2im_rejects_mismatched_columns():
    with pytest.raises(ValueError, match="do not match"):
        col2im(np.zeros((1, 9, 5)), (1, 4, 4), (3, 3))


@pytest.mark.parametrize("kernel,pad,stride,dilation", CONFIGS)
def test_batch_last_columns_hold_the_same_matrix(kernel, pad, stride, dilation):
    x = np.random.default_rng(6).standard_normal((3, 4, 7, 6)).astype(np.float32)
    cols = im2col_batch_last(x, kernel, pad, stride, dilation)
    np.testing.assert_array_equal(cols, im2col(x, kernel, pad, stride, dilation))
    assert is_batch_last(cols)


@pytest.mark.parametrize("kernel,pad,stride,dilation", CONFIGS)
def test_col2im_of_batch_last_columns_equals_the_image_major_one(kernel, pad, stride, dilation):
    # Small integers: every sum is exact in float32 whatever the order of the additions.
    rng = np.random.default_rng(7)
    cols = im2col(np.zeros((3, 4, 7, 6), np.float32), kernel, pad, stride, dilation)
    c = rng.integers(-8, 8, cols.shape).astype(np.float32)
    want = col2im(c, (4, 7, 6), kernel, pad, stride, dilation)
    got = col2im(batch_last(c), (4, 7, 6), kernel, pad, stride, dilation)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(5, 3, 70), (1, 2, 3), (4, 130)])
def test_batch_last_holds_the_same_array(shape):
    a = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    moved = batch_last(a)
    assert is_batch_last(moved)
    np.testing.assert_array_equal(moved, a)


@pytest.mark.parametrize("kernel,pad,stride,dilation", CONFIGS)
def test_col2im_of_row_major_columns_has_the_image_major_bits(kernel, pad, stride, dilation):
    """(B, K, N) columns stored as a (K, B, N) array (the hardware backends' results) sum
    in the image-major order: every bit the same for values whose sums round (and for
    negative zeros)."""
    rng = np.random.default_rng(9)
    cols = im2col(np.zeros((3, 4, 7, 6), np.float32), kernel, pad, stride, dilation)
    c = (rng.standard_normal(cols.shape) * 10.0 ** rng.integers(-4, 4, cols.shape)).astype(
        np.float32
    )
    c[rng.random(c.shape) < 0.2] = -0.0
    row_major = np.ascontiguousarray(c.transpose(1, 0, 2)).transpose(1, 0, 2)
    want = col2im(c, (4, 7, 6), kernel, pad, stride, dilation)
    got = col2im(row_major, (4, 7, 6), kernel, pad, stride, dilation)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
