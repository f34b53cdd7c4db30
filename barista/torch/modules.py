"""Torch layers on a Barista backend: :class:`BaristaConv2d` and :class:`BaristaLinear`.

Each module's forward, backward-data and weight-gradient GEMMs go through
:mod:`caffe_bridge.gemm_passes` (the code the Caffe Convolution and InnerProduct layers
use) inside a ``torch.autograd.Function``; im2col/col2im are Caffe's
(:mod:`caffe_bridge.im2col`), and the bias is added and summed in torch. The backend is
called under the module's name (its qualified name in the model), so a hardware backend
keeps each layer's scaling state as it does for the Caffe layer of that name. Parameters
stay the original ``nn.Parameter`` objects: optimizers and state dicts are unchanged.

As a Caffe solver gives its test nets a backend of their own, a module in eval mode
(``model.eval()``) runs on ``test_backend``: evaluating never changes the training
passes' scaling state, and the rtl backend's test passes run on the golden model of
its accelerator (the same bits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from caffe_bridge.backend import GemmBackend
from caffe_bridge.gemm_passes import (
    conv_backward_data,
    conv_forward,
    conv_weight_grad,
    fc_backward_data,
    fc_forward,
    fc_weight_grad,
)
from caffe_bridge.im2col import col2im, conv_output_size, im2col


def _array(t: torch.Tensor) -> np.ndarray:
    """A float32 numpy array with ``t``'s values (no copy when ``t`` is float32 and dense)."""
    return t.detach().to(torch.float32).contiguous().numpy()


def _read_only(cols: np.ndarray) -> None:
    """Marks ``cols`` and the array owning its memory read-only: a backend that keeps
    columns (:attr:`GemmBackend.keeps_columns`) then reuses its forward pass's work on them
    in the weight gradient. Autograd keeps the saved input unchanged until then."""
    owner = cols
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    owner.flags.writeable = cols.flags.writeable = False


class _ConvGemm(torch.autograd.Function):
    """A convolution without bias, its three GEMM passes on the backend given."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, layer: BaristaConv2d, backend: GemmBackend
    ) -> Any:
        xn = _array(x)
        num, _, h, w = xn.shape
        ho, wo = layer.output_size(h, w)
        cols = im2col(xn, layer.kernel_size, layer.padding, layer.stride, layer.dilation)
        w2 = _array(weight).reshape(layer.out_channels, -1)
        out = np.empty((num, layer.out_channels, ho * wo), dtype=np.float32)
        conv_forward(backend, w2, cols, layer.groups, out, layer=layer.layer_name)
        ctx.layer, ctx.backend, ctx.image = layer, backend, (xn.shape[1], h, w)
        # The columns, for the weight gradient, when the backend reuses work done on them
        # (a 1x1 convolution's columns are the input itself: those are not kept).
        keep = backend.keeps_columns and not np.may_share_memory(cols, xn)
        if keep:
            _read_only(cols)
        ctx.cols = cols if keep else None
        ctx.save_for_backward(x, weight)
        return torch.from_numpy(out).view(num, layer.out_channels, ho, wo)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        layer: BaristaConv2d = ctx.layer
        x, weight = ctx.saved_tensors
        backend, name, g = ctx.backend, layer.layer_name, layer.groups
        num = grad.shape[0]
        dy = _array(grad).reshape(num, layer.out_channels, -1)
        w2 = _array(weight).reshape(layer.out_channels, -1)
        dx = dw = None
        # As the Caffe layer: the weight gradient first, then backward-data.
        if ctx.needs_input_grad[1]:
            cols = ctx.cols
            if cols is None:
                cols = im2col(
                    _array(x), layer.kernel_size, layer.padding, layer.stride, layer.dilation
                )
            wdiff = np.zeros(w2.shape, dtype=np.float32)
            conv_weight_grad(backend, dy, cols, g, wdiff, layer=name)
            dw = torch.from_numpy(wdiff).view(weight.shape)
        ctx.cols = None
        if ctx.needs_input_grad[0]:
            dcols = conv_backward_data(backend, w2, dy, g, layer=name)
            image = col2im(
                dcols, ctx.image, layer.kernel_size, layer.padding, layer.stride, layer.dilation
            )
            dx = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        return dx, dw, None, None


class _LinearGemm(torch.autograd.Function):
    """An inner product without bias over the last axis, on the backend given."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, layer: BaristaLinear, backend: GemmBackend
    ) -> Any:
        x2 = _array(x).reshape(-1, layer.in_features)
        y = fc_forward(backend, _array(weight), x2, layer=layer.layer_name)
        ctx.layer, ctx.backend = layer, backend
        ctx.save_for_backward(x, weight)
        return torch.from_numpy(np.ascontiguousarray(y)).view(*x.shape[:-1], layer.out_features)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        layer: BaristaLinear = ctx.layer
        x, weight = ctx.saved_tensors
        backend, name = ctx.backend, layer.layer_name
        dy = _array(grad).reshape(-1, layer.out_features)
        dx = dw = None
        if ctx.needs_input_grad[1]:
            x2 = _array(x).reshape(-1, layer.in_features)
            dw = torch.from_numpy(fc_weight_grad(backend, dy, x2, layer=name))
        if ctx.needs_input_grad[0]:
            dxn = fc_backward_data(backend, _array(weight), dy, layer=name)
            dx = torch.from_numpy(np.ascontiguousarray(dxn)).view(x.shape)
        return dx, dw, None, None


