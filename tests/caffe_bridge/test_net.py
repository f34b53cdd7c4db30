"""Net construction and running with Caffe's semantics, on small nets written here."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from barista_base.errors import InputError
from caffe_bridge import TEST, TRAIN, Net, caffe_pb2
from caffe_bridge.backend import CpuBackend


def net_param(text: str) -> caffe_pb2.NetParameter:
    return text_format.Parse(textwrap.dedent(text), caffe_pb2.NetParameter())


def write(tmp_path: Path, text: str, name: str = "net.prototxt") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


INPUT = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'

RULES = (
    INPUT
    + """
layer { name: "train_only" type: "ReLU" bottom: "x" top: "a" include { phase: TRAIN } }
layer { name: "test_only" type: "ReLU" bottom: "x" top: "b" include { phase: TEST } }
layer { name: "not_test" type: "ReLU" bottom: "x" top: "c" exclude { phase: TEST } }
layer { name: "level1to2" type: "ReLU" bottom: "x" top: "d" include { min_level: 1 max_level: 2 } }
layer { name: "deploy" type: "ReLU" bottom: "x" top: "e" include { stage: "deploy" } }
layer { name: "no_deploy" type: "ReLU" bottom: "x" top: "f" include { not_stage: "deploy" } }
layer { name: "s1_or_s2" type: "ReLU" bottom: "x" top: "g"
        include { stage: "s1" } include { stage: "s2" } }
