"""Element-wise neuron layers: ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp,
Log, Threshold, Dropout.

Each follows the arithmetic of Caffe's CPU implementation (``src/caffe/layers/*_layer.cpp``).
Layers whose backward pass reads only the top (Sigmoid, TanH, Exp) or the sign of the input
(ReLU, Dropout) work in place exactly as Caffe's do; PReLU, ELU, BNLL, Power and Log keep a
copy of the input when run in place so their gradients stay right (Caffe does this for PReLU
only). Threshold, like Caffe's, has no gradient.
"""

from __future__ import annotations

import math

import numpy as np

from ..blob import Blob
from .base import Layer, register_layer

_F32 = np.float32


class NeuronLayer(Layer):
    """One bottom, one top of the same shape (Caffe's NeuronLayer); in place allowed."""

    exact_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is not bottom[0]:
            top[0].reshape_like(bottom[0])


def _fill(blob: Blob, filler_param: object, rng: np.random.Generator) -> None:
    # Imported late: fillers.py is a sibling module that may import the layer registry.
    from ..fillers import fill

    fill(blob, filler_param, rng)


@register_layer("ReLU")
class ReLULayer(NeuronLayer):
    """``y = max(x, 0) + negative_slope * min(x, 0)``."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.negative_slope = _F32(self.param.relu_param.negative_slope)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if self.negative_slope == 0:
            np.maximum(x, _F32(0), out=top[0].data)
        else:
            top[0].data[...] = np.maximum(x, 0) + self.negative_slope * np.minimum(x, 0)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        # In place, bottom.data holds the output; its sign is the input's (slope >= 0).
        x = bottom[0].data
        gate = np.where(x > 0, _F32(1), self.negative_slope)
        bottom[0].diff[...] = top[0].diff * gate


@register_layer("PReLU")
class PReLULayer(NeuronLayer):
    """ReLU with a learned negative slope per channel (axis 1), or one shared slope."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.prelu_param
        if bottom[0].num_axes < 2:
            raise self.error(
                f"bottom must have at least 2 axes (channels on axis 1), got shape "
                f"{bottom[0].shape}"
            )
        self.channel_shared = bool(p.channel_shared)
        self._bottom_copy: np.ndarray | None = None
        if self.blobs:
            return  # as Caffe: a slope already present (loaded or set) is kept
        channels = bottom[0].shape[1]
        slope = Blob(() if self.channel_shared else (channels,))
        if p.HasField("filler"):
            _fill(slope, p.filler, self.ctx.rng)
        else:
            slope.data[...] = 0.25  # Caffe's default: constant 0.25
        self.blobs = [slope]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes < 2:
            raise self.error(f"bottom must have at least 2 axes, got shape {bottom[0].shape}")
        if not self.channel_shared and bottom[0].shape[1] != self.blobs[0].count:
            raise self.error(
                f"bottom has {bottom[0].shape[1]} channels but the slope blob has "
                f"{self.blobs[0].count}"
            )
        super().reshape(bottom, top)

    def _slope(self, ndim: int) -> np.ndarray:
        s = self.blobs[0].data
        if self.channel_shared:
            return s.reshape(())
        return s.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if top[0] is bottom[0]:
            self._bottom_copy = x.copy()
        slope = self._slope(x.ndim)
        top[0].data[...] = np.maximum(x, 0) + slope * np.minimum(x, 0)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        x = self._bottom_copy if top[0] is bottom[0] else bottom[0].data
        dy = top[0].diff
        neg = x <= 0
        # Slope gradient first: in place, the bottom diff below overwrites the top diff.
        contrib = dy * x * neg
        if self.channel_shared:
            self.blobs[0].diff[...] += contrib.sum(dtype=_F32)
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            self.blobs[0].diff[...] += contrib.sum(axis=axes, dtype=_F32)
        if propagate_down[0]:
            gate = np.where(neg, self._slope(x.ndim), _F32(1))
            bottom[0].diff[...] = dy * gate


