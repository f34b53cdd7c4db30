"""LeNet twice: the Caffe example (examples/mnist/lenet_train_test.prototxt, its Data layers
replaced by an Input layer) and the same net written in PyTorch, with the Caffe net's weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

from caffe_bridge.backend import GemmBackend
from caffe_bridge.datasets import example_dir
from caffe_bridge.proto import caffe_pb2

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: pip install 'barista[torch]'"
)
nn = torch.nn

LENET = example_dir("mnist") / "lenet_train_test.prototxt"


class TorchLeNet(nn.Module):
    """LeNet as examples/mnist/lenet_train_test.prototxt has it, layer names included."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.ip1 = nn.Linear(800, 500)
        self.relu1 = nn.ReLU()
        self.ip2 = nn.Linear(500, 10)

    def forward(self, x: Any) -> Any:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.ip2(self.relu1(self.ip1(x.flatten(1))))


def lenet_input_prototxt(directory: Path, batch: int) -> Path:
    """The example LeNet with an Input layer (data, label) of ``batch`` in place of its
    Data layers."""
    net = caffe_pb2.NetParameter()
    text_format.Parse(LENET.read_text(), net)
    layers = [lp for lp in net.layer if lp.type != "Data"]
    del net.layer[:]
    data = net.layer.add(name="data", type="Input", top=["data", "label"])
    data.input_param.shape.add(dim=[batch, 1, 28, 28])
    data.input_param.shape.add(dim=[batch])
    net.layer.extend(layers)
    path = directory / f"lenet_input_{batch}.prototxt"
    path.write_text(text_format.MessageToString(net))
    return path


def copy_caffe_weights(model: nn.Module, params: dict[str, list[Any]]) -> None:
    """Load a Caffe net's weights (``net.params``) into the layers of the same names."""
    with torch.no_grad():
        for name, blobs in params.items():
            layer = getattr(model, name)
            layer.weight.copy_(torch.from_numpy(blobs[0].data))
            layer.bias.copy_(torch.from_numpy(blobs[1].data))


class Recorder(GemmBackend):
    """Passes every GEMM to ``inner`` and keeps (layer, pass, operands, result) copies."""

    def __init__(self, inner: GemmBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.keeps_columns = inner.keeps_columns
        self.calls: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]] = []

    def _record(self, layer: str, kind: str, run: Callable[[], np.ndarray], *ops: np.ndarray):
        out = run()
        self.calls.append((layer, kind, *(np.array(o) for o in ops), np.array(out)))
        return out

    def forward(self, w: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        return self._record(layer, "forward", lambda: self.inner.forward(w, x, layer=layer), w, x)

    def backward_data(self, w: np.ndarray, dy: np.ndarray, *, layer: str = "") -> np.ndarray:
        run = lambda: self.inner.backward_data(w, dy, layer=layer)  # noqa: E731
        return self._record(layer, "backward_data", run, w, dy)

    def weight_grad(self, dy: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        run = lambda: self.inner.weight_grad(dy, x, layer=layer)  # noqa: E731
        return self._record(layer, "weight_grad", run, dy, x)


@pytest.fixture
def lenet(tmp_path: Path) -> SimpleNamespace:
    """The helpers above: ``prototxt(batch)`` (written into the test's directory),
    ``TorchLeNet``, ``copy_weights`` and ``Recorder``."""
    return SimpleNamespace(
        prototxt=lambda batch: lenet_input_prototxt(tmp_path, batch),
        TorchLeNet=TorchLeNet,
        copy_weights=copy_caffe_weights,
        Recorder=Recorder,
    )


#: The batch of the generated LeNet accelerators (small: only the layer sizes change).
GENERATE_BATCH = 8


@pytest.fixture(scope="module")
def lenet_rtl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``barista generate`` on the Input-layer LeNet prototxt (batch :data:`GENERATE_BATCH`,
    preset ``tiny``): the directory with its manifest and Verilog."""
    from barista import cli

    work = tmp_path_factory.mktemp("lenet_rtl")
    proto = lenet_input_prototxt(work, GENERATE_BATCH)
    assert cli.main(["generate", str(proto), "--preset", "tiny", "-o", str(work / "rtl")]) == 0
    return work / "rtl"
