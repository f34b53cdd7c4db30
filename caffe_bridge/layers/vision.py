"""Convolution, Deconvolution, InnerProduct, Embed, Pooling and SPP.

Convolution, Deconvolution and InnerProduct hand every matrix product (forward,
backward-data, weight-gradient) to ``self.ctx.backend`` in the shapes documented in
:mod:`caffe_bridge.backend`; only im2col/col2im, bias and bookkeeping stay here,
so a hardware backend replaces the arithmetic without touching this file. Embed (a
learned lookup table: an InnerProduct of one-hot inputs, computed as a row gather)
and the poolings have no GEMM.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from barista_base.errors import InputError

from ..blob import Blob
from ..fillers import fill
from ..gemm_passes import (
    conv_backward_data,
    conv_forward,
    conv_weight_grad,
    fc_backward_data,
    fc_forward,
    fc_weight_grad,
)
from ..im2col import batch_last, col2im, conv_output_size, im2col, im2col_batch_last
from ..proto import caffe_pb2
from .base import Layer, LayerError, register_layer

#: Convolutions whose GEMMs reduce over at least this many rows (K = channels/group *
#: kernel_h * kernel_w) hand a backend that prefers them batch-last operands
#: (:func:`im2col_batch_last`), so that it folds the batch into one GEMM per pass.
#: Layers with fewer (first layers: LeNet's conv1 has 25, CIFAR-10's 75) keep im2col's
#: (B, K, N) columns: their GEMMs are cheap next to moving the wide top to and from the
#: batch-last layout, and one product per image was as fast or faster (measured on
#: LeNet and CIFAR-10 shapes, one and two threads); from K = 288 up batch-last was
#: faster in every pass.
BATCH_LAST_MIN_ROWS = 128

# PoolingParameter enums (caffe.proto).
POOL_MAX, POOL_AVE, POOL_STOCHASTIC = 0, 1, 2
ROUND_CEIL, ROUND_FLOOR = 0, 1


def _init_params(
    layer: Layer, shapes: list[tuple[int, ...]], fillers: list[Any], where: str
) -> None:
    """Create and fill the layer's parameter blobs, or check those already given (Caffe's
    "skipping parameter initialization" when blobs were set before SetUp)."""
    if layer.blobs:
        if len(layer.blobs) != len(shapes):
            raise layer.error(
                f"incorrect number of parameter blobs: expected {len(shapes)}, "
                f"got {len(layer.blobs)}"
            )
        for i, (blob, shape) in enumerate(zip(layer.blobs, shapes, strict=True)):
            if blob.shape != shape:
                name = "weight" if i == 0 else "bias"
                raise layer.error(f"incorrect {name} shape: expected {shape}, got {blob.shape}")
        return
    for i, (shape, filler) in enumerate(zip(shapes, fillers, strict=True)):
        blob = Blob(shape)
        name = "weight_filler" if i == 0 else "bias_filler"
        try:
            fill(blob, filler, layer.ctx.rng)
        except InputError as exc:
            raise layer.error(f"{where}.{name}: {exc}") from None
        layer.blobs.append(blob)


def _pair(
    layer: Layer,
    cp: Any,
    where: str,
    name: str,
    default: int | None,
    minimum: int,
    hw: str | None = None,
) -> tuple[int, int]:
    """Read a repeated ``name`` or its ``hw_h``/``hw_w`` form, as Caffe does for 2-D."""
    values = list(getattr(cp, name))
    has_hw = [cp.HasField(f"{hw}_h"), cp.HasField(f"{hw}_w")] if hw else [False, False]
    if any(has_hw):
        if values:
            raise layer.error(
                f"{where}: either {name} or {hw}_h/{hw}_w should be specified, not both"
            )
        # pad_h/pad_w default to 0 in caffe.proto; kernel and stride need both.
        if not all(has_hw) and hw != "pad":
            raise layer.error(f"{where}: {hw}_h and {hw}_w must be given together")
        pair = (int(getattr(cp, f"{hw}_h")), int(getattr(cp, f"{hw}_w")))
    elif not values:
        if default is None:
            raise layer.error(f"{where}: {name} is missing (give {name} or {hw}_h and {hw}_w)")
        pair = (default, default)
    elif len(values) == 1:
        pair = (int(values[0]), int(values[0]))
    elif len(values) == 2:
        pair = (int(values[0]), int(values[1]))
    else:
        raise layer.error(
            f"{where}: {name} must be specified once, or once per spatial dimension (2); "
            f"got {len(values)} values"
        )
    if min(pair) < minimum:
        raise layer.error(f"{where}: {name} must be >= {minimum}, got {pair}")
    return pair


class _ConvolutionBase(Layer):
    """What Convolution and Deconvolution share (Caffe's BaseConvolutionLayer): the
    ``convolution_param`` parsing, the parameter blobs and the shape checks.

    ``reverse`` is Caffe's ``reverse_dimensions()``: False for Convolution, True for
    Deconvolution, whose weights map the *top's* channels to the bottom's, so the weight
    blob is (bottom channels, num_output/group, kernel_h, kernel_w).
    """

    min_bottoms = 1
    min_tops = 1
    equal_bottom_top = True
    reverse: ClassVar[bool] = False

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        cp = self.param.convolution_param
        where = "convolution_param"
        # Per bottom: a copy of its data at the forward pass and that pass's columns, for
        # a backend that wants them back (GemmBackend.keeps_columns).
        self._kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        try:
            self.axis = bottom[0].canonical_axis(int(cp.axis))
        except ValueError as exc:
            raise self.error(f"{where}.axis: {exc}") from None
        spatial = bottom[0].num_axes - self.axis - 1
        if spatial != 2:
            raise self.error(
                f"only 2-D convolution is supported: the input of shape {bottom[0].shape} has "
                f"{spatial} spatial axes after the channel axis {self.axis}"
            )
        self.kernel = _pair(self, cp, where, "kernel_size", None, 1, hw="kernel")
        self.stride = _pair(self, cp, where, "stride", 1, 1, hw="stride")
        self.pad = _pair(self, cp, where, "pad", 0, 0, hw="pad")
        self.dilation = _pair(self, cp, where, "dilation", 1, 1)
        self.num_output = int(cp.num_output)
        if self.num_output <= 0:
            raise self.error(f"{where}.num_output must be given and > 0, got {self.num_output}")
        self.group = int(cp.group)
        self.channels = bottom[0].shape[self.axis]
        if self.group <= 0:
            raise self.error(f"{where}.group must be > 0, got {self.group}")
        if self.channels % self.group:
            raise self.error(
                f"{where}.group {self.group} does not divide the {self.channels} input channels"
            )
        if self.num_output % self.group:
            raise self.error(
                f"{where}.group {self.group} does not divide num_output {self.num_output}"
            )
        self.bias_term = bool(cp.bias_term)
        # Caffe's conv_out_channels_ / conv_in_channels_: the GEMM's M and K channel counts.
        if self.reverse:
            self.conv_out, self.conv_in = self.channels, self.num_output
        else:
            self.conv_out, self.conv_in = self.num_output, self.channels
        kh, kw = self.kernel
        shapes: list[tuple[int, ...]] = [(self.conv_out, self.conv_in // self.group, kh, kw)]
        fillers = [cp.weight_filler]
        if self.bias_term:
            shapes.append((self.num_output,))
            fillers.append(cp.bias_filler)
        _init_params(self, shapes, fillers, where)

    def _output_size(self, size: int, axis: int) -> int:
        """The top's extent along spatial axis ``axis`` (0: height, 1: width)."""
        raise NotImplementedError

    def _geometry(self, blob: Blob) -> tuple[int, int, int, int, int]:
        """``(num, h, w, ho, wo)``: images, the bottom's and the top's spatial size."""
        shape = blob.shape
        if len(shape) != self.axis + 3:
            raise self.error(f"bottom shape {shape} changed its number of axes since setup")
        if shape[self.axis] != self.channels:
            raise self.error(
                f"input has {shape[self.axis]} channels, but the layer was set up for "
                f"{self.channels}"
            )
        num = int(np.prod(shape[: self.axis], dtype=np.int64))
        h, w = shape[self.axis + 1 :]
        return num, h, w, self._output_size(h, 0), self._output_size(w, 1)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        first = bottom[0].shape
        for b in bottom[1:]:
            if b.shape != first:
                raise self.error(f"all bottoms must have the same shape: {b.shape} vs {first}")
        _, _, _, ho, wo = self._geometry(bottom[0])
        out_shape = first[: self.axis] + (self.num_output, ho, wo)
        for t in top:
            t.reshape(out_shape)

    def _cols(self, x: np.ndarray, *, pixel_major: bool = False) -> np.ndarray:
        return im2col(x, self.kernel, self.pad, self.stride, self.dilation, pixel_major=pixel_major)

    def _folds(self, k: int) -> bool:
        """Whether the GEMMs over ``k`` rows get batch-last operands (see
        :data:`BATCH_LAST_MIN_ROWS`)."""
        return self.ctx.backend.prefers_batch_last and k >= BATCH_LAST_MIN_ROWS

    def _cols_batch_last(self, x: np.ndarray) -> np.ndarray:
        return im2col_batch_last(x, self.kernel, self.pad, self.stride, self.dilation)

    def _col2im(self, cols: np.ndarray, image: tuple[int, int, int]) -> np.ndarray:
        return col2im(cols, image, self.kernel, self.pad, self.stride, self.dilation)

    def _keep(self, i: int, x: np.ndarray, cols: np.ndarray) -> None:
        """Keep bottom ``i``'s forward columns, read-only, for the backward pass, if the
        backend wants them (:attr:`GemmBackend.keeps_columns`)."""
        if not self.ctx.backend.keeps_columns or np.may_share_memory(cols, x):
            return  # (a 1x1 convolution's columns are the bottom itself)
        owner = cols
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        owner.flags.writeable = cols.flags.writeable = False
        self._kept[i] = (x.copy(), cols)

    def _kept_cols(self, i: int, x: np.ndarray) -> np.ndarray | None:
        """The columns :meth:`_keep` kept for bottom ``i`` (released here), if ``x`` still
        holds the same bits as then; else None."""
        kept = self._kept.pop(i, None)
        if kept is None:
            return None
        old, cols = kept
        bits = np.dtype(f"u{x.itemsize}")
        same = old.shape == x.shape and np.array_equal(old.view(bits), x.view(bits))
        return cols if same else None


@register_layer("Convolution")
class ConvolutionLayer(_ConvolutionBase):
    """Caffe's Convolution on 2-D spatial inputs: pad, stride, dilation, group, bias, axis.

    Weights have shape (num_output, channels/group, kernel_h, kernel_w). Each
    bottom/top pair is convolved with the same weights.
    """

    def _output_size(self, size: int, axis: int) -> int:
        try:
            return conv_output_size(
                size, self.kernel[axis], self.pad[axis], self.stride[axis], self.dilation[axis]
            )
        except ValueError as exc:
            raise self.error(f"convolution_param: {exc}") from None

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        weights = self.blobs[0].data.reshape(self.num_output, -1)
        kg = weights.shape[1]
        for i, (b, t) in enumerate(zip(bottom, top, strict=True)):
            num, h, w, ho, wo = self._geometry(b)
            x = b.data.reshape(num, self.channels, h, w)
            # Batch-last columns let the backend run one GEMM over the whole batch.
            cols = self._cols_batch_last(x) if self._folds(kg) else self._cols(x)
            self._keep(i, x, cols)
            out = t.data.reshape(num, self.num_output, ho * wo)
            conv_forward(self.ctx.backend, weights, cols, self.group, out, layer=self.name)
            if self.bias_term:
                out += self.blobs[1].data[:, None]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        backend = self.ctx.backend
        weights = self.blobs[0].data.reshape(self.num_output, -1)
        wdiff = self.blobs[0].diff.reshape(self.num_output, -1)
        folded = self._folds(weights.shape[1])
        for i, (t, b) in enumerate(zip(top, bottom, strict=True)):
            num, h, w, ho, wo = self._geometry(b)
            # Caffe computes the weight gradient from the bottom data as it is now.
            x = b.data.reshape(num, self.channels, h, w)
            cols = self._kept_cols(i, x)
            if cols is None:
                cols = self._cols_batch_last(x) if folded else self._cols(x)
            dy = t.diff.reshape(num, self.num_output, ho * wo)
            if folded:
                # The top gradient batch-last like the columns: the weight gradient folds
                # the batch into one reduction, backward-data into one GEMM. Each output
                # channel's gradients are then one contiguous row, for the bias.
                dy = batch_last(dy)
                if self.bias_term:
                    rows = np.moveaxis(dy, 0, -1).reshape(self.num_output, -1)
                    self.blobs[1].diff += rows.sum(axis=1, dtype=np.float32)
                    del rows
            elif self.bias_term:
                self.blobs[1].diff += dy.sum(axis=(0, 2), dtype=np.float32)
            conv_weight_grad(backend, dy, cols, self.group, wdiff, layer=self.name)
            del cols  # free the columns before backward-data allocates its own
            if not propagate_down[i]:
                continue
            # The groups' columns side by side, in the layout of the columns.
            dcols = conv_backward_data(
                backend, weights, dy, self.group, layer=self.name, batch_last=folded
            )
            del dy  # a batch-last copy is not needed by col2im
            dx = self._col2im(dcols, (self.channels, h, w))
            b.diff[...] = dx.reshape(b.shape)


@register_layer("Deconvolution")
class DeconvolutionLayer(_ConvolutionBase):
    """Caffe's Deconvolution (transposed convolution): Convolution's passes swapped.

    The top is ``stride * (in - 1) + dilation * (kernel - 1) + 1 - 2 * pad`` along each
    spatial axis; weights are (channels, num_output/group, kernel_h, kernel_w). As in
    Caffe, the forward pass is a convolution's backward-data GEMM followed by col2im,
    the bottom gradient is a convolution's forward GEMM on the im2col of the top
    gradient, and the weight gradient is a convolution's weight-gradient GEMM with the
    bottom in the place of the top gradient. All three go through ``self.ctx.backend``
    (``backward_data``, ``forward`` and ``weight_grad``), so they run on the engines of a
    hardware backend under those pass names.
    """

    reverse = True

    def _output_size(self, size: int, axis: int) -> int:
        extent = self.dilation[axis] * (self.kernel[axis] - 1) + 1
        out = self.stride[axis] * (size - 1) + extent - 2 * self.pad[axis]
        if out < 1:
            name = ("height", "width")[axis]
            raise self.error(
                f"convolution_param: the output {name} {out} is not positive (input {size}, "
                f"kernel extent {extent}, stride {self.stride[axis]}, pad {self.pad[axis]})"
            )
        return out

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        backend = self.ctx.backend
        g = self.group
        cg = self.channels // g
        weights = self.blobs[0].data.reshape(self.channels, -1)
        kg = weights.shape[1]
        for b, t in zip(bottom, top, strict=True):
            num, h, w, ho, wo = self._geometry(b)
            x = b.data.reshape(num, self.channels, h * w)
            cols = np.empty((num, g * kg, h * w), dtype=np.float32)
            for gi in range(g):
                cols[:, gi * kg : (gi + 1) * kg] = backend.backward_data(
                    weights[gi * cg : (gi + 1) * cg], x[:, gi * cg : (gi + 1) * cg], layer=self.name
                )
            out = t.data.reshape(num, self.num_output, ho, wo)
            out[...] = self._col2im(cols, (self.num_output, ho, wo))
            if self.bias_term:
                out += self.blobs[1].data[:, None, None]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        backend = self.ctx.backend
        g = self.group
        cg = self.channels // g
        weights = self.blobs[0].data.reshape(self.channels, -1)
        wdiff = self.blobs[0].diff.reshape(self.channels, -1)
        kg = weights.shape[1]
        for i, (t, b) in enumerate(zip(top, bottom, strict=True)):
            num, h, w, ho, wo = self._geometry(b)
            dy = t.diff.reshape(num, self.num_output, ho, wo)
            if self.bias_term:
                self.blobs[1].diff += dy.sum(axis=(0, 2, 3), dtype=np.float32)
            x = b.data.reshape(num, self.channels, h * w)
            # The top gradient's columns: (num, num_output*kh*kw, h*w), pixel-major for the
            # weight gradient's reduction over the batch and the pixels.
            cols = self._cols(dy, pixel_major=True)
            for gi in range(g):
                c_slice, k_slice = slice(gi * cg, (gi + 1) * cg), slice(gi * kg, (gi + 1) * kg)
                wdiff[c_slice] += backend.weight_grad(
                    x[:, c_slice], cols[:, k_slice], layer=self.name
                )
            if not propagate_down[i]:
                continue
            dx = b.diff.reshape(num, self.channels, h * w)
            for gi in range(g):
                c_slice, k_slice = slice(gi * cg, (gi + 1) * cg), slice(gi * kg, (gi + 1) * kg)
                dx[:, c_slice] = backend.forward(
                    weights[c_slice], cols[:, k_slice], layer=self.name
                )


@register_layer("InnerProduct")
class InnerProductLayer(Layer):
    """Caffe's InnerProduct: ``top = bottom (M x K) . W^T + bias`` over the axes from ``axis``.

    Weights are (num_output, K), or (K, num_output) with ``transpose: true``.
    """

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ip = self.param.inner_product_param
        where = "inner_product_param"
        self.num_output = int(ip.num_output)
        if self.num_output <= 0:
            raise self.error(f"{where}.num_output must be given and > 0, got {self.num_output}")
        try:
            self.axis = bottom[0].canonical_axis(int(ip.axis))
        except ValueError as exc:
            raise self.error(f"{where}.axis: {exc}") from None
        self.bias_term = bool(ip.bias_term)
        self.transpose = bool(ip.transpose)
        self.k = bottom[0].count_range(self.axis)
        n, k = self.num_output, self.k
        shapes: list[tuple[int, ...]] = [(k, n) if self.transpose else (n, k)]
        fillers = [ip.weight_filler]
        if self.bias_term:
            shapes.append((n,))
            fillers.append(ip.bias_filler)
        _init_params(self, shapes, fillers, where)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) <= self.axis or bottom[0].count_range(self.axis) != self.k:
            raise self.error(
                f"input of shape {shape} has {bottom[0].count_range(self.axis)} inputs from "
                f"axis {self.axis}, but the layer was set up for {self.k}"
            )
        top[0].reshape(shape[: self.axis] + (self.num_output,))

    def _weights(self) -> np.ndarray:
        """The weights as the (num_output, K) matrix of the backend's forward pass."""
        w = self.blobs[0].data
        return w.T if self.transpose else w

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(-1, self.k)
        out = top[0].data.reshape(-1, self.num_output)
        out[...] = fc_forward(self.ctx.backend, self._weights(), x, layer=self.name)
        if self.bias_term:
            out += self.blobs[1].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        backend = self.ctx.backend
        dy = top[0].diff.reshape(-1, self.num_output)
        x = bottom[0].data.reshape(-1, self.k)
        dw = fc_weight_grad(backend, dy, x, layer=self.name)
        self.blobs[0].diff += dw.T if self.transpose else dw
        if self.bias_term:
            self.blobs[1].diff += dy.sum(axis=0, dtype=np.float32)
        if propagate_down[0]:
            dx = fc_backward_data(backend, self._weights(), dy, layer=self.name)
            bottom[0].diff.reshape(-1, self.k)[...] = dx


