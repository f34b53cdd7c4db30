"""The Python layer: pycaffe-style user modules run through the layer protocol.

The modules are written to a temporary directory that becomes the current directory,
which the layer puts on ``sys.path`` as pycaffe does. They ``import caffe`` and subclass
``caffe.Layer`` exactly as modules written for pycaffe do.
"""

import sys
import textwrap

import numpy as np
import pytest

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerError
from caffe_bridge.testing import blob_from, check_gradients, gaussian
from caffe_bridge.testing import make_layer as make

# Caffe's examples/pycaffe/layers/pyloss.py, with the loss weight (top diff) applied.
PYLOSS = """
import caffe
import numpy as np


class EuclideanLossLayer(caffe.Layer):
    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff**2) / bottom[0].num / 2.

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = 1 if i == 0 else -1
            bottom[i].diff[...] = sign * top[0].diff[0] * self.diff / bottom[i].num
"""

# A layer with a learnable per-channel scale, configured through param_str.
PYSCALE = """
import json

import caffe
import numpy as np


class ChannelScale(caffe.Layer):
    def setup(self, bottom, top):
        params = json.loads(self.param_str)
        self.init = params["init"]
        self.seen_phase = self.phase
        self.blobs.add_blob(bottom[0].channels)
        self.blobs[0].data[...] = self.init

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * self.blobs[0].data[None, :, None, None]

    def backward(self, top, propagate_down, bottom):
        x, dy = bottom[0].data, top[0].diff
        self.blobs[0].diff[...] += (dy * x).sum(axis=(0, 2, 3))
        if propagate_down[0]:
            bottom[0].diff[...] = dy * self.blobs[0].data[None, :, None, None]
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh current directory; sys.path and sys.modules restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_module(directory, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_python_euclidean_loss_matches_and_passes_gradient_check(workdir):
    write_module(workdir, "pyloss_a", PYLOSS)
    text = (
        'name: "loss" type: "Python" bottom: "a" bottom: "b" top: "loss" '
        'python_param { module: "pyloss_a" layer: "EuclideanLossLayer" } loss_weight: 1'
    )
    a, b = gaussian((10, 5, 1, 1), 1), gaussian((10, 5, 1, 1), 2)
    layer = make(text)
    bottoms, top = [blob_from(a), blob_from(b)], [Blob()]
    layer.setup(bottoms, top)
    layer.reshape(bottoms, top)
    layer.forward(bottoms, top)
    assert top[0].shape == (1,)
    np.testing.assert_allclose(
        top[0].data[0], ((a - b).astype(np.float64) ** 2).sum() / 20, rtol=1e-5
    )
    check_gradients(make(text), [blob_from(a), blob_from(b)], [Blob()])


def test_python_layer_blobs_param_str_and_phase(workdir):
    write_module(workdir, "pyscale_b", PYSCALE)
    text = (
        'type: "Python" python_param { module: "pyscale_b" layer: "ChannelScale" '
        'param_str: "{\\"init\\": 1.5}" share_in_parallel: true }'
    )
    x = gaussian((2, 3, 2, 2))
    layer = make(text, phase="TEST")
    top = [Blob()]
    layer.setup([blob_from(x)], top)
    assert layer.py.param_str == '{"init": 1.5}'
    assert layer.py.seen_phase == 1  # caffe.TEST
    assert len(layer.blobs) == 1 and layer.blobs[0].shape == (3,)
    np.testing.assert_array_equal(layer.blobs[0].data, 1.5)

    train = make(text)
    check_gradients(train, [blob_from(x)], [Blob()])
    assert train.py.seen_phase == 0  # caffe.TRAIN
    np.testing.assert_allclose(train.blobs[0].data[None, :, None, None] * x, x * 1.5, rtol=1e-6)


def test_python_layer_import_errors_name_module_and_class(workdir):
    with pytest.raises(LayerError, match=r"'py'.*no_such_module_xyz.*SomeLayer"):
        make(
            'name: "py" type: "Python" '
            'python_param { module: "no_such_module_xyz" layer: "SomeLayer" }'
        )
    write_module(workdir, "pyloss_c", PYLOSS)
    with pytest.raises(LayerError, match=r"pyloss_c.*no class 'Missing'"):
        make('type: "Python" python_param { module: "pyloss_c" layer: "Missing" }')
    write_module(workdir, "broken_d", "import nonexistent_dependency_q\n")
    with pytest.raises(LayerError, match=r"broken_d.*nonexistent_dependency_q"):
        make('type: "Python" python_param { module: "broken_d" layer: "X" }')
    with pytest.raises(LayerError, match="python_param.module"):
        make('type: "Python" python_param { layer: "X" }')


def test_python_layer_setup_error_becomes_layer_error(workdir):
    write_module(workdir, "pyloss_e", PYLOSS)
    layer = make(
        'name: "l" type: "Python" python_param { module: "pyloss_e" layer: "EuclideanLossLayer" }'
    )
    with pytest.raises(LayerError, match="Need two inputs"):
        layer.setup([blob_from(np.ones(3))], [Blob()])


def test_pyblob_legacy_accessors(workdir):
    from caffe_bridge.layers.python_layer import PyBlob

    b = PyBlob(Blob((2, 3)))
    assert (b.num, b.channels, b.height, b.width, b.count) == (2, 3, 1, 1, 6)
    b.reshape(4, 5, 6, 7)
    assert (b.num, b.channels, b.height, b.width) == (4, 5, 6, 7)
    assert b.data.shape == (4, 5, 6, 7)
