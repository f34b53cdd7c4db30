"""im2col / col2im for batches of images, in Caffe's layout.

``im2col`` turns a (B, C, H, W) batch into the (B, C*kh*kw, Ho*Wo) matrices that
Caffe's convolution multiplies by its (M, C*kh*kw) weights: row ``(c*kh + i)*kw + j``
holds input channel ``c`` seen through kernel offset ``(i, j)``, column
``ho*Wo + wo`` is an output pixel.  ``col2im`` is its adjoint: it sums every column
entry back onto the pixel it was read from.  Both work on whole batches with
strided views; the only Python loops are over the kh and kw kernel offsets in col2im.

:func:`im2col_batch_last` stores the same matrices batch-last: a (K, N, B) array, the
(B, K, N) view of which holds them. Its columns are one (K, N*B) matrix, so a layer's
GEMM runs once over all images (``W (M, K) @ cols``), which a multi-threaded BLAS
spreads over its threads; and every kernel offset is one copy of runs of ``Wo * B``
elements, where im2col's are runs of ``Wo``. :func:`batch_last` moves a (B, ...)
blob array to that layout; :func:`col2im` takes either layout.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

Pair = tuple[int, int]


def conv_output_size(size: int, kernel: int, pad: int, stride: int, dilation: int = 1) -> int:
    """Caffe's output size along one axis: ``(size + 2*pad - extent) // stride + 1``.

    Raises ``ValueError`` when the dilated kernel extent exceeds the padded input.
    """
    extent = dilation * (kernel - 1) + 1
    if size + 2 * pad < extent:
        raise ValueError(
            f"kernel extent {extent} (kernel {kernel}, dilation {dilation}) is larger than "
            f"the padded input {size + 2 * pad} (size {size}, pad {pad})"
        )
    return (size + 2 * pad - extent) // stride + 1


def _padded(x: np.ndarray, pad: Pair) -> np.ndarray:
    ph, pw = pad
    if ph == 0 and pw == 0:
        return x
    b, c, h, w = x.shape
    xp = np.zeros((b, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    return xp


def im2col(
    x: np.ndarray,
    kernel: Pair,
    pad: Pair = (0, 0),
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
    *,
    pixel_major: bool = False,
) -> np.ndarray:
    """(B, C, H, W) -> (B, C*kh*kw, Ho*Wo), a fresh C-contiguous array (or a view for 1x1).

    With ``pixel_major`` the result is the same matrix stored as a C-contiguous
    (B, Ho*Wo, C*kh*kw) array, returned transposed (a (B, K, N) view): the layout a
    GEMM wants when it reduces over the pixels (the weight gradient).
    """
    b, c, h, w = x.shape
    kh, kw = kernel
    ho = conv_output_size(h, kh, pad[0], stride[0], dilation[0])
    wo = conv_output_size(w, kw, pad[1], stride[1], dilation[1])
    if (kh, kw) == (1, 1) and pad == (0, 0) and stride == (1, 1):
        # A 1x1 unit-stride convolution reads every pixel once: no copy needed.
        flat = x.reshape(b, c, h * w)
        return (
            np.ascontiguousarray(flat.transpose(0, 2, 1)).transpose(0, 2, 1)
            if pixel_major
            else flat
        )
    xp = _padded(x, pad)
    if pixel_major:
        sb, sc, sy, sx = xp.strides
        (sth, stw), (dh, dw) = stride, dilation
        view = as_strided(
            xp,
            (b, ho, wo, c, kh, kw),
            (sb, sth * sy, stw * sx, sc, dh * sy, dw * sx),
            writeable=False,
        )
        cols = np.empty((b, ho, wo, c, kh, kw), dtype=x.dtype)
        np.copyto(cols, view)
        return cols.reshape(b, ho * wo, c * kh * kw).transpose(0, 2, 1)
    sth, stw = stride
    dh, dw = dilation
    hp = xp.shape[2]
    sb, sc, sy, sx = xp.strides
    # Two strided copies instead of one: numpy is slow on short inner runs, and a single
    # (B, C, kh, kw, Ho, Wo) gather reads runs of only Wo elements. First gather the kw
    # horizontal shifts (runs of Wo), then the kh vertical shifts, whose (Ho, Wo) blocks
    # are contiguous in both source and destination when the vertical stride is 1.
    shifted = np.empty((b, c, kw, hp, wo), dtype=x.dtype)
    np.copyto(
        shifted,
        as_strided(xp, (b, c, kw, hp, wo), (sb, sc, dw * sx, sy, stw * sx), writeable=False),
    )
    ub, uc, uj, uy, ux = shifted.strides
    cols = np.empty((b, c, kh, kw, ho, wo), dtype=x.dtype)
    np.copyto(
        cols,
        as_strided(
            shifted, (b, c, kh, kw, ho, wo), (ub, uc, dh * uy, uj, sth * uy, ux), writeable=False
        ),
    )
    return cols.reshape(b, c * kh * kw, ho * wo)


def is_batch_last(a: np.ndarray) -> bool:
    """Whether a (B, ...) array is a view of a C-contiguous (..., B) one."""
    return a.ndim >= 1 and np.moveaxis(a, 0, -1).flags.c_contiguous


def batch_last(a: np.ndarray) -> np.ndarray:
    """A copy of the (B, ...) array ``a`` stored batch-last: the (B, ...) view of a new
    C-contiguous (..., B) array (the layout of :func:`im2col_batch_last`)."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 0, -1)), -1, 0)


