"""Hardware-backed Convolution and InnerProduct as pycaffe Python layers.

For a real Caffe build with Python layers (``WITH_PYTHON_LAYER``), these
classes put Barista's GEMM backends (the bit-exact ``golden`` model by default)
into an otherwise unmodified Caffe net::

    layer {
      name: "conv1" type: "Python" bottom: "data" top: "conv1"
      python_param {
        module: "barista.pylayers" layer: "HwConvolution"
        param_str: '{"convolution_param": {"num_output": 20, "kernel_size": 5,
                     "weight_filler": {"type": "xavier"}}, "backend": "golden",
                     "format": "fx12", "rounding": "stochastic"}'
      }
    }

``param_str`` is JSON: the layer's Caffe parameter message in protobuf's JSON
mapping (``convolution_param`` or ``inner_product_param``), plus the backend
(``backend``, ``format``, ``rounding``, ``rows``, ``cols``; those not given take the
backend's defaults, e.g. :data:`barista_hw.numfmt.DEFAULT_FORMAT`) and the filler
``seed``. The arithmetic is Barista's own Convolution/InnerProduct layer, so
the Python layer and the native layer on the same backend give the same bits.
Learnable parameters live in pycaffe's ``self.blobs`` (weights, then bias),
so Caffe's solver updates them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from google.protobuf import json_format

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LAYER_TYPES, LayerContext
from caffe_bridge.layers.base import LayerError
from caffe_bridge.proto import caffe_pb2

from .backends import get_backend

try:  # a real pycaffe when present, else our runtime's stand-in
    import caffe

    _Base: Any = caffe.Layer
except ImportError:  # pragma: no cover - depends on the environment
    from caffe_bridge.layers.python_layer import PythonLayerBase as _Base

_BACKEND_KEYS = {
    "backend": "name",
    "format": "fmt",
    "rounding": "rounding",
    "rows": "rows",
    "cols": "cols",
}


def _listify(value: dict, descriptor: Any) -> dict:
    """Accept scalars for repeated fields (``"kernel_size": 5``), as prototxt does."""
    out = {}
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        if field is not None and field.message_type is not None:
            if isinstance(item, dict):
                item = _listify(item, field.message_type)
            elif isinstance(item, list):
                item = [_listify(i, field.message_type) if isinstance(i, dict) else i for i in item]
        if field is not None and field.is_repeated and not isinstance(item, list):
            item = [item]
        out[key] = item
    return out


class _ForeignBlob(Blob):
    """Our Blob interface over a pycaffe blob (its arrays are the storage)."""

    __slots__ = ("py",)

    def __init__(self, py: Any) -> None:  # noqa: D107 - no super().__init__: no own storage
        self.py = py

    @property  # type: ignore[override]
    def data(self) -> np.ndarray:
        return self.py.data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self.py.data[...] = value

    @property  # type: ignore[override]
    def diff(self) -> np.ndarray:
        return self.py.diff

    @diff.setter
    def diff(self, value: np.ndarray) -> None:
        self.py.diff[...] = value

    def reshape(self, *shape: Any) -> None:
        if len(shape) == 1 and not isinstance(shape[0], int | np.integer):
            shape = tuple(shape[0])
        if tuple(self.py.data.shape) != tuple(int(s) for s in shape):
            self.py.reshape(*[int(s) for s in shape])


class _HwLayer(_Base):
    """Runs one of Barista's GEMM layers inside the pycaffe Python-layer protocol."""

    LAYER_TYPE = ""

    def setup(self, bottom: list[Any], top: list[Any]) -> None:
        where = f"Python layer {type(self).__name__}"
        try:
            options = json.loads(self.param_str or "{}")
        except json.JSONDecodeError as exc:
            raise LayerError(f"{where}: param_str is not JSON: {exc}") from exc
        backend_opts = {
            _BACKEND_KEYS[k]: options.pop(k) for k in list(options) if k in _BACKEND_KEYS
        }
        seed = int(options.pop("seed", 0))
        name = backend_opts.pop("name", "golden")
        param = caffe_pb2.LayerParameter(
            name=getattr(self, "name", "") or type(self).__name__, type=self.LAYER_TYPE
        )
        try:
            json_format.ParseDict(_listify(options, param.DESCRIPTOR), param)
        except json_format.ParseError as exc:
            raise LayerError(f"{where}: bad layer parameters in param_str: {exc}") from exc
        phase = "TEST" if getattr(self, "phase", 0) == 1 else "TRAIN"
        ctx = LayerContext(
            phase=phase, backend=get_backend(name, **backend_opts), rng=np.random.default_rng(seed)
        )
        self.impl = LAYER_TYPES[self.LAYER_TYPE](param, ctx)
        ours_bottom, ours_top = self._ours(bottom), self._ours(top)
        self.impl.check_blob_counts(ours_bottom, ours_top)
        self.impl.setup(ours_bottom, ours_top)
        # Hand the filled parameters to pycaffe's blobs and compute on those from now on.
        filled = self.impl.blobs
        if len(self.blobs) == 0:
            for blob in filled:
                self.blobs.add_blob(*blob.shape)
                self.blobs[len(self.blobs) - 1].data[...] = blob.data
        self.impl.blobs = [_ForeignBlob(b) for b in self.blobs]

    @staticmethod
    def _ours(blobs: list[Any]) -> list[Blob]:
        return [_ForeignBlob(b) for b in blobs]

    def reshape(self, bottom: list[Any], top: list[Any]) -> None:
        self.impl.reshape(self._ours(bottom), self._ours(top))

    def forward(self, bottom: list[Any], top: list[Any]) -> None:
        self.impl.forward(self._ours(bottom), self._ours(top))

    def backward(self, top: list[Any], propagate_down: list[bool], bottom: list[Any]) -> None:
        self.impl.backward(self._ours(top), list(propagate_down), self._ours(bottom))


class HwConvolution(_HwLayer):
    """Caffe's Convolution with its GEMMs on a Barista backend."""

    LAYER_TYPE = "Convolution"


class HwInnerProduct(_HwLayer):
    """Caffe's InnerProduct with its GEMMs on a Barista backend."""

    LAYER_TYPE = "InnerProduct"
