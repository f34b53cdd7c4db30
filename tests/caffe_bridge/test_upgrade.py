"""Legacy V1 nets, net-level inputs and data-layer transformation fields."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from google.protobuf import text_format

from barista_base.errors import InputError
from caffe_bridge import Net, caffe_pb2
from caffe_bridge.upgrade import upgrade_net

V1_NET = """\
name: "v1net"
input: "data"
input_dim: 2
input_dim: 1
input_dim: 8
input_dim: 8
layers {
  name: "conv1"
  type: CONVOLUTION
  bottom: "data"
  top: "conv1"
  blobs_lr: 1
  blobs_lr: 2
  weight_decay: 1
  weight_decay: 0
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } }
}
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers {
  name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layers {
  name: "ip1" type: INNER_PRODUCT bottom: "pool1" top: "ip1"
  param: "w_shared" blobs_lr: 1 blobs_lr: 2
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 } }
}
layers { name: "prob" type: SOFTMAX bottom: "ip1" top: "prob" exclude { phase: TRAIN } }
"""


def test_v1_net_upgrades_and_runs(tmp_path):
    path = tmp_path / "v1.prototxt"
    path.write_text(V1_NET)
    net = Net(path, "TEST", seed=0)
    assert net.layer_names == ["input", "conv1", "relu1", "pool1", "ip1", "prob"]
    assert [layer.type_name for layer in net.layers] == [
        "Input",
        "Convolution",
        "ReLU",
        "Pooling",
        "InnerProduct",
        "Softmax",
    ]
    assert net.inputs == ["data"]
    assert net.blobs["conv1"].shape == (2, 4, 6, 6)
    assert net.blobs["pool1"].shape == (2, 4, 3, 3)
    assert net.blobs["prob"].shape == (2, 5)
    conv = net.layer_dict["conv1"].param
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert net.layer_dict["ip1"].param.param[0].name == "w_shared"
    assert net.params_lr == [1, 2, 1, 2]
    out = net.forward(data=np.ones((2, 1, 8, 8), np.float32))
    np.testing.assert_allclose(out["prob"].sum(axis=1), 1.0, rtol=1e-5)
    assert "prob" not in Net(path, "TRAIN").blobs  # exclude rule carried over


def test_v1_errors_carry_lines(tmp_path):
    path = tmp_path / "v1.prototxt"
    path.write_text(V1_NET.replace('bottom: "pool1" top: "ip1"', 'bottom: "nope" top: "ip1"'))
    with pytest.raises(
        InputError, match=r"v1\.prototxt:23: layer 'ip1'.*unknown bottom blob 'nope'"
    ):
        Net(path)
    path.write_text(V1_NET.replace("type: SOFTMAX", "type: IM2COL"))
    with pytest.raises(InputError, match=r"layer 'prob' \(Im2col\): unknown layer type 'Im2col'"):
        Net(path)


def test_v1_data_layer_transformation_moves_to_transform_param():
    param = text_format.Parse(
        """
        layers {
          name: "mnist" type: DATA top: "data" top: "label"
          data_param { source: "db" batch_size: 4 scale: 0.5 mean_file: "m.binaryproto"
                       crop_size: 3 mirror: true backend: LMDB }
          include { phase: TRAIN }
        }
        """,
        caffe_pb2.NetParameter(),
    )
    upgrade_net(param)
    (layer,) = param.layer
    assert layer.type == "Data" and not len(param.layers)
    t = layer.transform_param
    assert (t.scale, t.mean_file, t.crop_size, t.mirror) == (0.5, "m.binaryproto", 3, True)
    assert not layer.data_param.HasField("scale") and layer.data_param.source == "db"
    assert layer.include[0].phase == caffe_pb2.TRAIN


def test_net_input_shape_becomes_an_input_layer():
    param = text_format.Parse(
        textwrap.dedent(
            """
            input: "a" input_shape { dim: 1 dim: 2 }
            input: "b" input_shape { dim: 3 }
            layer { name: "r" type: "ReLU" bottom: "a" top: "c" }
            """
        ),
        caffe_pb2.NetParameter(),
    )
    upgrade_net(param)
    assert [lp.name for lp in param.layer] == ["input", "r"]
    assert list(param.layer[0].top) == ["a", "b"]
    assert [list(s.dim) for s in param.layer[0].input_param.shape] == [[1, 2], [3]]
    assert not len(param.input) and not len(param.input_shape)


def test_bad_input_dim_count_and_v0_and_mixed_forms():
    bad = text_format.Parse('input: "a" input_dim: 1 input_dim: 2', caffe_pb2.NetParameter())
    with pytest.raises(InputError, match="need 4 input_dim values"):
        upgrade_net(bad, source="x.prototxt")
    v0 = text_format.Parse(
        'layers { layer { name: "old" type: "conv" } }', caffe_pb2.NetParameter()
    )
    with pytest.raises(InputError, match="V0 layer definitions.*not supported"):
        upgrade_net(v0)
    mixed = text_format.Parse(
        'layer { name: "a" type: "ReLU" } layers { name: "b" type: RELU }', caffe_pb2.NetParameter()
    )
    with pytest.raises(InputError, match="mixes 'layer'"):
        upgrade_net(mixed)
