"""Generation from a torch model: the PyTorch LeNet gives the workload list of the Caffe
LeNet prototxt, and so the same manifest and Verilog as ``barista generate`` on it; its
ONNX export gives the same layer passes through ``barista generate model.onnx``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from barista import cli
from barista.backends.plan import gemm_layers as prototxt_layers
from barista.manifest import MANIFEST_NAME, VERILOG_NAME, write_rtl_dir
from barista_base.errors import InputError
from caffe_bridge.net import Net

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: pip install 'barista[torch]'"
)

from barista.torch import convert, gemm_layers, generate  # noqa: E402

BATCH = 8  # the conftest's GENERATE_BATCH: lenet_rtl's batch


def test_lenet_layers_equal_the_prototxt(lenet: SimpleNamespace) -> None:
    shape = (64, 1, 28, 28)
    net = Net(str(lenet.prototxt(64)), "TRAIN")
    want = prototxt_layers(net)
    assert [layer.name for layer in want] == ["conv1", "conv2", "ip1", "ip2"]
    assert gemm_layers(lenet.TorchLeNet(), shape) == want
    # A converted model gives the same list, without running a GEMM on its backend.
    model, _ = convert(lenet.TorchLeNet(), "golden")
    assert gemm_layers(model, shape) == want
    assert model.conv1.backend.last_call == {}


def test_layers_of_shared_and_grouped_modules() -> None:
    conv = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2)
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), conv)
    first, second = gemm_layers(model, (2, 4, 8, 8))
    assert (first.name, second.name) == ("0", "0:1")
    assert (first.m, first.k, first.p, first.group) == (2, 18, 16, 2)
    assert (first.backward_data, second.backward_data) == (False, True)
    assert second.p == 4
    with pytest.raises(InputError, match="input shape"):
        gemm_layers(model, (4,))


def test_generate_writes_the_prototxt_manifest(
    lenet: SimpleNamespace, lenet_rtl: Path, tmp_path: Path
) -> None:
    design = generate(lenet.TorchLeNet(), (BATCH, 1, 28, 28), preset="tiny", name="LeNet")
    write_rtl_dir(design, tmp_path / "torch")
    for name in (MANIFEST_NAME, VERILOG_NAME):
        assert (tmp_path / "torch" / name).read_bytes() == (lenet_rtl / name).read_bytes()


def test_generate_from_onnx_export_has_the_prototxt_passes(
    lenet: SimpleNamespace, lenet_rtl: Path, tmp_path: Path
) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx is not installed: pip install 'barista[torch]'")
    model = tmp_path / "lenet.onnx"
    example = torch.zeros(BATCH, 1, 28, 28)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; it needs
        warnings.simplefilter("ignore", DeprecationWarning)  # no onnxscript
        torch.onnx.export(lenet.TorchLeNet(), (example,), str(model), dynamo=False)
    assert onnx.load(str(model)).graph.node[0].op_type == "Conv"
    assert cli.main(["generate", str(model), "--preset", "tiny", "-o", str(tmp_path / "onnx")]) == 0
    got = json.loads((tmp_path / "onnx" / MANIFEST_NAME).read_text())
    want = json.loads((lenet_rtl / MANIFEST_NAME).read_text())
    assert [layer["name"] for layer in got["layers"]] == ["conv1", "conv2", "ip1", "ip2"]
    assert got["layers"] == want["layers"]
    assert got["iteration"] == want["iteration"]