def im2col_batch_last(
    x: np.ndarray,
    kernel: Pair,
    pad: Pair = (0, 0),
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
) -> np.ndarray:
    """(B, C, H, W) -> the (B, C*kh*kw, Ho*Wo) matrices of :func:`im2col`, stored
    batch-last: the (B, K, N) view of a new C-contiguous (K, N, B) array.

    The input is first copied, padded, into a (C, Hp, Wp, B) array; then one strided
    copy gathers every kernel offset, in runs of whole output rows of all images
    (``Wo * B`` elements with unit stride).
    """
    b, c, h, w = x.shape
    kh, kw = kernel
    ph, pw = pad
    sth, stw = stride
    dh, dw = dilation
    ho = conv_output_size(h, kh, ph, sth, dh)
    wo = conv_output_size(w, kw, pw, stw, dw)
    xt = np.zeros((c, h + 2 * ph, w + 2 * pw, b), dtype=x.dtype)
    xt[:, ph : ph + h, pw : pw + w] = x.transpose(1, 2, 3, 0)
    sc, sy, sx, sb = xt.strides
    shape = (c, kh, kw, ho, wo, b)
    strides = (sc, dh * sy, dw * sx, sth * sy, stw * sx, sb)
    cols = np.ascontiguousarray(as_strided(xt, shape, strides, writeable=False))
    return cols.reshape(c * kh * kw, ho * wo, b).transpose(2, 0, 1)