@register_layer("ELU")
class ELULayer(NeuronLayer):
    """``y = max(x, 0) + alpha * (exp(min(x, 0)) - 1)`` (Clevert et al.), ``alpha`` from
    ``elu_param`` (default 1); the gradient for ``x <= 0`` is ``alpha + y``, as in Caffe."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.alpha = _F32(self.param.elu_param.alpha)
        self._bottom_copy: np.ndarray | None = None

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if top[0] is bottom[0]:
            self._bottom_copy = x.copy()
        with np.errstate(under="ignore"):
            neg = np.exp(np.minimum(x, _F32(0))) - _F32(1)
        top[0].data[...] = np.maximum(x, _F32(0)) + self.alpha * neg

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        x = self._bottom_copy if top[0] is bottom[0] else bottom[0].data
        gate = np.where(x > 0, _F32(1), self.alpha + top[0].data)
        bottom[0].diff[...] = top[0].diff * gate


@register_layer("Sigmoid")
class SigmoidLayer(NeuronLayer):
    """``y = 1 / (1 + exp(-x))``, computed as ``0.5 * tanh(0.5 x) + 0.5`` like Caffe."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = _F32(0.5) * np.tanh(_F32(0.5) * bottom[0].data) + _F32(0.5)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            y = top[0].data
            bottom[0].diff[...] = top[0].diff * y * (_F32(1) - y)


@register_layer("TanH")
class TanHLayer(NeuronLayer):
    """``y = tanh(x)``."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        np.tanh(bottom[0].data, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            y = top[0].data
            bottom[0].diff[...] = top[0].diff * (_F32(1) - y * y)


@register_layer("AbsVal")
class AbsValLayer(NeuronLayer):
    """``y = |x|``; like Caffe it refuses to run in place (backward needs the sign of x)."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("AbsVal does not allow in-place computation (top equals bottom)")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        np.abs(bottom[0].data, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * np.sign(bottom[0].data)


@register_layer("BNLL")
class BNLLLayer(NeuronLayer):
    """Binomial normal log likelihood ``y = log(1 + exp(x))``, in Caffe's overflow-safe form
    (``x + log(1 + exp(-x))`` for ``x > 0``), evaluated in double precision as Caffe's
    ``log(1. + exp(...))`` is; the gradient ``exp(x) / (exp(x) + 1)`` clamps ``x`` at 50."""

    THRESHOLD = 50.0  # Caffe's kBNLL_THRESHOLD

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._bottom_copy: np.ndarray | None = None

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if top[0] is bottom[0]:
            self._bottom_copy = x.copy()
        # Both of Caffe's branches are max(x, 0) + log(1 + exp(-|x|)).
        xd = x.astype(np.float64)
        top[0].data[...] = np.maximum(xd, 0.0) + np.log(1.0 + np.exp(-np.abs(xd)))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        x = self._bottom_copy if top[0] is bottom[0] else bottom[0].data
        e = np.exp(np.minimum(x, _F32(self.THRESHOLD))).astype(np.float64)
        bottom[0].diff[...] = top[0].diff * (e / (e + 1.0))


@register_layer("Power")
class PowerLayer(NeuronLayer):
    """``y = (shift + scale * x) ^ power``, with Caffe's special cases in the gradient."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.power_param
        self.power = _F32(p.power)
        self.scale = _F32(p.scale)
        self.shift = _F32(p.shift)
        self.diff_scale = _F32(self.power * self.scale)
        self._bottom_copy: np.ndarray | None = None

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if top[0] is bottom[0]:
            self._bottom_copy = x.copy()
        if self.diff_scale == 0:
            # Constant output: 1 for power 0, else shift^power (scale 0).
            value = _F32(1) if self.power == 0 else _F32(self.shift**self.power)
            top[0].data[...] = value
            return
        inner = x
        if self.scale != 1:
            inner = self.scale * inner
        if self.shift != 0:
            inner = inner + self.shift
        with np.errstate(all="ignore"):
            top[0].data[...] = inner if self.power == 1 else np.power(inner, self.power)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        x = self._bottom_copy if top[0] is bottom[0] else bottom[0].data
        y = top[0].data
        if self.diff_scale == 0 or self.power == 1:
            grad = np.full(x.shape, self.diff_scale, dtype=_F32)
        else:
            # Caffe's forms: dy/dx = diff_scale * (shift + scale x)^(power-1), written as
            # an affine map for power 2 and as y / (...) otherwise (0/0 is NaN, as in Caffe).
            with np.errstate(all="ignore"):
                if self.power == 2:
                    grad = (self.diff_scale * self.scale) * x
                    if self.shift != 0:
                        grad = grad + self.diff_scale * self.shift
                elif self.shift == 0:
                    grad = (y / x) * self.power
                else:
                    inner = x if self.scale == 1 else self.scale * x
                    grad = y / (inner + self.shift)
                    if self.diff_scale != 1:
                        grad = grad * self.diff_scale
        if self.diff_scale != 0:
            grad = top[0].diff * grad
        bottom[0].diff[...] = grad


@register_layer("Exp")
class ExpLayer(NeuronLayer):
    """``y = base ^ (shift + scale * x)``; base -1 (the default) means e."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.exp_param
        base = float(np.float32(p.base))
        if base != -1 and not base > 0:
            raise self.error(f"exp_param.base must be -1 (for e) or > 0, got {p.base}")
        scale, shift = float(_F32(p.scale)), float(_F32(p.shift))
        log_base = 1.0 if base == -1 else math.log(base)
        self.inner_scale = _F32(log_base * scale)
        if shift == 0:
            self.outer_scale = _F32(1)
        else:
            self.outer_scale = _F32(math.exp(shift) if base == -1 else base**shift)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        arg = x if self.inner_scale == 1 else self.inner_scale * x
        with np.errstate(over="ignore"):
            e = np.exp(arg)
        top[0].data[...] = e if self.outer_scale == 1 else self.outer_scale * e

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            g = top[0].diff * top[0].data
            bottom[0].diff[...] = g if self.inner_scale == 1 else self.inner_scale * g