class _OnBackend(nn.Module):
    """A module whose GEMMs run on ``backend`` in training and ``test_backend`` (default
    ``backend``) in eval mode, under ``layer_name`` (the name the backend keeps the layer's
    state under)."""

    def __init__(
        self, backend: GemmBackend, layer_name: str, test_backend: GemmBackend | None
    ) -> None:
        super().__init__()
        self.backend = backend
        self.test_backend = backend if test_backend is None else test_backend
        self.layer_name = layer_name

    @property
    def active_backend(self) -> GemmBackend:
        """``backend`` in training mode, ``test_backend`` in eval mode."""
        return self.backend if self.training else self.test_backend


class BaristaConv2d(_OnBackend):
    """An ``nn.Conv2d`` (zero padding given as numbers) whose GEMMs run on ``backend``.

    Holds the original module's ``weight`` and ``bias`` parameters; ``layer_name`` is the
    name the backend keeps the layer's state under; ``test_backend`` (default
    ``backend``) is the one used in eval mode.
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        backend: GemmBackend,
        layer_name: str,
        test_backend: GemmBackend | None = None,
    ) -> None:
        super().__init__(backend, layer_name, test_backend)
        if not supports_conv(conv):
            raise ValueError(f"{layer_name}: {describe(conv)} is not supported")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size: tuple[int, int] = tuple(conv.kernel_size)  # type: ignore[assignment]
        self.stride: tuple[int, int] = tuple(conv.stride)  # type: ignore[assignment]
        self.padding: tuple[int, int] = tuple(conv.padding)  # type: ignore[assignment]
        self.dilation: tuple[int, int] = tuple(conv.dilation)  # type: ignore[assignment]
        self.groups = conv.groups
        self.weight = conv.weight
        self.bias = conv.bias

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The output's height and width for an input of ``h`` x ``w`` (Caffe's rule,
        which is torch's for numeric zero padding)."""
        return tuple(  # type: ignore[return-value]
            conv_output_size(size, k, p, s, d)
            for size, k, p, s, d in zip(
                (h, w), self.kernel_size, self.padding, self.stride, self.dilation, strict=True
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _ConvGemm.apply(x, self.weight, self, self.active_backend)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)  # a float32 add, as Caffe's
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}, "
            f"layer={self.layer_name!r}, backend={self.backend.name}"
        )


class BaristaLinear(_OnBackend):
    """An ``nn.Linear`` whose GEMMs run on ``backend`` (the batch is every leading axis)."""

    def __init__(
        self,
        linear: nn.Linear,
        backend: GemmBackend,
        layer_name: str,
        test_backend: GemmBackend | None = None,
    ) -> None:
        super().__init__(backend, layer_name, test_backend)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _LinearGemm.apply(x, self.weight, self, self.active_backend)
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, layer={self.layer_name!r}, "
            f"backend={self.backend.name}"
        )


def supports_conv(conv: nn.Conv2d) -> bool:
    """Whether a ``Conv2d`` maps onto Caffe's convolution: zero padding given as numbers
    (not ``"same"``/``"valid"``), float32 parameters."""
    return (
        conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.weight.dtype == torch.float32
    )


def describe(module: nn.Module) -> str:
    """A short description of a module for messages: its type and ``extra_repr``."""
    extra = module.extra_repr()
    return f"{type(module).__name__}({extra})" if extra else type(module).__name__
