"""A Caffe TRAIN net as the device compiler sees it: the one place that knows both sides.

The layers before the first one the device runs (data layers) and the loss with what
reads the logits (Accuracy) stay on the host; between them, Convolution,
InnerProduct, ReLU and Pooling become device layers and anything else a
:class:`~barista_hw.device.layers.HostLayer` that splits the net into device segments.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from barista_base.cache import sources_hash
from barista_base.errors import InputError
from barista_hw import device as device_package
from barista_hw.config import AcceleratorConfig
from barista_hw.device.compiler import Compiled, compile_net
from barista_hw.device.geometry import ConvGeometry, PoolGeometry
from barista_hw.device.layers import Conv, HostLayer, Layer, Param, Pool, Relu
from barista_hw.device.memory import IM2COL_STAGE, DeviceConfig
from barista_hw.device.report import IterationCost, iteration_cost
from barista_hw.device.traffic import program_counts
from barista_hw.dse import Candidate, Rank
from barista_hw.numfmt import Rounding
from barista_hw.targets import DEFAULT_TARGET
from caffe_bridge.net import Net

from .manifest import AcceleratorFiles, cached_rtl_dir

DEVICE_TYPES = ("Convolution", "InnerProduct", "ReLU", "Pooling")
LOSS_TYPES = ("SoftmaxWithLoss",)


@dataclass
class DeviceNet:
    """``layers`` (net order) run on the device between ``first`` and ``loss`` (layer
    indices of the net); ``inputs``: the blobs the host sends, one image's shape each;
    ``output``: the logits blob the host's loss reads; ``params``: per device layer with
    weights, the net's learnable-parameter indices of its weight and bias; ``host_layers``:
    what the host computes between segments (a host layer's tops and its bottoms'
    gradients, ``d:<blob>``) -> the net's index of the layer that computes it."""

    layers: list[Layer]
    first: int
    loss: int
    inputs: dict[str, tuple[int, ...]]
    output: str
    params: dict[str, list[int]]
    batch: int
    host_layers: dict[str, int]  # the blobs of the host's layers between segments -> layer
    wire8: dict[str, int]  # inputs that are 8-bit images: blob -> their exact frac
    # wire8 inputs whose mean the device subtracts -> one image's mean (None: no data)
    means: dict[str, np.ndarray | None]
    sources: dict[str, int]  # wire8 inputs -> the index of the Data layer reading them


@dataclass
class DeviceCompilation:
    """A net compiled for a device: its device view, the device and the program."""

    net: DeviceNet
    config: DeviceConfig
    compiled: Compiled

    @cached_property
    def cost(self) -> IterationCost:
        """Traffic, time and energy of one iteration (counting takes a few seconds)."""
        program = self.compiled.program
        return iteration_cost(program, self.config, program_counts(program, self.config))


def compile_device(
    net: Net,
    accelerator: AcceleratorConfig,
    *,
    target: str | None = None,
    rounding: Rounding | None = None,
    preload: bool = False,
    share: bool = True,
    units: Mapping[str, Any] | None = None,
    wire8: bool = True,
) -> DeviceCompilation:
    """Compile ``net`` (TRAIN phase) for ``accelerator`` on ``target``'s board (what ``barista
    compile``, ``--backend device`` and the benchmark share). With ``preload``, the input
    images' datasets live in DRAM, loaded once, and no batch crosses the link
    (:func:`preloaded`). ``share``: tensors never live together share DRAM
    (:func:`~barista_hw.device.compiler.compile_net`); ``units``: the device's unit
    capacities (:class:`~barista_hw.device.memory.ScratchpadConfig` settings, e.g.
    :data:`~barista_hw.device.memory.RTL_UNITS` for the RTL top); ``wire8``: 8-bit images
    cross the link as bytes (else as the format's words, the host subtracting any mean:
    what the RTL top takes).

    Raises :class:`~barista_base.errors.InputError` as the compiler does (e.g. a working set
    larger than the DRAM, naming the tensor and the bytes)."""
    config = DeviceConfig.for_accelerator(accelerator, target=target, **(units or {}))
    dn = device_net(net)
    if not wire8:
        dn = replace(dn, wire8={}, means={})
    compiled = compile_net(
        dn.layers,
        config,
        batch=dn.batch,
        inputs=dn.inputs,
        output=dn.output,
        rounding=rounding or Rounding.NEAREST_EVEN,
        wire8=dn.wire8,
        means=dn.means,
        preload=preloaded(net, dn) if preload else None,
        share=share,
    )
    return DeviceCompilation(dn, config, compiled)


