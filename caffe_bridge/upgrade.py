"""Upgrading legacy Caffe net definitions to the current form, as Caffe's
``UpgradeNetAsNeeded`` does.

* V1 nets (``layers { type: CONVOLUTION ... }``): the type enum becomes a type
  string, ``blobs_lr``/``weight_decay``/``param``/``blob_share_mode`` become
  ``param { lr_mult decay_mult name share_mode }``, and the per-layer parameter
  messages, include/exclude rules, blobs and loss weights carry over.
* Transformation fields of data layers (``data_param { scale mean_file crop_size
  mirror }``) move to ``transform_param``.
* Net-level ``input``/``input_shape``/``input_dim`` become an ``Input`` layer
  named ``input`` placed first.
* V0 nets (``layers { layer { ... } }``) are rejected with an error that says so.
"""

from __future__ import annotations

from barista_base.errors import InputError

from .proto import caffe_pb2

V1 = caffe_pb2.V1LayerParameter

# V1 type enum -> current type string (Caffe's UpgradeV1LayerType).
V1_TYPE_NAMES: dict[int, str] = {
    V1.ABSVAL: "AbsVal",
    V1.ACCURACY: "Accuracy",
    V1.ARGMAX: "ArgMax",
    V1.BNLL: "BNLL",
    V1.CONCAT: "Concat",
    V1.CONTRASTIVE_LOSS: "ContrastiveLoss",
    V1.CONVOLUTION: "Convolution",
    V1.DECONVOLUTION: "Deconvolution",
    V1.DATA: "Data",
    V1.DROPOUT: "Dropout",
    V1.DUMMY_DATA: "DummyData",
    V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    V1.ELTWISE: "Eltwise",
    V1.EXP: "Exp",
    V1.FLATTEN: "Flatten",
    V1.HDF5_DATA: "HDF5Data",
    V1.HDF5_OUTPUT: "HDF5Output",
    V1.HINGE_LOSS: "HingeLoss",
    V1.IM2COL: "Im2col",
    V1.IMAGE_DATA: "ImageData",
    V1.INFOGAIN_LOSS: "InfogainLoss",
    V1.INNER_PRODUCT: "InnerProduct",
    V1.LRN: "LRN",
    V1.MEMORY_DATA: "MemoryData",
    V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    V1.MVN: "MVN",
    V1.POOLING: "Pooling",
    V1.POWER: "Power",
    V1.RELU: "ReLU",
    V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss",
    V1.SILENCE: "Silence",
    V1.SOFTMAX: "Softmax",
    V1.SOFTMAX_LOSS: "SoftmaxWithLoss",
    V1.SPLIT: "Split",
    V1.SLICE: "Slice",
    V1.TANH: "TanH",
    V1.WINDOW_DATA: "WindowData",
    V1.THRESHOLD: "Threshold",
}

# Per-layer parameter messages that have the same field name in V1 and V2.
_V1_PARAM_FIELDS = tuple(
    f.name
    for f in V1.DESCRIPTOR.fields
    if f.name.endswith("_param") and f.name in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
)

# Layers whose parameter message carried the legacy transformation fields.
_DATA_PARAM_FIELDS = ("data_param", "image_data_param", "window_data_param")


def upgrade_v1_layer(
    v1: caffe_pb2.V1LayerParameter, *, source: str = ""
) -> caffe_pb2.LayerParameter:
    """One V1 layer in the current ``LayerParameter`` form."""
    where = f"{source}: " if source else ""
    name = v1.name or "(unnamed)"
    if v1.HasField("layer"):
        raise InputError(
            f"{where}layer '{name}': V0 layer definitions (layers {{ layer {{ ... }} }}) "
            "are not supported; upgrade the net with Caffe's upgrade_net_proto_text first"
        )
    layer = caffe_pb2.LayerParameter()
    layer.name = v1.name
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        try:
            layer.type = V1_TYPE_NAMES[v1.type]
        except KeyError:
            raise InputError(
                f"{where}layer '{name}': V1 layer type {V1.LayerType.Name(v1.type)} "
                "cannot be upgraded"
            ) from None
    layer.blobs.extend(v1.blobs)
    # Parameter specs: V1 kept four parallel lists; the longest decides the count.
    n_specs = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(n_specs):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    layer.loss_weight.extend(v1.loss_weight)
    for field in _V1_PARAM_FIELDS:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))
    if v1.HasField("transform_param"):
        layer.transform_param.CopyFrom(v1.transform_param)
    if v1.HasField("loss_param"):
        layer.loss_param.CopyFrom(v1.loss_param)
    return layer


def _upgrade_data_transformation(layer: caffe_pb2.LayerParameter) -> None:
    """Move the legacy scale/mean_file/crop_size/mirror of data layers to transform_param."""
    for field in _DATA_PARAM_FIELDS:
        if not layer.HasField(field):
            continue
        p = getattr(layer, field)
        t = layer.transform_param
        if p.HasField("scale"):
            t.scale = p.scale
            p.ClearField("scale")
        if p.HasField("mean_file"):
            t.mean_file = p.mean_file
            p.ClearField("mean_file")
        if p.HasField("crop_size"):
            t.crop_size = p.crop_size
            p.ClearField("crop_size")
        if p.HasField("mirror"):
            t.mirror = p.mirror
            p.ClearField("mirror")


def _upgrade_net_input(net: caffe_pb2.NetParameter, source: str) -> None:
    """Net-level inputs -> an Input layer named 'input', first in the net (UpgradeNetInput)."""
    has_shape = len(net.input_shape) > 0
    has_dim = len(net.input_dim) > 0
    where = f"{source}: " if source else ""
    if has_shape or has_dim:
        n = len(net.input)
        if has_shape and len(net.input_shape) != n:
            raise InputError(
                f"{where}net input: {n} input(s) but {len(net.input_shape)} input_shape(s); "
                "give exactly one input_shape per input"
            )
        if not has_shape and len(net.input_dim) != 4 * n:
            raise InputError(
                f"{where}net input: {n} input(s) need {4 * n} input_dim values "
                f"(N, C, H, W each), got {len(net.input_dim)}"
            )
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        for i, top in enumerate(net.input):
            layer.top.append(top)
            shape = layer.input_param.shape.add()
            if has_shape:
                shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i : 4 * i + 4])
        rest = []
        for lp in net.layer:
            copy = caffe_pb2.LayerParameter()
            copy.CopyFrom(lp)
            rest.append(copy)
        del net.layer[:]
        net.layer.extend([layer, *rest])
    elif len(net.input):
        # Inputs without shapes: a legacy caffemodel; Caffe simply drops them.
        pass
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


def net_needs_v1_upgrade(net: caffe_pb2.NetParameter) -> bool:
    return len(net.layers) > 0


def upgrade_net(net: caffe_pb2.NetParameter, *, source: str = "") -> caffe_pb2.NetParameter:
    """Upgrade ``net`` in place to the current form (returned for convenience)."""
    where = f"{source}: " if source else ""
    if len(net.layers):
        if len(net.layer):
            raise InputError(
                f"{where}net mixes 'layer' (current) and 'layers' (V1) definitions; use one form"
            )
        upgraded = [upgrade_v1_layer(v1, source=source) for v1 in net.layers]
        net.ClearField("layers")
        net.layer.extend(upgraded)
    for layer in net.layer:
        _upgrade_data_transformation(layer)
    _upgrade_net_input(net, source)
    return net