@register_layer("Embed")
class EmbedLayer(Layer):
    """Caffe's Embed: each bottom value is an index in ``[0, input_dim)`` that picks a row of
    the (input_dim, num_output) weights; the top has the bottom's shape plus a last axis of
    ``num_output``, plus the bias. The indices get no gradient (Caffe refuses it)."""

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ep = self.param.embed_param
        where = "embed_param"
        self.num_output = int(ep.num_output)
        if self.num_output <= 0:
            raise self.error(f"{where}.num_output must be given and > 0, got {self.num_output}")
        self.input_dim = int(ep.input_dim)
        if self.input_dim <= 0:
            raise self.error(f"{where}.input_dim must be given and > 0, got {self.input_dim}")
        self.bias_term = bool(ep.bias_term)
        shapes: list[tuple[int, ...]] = [(self.input_dim, self.num_output)]
        fillers = [ep.weight_filler]
        if self.bias_term:
            shapes.append((self.num_output,))
            fillers.append(ep.bias_filler)
        _init_params(self, shapes, fillers, where)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, bottom: Blob) -> np.ndarray:
        x = bottom.data.reshape(-1)
        idx = x.astype(np.int64)
        bad = (idx != x) | (idx < 0) | (idx >= self.input_dim)
        if bad.any():
            raise self.error(
                f"input value {x[bad][0]!r} is not an index in [0, embed_param.input_dim = "
                f"{self.input_dim})"
            )
        return idx

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        idx = self._indices(bottom[0])
        out = top[0].data.reshape(-1, self.num_output)
        np.take(self.blobs[0].data, idx, axis=0, out=out)
        if self.bias_term:
            out += self.blobs[1].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            raise self.error("cannot backpropagate to the input of an Embed layer (its indices)")
        dy = top[0].diff.reshape(-1, self.num_output)
        np.add.at(self.blobs[0].diff, self._indices(bottom[0]), dy)
        if self.bias_term:
            self.blobs[1].diff += dy.sum(axis=0, dtype=np.float32)