def col2im(
    cols: np.ndarray,
    image_shape: tuple[int, int, int],
    kernel: Pair,
    pad: Pair = (0, 0),
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
) -> np.ndarray:
    """(B, C*kh*kw, Ho*Wo) -> (B, C, H, W): the adjoint of :func:`im2col` (sums overlaps).
    ``cols`` may be in either layout; batch-last ones take a faster path."""
    c, h, w = image_shape
    kh, kw = kernel
    ph, pw = pad
    sth, stw = stride
    dh, dw = dilation
    b = cols.shape[0]
    ho = conv_output_size(h, kh, ph, sth, dh)
    wo = conv_output_size(w, kw, pw, stw, dw)
    if cols.shape[1:] != (c * kh * kw, ho * wo):
        raise ValueError(
            f"col2im: columns of shape {cols.shape[1:]} do not match image {image_shape} "
            f"with kernel {kernel} (expected {(c * kh * kw, ho * wo)})"
        )
    if (kh, kw) == (1, 1) and pad == (0, 0) and stride == (1, 1):
        return cols.reshape(b, c, h, w).copy()
    hp, wp = h + 2 * ph, w + 2 * pw
    if is_batch_last(cols):
        # Every kernel offset adds runs of Wo * B elements into a padded (C, Hp, Wp, B) sum.
        view = np.moveaxis(cols, 0, -1).reshape(c, kh, kw, ho, wo, b)
        acc = np.zeros((c, hp, wp, b), dtype=cols.dtype)
        for i in range(kh):
            rows = slice(i * dh, i * dh + sth * (ho - 1) + 1, sth)
            for j in range(kw):
                acc[:, rows, j * dw : j * dw + stw * (wo - 1) + 1 : stw] += view[:, i, j]
        return acc[:, ph : ph + h, pw : pw + w].transpose(3, 0, 1, 2)
    if cols.transpose(1, 0, 2).flags.c_contiguous and b > 1:
        return _col2im_row_major(cols, (c, hp, wp), (ho, wo), kernel, pad, stride, dilation)
    view = cols.reshape(b, c, kh, kw, ho, wo)
    # The adjoint of im2col's two stages: sum the kh vertical shifts into a (kw, Hp, Wo)
    # buffer (long contiguous runs), then the kw horizontal shifts into the image. Within
    # one shift every output pixel reads a distinct input, so strided `+=` is exact.
    shifted = np.zeros((b, c, kw, hp, wo), dtype=cols.dtype)
    for i in range(kh):
        shifted[:, :, :, i * dh : i * dh + sth * (ho - 1) + 1 : sth, :] += view[:, :, i]
    out = np.zeros((b, c, hp, wp), dtype=cols.dtype)
    for j in range(kw):
        out[:, :, :, j * dw : j * dw + stw * (wo - 1) + 1 : stw] += shifted[:, :, j]
    if ph == 0 and pw == 0:
        return out
    return out[:, :, ph : ph + h, pw : pw + w]


def _col2im_row_major(
    cols: np.ndarray,
    padded: tuple[int, int, int],
    out_size: Pair,
    kernel: Pair,
    pad: Pair,
    stride: Pair,
    dilation: Pair,
) -> np.ndarray:
    """:func:`col2im` of (B, K, N) columns stored as a C-contiguous (K, B, N) array (the
    hardware backends' layout), with no copy into im2col's layout.

    Every pixel gets the same additions in the same order as on im2col's layout (the kh
    vertical shifts into a zeroed buffer, then its kw horizontal shifts into a zeroed
    image), so the sums have the same bits. The buffer is transposed before the second
    stage, so that each horizontal shift adds one contiguous block per channel rather
    than runs of Wo elements.
    """
    c, hp, wp = padded
    kh, kw = kernel
    ph, pw = pad
    sth, stw = stride
    dh, dw = dilation
    b = cols.shape[0]
    ho, wo = out_size
    view = cols.transpose(1, 0, 2).reshape(c, kh, kw, b, ho, wo)
    shifted = np.zeros((c, kw, b, hp, wo), dtype=cols.dtype)
    for i in range(kh):
        shifted[:, :, :, i * dh : i * dh + sth * (ho - 1) + 1 : sth] += view[:, i]
    columns = np.empty((c, kw, wo, b, hp), dtype=cols.dtype)
    columns[...] = shifted.transpose(0, 1, 4, 2, 3)
    del shifted
    out = np.zeros((c, wp, b, hp), dtype=cols.dtype)
    for j in range(kw):
        out[:, j * dw : j * dw + stw * (wo - 1) + 1 : stw] += columns[:, j]
    h, w = hp - 2 * ph, wp - 2 * pw
    return out[:, pw : pw + w, :, ph : ph + h].transpose(2, 0, 3, 1)
