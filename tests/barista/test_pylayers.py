"""The pycaffe Python-layer adapter: same bits as the native layers on the same backend."""

import json

import numpy as np
import pytest
from google.protobuf import json_format

from barista.backends import get_backend
from caffe_bridge.blob import Blob
from caffe_bridge.layers import LAYER_TYPES, LayerContext, LayerError
from caffe_bridge.proto import caffe_pb2
from caffe_bridge.testing import check_gradients

CONV = {
    "num_output": 3,
    "kernel_size": 3,
    "pad": 1,
    "stride": 2,
    "weight_filler": {"type": "gaussian", "std": 0.1},
    "bias_filler": {"type": "constant", "value": 0.2},
}
IP = {"num_output": 5, "weight_filler": {"type": "xavier"}}


def _python_layer(cls: str, options: dict, backend: str = "golden"):  # noqa: ANN202
    param = caffe_pb2.LayerParameter(name="hw", type="Python")
    param.python_param.module = "barista.pylayers"
    param.python_param.layer = cls
    hw = {"backend": "golden", "format": "fx12"} if backend == "golden" else {"backend": backend}
    param.python_param.param_str = json.dumps({**options, **hw, "seed": 5})
    return LAYER_TYPES["Python"](param, LayerContext(phase="TRAIN"))


def _native(kind: str, field: str, options: dict):  # noqa: ANN202
    # Prototxt allows scalars for repeated fields; protobuf's JSON mapping wants lists.
    repeated = {"kernel_size", "pad", "stride"}
    listed = {k: [v] if k in repeated else v for k, v in options.items()}
    param = json_format.ParseDict({field: listed}, caffe_pb2.LayerParameter())
    param.name, param.type = "hw", kind
    ctx = LayerContext(
        phase="TRAIN", backend=get_backend("golden", fmt="fx12"), rng=np.random.default_rng(5)
    )
    return LAYER_TYPES[kind](param, ctx)


@pytest.mark.parametrize(
    "cls, kind, field, options, shape",
    [
        ("HwConvolution", "Convolution", "convolution_param", CONV, (2, 2, 7, 6)),
        ("HwInnerProduct", "InnerProduct", "inner_product_param", IP, (4, 3, 2, 2)),
    ],
)
def test_python_layer_matches_native_layer_bit_for_bit(cls, kind, field, options, shape) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    results = []
    for layer in (_python_layer(cls, {field: options}), _native(kind, field, options)):
        bottom, top = [Blob(shape)], [Blob()]
        bottom[0].data[...] = x
        layer.setup(bottom, top)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        top[0].diff[...] = np.cos(np.arange(top[0].count)).reshape(top[0].shape)
        layer.backward(top, [True], bottom)
        results.append(
            [top[0].data.copy(), bottom[0].diff.copy()]
            + [b.diff.copy() for b in layer.blobs]
            + [b.data.copy() for b in layer.blobs]
        )
    for got, want in zip(*results, strict=True):
        np.testing.assert_array_equal(got, want)


def test_python_layer_gradients_on_cpu_backend() -> None:
    layer = _python_layer("HwConvolution", {"convolution_param": CONV}, backend="cpu")
    bottom = [Blob((2, 2, 5, 5))]
    bottom[0].data[...] = np.random.default_rng(1).standard_normal((2, 2, 5, 5))
    check_gradients(layer, bottom, [Blob()])


def test_bad_param_str_names_the_problem() -> None:
    layer = _python_layer("HwInnerProduct", {"inner_product_param": {"num_outputs": 2}})
    with pytest.raises(LayerError, match="bad layer parameters"):
        layer.setup([Blob((2, 3))], [Blob()])
