"""The BVLC Caffe nets shipped in examples/ load in both phases with Caffe's shapes.

Each test lays out a temporary Caffe root (examples/mnist/mnist_train_lmdb, ...)
with small LMDBs of correctly shaped Datums and mean files, and runs from there,
since the prototxts name their sources relative to Caffe's root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caffe_bridge import Net, write_binaryproto
from caffe_bridge.datasets import example_dir

MNIST = ("examples/mnist/mnist_train_lmdb", "examples/mnist/mnist_test_lmdb")
CIFAR = ("examples/cifar10/cifar10_train_lmdb", "examples/cifar10/cifar10_test_lmdb")
IMAGENET = ("examples/imagenet/ilsvrc12_train_lmdb", "examples/imagenet/ilsvrc12_val_lmdb")


def _root(tmp_path: Path, monkeypatch, datum_lmdb, sources, chw, mean_file=None) -> Path:
    rng = np.random.default_rng(0)
    for src in sources:
        images = rng.integers(0, 256, size=(3, *chw), dtype=np.uint8)
        datum_lmdb(tmp_path / src, images, np.array([0, 1, 2]))
    if mean_file:
        (tmp_path / mean_file).parent.mkdir(parents=True, exist_ok=True)
        write_binaryproto(tmp_path / mean_file, np.full((1, *chw), 120.0, np.float32))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _shapes(net: Net) -> dict[str, tuple[int, ...]]:
    return {name: blob.shape for name, blob in net.blobs.items()}


@pytest.mark.parametrize("phase,batch", [("TRAIN", 64), ("TEST", 100)])
def test_lenet_train_test(tmp_path, monkeypatch, datum_lmdb, phase, batch):
    _root(tmp_path, monkeypatch, datum_lmdb, MNIST, (1, 28, 28))
    net = Net(example_dir("mnist") / "lenet_train_test.prototxt", phase, seed=1)
    s = _shapes(net)
    assert s["data"] == (batch, 1, 28, 28)
    assert s["conv1"] == (batch, 20, 24, 24)
    assert s["pool1"] == (batch, 20, 12, 12)
    assert s["conv2"] == (batch, 50, 8, 8)
    assert s["pool2"] == (batch, 50, 4, 4)
    assert s["ip1"] == (batch, 500)
    assert s["ip2"] == (batch, 10)
    assert s["loss"] == ()
    if phase == "TEST":
        # ip2 and label feed both Accuracy and the loss: Caffe's split layers.
        assert s["ip2_ip2_0_split_0"] == (batch, 10)
        assert s["label_mnist_1_split_1"] == (batch,)
        assert net.outputs == ["accuracy", "loss"]
    else:
        assert "accuracy" not in s
        assert net.outputs == ["loss"]
    assert net.params["conv1"][0].shape == (20, 1, 5, 5)
    assert net.params["ip1"][0].shape == (500, 800)
    out = net.forward()
    # The Data layer scaled the uint8 records into [0, 1).
    assert 0.0 <= net.blobs["data"].data.min() and net.blobs["data"].data.max() < 1.0
    assert np.isfinite(out["loss"])


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_lenet_deploy(phase):
    net = Net(example_dir("mnist") / "lenet.prototxt", phase)
    assert net.inputs == ["data"]
    assert net.outputs == ["prob"]
    assert net.blobs["data"].shape == (64, 1, 28, 28)
    assert net.blobs["ip1"].shape == (64, 500)
    assert net.blobs["prob"].shape == (64, 10)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_cifar10_quick(tmp_path, monkeypatch, datum_lmdb, phase):
    _root(
        tmp_path, monkeypatch, datum_lmdb, CIFAR, (3, 32, 32), "examples/cifar10/mean.binaryproto"
    )
    net = Net(example_dir("cifar10") / "cifar10_quick_train_test.prototxt", phase, seed=1)
    s = _shapes(net)
    assert s["conv1"] == (100, 32, 32, 32)
    assert s["pool1"] == (100, 32, 16, 16)
    assert s["conv2"] == (100, 32, 16, 16)
    assert s["pool2"] == (100, 32, 8, 8)
    assert s["conv3"] == (100, 64, 8, 8)
    assert s["pool3"] == (100, 64, 4, 4)
    assert net.params["ip1"][0].shape == (64, 1024)  # 1024 = 64 x 4 x 4
    assert s["ip2"] == (100, 10)
    net.forward()
    # Mean (120) subtracted from the records.
    data = net.blobs["data"].data
    assert data.min() >= -120 and data.max() <= 135 and data.min() < 0


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_cifar10_full(tmp_path, monkeypatch, datum_lmdb, phase):
    _root(
        tmp_path, monkeypatch, datum_lmdb, CIFAR, (3, 32, 32), "examples/cifar10/mean.binaryproto"
    )
    net = Net(example_dir("cifar10") / "cifar10_full_train_test.prototxt", phase, seed=1)
    s = _shapes(net)
    assert s["conv1"] == (100, 32, 32, 32)
    assert s["pool1"] == (100, 32, 16, 16)
    assert s["norm1"] == (100, 32, 16, 16)
    assert s["pool2"] == (100, 32, 8, 8)
    assert s["pool3"] == (100, 64, 4, 4)
    assert s["ip1"] == (100, 10)
    assert net.params["ip1"][0].shape == (10, 1024)


def _check_imagenet(net: Net, batch: int, caffenet: bool) -> None:
    s = _shapes(net)
    assert s["data"] == (batch, 3, 227, 227)
    assert s["conv1"] == (batch, 96, 55, 55)
    assert s["pool1"] == (batch, 96, 27, 27)
    assert s["conv2"] == (batch, 256, 27, 27)
    assert s["pool2"] == (batch, 256, 13, 13)
    assert s["conv3"] == (batch, 384, 13, 13)
    assert s["conv4"] == (batch, 384, 13, 13)
    assert s["conv5"] == (batch, 256, 13, 13)
    assert s["pool5"] == (batch, 256, 6, 6)
    assert s["fc6"] == (batch, 4096)
    assert s["fc8"] == (batch, 1000)
    assert net.params["conv2"][0].shape == (256, 48, 5, 5)  # group 2
    assert net.params["fc6"][0].shape == (4096, 9216)
    assert s["norm1"] == ((batch, 96, 27, 27) if caffenet else (batch, 96, 55, 55))


@pytest.mark.parametrize("model", ["bvlc_alexnet", "bvlc_reference_caffenet"])
def test_imagenet_nets_test_phase(tmp_path, monkeypatch, datum_lmdb, model):
    _root(
        tmp_path,
        monkeypatch,
        datum_lmdb,
        IMAGENET,
        (3, 256, 256),
        "data/ilsvrc12/imagenet_mean.binaryproto",
    )
    net = Net(example_dir(model) / "train_val.prototxt", "TEST", seed=1)
    _check_imagenet(net, 50, model == "bvlc_reference_caffenet")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bvlc_alexnet", "bvlc_reference_caffenet"])
def test_imagenet_nets_train_phase(tmp_path, monkeypatch, datum_lmdb, model):
    # Batch 256 of 3x227x227: about 3 GB of blobs, hence slow.
    _root(
        tmp_path,
        monkeypatch,
        datum_lmdb,
        IMAGENET,
        (3, 256, 256),
        "data/ilsvrc12/imagenet_mean.binaryproto",
    )
    net = Net(example_dir(model) / "train_val.prototxt", "TRAIN", seed=1)
    _check_imagenet(net, 256, model == "bvlc_reference_caffenet")


@pytest.mark.parametrize("model", ["bvlc_alexnet", "bvlc_reference_caffenet"])
def test_imagenet_nets_train_phase_with_data_shapes(tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)  # no dataset and no mean file here
    net = Net(
        example_dir(model) / "train_val.prototxt",
        "TRAIN",
        data_shapes={"data": (2, 3, 227, 227), "label": (2,)},
    )
    _check_imagenet(net, 2, model == "bvlc_reference_caffenet")
    out = net.forward()
    assert np.isfinite(out["loss"])


def test_data_shapes_without_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = Net(
        example_dir("mnist") / "lenet_train_test.prototxt",
        "TRAIN",
        data_shapes={"data": (8, 1, 28, 28), "label": (8,)},
    )
    assert net.blobs["conv1"].shape == (8, 20, 24, 24)
    assert net.layers[0].type_name == "Data"
    net.forward()
    assert not net.blobs["data"].data.any()  # the stand-in produces zeros
    net.backward()
    assert net.params["conv1"][0].diff.shape == (20, 1, 5, 5)


@pytest.mark.parametrize(
    "model,name,batch,prob",
    [
        ("cifar10", "cifar10_quick.prototxt", 1, (1, 10)),
        ("cifar10", "cifar10_full.prototxt", 1, (1, 10)),
        ("bvlc_alexnet", "deploy.prototxt", 10, (10, 1000)),
        ("bvlc_reference_caffenet", "deploy.prototxt", 10, (10, 1000)),
    ],
)
def test_deploy_nets(model, name, batch, prob):
    # The deploy forms: an Input layer instead of data, Softmax instead of the loss.
    net = Net(example_dir(model) / name, "TEST")
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    assert net.blobs["data"].shape[0] == batch and net.blobs["prob"].shape == prob
    if model != "cifar10":
        _check_imagenet_deploy(net, model == "bvlc_reference_caffenet")


def _check_imagenet_deploy(net: Net, caffenet: bool) -> None:
    s = _shapes(net)
    assert s["conv1"] == (10, 96, 55, 55) and s["pool5"] == (10, 256, 6, 6)
    assert s["norm1"] == ((10, 96, 27, 27) if caffenet else (10, 96, 55, 55))
    assert net.params["fc6"][0].shape == (4096, 9216)