def device_design(
    net: Net, *, target: str | None = None, fmt: str | None = None, name: str | None = None
) -> tuple[AcceleratorFiles, bool]:
    """The design the device trains ``net`` on (its TRAIN phase, at the batch it trains) on
    ``target``'s board, from the cache as :func:`~barista.manifest.cached_rtl_dir` keeps it
    (its files, whether it was generated now): the exploration's designs that fit beside
    the device's im2col stage buffer, the shortlist of them ranked by :func:`device_rank`.
    ``fmt`` fixes the number format; ``name``: the design's (default: the net's)."""
    from .backends.plan import gemm_layers

    target = target or DEFAULT_TARGET
    return cached_rtl_dir(
        gemm_layers(net),
        name=name or net.name or "net",
        target=target,
        fmt=fmt,
        im2col_stage=IM2COL_STAGE,
        rank=device_rank(net, target),
        ranked_by=_device_fingerprint(net),
    )


def device_rank(net: Net, target: str) -> Rank:
    """A candidate design's figures on the device: the modelled time of one iteration of
    ``net``'s compiled training program, then its energy per image (infinite when the
    program does not compile for the design)."""

    def figures(c: Candidate) -> tuple[float, float]:
        try:
            cost = compile_device(net, c.config, target=target).cost
        except InputError:
            return (math.inf, math.inf)
        return (cost.timing.seconds, cost.mj_per_image)

    return figures


def _device_fingerprint(net: Net) -> str:
    """What the device's ranking of designs for ``net`` depends on besides its GEMM layers:
    the device's view of the net and the device compiler's and models' sources."""
    dn = device_net(net)
    view = (dn.layers, dn.inputs, dn.output, dn.batch, sorted(dn.wire8.items()), sorted(dn.means))
    return hashlib.sha256((repr(view) + _device_sources()).encode()).hexdigest()


@cache
def _device_sources() -> str:
    return sources_hash(Path(device_package.__file__).parent)


def preloaded(net: Net, dn: DeviceNet) -> dict[str, int]:
    """Input blob -> the records of its dataset, for a net whose every input the device can
    fetch from a dataset in its DRAM: a Data layer's bytes, neither cropped nor mirrored
    (the device does not transform them), read in the database's order. A stand-in for
    absent data (``--data-shape``) has the batch's records.

    Raises :class:`~barista_base.errors.InputError` naming the input or layer that cannot."""
    where = net.source_file or "net"
    out = {}
    for blob in dn.inputs:
        if blob not in dn.sources:
            raise InputError(
                f"{where}: input {blob!r} cannot be preloaded: only a Data layer's 8-bit "
                "images times a power-of-two scale can"
            )
        layer = net.layers[dn.sources[blob]]
        tp = layer.param.transform_param
        if tp.crop_size > 0 or tp.mirror:
            raise InputError(
                f"{where}: layer {layer.name} crops or mirrors its images, which the device "
                "does not: the batches of a preloaded dataset must be its records as stored"
            )
        out[blob] = getattr(layer, "entries", dn.batch)
    return out


