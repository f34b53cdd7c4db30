"""LRN, BatchNorm, Scale and Bias, with the arithmetic of Caffe's CPU layers."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from .base import Layer, register_layer

_F32 = np.float32


def _window_sum(a: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Sum over a centred window of odd ``size`` along ``axis``, zero-padded at both ends."""
    pad = (size - 1) // 2
    widths = [(0, 0)] * a.ndim
    widths[axis] = (pad, pad)
    padded = np.pad(a, widths)
    n = a.shape[axis]
    out = np.zeros_like(a)
    # A loop over the window's offsets (local_size of them), each a whole-array add.
    index: list[slice] = [slice(None)] * a.ndim
    for o in range(size):
        index[axis] = slice(o, o + n)
        out += padded[tuple(index)]
    return out


@register_layer("LRN")
class LRNLayer(Layer):
    """Local response normalisation, across channels or within each channel.

    ACROSS_CHANNELS: ``y = x * (k + alpha/n * sum_{window over c} x^2) ^ -beta``.
    WITHIN_CHANNEL (Caffe builds it from square, average pooling with padding and power
    layers, and ignores ``k``): ``y = x * (1 + alpha/n^2 * sum_{n x n window} x^2) ^ -beta``;
    the pooling divides by n^2 everywhere because Caffe counts the padded squares.
    """

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.lrn_param
        self.size = int(p.local_size)
        if self.size % 2 != 1:
            raise self.error(f"lrn_param.local_size must be odd, got {self.size}")
        self.alpha = _F32(p.alpha)
        self.beta = _F32(p.beta)
        self.k = _F32(p.k)
        self.within = p.norm_region == type(p).WITHIN_CHANNEL
        self._scale: np.ndarray | None = None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(
                f"input must have 4 axes (num, channels, height, width), got shape "
                f"{bottom[0].shape}"
            )
        top[0].reshape_like(bottom[0])

    def _window(self, sq: np.ndarray) -> np.ndarray:
        if self.within:
            return _window_sum(_window_sum(sq, 2, self.size), 3, self.size)
        return _window_sum(sq, 1, self.size)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if self.within:
            pre = _F32(self.alpha / _F32(self.size * self.size))
            scale = _F32(1) + pre * self._window(x * x)
        else:
            scale = self.k + _F32(self.alpha / _F32(self.size)) * self._window(x * x)
        self._scale = scale
        top[0].data[...] = x * np.power(scale, -self.beta)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        if self._scale is None:
            raise self.error("backward called before forward")
        x, y, dy, scale = bottom[0].data, top[0].data, top[0].diff, self._scale
        norm = self.size * self.size if self.within else self.size
        # d/dx_j of x_i * s_i^-beta, with s_i depending on x_j^2 over the (symmetric) window.
        cache_ratio = _F32(2 * float(self.alpha) * float(self.beta) / norm)
        accum = self._window(dy * y / scale)
        bottom[0].diff[...] = dy * np.power(scale, -self.beta) - cache_ratio * x * accum


