"""``barista.onnx_model``: the GEMM layers of ONNX graphs built here with onnx.helper
(no torch needed): Conv with groups, Gemm either way round, MatMul by a weight, the
backward-data rule, symbolic input shapes and the errors that name the file and input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from barista.onnx_model import load_layers
from barista_base.errors import InputError
from barista_hw.plan import GemmLayer

onnx = pytest.importorskip("onnx", reason="onnx is not installed: pip install 'barista[torch]'")
helper, numpy_helper = onnx.helper, onnx.numpy_helper


def _weight(name: str, *shape: int) -> object:
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def _model(tmp_path: Path, batch: int | str = 2) -> Path:
    """x (batch, 4, 8, 8) -> grouped strided Conv -> Relu -> Flatten -> Gemm (transB) ->
    Gemm -> MatMul -> y; plus a MatMul of two activations (no layer)."""
    nodes = [
        helper.make_node(
            "Conv", ["x", "c.weight"], ["c"], group=2, strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "fc1.weight"], ["g1"], transB=1),
        helper.make_node("Gemm", ["g1", "w2"], ["g2"], name="second"),
        helper.make_node("MatMul", ["g2", "w3"], ["m"]),
        helper.make_node("MatMul", ["m", "m2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 4, 8, 8]),
            helper.make_tensor_value_info("m2", onnx.TensorProto.FLOAT, [3, 3]),
        ],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [
            _weight("c.weight", 6, 2, 3, 3),
            _weight("fc1.weight", 5, 96),
            _weight("w2", 5, 7),
            _weight("w3", 7, 3),
        ],
    )
    path = tmp_path / "small.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_layers_of_a_small_graph(tmp_path: Path) -> None:
    name, layers = load_layers(_model(tmp_path))
    assert name == "small"
    assert layers == [
        GemmLayer("c", "conv", batch=2, m=3, k=18, p=16, group=2, backward_data=False),
        GemmLayer("fc1", "fc", batch=2, m=5, k=96),
        GemmLayer("second", "fc", batch=2, m=7, k=5),
        GemmLayer("matmul5", "fc", batch=2, m=3, k=7),
    ]


def test_symbolic_batch_needs_a_data_shape(tmp_path: Path) -> None:
    path = _model(tmp_path, batch="N")
    with pytest.raises(
        InputError, match=r"small.onnx: input 'x' has a symbolic shape.*--data-shape x="
    ):
        load_layers(path)
    _, layers = load_layers(path, {"x": (16, 4, 8, 8)})
    assert [layer.batch for layer in layers] == [16] * 4
    with pytest.raises(InputError, match=r"--data-shape names \['data'\]; the inputs are x, m2"):
        load_layers(path, {"data": (1, 4, 8, 8)})


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such ONNX file"):
        load_layers(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff not a model")
    with pytest.raises(InputError, match="bad.onnx: not an ONNX model"):
        load_layers(bad)