def device_net(net: Net) -> DeviceNet:
    """The device's view of ``net`` (built in the TRAIN phase)."""
    types = [layer.type_name for layer in net.layers]
    losses = [i for i, t in enumerate(types) if t in LOSS_TYPES]
    where = net.source_file or "net"
    if len(losses) != 1:
        raise InputError(
            f"{where}: the device needs exactly one SoftmaxWithLoss layer, the net has "
            f"{len(losses)}"
        )
    loss = losses[0]
    computing = [i for i in range(loss) if net.bottom_names[net.layer_names[i]]]
    if not computing:
        raise InputError(f"{where}: no layer between the data and the loss to run on the device")
    first = computing[0]
    output = net.bottom_names[net.layer_names[loss]][0]
    blobs = net.blobs
    batch = blobs[output].shape[0]
    inputs: dict[str, tuple[int, ...]] = {}
    produced: set[str] = set()
    layers: list[Layer] = []
    params: dict[str, list[int]] = {}
    host: dict[str, int] = {}
    owners = net.param_layer_indices
    for i in range(first, loss):
        lname = net.layer_names[i]
        for b in net.bottom_names[lname]:
            if b not in produced and b not in inputs:
                inputs[b] = tuple(blobs[b].shape[1:])
        layer = _layer(net, i)
        layers.append(layer)
        if isinstance(layer, HostLayer):
            host.update({blob: i for blob in (*layer.tops, *(f"d:{b}" for b in layer.bottoms))})
        produced.update(net.top_names[lname])
        mine = [p for p, (li, _) in enumerate(owners) if li == i]
        if mine:
            params[lname] = _trained(net, i, layer, mine)
    images = {b: found for b in inputs if (found := _image_input(net, b)) is not None}
    wire8 = {b: k for b, (k, _, _, _) in images.items()}
    means = {b: mean for b, (_, with_mean, mean, _) in images.items() if with_mean}
    sources = {b: i for b, (_, _, _, i) in images.items()}
    return DeviceNet(
        layers, first, loss, inputs, output, params, batch, host, wire8, means, sources
    )


def _trained(net: Net, i: int, layer: Layer, mine: list[int]) -> list[int]:
    """The learnable-parameter indices of layer ``i``'s parameters ``mine`` (indices of
    all the net's parameter blobs), which the device program trains: a layer the host
    runs cannot have parameters to learn, and the device does not share parameters."""
    name = net.layer_names[i]
    where = net.source_file or "net"
    shared = [p for p in mine if net.param_owners[p] != -1]
    if shared:
        owner = net.layer_names[net.param_layer_indices[net.param_owners[shared[0]]][0]]
        raise InputError(
            f"{where}: layer {name} shares a parameter with layer {owner}: the device "
            "trains each layer's own parameters only"
        )
    # Without sharing, the p-th parameter blob is the p-th learnable one.
    if isinstance(layer, HostLayer) and any(net.params_lr[p] for p in mine):
        raise InputError(
            f"{where}: layer {name} ({layer.type}) has parameters to learn but runs on "
            "the host, which the device program cannot train; set its lr_mult to 0 or "
            "remove it"
        )
    return mine


def _image_input(net: Net, blob: str) -> tuple[int, bool, np.ndarray | None, int] | None:
    """``(k, with_mean, mean, i)`` when ``blob`` is Data layer ``i``'s uint8 images times ``2**-k``
    (a power-of-two ``scale``), which the host then sends as they are, a byte a pixel; the
    device subtracts the mean (``mean``: one image's, None when the data is absent) when
    there is one that cropping and mirroring leave in place. Else None. A Data layer
    standing in for absent data (``--data-shape``) is taken to hold bytes, as Caffe's
    image Datums do."""
    for i, layer in enumerate(net.layers):
        if blob not in net.top_names[net.layer_names[i]][:1] or layer.type_name != "Data":
            continue
        tp = layer.param.transform_param
        scale = tp.scale if tp.HasField("scale") else 1.0
        k = -math.log2(scale) if scale > 0 else math.nan
        moved = tp.crop_size > 0 or tp.mirror  # a mean image would have to move too
        if tp.HasField("mean_file") and moved:
            return None
        if getattr(layer, "record_dtype", np.uint8) != np.uint8 or not k.is_integer() or k < 0:
            return None
        with_mean = tp.HasField("mean_file") or len(tp.mean_value) > 0
        t = getattr(layer, "transformer", None)
        mean = None
        if with_mean and t is not None:
            shape = net.blobs[blob].shape[1:]
            m = t.mean if t.mean is not None else t.mean_values.reshape(-1, 1, 1)
            mean = np.broadcast_to(m, shape).astype(np.float64)
        return int(k), with_mean, mean, i
    return None


