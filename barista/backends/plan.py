"""Caffe net -> :class:`barista_hw.plan.GemmLayer` list: the one place that knows both sides.

Every Convolution, Deconvolution and InnerProduct layer of a (TRAIN-phase)
:class:`~caffe_bridge.net.Net` becomes one ``GemmLayer`` per bottom/top pair, with its GEMM
dimensions read from the weight blob and the blob shapes (so ``group``, ``axis``,
``transpose`` and the kernel geometry are Caffe's). A Deconvolution runs a convolution's
three GEMMs with the passes swapped, on the bottom's pixels: it is the ``conv`` layer of
those GEMMs, whose backward-data pass (the Deconvolution's forward) always runs.
Whether a layer needs its backward-data pass follows Caffe's ``Net::Init``: a bottom
needs a gradient when a layer before it has learnable parameters (``lr_mult != 0``) or
when ``force_backward`` is set, and ``propagate_down: false`` turns it off; the Net's
own ``bottom_need_backward`` (which also prunes what does not reach a loss) is used when
it has one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw.plan import GemmLayer

GEMM_TYPES = ("Convolution", "Deconvolution", "InnerProduct")


def _names(table: Any, layer: Any, index: int) -> list[str]:
    """Bottom/top blob names of a layer from ``net.bottom_names`` (dict or list)."""
    if isinstance(table, dict):
        return list(table[layer.name])
    return list(table[index])


def _has_learnable(layer: Any) -> bool:
    if not getattr(layer, "blobs", None):
        return False
    specs = list(layer.param.param)
    for i in range(len(layer.blobs)):
        lr = specs[i].lr_mult if i < len(specs) and specs[i].HasField("lr_mult") else 1.0
        if lr != 0:
            return True
    return False


def _force_backward(net: Any) -> bool:
    for attr in ("net_param", "param"):
        p = getattr(net, attr, None)
        if p is not None and hasattr(p, "force_backward"):
            return bool(p.force_backward)
    return bool(getattr(net, "force_backward", False))


def gemm_layers(net: Any, *, force_backward: bool | None = None) -> list[GemmLayer]:
    """The GEMM layers of ``net`` (build it in the TRAIN phase) in net order."""
    exact = getattr(net, "bottom_need_backward", None)  # Caffe's own rules, when the Net has them
    if force_backward is None:
        force_backward = _force_backward(net)
    needs_grad: set[str] = set()
    out: list[GemmLayer] = []
    for i, layer in enumerate(net.layers):
        bottoms = _names(net.bottom_names, layer, i)
        tops = _names(net.top_names, layer, i)
        prop = list(layer.param.propagate_down)
        bottom_grad = [
            (b in needs_grad or force_backward) and (not prop or bool(prop[j]))
            for j, b in enumerate(bottoms)
        ]
        if exact is not None and not force_backward:
            bottom_grad = list(exact[i])
        if any(bottom_grad) or _has_learnable(layer):
            needs_grad.update(tops)
        if layer.type_name not in GEMM_TYPES:
            continue
        for j, (b, t) in enumerate(zip(bottoms, tops, strict=False)):
            name = layer.name if j == 0 else f"{layer.name}:{j}"
            out.append(_gemm_layer(net, layer, name, b, t, bottom_grad[j]))
    return out


def _gemm_layer(
    net: Any, layer: Any, name: str, bottom: str, top: str, backward_data: bool
) -> GemmLayer:
    weights = layer.blobs[0].shape if getattr(layer, "blobs", None) else None
    if weights is None:
        raise InputError(f"layer {layer.name}: no weight blob (was the net set up?)")
    bshape, tshape = net.blobs[bottom].shape, net.blobs[top].shape
    if layer.type_name in ("Convolution", "Deconvolution"):
        cp = layer.param.convolution_param
        axis = int(cp.axis) % len(bshape)
        group = int(cp.group)
        deconv = layer.type_name == "Deconvolution"
        # Weights are (M, K/kernel, kh, kw): M is num_output for a convolution, the bottom's
        # channels for a deconvolution, whose GEMM columns are the bottom's pixels.
        pixels = bshape if deconv else tshape
        return GemmLayer(
            name=name,
            kind="conv",
            batch=int(np.prod(bshape[:axis], dtype=np.int64)),
            m=int(weights[0]) // group,
            k=int(np.prod(weights[1:], dtype=np.int64)),
            p=int(np.prod(pixels[axis + 1 :], dtype=np.int64)),
            group=group,
            backward_data=backward_data or deconv,
        )
    ip = layer.param.inner_product_param
    axis = int(ip.axis) % len(bshape)
    return GemmLayer(
        name=name,
        kind="fc",
        batch=int(np.prod(bshape[:axis], dtype=np.int64)),
        m=int(ip.num_output),
        k=int(np.prod(bshape[axis:], dtype=np.int64)),
        backward_data=backward_data,
    )
