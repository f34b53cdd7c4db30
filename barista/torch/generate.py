"""A torch model's GEMM layers, as :mod:`barista.backends.plan` reads a Caffe net's.

:func:`gemm_layers` runs the model once on an example input of the given shape on
torch's ``meta`` device (shapes only, no arithmetic, no backend call) and records every
``Conv2d``/``Linear`` call (converted or not) in execution order, with the rule Caffe uses
for a layer's backward-data pass: it runs when the layer's input needs a gradient (the
example input needs none; every learnable layer's output does). :func:`generate` hands
those layers to the accelerator generator, so a model and its equivalent prototxt give
the same workload list, RTL and manifest.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from barista_base.errors import InputError
from barista_hw.generate import Design
from barista_hw.generate import generate as generate_design
from barista_hw.plan import GemmLayer

from .modules import BaristaConv2d, BaristaLinear

_CONV = (nn.Conv2d, BaristaConv2d)
_LINEAR = (nn.Linear, BaristaLinear)


def gemm_layers(model: nn.Module, input_shape: Sequence[int]) -> list[GemmLayer]:
    """The GEMM layers of ``model`` run on an input of ``input_shape`` (batch first), in
    the order they run; a module called twice gives ``name`` then ``name:1``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or min(shape) < 1:
        raise InputError(f"input shape {shape}: give (batch, ...) with every size >= 1")
    # Backends are shared, not copied (a simulator or a port cannot be).
    memo: dict[int, Any] = {
        id(b): b
        for m in model.modules()
        if isinstance(m, BaristaConv2d | BaristaLinear)
        for b in (m.backend, m.test_backend)
    }
    meta = copy.deepcopy(model, memo)
    for module in list(meta.modules()):  # a converted layer's plain twin: shapes on any device
        for name, child in list(module.named_children()):
            if isinstance(child, BaristaConv2d | BaristaLinear):
                setattr(module, name, _plain(child))
    meta = meta.to("meta")
    twins = {id(m): n for n, m in meta.named_modules()}
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []

    def record(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        calls.append((twins[id(module)], module, args[0], out))

    hooks = [
        m.register_forward_hook(record) for m in meta.modules() if isinstance(m, _CONV + _LINEAR)
    ]
    try:
        meta(torch.empty(shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    seen: dict[str, int] = {}
    out = []
    for name, module, x, y in calls:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(_gemm_layer(name if count == 0 else f"{name}:{count}", module, x, y))
    return out


def _plain(module: BaristaConv2d | BaristaLinear) -> nn.Module:
    """The torch layer a converted one replaced (same geometry, parameters not copied)."""
    if isinstance(module, BaristaLinear):
        return nn.Linear(
            module.in_features, module.out_features, module.bias is not None, device="meta"
        )
    return nn.Conv2d(
        module.in_channels,
        module.out_channels,
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        module.groups,
        module.bias is not None,
        device="meta",
    )


def _gemm_layer(name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> GemmLayer:
    """One call's GEMM dimensions (as :func:`barista.backends.plan.gemm_layers` reads a
    Convolution's or InnerProduct's)."""
    if isinstance(module, nn.Conv2d):
        if x.dim() != 4:
            raise InputError(
                f"layer {name}: a Conv2d input of shape {tuple(x.shape)} has no batch axis"
            )
        w = module.weight.shape
        return GemmLayer(
            name=name,
            kind="conv",
            batch=int(x.shape[0]),
            m=int(w[0]) // module.groups,
            k=math.prod(int(s) for s in w[1:]),
            p=math.prod(int(s) for s in y.shape[2:]),
            group=module.groups,
            backward_data=x.requires_grad,
        )
    return GemmLayer(
        name=name,
        kind="fc",
        batch=math.prod(int(s) for s in x.shape[:-1]),
        m=int(module.out_features),
        k=int(module.in_features),
        backward_data=x.requires_grad,
    )


def generate(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    target: Any = None,
    fmt: str | None = None,
    array: str | None = None,
    preset: str | None = None,
    name: str | None = None,
) -> Design:
    """:func:`barista_hw.generate.generate` for the GEMM layers of ``model`` on inputs of
    ``input_shape`` (``name``: the net's, default the model's class name). Write it out
    with :func:`barista.manifest.write_rtl_dir`."""
    from barista_hw.targets import DEFAULT_TARGET

    return generate_design(
        gemm_layers(model, input_shape),
        target=target or DEFAULT_TARGET,
        fmt=fmt,
        array=array,
        preset=preset,
        name=name or type(model).__name__,
    )