def _layer(net: Net, i: int) -> Layer:
    layer = net.layers[i]
    name = net.layer_names[i]
    bottoms, tops = net.bottom_names[name], net.top_names[name]
    kind = layer.type_name
    if kind not in DEVICE_TYPES or len(bottoms) != 1 or len(tops) != 1:
        shapes = tuple(tuple(net.blobs[t].shape[1:]) for t in tops)
        return HostLayer(name, kind, tuple(bottoms), tuple(tops), shapes)
    bottom, top = bottoms[0], tops[0]
    shape = tuple(net.blobs[bottom].shape[1:])
    if kind == "ReLU":
        return Relu(name, bottom, top, shape, float(layer.negative_slope))
    if kind == "Pooling":
        return _pool(net, i, name, bottom, top, shape)
    return _conv(net, i, name, bottom, top, shape)


def _pool(net: Net, i: int, name: str, bottom: str, top: str, shape: tuple[int, ...]) -> Layer:
    layer = net.layers[i]
    if layer.global_pooling or getattr(layer, "round_mode", 0) != 0 or len(shape) != 3:
        return HostLayer(name, "Pooling", (bottom,), (top,), (tuple(net.blobs[top].shape[1:]),))
    geom = PoolGeometry(*shape, tuple(layer.kernel), tuple(layer.stride), tuple(layer.pad))
    return Pool(name, bottom, top, geom, "max" if layer.pool == 0 else "ave")


def _conv(net: Net, i: int, name: str, bottom: str, top: str, shape: tuple[int, ...]) -> Layer:
    layer = net.layers[i]
    specs = list(layer.param.param)
    mults = [
        Param(
            float(specs[j].lr_mult) if j < len(specs) and specs[j].HasField("lr_mult") else 1.0,
            float(specs[j].decay_mult)
            if j < len(specs) and specs[j].HasField("decay_mult")
            else 1.0,
        )
        for j in range(2)
    ]
    need = bool(net.bottom_need_backward[i][0])
    if layer.type_name == "InnerProduct":
        if layer.transpose or layer.axis != 1:
            raise InputError(
                f"layer {name}: the device runs InnerProduct with axis 1 and no transpose"
            )
        return Conv(
            name,
            bottom,
            top,
            layer.num_output,
            inputs=layer.k,
            bias=layer.bias_term,
            weight=mults[0],
            bias_param=mults[1],
            backward_data=need,
        )
    geom = ConvGeometry(
        *shape,
        tuple(layer.kernel),
        tuple(layer.stride),
        tuple(layer.pad),
        tuple(layer.dilation),
        layer.group,
    )
    return Conv(
        name,
        bottom,
        top,
        layer.num_output,
        geom=geom,
        bias=bool(layer.bias_term),
        weight=mults[0],
        bias_param=mults[1],
        backward_data=need,
    )


def describe(dn: DeviceNet) -> str:
    """What runs where, for ``barista compile``'s summary."""
    dev = [x.name for x in dn.layers if not isinstance(x, HostLayer)]
    host = [f"{x.name} ({x.type})" for x in dn.layers if isinstance(x, HostLayer)]
    lines = [f"on the device: {', '.join(dev)}", f"inputs: {dn.inputs}, logits: {dn.output}"]
    if host:
        lines.append(f"on the host between device segments: {', '.join(host)}")
    return "\n".join(lines)