@register_layer("BatchNorm")
class BatchNormLayer(Layer):
    """Caffe's BatchNorm: normalise per channel (axis 1) to zero mean and unit variance.

    ``blobs`` are Caffe's three statistics: the running sums of the mean and of the
    (bias-corrected) variance and their scale factor; the stored estimates are
    ``blobs[i] / blobs[2]``. They are updated in forward, never by gradients: like Caffe,
    setup gives each a ParamSpec with ``lr_mult: 0`` and refuses any other lr_mult.
    """

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.batch_norm_param
        self.moving_average_fraction = _F32(p.moving_average_fraction)
        self.use_global_stats = self.ctx.phase == "TEST"
        if p.HasField("use_global_stats"):
            self.use_global_stats = bool(p.use_global_stats)
        self.eps = _F32(p.eps)
        self.channels = 1 if bottom[0].num_axes == 1 else bottom[0].shape[1]
        if not self.blobs:  # as Caffe, keep statistics already present (loaded or set)
            self.blobs = [Blob((self.channels,)), Blob((self.channels,)), Blob((1,))]
        specs = self.param.param
        for i in range(len(self.blobs)):
            if i >= len(specs):
                specs.add().lr_mult = 0.0
            elif specs[i].lr_mult != 0:
                raise self.error(
                    f"param {{ lr_mult }} #{i} is {specs[i].lr_mult}: batch normalization "
                    "statistics cannot be configured as learnable parameters (use lr_mult: 0)"
                )
        self._x_norm: np.ndarray | None = None
        self._std: np.ndarray | None = None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes >= 2 and bottom[0].shape[1] != self.channels:
            raise self.error(
                f"bottom has {bottom[0].shape[1]} channels, the layer was set up for "
                f"{self.channels}"
            )
        if bottom[0].num_axes == 0:
            raise self.error("bottom must have at least one axis")
        top[0].reshape_like(bottom[0])

    def _view(self, a: np.ndarray) -> np.ndarray:
        # (num, channels, spatial) view: statistics reduce over axes 0 and 2.
        return a.reshape(a.shape[0], self.channels, -1)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = self._view(bottom[0].data)
        if self.use_global_stats:
            s = self.blobs[2].data[0]
            factor = _F32(0) if s == 0 else _F32(1) / s
            mean = factor * self.blobs[0].data
            var = factor * self.blobs[1].data
            centred = x - mean[None, :, None]
        else:
            mean = x.mean(axis=(0, 2), dtype=_F32)
            centred = x - mean[None, :, None]
            var = (centred * centred).mean(axis=(0, 2), dtype=_F32)
            maf = self.moving_average_fraction
            self.blobs[2].data[0] = self.blobs[2].data[0] * maf + _F32(1)
            self.blobs[0].data[...] = mean + maf * self.blobs[0].data
            m = x.size // self.channels
            correction = _F32(m / (m - 1)) if m > 1 else _F32(1)
            self.blobs[1].data[...] = correction * var + maf * self.blobs[1].data
        std = np.sqrt(var + self.eps).astype(_F32)
        self._std = std
        y = centred / std[None, :, None]
        self._x_norm = y
        top[0].data[...] = y.reshape(top[0].shape)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        if self._std is None or self._x_norm is None:
            raise self.error("backward called before forward")
        dy = self._view(top[0].diff)
        std = self._std[None, :, None]
        if self.use_global_stats:
            bottom[0].diff[...] = (dy / std).reshape(bottom[0].shape)
            return
        y = self._x_norm
        mean_dy = dy.mean(axis=(0, 2), dtype=_F32)[None, :, None]
        mean_dyy = (dy * y).mean(axis=(0, 2), dtype=_F32)[None, :, None]
        dx = (dy - mean_dy - mean_dyy * y) / std
        bottom[0].diff[...] = dx.reshape(bottom[0].shape)


def _param_shape(
    layer: Layer, bottom: Blob, axis_param: int, num_axes: int, what: str
) -> tuple[int, ...]:
    """Shape of a learned Scale/Bias parameter: bottom axes [axis, axis + num_axes)."""
    if num_axes < -1:
        raise layer.error(
            f"{what}.num_axes must be non-negative, or -1 to extend to the end of bottom[0]; "
            f"got {num_axes}"
        )
    try:
        axis = bottom.canonical_axis(axis_param)
    except ValueError as exc:
        raise layer.error(f"{what}.axis: {exc}") from None
    if num_axes == -1:
        return tuple(bottom.shape[axis:])
    if axis + num_axes > bottom.num_axes:
        raise layer.error(
            f"{what}: the parameter blob's shape extends past bottom[0]'s shape "
            f"{bottom.shape} when applied from axis {axis} with num_axes {num_axes}"
        )
    return tuple(bottom.shape[axis : axis + num_axes])


def _broadcast_axes(
    layer: Layer, bottom: Blob, operand: Blob, axis_param: int, what: str
) -> tuple[int, int, int]:
    """Caffe's (outer, dim, inner) split of bottom[0] for a Scale/Bias operand."""
    if operand.num_axes == 0:
        axis = 0
    else:
        try:
            axis = bottom.canonical_axis(axis_param)
        except ValueError as exc:
            raise layer.error(f"{what}.axis: {exc}") from None
    if axis + operand.num_axes > bottom.num_axes:
        raise layer.error(
            f"{what}: operand shape {operand.shape} extends past bottom[0]'s shape "
            f"{bottom.shape} when applied from axis {axis}"
        )
    want = bottom.shape[axis : axis + operand.num_axes]
    if tuple(want) != tuple(operand.shape):
        raise layer.error(
            f"{what}: dimension mismatch between bottom[0] shape {bottom.shape} from axis "
            f"{axis} ({tuple(want)}) and the operand shape {operand.shape}"
        )
    outer = bottom.count_range(0, axis)
    inner = bottom.count_range(axis + operand.num_axes)
    return outer, operand.count, inner


def _fill_or_constant(
    blob: Blob, param: object, field: str, default: float, rng: np.random.Generator
) -> None:
    if param.HasField(field):  # type: ignore[attr-defined]
        from ..fillers import fill

        fill(blob, getattr(param, field), rng)
    else:
        blob.data[...] = default