layer { name: "s1_and_s2" type: "ReLU" bottom: "x" top: "h" include { stage: "s1" stage: "s2" } }
"""
)


def _user_layers(net: Net) -> list[str]:
    return [n for n, layer in net.layer_dict.items() if layer.type_name == "ReLU"]


@pytest.mark.parametrize(
    "phase,level,stages,expected",
    [
        (TRAIN, 0, (), ["train_only", "not_test", "no_deploy"]),
        ("TEST", 0, (), ["test_only", "no_deploy"]),
        (TEST, 1, ("deploy",), ["test_only", "level1to2", "deploy"]),
        (TEST, 3, ("s1",), ["test_only", "no_deploy", "s1_or_s2"]),
        (TEST, 2, ("s1", "s2"), ["test_only", "level1to2", "no_deploy", "s1_or_s2", "s1_and_s2"]),
    ],
)
def test_include_exclude_rules(phase, level, stages, expected):
    net = Net(net_param(RULES), phase, level=level, stages=stages)
    assert _user_layers(net) == expected


def test_include_and_exclude_together_is_an_error(tmp_path):
    path = write(
        tmp_path,
        INPUT + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y"\n'
        "  include { phase: TRAIN } exclude { phase: TEST } }\n",
    )
    with pytest.raises(InputError, match=r"net\.prototxt:2: layer 'r'.*include or exclude"):
        Net(path, TRAIN)


def test_model_state_stages_are_kept_and_phase_overridden():
    param = net_param(RULES + 'state { phase: TRAIN stage: "deploy" }')
    net = Net(param, TEST)
    assert _user_layers(net) == ["test_only", "deploy"]


def test_in_place_layers_share_the_blob():
    net = Net(
        net_param(
            INPUT + 'layer { name: "relu" type: "ReLU" bottom: "x" top: "x" }\n'
            'layer { name: "sig" type: "Sigmoid" bottom: "x" top: "x" }\n'
        )
    )
    assert list(net.blobs) == ["x"]
    assert net.top_names["relu"] == ["x"] and net.bottom_names["sig"] == ["x"]
    assert net.layer_tops(1)[0] is net.layer_bottoms(2)[0] is net.blobs["x"]
    x = np.array([[-1.0, 0.0, 2.0], [3.0, -4.0, 0.5]], np.float32)
    out = net.forward(x=x)
    np.testing.assert_allclose(out["x"], 1 / (1 + np.exp(-np.maximum(x, 0))), rtol=1e-6)


SPLIT_NET = """
force_backward: true
layer { name: "in" type: "Input" top: "x" top: "t"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 3 } } }
layer { name: "p2" type: "Power" bottom: "x" top: "a" power_param { scale: 2 } }
layer { name: "p3" type: "Power" bottom: "x" top: "b" power_param { scale: 3 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "y" }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
"""


def test_split_insertion_names_and_gradient_accumulation():
    net = Net(net_param(SPLIT_NET), TRAIN)
    assert net.layer_names == ["in", "x_in_0_split", "p2", "p3", "sum", "loss"]
    assert net.layers[1].type_name == "Split"
    assert net.top_names["x_in_0_split"] == ["x_in_0_split_0", "x_in_0_split_1"]
    assert net.bottom_names["p2"] == ["x_in_0_split_0"]
    assert net.bottom_names["p3"] == ["x_in_0_split_1"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    t = rng.standard_normal((4, 3)).astype(np.float32)
    out = net.forward(x=x, t=t)
    expected_loss = np.sum((5 * x - t) ** 2) / (2 * 4)
    np.testing.assert_allclose(out["loss"], expected_loss, rtol=1e-5)
    assert net.loss == pytest.approx(float(expected_loss), rel=1e-5)
    diffs = net.backward()
    # d/dx of sum((2x + 3x - t)^2) / 2N: both branches add up through the split.
    np.testing.assert_allclose(diffs["x"], 5 * (5 * x - t) / 4, rtol=1e-5)


def test_split_of_a_top_that_is_also_a_loss():
    net = Net(
        net_param(
            """
            force_backward: true
            layer { name: "in" type: "Input" top: "x" top: "t"
                    input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }
            layer { name: "p" type: "Power" bottom: "x" top: "y" loss_weight: 2 }
            layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }
            """
        ),
        TRAIN,
    )
    assert net.layer_names == ["in", "p", "y_p_0_split", "loss"]
    split = net.layer_dict["y_p_0_split"]
    assert list(split.param.loss_weight) == [2.0, 0.0]
    assert list(net.layer_dict["p"].param.loss_weight) == []
    # Split index 0 is the loss use; the consumer gets index 1.
    assert net.bottom_names["loss"] == ["y_p_0_split_1", "t"]
    assert net.blob_loss_weights["y_p_0_split_0"] == 2.0
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    t = np.ones((2, 3), np.float32)
    net.forward(x=x, t=t)
    assert net.loss == pytest.approx(2 * x.sum() + np.sum((x - t) ** 2) / 4, rel=1e-5)
    diffs = net.backward()
    np.testing.assert_allclose(diffs["x"], 2 + (x - t) / 2, rtol=1e-5)


SHARED = """
layer { name: "in" type: "Input" top: "x1" top: "x2"
        input_param { shape { dim: 4 dim: 3 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "x1" top: "y1" loss_weight: 1
        param { name: "w" lr_mult: 2 } param { name: "b" decay_mult: 0 }
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" }
                              bias_filler { type: "constant" value: 0.5 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "x2" top: "y2" loss_weight: 1
        param { name: "w" } param { name: "b" }
        inner_product_param { num_output: 5 } }
"""


def test_shared_parameters():
    net = Net(net_param(SHARED), TRAIN, seed=3)
    w1, b1 = net.params["ip1"]
    w2, b2 = net.params["ip2"]
    assert w1 is w2 and b1 is b2
    assert len(net.learnable_params) == 2
    assert net.learnable_params[0] is w1
    assert net.params_lr == [2.0, 1.0]
    assert net.params_weight_decay == [1.0, 0.0]
    assert net.param_owners == [-1, -1, 0, 1]
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((4, 3)).astype(np.float32)
    x2 = rng.standard_normal((4, 3)).astype(np.float32)
    net.forward(x1=x1, x2=x2)
    np.testing.assert_allclose(net.blobs["y2"].data, x2 @ w1.data.T + 0.5, rtol=1e-5)
    net.clear_param_diffs()
    net.backward()
    # Loss = sum(y1) + sum(y2): each output row adds its input to dW, from both layers.
    expected = np.tile((x1.sum(0) + x2.sum(0))[None, :], (5, 1))
    np.testing.assert_allclose(w1.diff, expected, rtol=1e-5)
    np.testing.assert_allclose(b1.diff, np.full(5, 8.0), rtol=1e-6)


def test_shared_parameter_shape_mismatch_and_lr_mismatch():
    bad_shape = SHARED.replace(
        "inner_product_param { num_output: 5 } }", "inner_product_param { num_output: 6 } }"
    )
    with pytest.raises(
        InputError, match=r"layer 'ip2'.*cannot share param 'w'.*\(5, 3\).*\(6, 3\)"
    ):
        Net(net_param(bad_shape), TRAIN)
    bad_lr = SHARED.replace('param { name: "w" }', 'param { name: "w" lr_mult: 3 }')
    with pytest.raises(InputError, match="mismatched lr_mult"):
        Net(net_param(bad_lr), TRAIN)


BACKWARD = """
layer { name: "in" type: "Input" top: "x" top: "label"
        input_param { shape { dim: 4 dim: 6 } shape { dim: 4 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "h"
        param { lr_mult: 0 } param { lr_mult: 0 }
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "z" PROPAGATE
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "acc" type: "Accuracy" bottom: "z" bottom: "label" top: "acc" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "label" top: "loss" }
"""


def test_which_layers_need_backward():
    net = Net(net_param(BACKWARD.replace("PROPAGATE", "")), TRAIN)
    need = dict(zip(net.layer_names, net.layer_need_backward, strict=True))
    # ip1 has lr_mult 0 and no bottom needing backward; accuracy has no loss.
    assert need == {
        "in": False,
        "ip1": False,
        "ip2": True,
        "z_ip2_0_split": True,
        "label_in_1_split": False,
        "acc": False,
        "loss": True,
    }
    assert net.layer_dict["ip1"].param_propagate_down == [False, False]
    i = net.layer_names.index("loss")
    assert net.bottom_need_backward[i] == [True, False]
    assert net.bottom_need_backward[net.layer_names.index("ip2")] == [False]
    assert net.blob_loss_weights["loss"] == 1.0 and net.blob_loss_weights["acc"] == 0.0


def test_propagate_down_false_skips_the_layer_below():
    net = Net(net_param(BACKWARD.replace("PROPAGATE", "propagate_down: false")), TRAIN)
    i = net.layer_names.index("ip2")
    assert net.bottom_need_backward[i] == [False]
    assert net.layer_need_backward[i]  # its own params still learn


def test_wrong_number_of_propagate_down_is_an_error():
    text = BACKWARD.replace("PROPAGATE", "propagate_down: false propagate_down: true")
    with pytest.raises(InputError, match=r"layer 'ip2'.*propagate_down"):
        Net(net_param(text), TRAIN)


def test_force_backward():
    net = Net(net_param("force_backward: true\n" + BACKWARD.replace("PROPAGATE", "")), TRAIN)
    assert all(net.layer_need_backward)
    i = net.layer_names.index("loss")
    # SoftmaxWithLoss does not allow forcing backward to its labels.
    assert net.bottom_need_backward[i] == [True, False]
    assert net.bottom_need_backward[net.layer_names.index("ip1")] == [True]
    assert net.layer_dict["ip1"].param_propagate_down == [True, True]
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    net.forward(x=x, label=np.array([0, 1, 2, 1], np.float32))
    diffs = net.backward()
    assert diffs["x"].shape == (4, 6) and np.abs(diffs["x"]).sum() > 0


def test_loss_layer_defaults_and_explicit_weights():
    text = BACKWARD.replace("PROPAGATE", "")
    net = Net(net_param(text), TRAIN)
    assert net.outputs == ["acc", "loss"]
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    label = np.array([0, 1, 2, 1], np.float32)
    loss1 = net.forward(x=x, label=label)["loss"].item()
    assert net.loss == pytest.approx(loss1)
    net3 = Net(net_param(text.replace('top: "loss"', 'top: "loss" loss_weight: 3')), TRAIN, seed=0)
    net3.copy_from(net.to_proto())
    net3.forward(x=x, label=label)
    assert net3.loss == pytest.approx(3 * loss1, rel=1e-5)
    # A loss layer with a second top needs a weight for each.
    two_tops = text.replace('top: "loss" }', 'top: "loss" top: "prob" }')
    with pytest.raises(InputError, match="loss_weight must be unspecified or given once per top"):
        Net(net_param(two_tops), TRAIN)
    ok = text.replace('top: "loss" }', 'top: "loss" top: "prob" loss_weight: 1 loss_weight: 0 }')
    assert Net(net_param(ok), TRAIN).outputs == ["acc", "loss", "prob"]


def test_loss_layer_without_top_gets_an_anonymous_one():
    text = BACKWARD.replace("PROPAGATE", "").replace(' top: "loss"', "")
    net = Net(net_param(text), TRAIN)
    assert "loss" not in net.blobs and net.outputs == ["acc"]
    x = np.ones((4, 6), np.float32)
    net.forward(x=x, label=np.zeros(4, np.float32))
    assert net.loss > 0


def test_forward_start_end_and_reshape_by_input():
    net = Net(net_param(SPLIT_NET), TRAIN)
    x = np.ones((4, 3), np.float32)
    out = net.forward(end="p3", x=x, t=x)
    assert list(out) == ["b"]
    np.testing.assert_allclose(out["b"], 3 * x)
    assert not net.blobs["y"].data.any()  # the layers after p3 did not run
    out = net.forward(start="sum", blobs=["y"])
    np.testing.assert_allclose(out["y"], 5 * x)
    assert set(out) == {"loss", "y"}
    out = net.forward(x=np.ones((7, 3), np.float32), t=np.zeros((7, 3), np.float32))
    assert net.blobs["y"].shape == (7, 3)
    assert out["loss"] == pytest.approx(25 * 21 / 14)
    with pytest.raises(InputError, match="no layer named 'nope'"):
        net.forward(end="nope")
    with pytest.raises(InputError, match="not an input"):
        net.forward(y=x)


def test_backend_and_rng_reach_every_layer():
    class Counting(CpuBackend):
        calls = 0

        def forward(self, w, x, *, layer=""):
            Counting.calls += 1
            return super().forward(w, x, layer=layer)

    backend = Counting()
    net = Net(net_param(SHARED), TRAIN, backend=backend, seed=5)
    assert all(layer.ctx.backend is backend for layer in net.layers)
    assert all(layer.ctx.rng is net.rng for layer in net.layers)
    assert all(layer.ctx.phase == "TRAIN" for layer in net.layers)
    net.forward()
    assert Counting.calls == 2
    # Same seed, same fillers.
    again = Net(net_param(SHARED), TRAIN, seed=5)
    np.testing.assert_array_equal(again.params["ip1"][0].data, net.params["ip1"][0].data)


def test_save_copy_from_and_share_weights(tmp_path):
    net = Net(net_param(SHARED), TRAIN, seed=1)
    path = tmp_path / "w.caffemodel"
    net.save(path)
    other = Net(net_param(SHARED), TEST, path, seed=2)
    np.testing.assert_array_equal(other.params["ip1"][0].data, net.params["ip1"][0].data)
    np.testing.assert_array_equal(other.params["ip1"][1].data, net.params["ip1"][1].data)
    # Saved files hold every layer's blobs (ip2's are the shared ones) and read back.
    third = Net(net_param(SHARED), TEST, seed=3)
    third.share_weights(net)
    assert third.params["ip1"][0].data is net.params["ip1"][0].data
    assert third.params["ip1"][0].diff is not net.params["ip1"][0].diff

    wrong = SHARED.replace("num_output: 5", "num_output: 7")
    wrong_net = Net(net_param(wrong), TEST)
    with pytest.raises(InputError, match=r"layer 'ip1'.*shape mismatch.*\(5, 3\).*\(7, 3\)"):
        wrong_net.copy_from(path)


def test_semantic_errors_name_file_line_and_layer(tmp_path):
    path = write(
        tmp_path,
        INPUT + "\n"
        'layer {\n  name: "mystery"\n  type: "NoSuchLayer"\n  bottom: "x"\n  top: "y"\n}\n',
    )
    with pytest.raises(InputError) as exc:
        Net(path)
    msg = str(exc.value)
    assert f"{path}:3:" in msg and "'mystery'" in msg and "unknown layer type 'NoSuchLayer'" in msg

    path = write(tmp_path, INPUT + 'layer { name: "r" type: "ReLU" bottom: "nothing" top: "y" }\n')
    with pytest.raises(
        InputError, match=r"net\.prototxt:2: layer 'r' \(ReLU\): unknown bottom blob 'nothing'"
    ):
        Net(path)

    path = write(
        tmp_path,
        INPUT + 'layer {\n  name: "pool"\n  type: "Pooling"\n  bottom: "x"\n  top: "y"\n'
        "  pooling_param { pool: MAXIMUM }\n}\n",
    )
    with pytest.raises(InputError, match=r"net\.prototxt:7:\d+: .*MAXIMUM.*\(in layer 'pool'\)"):
        Net(path)

    path = write(
        tmp_path,
        INPUT + 'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n'
        'layer { name: "r2" type: "ReLU" bottom: "x" top: "y" }\n'
        'layer { name: "r3" type: "ReLU" bottom: "x" top: "y" }\n',
    )
    with pytest.raises(InputError, match=r":4: layer 'r3'.*'y' is produced by more than one"):
        Net(path)


def test_layer_errors_carry_the_line(tmp_path):
    # A shape error raised by a layer names the file and line through its context.
    path = write(
        tmp_path,
        INPUT
        + 'layer { name: "in2" type: "Input" top: "z" input_param { shape { dim: 5 dim: 3 } } }\n'
        'layer { name: "sum" type: "Eltwise" bottom: "x" bottom: "z" top: "s" }\n',
    )
    with pytest.raises(InputError, match=r"net\.prototxt:3: layer 'sum'"):
        Net(path)


def test_data_shapes_errors():
    text = INPUT + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n'
    with pytest.raises(InputError, match="data_shapes names"):
        Net(net_param(text), data_shapes={"y": (1,)})
    two = 'layer { name: "in" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 } } }\n'
    with pytest.raises(InputError, match=r"not for the other top\(s\) \['t'\]"):
        Net(net_param(two), data_shapes={"x": (3,)})
    net = Net(net_param(text), data_shapes={"x": (5, 3)})
    assert net.blobs["y"].shape == (5, 3)


def test_phase_argument_validation():
    with pytest.raises(InputError, match="unknown phase"):
        Net(net_param(INPUT), "VALIDATE")
    assert Net(net_param(INPUT), 0).phase == TRAIN