@register_layer("Pooling")
class PoolingLayer(Layer):
    """Caffe's Pooling: MAX (with optional argmax-mask top) and AVE, incl. global pooling.

    Output size uses Caffe's rounding (``round_mode``, CEIL by default) and its
    rule that, with padding, the last window must start inside the image. AVE
    divides by the window size clipped to the padded image, as Caffe does.
    """

    exact_bottoms = 1
    min_tops = 1
    max_tops = 2

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        pp = self.param.pooling_param
        where = "pooling_param"
        self.pool = int(pp.pool)
        if self.pool == POOL_STOCHASTIC:
            raise self.error(f"{where}.pool: STOCHASTIC pooling is not supported")
        if self.pool not in (POOL_MAX, POOL_AVE):
            raise self.error(f"{where}.pool: unknown pooling method {self.pool}")
        if len(top) > 1 and self.pool != POOL_MAX:
            raise self.error("only MAX pooling can output a second (mask) top")
        self.global_pooling = bool(pp.global_pooling)
        has = pp.HasField
        if self.global_pooling:
            if has("kernel_size") or has("kernel_h") or has("kernel_w"):
                raise self.error(f"{where}: with global_pooling, kernel size cannot be specified")
        else:
            if has("kernel_size") == (has("kernel_h") or has("kernel_w")):
                raise self.error(
                    f"{where}: filter size is kernel_size OR kernel_h and kernel_w; not both"
                    if has("kernel_size")
                    else f"{where}: kernel_size (or kernel_h and kernel_w) is missing"
                )
            if not has("kernel_size") and not (has("kernel_h") and has("kernel_w")):
                raise self.error(
                    f"{where}: for non-square filters both kernel_h and kernel_w are required"
                )
        for name in ("pad", "stride"):
            if (has(f"{name}_h") or has(f"{name}_w")) and (
                has(name) or not (has(f"{name}_h") and has(f"{name}_w"))
            ):
                raise self.error(f"{where}: {name} is {name} OR {name}_h and {name}_w; not both")
        if has("kernel_size"):
            self.kernel = (int(pp.kernel_size), int(pp.kernel_size))
        else:
            self.kernel = (int(pp.kernel_h), int(pp.kernel_w))
        self.pad = (int(pp.pad_h), int(pp.pad_w)) if has("pad_h") else (int(pp.pad), int(pp.pad))
        self.stride = (
            (int(pp.stride_h), int(pp.stride_w))
            if has("stride_h")
            else (int(pp.stride), int(pp.stride))
        )
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise self.error(f"{where}: with global_pooling, only pad = 0 and stride = 1")
        if not self.global_pooling and min(self.kernel) <= 0:
            raise self.error(f"{where}: kernel size must be > 0, got {self.kernel}")
        if min(self.stride) <= 0:
            raise self.error(f"{where}: stride must be > 0, got {self.stride}")
        if self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
            if not self.global_pooling:
                raise self.error(
                    f"{where}: pad {self.pad} must be smaller than the kernel {self.kernel}"
                )
        self.round_mode = int(pp.round_mode)
        self._shape_key: tuple[int, ...] | None = None

    def _pooled_size(self, size: int, k: int, p: int, s: int, axis: str) -> int:
        span = size + 2 * p - k
        if span < 0:
            raise self.error(
                f"pooling_param: kernel {k} is larger than the padded input {size + 2 * p} "
                f"along {axis}"
            )
        out = (span // s if self.round_mode == ROUND_FLOOR else -(-span // s)) + 1
        return out

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(
                f"input must have 4 axes (num, channels, height, width), got shape {shape}"
            )
        n, c, h, w = shape
        if self.global_pooling:
            self.kernel = (h, w)
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        ho = self._pooled_size(h, kh, ph, sh, "height")
        wo = self._pooled_size(w, kw, pw, sw, "width")
        if ph or pw:
            # Caffe: with padding, the last window must start inside the image (not the pad).
            if (ho - 1) * sh >= h + ph:
                ho -= 1
            if (wo - 1) * sw >= w + pw:
                wo -= 1
        if (ho - 1) * sh - ph >= h or (wo - 1) * sw - pw >= w:
            raise self.error(
                f"pooling_param: the last {kh}x{kw} window (stride {self.stride}) starts "
                f"outside the {h}x{w} input"
            )
        self.out_hw = (ho, wo)
        for t in top:
            t.reshape(n, c, ho, wo)
        key = (n, c, h, w)
        if key != self._shape_key:
            self._shape_key = key
            self._prepare(h, w)

    def _prepare(self, h: int, w: int) -> None:
        """Index arrays and buffers that depend only on the input size."""
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        ho, wo = self.out_hw
        # The padded buffer covers every window, including CEIL-mode ones past the pad.
        self._hp = max(h + 2 * ph, (ho - 1) * sh + kh)
        self._wp = max(w + 2 * pw, (wo - 1) * sw + kw)
        hstart = np.arange(ho) * sh - ph
        wstart = np.arange(wo) * sw - pw
        self._hstart, self._wstart = hstart, wstart
        # AVE divisor: the window clipped to the padded image (h + pad), as in Caffe.
        hsize = np.minimum(hstart + kh, h + ph) - hstart
        wsize = np.minimum(wstart + kw, w + pw) - wstart
        self._divisor = np.outer(hsize, wsize).astype(np.float32)
        self._buffer: np.ndarray | None = None

    def _window(self, a: np.ndarray, i: int, j: int) -> np.ndarray:
        """The (N, C, Ho, Wo) strided view of padded ``a`` at kernel offset (i, j)."""
        ho, wo = self.out_hw
        sh, sw = self.stride
        return a[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]

    def _padded_input(self, x: np.ndarray, fill_value: float) -> np.ndarray:
        n, c, h, w = x.shape
        ph, pw = self.pad
        if self._hp == h and self._wp == w:
            return x
        buf = self._buffer
        if buf is None or buf.shape[:2] != (n, c):
            # The border keeps its fill value between calls; only the interior is rewritten.
            buf = np.full((n, c, self._hp, self._wp), fill_value, dtype=np.float32)
            self._buffer = buf
        buf[:, :, ph : ph + h, pw : pw + w] = x
        return buf

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        out = top[0].data
        kh, kw = self.kernel
        if self.global_pooling:
            flat = x.reshape(x.shape[0], x.shape[1], -1)
            if self.pool == POOL_MAX:
                self._arg = flat.argmax(axis=2)  # first maximum, like Caffe's strict '>'
                out[..., 0, 0] = np.take_along_axis(flat, self._arg[..., None], axis=2)[..., 0]
                if len(top) > 1:
                    top[1].data[..., 0, 0] = self._arg
            else:
                out[..., 0, 0] = flat.mean(axis=2, dtype=np.float32)
            return
        if self.pool == POOL_MAX:
            xp = self._padded_input(x, -np.inf)
            arg = np.zeros(out.shape, dtype=np.uint8 if kh * kw <= 256 else np.int32)
            hit = np.empty(out.shape, dtype=arg.dtype)
            better = np.empty(out.shape, dtype=bool)
            out[...] = self._window(xp, 0, 0)
            for k in range(1, kh * kw):
                win = self._window(xp, k // kw, k % kw)
                # Strict '>': the first maximum in row-major order wins, as in Caffe.
                np.greater(win, out, out=better)
                np.maximum(out, win, out=out)
                # k grows with the scan, so max(arg, k * better) records the newest winner
                # without a data-dependent branch.
                np.multiply(better, k, out=hit, dtype=arg.dtype)
                np.maximum(arg, hit, out=arg)
            self._arg = arg
            if len(top) > 1:
                w = x.shape[3]
                rows = self._hstart[:, None] + (arg // kw)
                cols = self._wstart[None, :] + (arg % kw)
                top[1].data[...] = rows * w + cols
        else:
            xp = self._padded_input(x, 0.0)
            out[...] = self._window(xp, 0, 0)
            for k in range(1, kh * kw):
                out += self._window(xp, k // kw, k % kw)
            out /= self._divisor

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dy = top[0].diff
        dx = bottom[0].diff
        n, c, h, w = bottom[0].shape
        kh, kw = self.kernel
        if self.global_pooling:
            flat = dx.reshape(n, c, -1)
            if self.pool == POOL_MAX:
                flat[...] = 0
                np.put_along_axis(flat, self._arg[..., None], dy.reshape(n, c, 1), axis=2)
            else:
                flat[...] = dy.reshape(n, c, 1) / np.float32(h * w)
            return
        ph, pw = self.pad
        direct = self._hp == h and self._wp == w
        dxp = dx if direct else np.empty((n, c, self._hp, self._wp), dtype=np.float32)
        dxp[...] = 0
        # Non-overlapping windows write each input at most once: plain stores, no +=.
        tiled = self.stride[0] >= kh and self.stride[1] >= kw
        if self.pool == POOL_MAX:
            arg = self._arg
            for k in range(kh * kw):
                win = self._window(dxp, k // kw, k % kw)
                if tiled:
                    np.multiply(dy, arg == k, out=win)
                else:
                    win += dy * (arg == k)
        else:
            g = dy / self._divisor
            for k in range(kh * kw):
                win = self._window(dxp, k // kw, k % kw)
                if tiled:
                    win[...] = g
                else:
                    win += g
        if direct:
            return
        dx[...] = dxp[:, :, ph : ph + h, pw : pw + w]


@register_layer("SPP")
class SPPLayer(Layer):
    """Spatial pyramid pooling (He et al.), as Caffe builds it: for every level ``i`` below
    ``spp_param.pyramid_height`` a Pooling of the whole image into ``2^i x 2^i`` bins (kernel
    ``ceil(size / bins)``, stride = kernel, padding ``(kernel * bins - size + 1) // 2``),
    each flattened and all concatenated: a top of shape (N, C * sum_i 4^i). With one level
    the top is that pooling's own (N, C, 1, 1). ``pool`` is MAX or AVE.
    """

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.spp_param
        self.height = int(p.pyramid_height)
        if self.height < 1:
            raise self.error(f"spp_param.pyramid_height must be given and >= 1, got {self.height}")
        if p.pool == caffe_pb2.SPPParameter.STOCHASTIC:
            raise self.error("spp_param.pool: STOCHASTIC pooling is not supported")
        self.pool = int(p.pool)
        self._shape: tuple[int, ...] | None = None
        self.levels: list[tuple[PoolingLayer, Blob]] = []

    def _pooling(self, level: int, h: int, w: int) -> PoolingLayer:
        """Caffe's GetPoolingParam for one pyramid level, as a Pooling layer."""
        bins = 2**level
        param = caffe_pb2.LayerParameter(name=f"{self.name}/level{level}", type="Pooling")
        pp = param.pooling_param
        pp.pool = self.pool
        for axis, size in (("h", h), ("w", w)):
            kernel = -(-size // bins)
            pad = (kernel * bins - size + 1) // 2
            if pad >= kernel:
                raise self.error(
                    f"the {h}x{w} input is too small for pyramid level {level} ({bins}x{bins} "
                    f"bins): its pooling would need pad {pad} >= kernel {kernel} along "
                    f"{'height' if axis == 'h' else 'width'}; lower spp_param.pyramid_height"
                )
            setattr(pp, f"kernel_{axis}", kernel)
            setattr(pp, f"stride_{axis}", kernel)
            setattr(pp, f"pad_{axis}", pad)
        return PoolingLayer(param, self.ctx)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(
                f"input must have 4 axes (num, channels, height, width), got shape {shape}"
            )
        n, c, h, w = shape
        if h <= 0 or w <= 0:
            raise self.error(f"input height and width must be positive, got shape {shape}")
        if shape != self._shape:
            self.levels = []
            for level in range(self.height):
                pool = self._pooling(level, h, w)
                out = Blob()
                try:
                    pool.setup(bottom, [out])
                    pool.reshape(bottom, [out])
                except LayerError as exc:
                    raise self.error(f"pyramid level {level}: {exc}") from None
                self.levels.append((pool, out))
            self._shape = shape
        else:
            for pool, out in self.levels:
                pool.reshape(bottom, [out])
        if self.height == 1:
            top[0].reshape(self.levels[0][1].shape)
        else:
            top[0].reshape((n, sum(out.count_range(1) for _, out in self.levels)))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        n = bottom[0].shape[0]
        y = top[0].data.reshape(n, -1)
        offset = 0
        for pool, out in self.levels:
            pool.forward(bottom, [out])
            size = out.count_range(1)
            y[:, offset : offset + size] = out.data.reshape(n, size)
            offset += size

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        n = bottom[0].shape[0]
        dy = top[0].diff.reshape(n, -1)
        # Each level's gradient lands in a scratch diff beside the shared bottom data;
        # the levels are summed, as Caffe's Split layer does.
        scratch = Blob()
        scratch.data = bottom[0].data
        scratch.diff = np.empty_like(bottom[0].diff)
        total = bottom[0].diff
        total[...] = 0
        offset = 0
        for pool, out in self.levels:
            size = out.count_range(1)
            out.diff[...] = dy[:, offset : offset + size].reshape(out.shape)
            pool.backward([out], [True], [scratch])
            total += scratch.diff
            offset += size