@register_layer("Bias")
class BiasLayer(Layer):
    """``y = x + b``, ``b`` broadcast over bottom[0] from ``axis``; learned or bottom[1]."""

    min_bottoms = 1
    max_bottoms = 2
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.bias_param
        if len(bottom) == 1 and not self.blobs:
            shape = _param_shape(self, bottom[0], p.axis, p.num_axes, "bias_param")
            bias = Blob(shape)
            _fill_or_constant(bias, p, "filler", 0.0, self.ctx.rng)
            self.blobs = [bias]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        operand = bottom[1] if len(bottom) > 1 else self.blobs[0]
        self._dims = _broadcast_axes(
            self, bottom[0], operand, self.param.bias_param.axis, "bias_param"
        )
        if top[0] is not bottom[0]:
            top[0].reshape_like(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        b = (bottom[1] if len(bottom) > 1 else self.blobs[0]).data
        outer, dim, inner = self._dims
        y = bottom[0].data.reshape(outer, dim, inner) + b.reshape(1, dim, 1)
        top[0].data[...] = y.reshape(top[0].shape)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        outer, dim, inner = self._dims
        dy = top[0].diff.reshape(outer, dim, inner)
        if len(bottom) == 1:
            self.blobs[0].diff[...] += dy.sum(axis=(0, 2), dtype=_F32).reshape(self.blobs[0].shape)
        elif propagate_down[1]:
            bottom[1].diff[...] = dy.sum(axis=(0, 2), dtype=_F32).reshape(bottom[1].shape)
        if propagate_down[0] and top[0] is not bottom[0]:
            bottom[0].diff[...] = top[0].diff


@register_layer("Scale")
class ScaleLayer(Layer):
    """``y = x * s (+ b)``, ``s`` broadcast over bottom[0] from ``axis``; learned or bottom[1].

    ``blobs`` are ``[scale, bias]`` with one bottom, ``[bias]`` with two (bias_term).
    """

    min_bottoms = 1
    max_bottoms = 2
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.scale_param
        self.bias_term = bool(p.bias_term)
        self._bottom_copy: np.ndarray | None = None
        if self.blobs:
            return  # as Caffe: parameters already present (loaded or set) are kept
        if len(bottom) == 1:
            shape = _param_shape(self, bottom[0], p.axis, p.num_axes, "scale_param")
            scale = Blob(shape)
            _fill_or_constant(scale, p, "filler", 1.0, self.ctx.rng)
            self.blobs.append(scale)
        if self.bias_term:
            num_axes = bottom[1].num_axes if len(bottom) > 1 else p.num_axes
            shape = _param_shape(self, bottom[0], p.axis, num_axes, "scale_param")
            bias = Blob(shape)
            _fill_or_constant(bias, p, "bias_filler", 0.0, self.ctx.rng)
            self.blobs.append(bias)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.scale_param
        operand = bottom[1] if len(bottom) > 1 else self.blobs[0]
        self._dims = _broadcast_axes(self, bottom[0], operand, p.axis, "scale_param")
        if self.bias_term:
            self._bias_dims = _broadcast_axes(
                self, bottom[0], self.blobs[-1], p.axis, "scale_param"
            )
        if top[0] is not bottom[0]:
            top[0].reshape_like(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        s = (bottom[1] if len(bottom) > 1 else self.blobs[0]).data
        outer, dim, inner = self._dims
        x = bottom[0].data
        if top[0] is bottom[0]:
            self._bottom_copy = x.copy()  # backward needs x for the scale gradient
        y = x.reshape(outer, dim, inner) * s.reshape(1, dim, 1)
        if self.bias_term:
            bo, bd, bi = self._bias_dims
            y = y.reshape(bo, bd, bi) + self.blobs[-1].data.reshape(1, bd, 1)
        top[0].data[...] = y.reshape(top[0].shape)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy_full = top[0].diff
        if self.bias_term:
            bo, bd, bi = self._bias_dims
            bias = self.blobs[-1]
            bias.diff[...] += (
                dy_full.reshape(bo, bd, bi).sum(axis=(0, 2), dtype=_F32).reshape(bias.shape)
            )
        outer, dim, inner = self._dims
        dy = dy_full.reshape(outer, dim, inner)
        scale_is_param = len(bottom) == 1
        scale_blob = self.blobs[0] if scale_is_param else bottom[1]
        if scale_is_param or propagate_down[1]:
            x = self._bottom_copy if top[0] is bottom[0] else bottom[0].data
            g = (dy * x.reshape(outer, dim, inner)).sum(axis=(0, 2), dtype=_F32)
            g = g.reshape(scale_blob.shape)
            if scale_is_param:
                scale_blob.diff[...] += g
            else:
                scale_blob.diff[...] = g
        if propagate_down[0]:
            dx = dy * scale_blob.data.reshape(1, dim, 1)
            bottom[0].diff[...] = dx.reshape(bottom[0].shape)
