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
elements, where im2col's are runs of ``Wo``. :func:`batch_last` and
:func:`store_batch_first` move (B, ...) blob arrays to and from that layout;
:func:`col2im` takes either layout. The batch-last passes run on the threads of
:mod:`caffe_bridge.parallel`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .parallel import CACHE_ELEMENTS, parallel_for

Pair = tuple[int, int]

#: Rows per tile of a transposing copy: a tile of (TILE, B) float32 stays in L1.
TILE = 64


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
    b = a.shape[0]
    out = np.empty(a.shape[1:] + (b,), dtype=a.dtype)
    dst, src = out.reshape(-1, b), a.reshape(b, -1)

    # Writing rows of B along the destination reads B neighbouring source rows.
    def body(lo: int, hi: int) -> None:
        np.copyto(dst[lo:hi], src[:, lo:hi].T)

    parallel_for(dst.shape[0], body, elements=a.size)
    return np.moveaxis(out, -1, 0)


def store_batch_first(dst: np.ndarray, src: np.ndarray, add: np.ndarray | None = None) -> None:
    """``dst[...] = src`` (``+ add``, broadcast against ``dst[b]``) for (B, ...) arrays of
    the same shape, ``src`` in any layout; fast when ``src`` is batch-last and each
    ``dst[b]`` is contiguous (a blob, or a slice of its channels): a transpose in L1-sized
    tiles, on the pool's threads."""
    b = dst.shape[0]
    rows = dst[0].size
    if b == 1 or not (is_batch_last(src) and dst[0].flags.c_contiguous):
        if add is None:
            np.copyto(dst, src)
        else:
            np.add(src, add, out=dst)
        return
    extra = None if add is None else np.broadcast_to(add, dst.shape[1:]).reshape(rows)
    s2 = np.moveaxis(src, 0, -1).reshape(rows, b)  # (rows, B), C-contiguous
    d2 = dst.reshape(b, rows)  # a view: each image's part is contiguous

    # ufuncs walk views in the order given unless every operand prefers another, so each
    # (tiles, B, TILE) view is written tile by tile: TILE source rows feed TILE columns.
    def tiled(lo: int, hi: int) -> None:
        r0, r1 = lo * TILE, min(hi * TILE, rows)
        full = (r1 - r0) // TILE * TILE
        if full:
            n = full // TILE
            s = s2[r0 : r0 + full].reshape(n, TILE, b).transpose(0, 2, 1)
            d = d2[:, r0 : r0 + full].reshape(b, n, TILE).transpose(1, 0, 2)
            if extra is None:
                np.positive(s, out=d)
            else:
                np.add(s, extra[r0 : r0 + full].reshape(n, 1, TILE), out=d)
        if r0 + full < r1:
            s, d = s2[r0 + full : r1].T, d2[:, r0 + full : r1]
            if extra is None:
                np.copyto(d, s)
            else:
                np.add(s, extra[r0 + full : r1], out=d)

    parallel_for(-(-rows // TILE), tiled, elements=dst.size)


def im2col_batch_last(
    x: np.ndarray,
    kernel: Pair,
    pad: Pair = (0, 0),
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
) -> np.ndarray:
    """(B, C, H, W) -> the (B, C*kh*kw, Ho*Wo) matrices of :func:`im2col`, stored
    batch-last: the (B, K, N) view of a new C-contiguous (K, N, B) array.

    The input is first copied, padded, into a (C, Hp, Wp, B) array; then every kernel
    offset of every channel is one strided copy whose runs are whole output rows of all
    images (``Wo * B`` elements with unit stride). Channels (or kernel rows, when
    channels are few) are shared among the pool's threads.
    """
    b, c, h, w = x.shape
    kh, kw = kernel
    ph, pw = pad
    sth, stw = stride
    dh, dw = dilation
    ho = conv_output_size(h, kh, ph, sth, dh)
    wo = conv_output_size(w, kw, pw, stw, dw)
    hp, wp = h + 2 * ph, w + 2 * pw
    xt = np.empty((c, hp, wp, b), dtype=x.dtype)

    def transpose(lo: int, hi: int) -> None:
        if ph or pw:
            xt[lo:hi, :ph] = 0
            xt[lo:hi, ph + h :] = 0
            xt[lo:hi, ph : ph + h, :pw] = 0
            xt[lo:hi, ph : ph + h, pw + w :] = 0
        np.copyto(xt[lo:hi, ph : ph + h, pw : pw + w], x[:, lo:hi].transpose(1, 2, 3, 0))

    parallel_for(c, transpose, elements=x.size)
    cols = np.empty((c, kh, kw, ho, wo, b), dtype=x.dtype)
    sc, sy, sx, sb = xt.strides
    source = as_strided(
        xt, cols.shape, (sc, dh * sy, dw * sx, sth * sy, stw * sx, sb), writeable=False
    )

    # One copy per piece: pieces of channels, or of kernel rows when channels are few.
    if c >= kh:

        def channels(lo: int, hi: int) -> None:
            np.copyto(cols[lo:hi], source[lo:hi])

        parallel_for(c, channels, elements=cols.size)
    else:

        def kernel_rows(lo: int, hi: int) -> None:
            np.copyto(cols[:, lo:hi], source[:, lo:hi])

        parallel_for(kh, kernel_rows, elements=cols.size)
    return cols.reshape(c * kh * kw, ho * wo, b).transpose(2, 0, 1)


def col2im(
    cols: np.ndarray,
    image_shape: tuple[int, int, int],
    kernel: Pair,
    pad: Pair = (0, 0),
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(B, C*kh*kw, Ho*Wo) -> (B, C, H, W): the adjoint of :func:`im2col` (sums overlaps).

    ``cols`` may be in either layout (batch-last ones take a faster path); the result is
    written into ``out`` (a C-contiguous (B, C, H, W) array) when given.
    """
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
    if out is not None and out.shape != (b, c, h, w):
        raise ValueError(f"col2im: out has shape {out.shape}, expected {(b, c, h, w)}")
    if is_batch_last(cols):
        return _col2im_batch_last(cols, image_shape, kernel, pad, stride, dilation, out)
    result = _col2im(cols, image_shape, kernel, pad, stride, dilation)
    if out is None:
        return result
    out[...] = result
    return out


def _col2im_batch_last(
    cols: np.ndarray,
    image_shape: tuple[int, int, int],
    kernel: Pair,
    pad: Pair,
    stride: Pair,
    dilation: Pair,
    out: np.ndarray | None,
) -> np.ndarray:
    """:func:`col2im` of batch-last columns: per group of channels, every kernel offset
    adds one strided block (runs of ``Wo * B``) into a padded (C, Hp, Wp, B) sum, which
    is then transposed into the image. Channels are shared among the pool's threads."""
    c, h, w = image_shape
    kh, kw = kernel
    ph, pw = pad
    sth, stw = stride
    dh, dw = dilation
    b = cols.shape[0]
    ho = conv_output_size(h, kh, ph, sth, dh)
    wo = conv_output_size(w, kw, pw, stw, dw)
    hp, wp = h + 2 * ph, w + 2 * pw
    d = np.moveaxis(cols, 0, -1).reshape(c, kh, kw, ho, wo, b)
    if out is None:
        out = np.empty((b, c, h, w), dtype=cols.dtype)

    def body(lo: int, hi: int) -> None:
        acc = np.zeros((hi - lo, hp, wp, b), dtype=cols.dtype)
        for i in range(kh):
            rows = slice(i * dh, i * dh + sth * (ho - 1) + 1, sth)
            for j in range(kw):
                acc[:, rows, j * dw : j * dw + stw * (wo - 1) + 1 : stw] += d[lo:hi, i, j]
        np.copyto(out[:, lo:hi], acc[:, ph : ph + h, pw : pw + w].transpose(3, 0, 1, 2))

    per_channel = hp * wp * b
    parallel_for(c, body, elements=cols.size, block=max(1, CACHE_ELEMENTS // per_channel))
    return out


def _col2im(
    cols: np.ndarray,
    image_shape: tuple[int, int, int],
    kernel: Pair,
    pad: Pair,
    stride: Pair,
    dilation: Pair,
) -> np.ndarray:
    """:func:`col2im` of columns in any other layout (a new array)."""
    c, h, w = image_shape
    kh, kw = kernel
    ph, pw = pad
    sth, stw = stride
    dh, dw = dilation
    b = cols.shape[0]
    ho = conv_output_size(h, kh, ph, sth, dh)
    wo = conv_output_size(w, kw, pw, stw, dw)
    if (kh, kw) == (1, 1) and pad == (0, 0) and stride == (1, 1):
        return cols.reshape(b, c, h, w).copy()
    view = cols.reshape(b, c, kh, kw, ho, wo)
    hp, wp = h + 2 * ph, w + 2 * pw
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