@register_layer("Log")
class LogLayer(NeuronLayer):
    """``y = log_base(shift + scale * x)``; base -1 (the default) means e."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.log_param
        base = float(np.float32(p.base))
        if base != -1 and not base > 0:
            raise self.error(f"log_param.base must be -1 (for e) or > 0, got {p.base}")
        log_base = 1.0 if base == -1 else math.log(base)
        if not math.isfinite(log_base) or log_base == 0:
            raise self.error(f"log_param.base {p.base} gives no finite, nonzero log(base)")
        self.base_scale = _F32(1.0 / log_base)
        self.input_scale = _F32(p.scale)
        self.input_shift = _F32(p.shift)
        self.backward_num_scale = _F32(self.input_scale * self.base_scale)
        self._bottom_copy: np.ndarray | None = None

    def _inner(self, x: np.ndarray) -> np.ndarray:
        if self.input_scale != 1:
            x = self.input_scale * x
        if self.input_shift != 0:
            x = x + self.input_shift
        return x

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if top[0] is bottom[0]:
            self._bottom_copy = x.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(self._inner(x))
        top[0].data[...] = y if self.base_scale == 1 else self.base_scale * y

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        x = self._bottom_copy if top[0] is bottom[0] else bottom[0].data
        with np.errstate(divide="ignore"):
            g = _F32(1) / self._inner(x)
        if self.backward_num_scale != 1:
            g = self.backward_num_scale * g
        bottom[0].diff[...] = top[0].diff * g


@register_layer("Threshold")
class ThresholdLayer(NeuronLayer):
    """``y = 1 if x > threshold else 0`` (``threshold_param.threshold``, default 0).

    A step has no useful gradient and Caffe does not implement one: backward into the
    input is an error, as in Caffe.
    """

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.threshold = _F32(self.param.threshold_param.threshold)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        np.greater(bottom[0].data, self.threshold, out=top[0].data, casting="unsafe")

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            raise self.error(
                "Threshold has no gradient (Caffe does not implement its backward); set "
                "propagate_down: false or keep it off the path to the loss"
            )


@register_layer("Dropout")
class DropoutLayer(NeuronLayer):
    """Inverted dropout: in TRAIN keep with probability ``1 - p`` and scale by ``1/(1-p)``."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ratio = float(self.param.dropout_param.dropout_ratio)
        if not 0.0 < ratio < 1.0:
            raise self.error(f"dropout_param.dropout_ratio must be in (0, 1), got {ratio}")
        self.threshold = ratio
        self.scale = _F32(1.0 / (1.0 - _F32(ratio)))
        self.mask: np.ndarray | None = None

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if self.ctx.phase == "TRAIN":
            # Bernoulli(1 - p) mask, as caffe_rng_bernoulli(count, 1 - threshold).
            self.mask = (self.ctx.rng.random(x.shape) < 1.0 - self.threshold).astype(_F32)
            top[0].data[...] = x * self.mask * self.scale
        elif top[0] is not bottom[0]:
            top[0].data[...] = x

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        if self.ctx.phase == "TRAIN":
            if self.mask is None:
                raise self.error("backward called before forward (no dropout mask)")
            bottom[0].diff[...] = top[0].diff * self.mask * self.scale
        elif top[0] is not bottom[0]:
            bottom[0].diff[...] = top[0].diff
