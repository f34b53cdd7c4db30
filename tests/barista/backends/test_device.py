"""``--backend device``: :class:`DeviceSolver` trains a tiny convolutional net on the
device model; its net holds the device's operand weights; a snapshot and resume is
bit-identical; stochastic rounding repeats; ``barista train --backend device`` runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from barista.backends import device as device_backend
from barista.backends.device import DeviceSolver
from barista.commands import generate
from barista.commands import train as train_cmd
from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=64, acc_depth=16)
TARGET = "ulx3s-85f"

NET = """
name: "TinyConv"
layer {
  name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "train.txt" batch_size: 8 }
}
layer {
  name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } }
}
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer {
  name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layer {
  name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } }
}
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""

SOLVER = """
net: "net.prototxt"
base_lr: 0.05
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.01
power: 0.75
display: 0
max_iter: {max_iter}
snapshot: {snapshot}
snapshot_prefix: "{prefix}"
random_seed: 7
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    """A learnable problem in the working directory: the label is the sign of a fixed
    projection of a 1x6x6 image."""
    import h5py

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 6, 6)).astype(np.float32)
    u = rng.standard_normal(36)
    with h5py.File("train.h5", "w") as f:
        f["data"] = x
        f["label"] = (x.reshape(64, -1) @ u > 0).astype(np.float32)
    Path("train.txt").write_text("train.h5\n")
    Path("net.prototxt").write_text(NET)
    return tmp_path


def _solver_file(name: str, *, max_iter: int = 20, snapshot: int = 0, prefix: str = "s") -> str:
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    Path(name).write_text(SOLVER.format(max_iter=max_iter, snapshot=snapshot, prefix=prefix))
    return name


def _solver(path: str, **kw) -> DeviceSolver:
    return DeviceSolver(path, accelerator=ACC, target=TARGET, log=lambda line: None, **kw)


def _losses(solver: DeviceSolver, iters: int) -> list[float]:
    """Run ``iters`` iterations; each one's loss (average_loss 1: the smoothed loss is it)."""
    losses: list[float] = []
    solver.add_callback(on_gradients_ready=lambda: losses.append(float(solver.smoothed_loss)))
    solver.step(iters)
    return losses


def _device_state(solver: DeviceSolver) -> dict[str, tuple[bytes, int]]:
    """Every weight, master and momentum tensor's integers and exponent."""
    m = solver.machine
    return {
        t["name"]: (m.tensor(t["name"]).tobytes(), m.scales.stored(t["name"]))
        for t in m.program.tensors
        if t["role"] in ("weight", "master", "momentum")
    }


def _assert_net_holds_the_operands(solver: DeviceSolver) -> None:
    m = solver.machine
    params = solver.net.learnable_params
    for layer, (w, b) in solver.dnet.params.items():
        for name, i in ((f"w:{layer}", w), (f"wb:{layer}", b)):
            value = m.tensor(name) * 2.0 ** -m.scales.stored(name)
            assert (
                params[i].data.astype(np.float64).tobytes()
                == value.reshape(params[i].data.shape).tobytes()
            ), name


def test_trains_and_the_net_holds_the_operand_weights(tiny) -> None:
    solver = _solver(_solver_file("solver.prototxt", max_iter=40, snapshot=10, prefix="snap/t"))
    _assert_net_holds_the_operands(solver)  # quantised at the upload
    first = solver.net.learnable_params[0].data.copy()
    losses = _losses(solver, 1)
    _assert_net_holds_the_operands(solver)
    assert not np.array_equal(first, solver.net.learnable_params[0].data)
    losses += _losses(solver, 9)  # ends with a snapshot (masters into Caffe's files)
    assert Path("snap/t_iter_10.caffemodel").is_file()
    _assert_net_holds_the_operands(solver)
    losses += _losses(solver, 30)
    assert all(np.isfinite(losses)) and len(set(losses)) > 1
    # The float32 CPU solver goes from 0.94 to 0.69 over these 40 iterations.
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8]), losses
    assert solver.counts is not None and "per iteration" in solver.device_report()


def test_snapshot_and_resume_is_bit_identical(tiny) -> None:
    full = _solver(_solver_file("full.prototxt", max_iter=12, snapshot=6, prefix="full/t"))
    want = _losses(full, 12)
    cut = _solver(_solver_file("cut.prototxt", max_iter=12, snapshot=6, prefix="half/t"))
    first = _losses(cut, 6)
    resumed = _solver("cut.prototxt")
    resumed.restore("half/t_iter_6.solverstate")
    _assert_net_holds_the_operands(resumed)
    assert first + _losses(resumed, 6) == want
    assert _device_state(resumed) == _device_state(full)
    assert resumed.machine.scales.state_dict() == full.machine.scales.state_dict()
    a, b = Path("full/t_iter_12.caffemodel"), Path("half/t_iter_12.caffemodel")
    assert a.read_bytes() == b.read_bytes()
    a, b = a.with_suffix(".solverstate"), b.with_suffix(".solverstate")
    assert a.read_bytes().replace(b"full/t_iter", b"half/t_iter") == b.read_bytes()


def test_stochastic_rounding_repeats_with_the_seed(tiny) -> None:
    path = _solver_file("solver.prototxt")
    runs = [_solver(path, rounding="stochastic") for _ in range(2)]
    a, b = (_losses(s, 4) for s in runs)
    assert a == b and _device_state(runs[0]) == _device_state(runs[1])
    nearest = _solver(path)
    assert _losses(nearest, 4) != a  # the rounding mode reaches the device


def test_host_layers_between_segments_train(tiny) -> None:
    """An in-place TanH and a Dropout the host runs between three device segments."""
    net = NET.replace('name: "relu" type: "ReLU"', 'name: "tanh" type: "TanH"')
    net = net.replace('bottom: "pool" top: "ip"', 'bottom: "pd" top: "ip"')
    drop = 'layer { name: "drop" type: "Dropout" bottom: "pool" top: "pd" }\nlayer {\n  name: "ip"'
    Path("net.prototxt").write_text(net.replace('layer {\n  name: "ip"', drop))
    solver = _solver(_solver_file("solver.prototxt", max_iter=40))
    assert solver.compiled.segments == [["conv"], ["pool"], ["ip"]]
    losses = _losses(solver, 40)
    _assert_net_holds_the_operands(solver)
    assert all(np.isfinite(losses)) and np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8]), losses


def test_barista_train_backend_device(tiny, tmp_path, capsys) -> None:
    out = tmp_path / "acc"
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    args = ["net.prototxt", "--array", "2x2", "--target", TARGET, "-o", str(out)]
    assert generate.run(parser.parse_args(args)) == 0
    path = _solver_file("solver.prototxt", max_iter=3)
    Path(path).write_text(Path(path).read_text().replace("display: 0", "display: 1"))
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    argv = ["--solver", path, "--backend", "device", "--accelerator", str(out)]
    capsys.readouterr()
    assert train_cmd.run(parser.parse_args(argv)) == 0
    printed = capsys.readouterr().out
    assert "Using the device backend" in printed
    assert "Device: exponents chosen by" in printed
    assert "Iteration 2, loss = " in printed and "Optimization Done." in printed
    assert "Device per iteration:" in printed


def _lmdb_net(transform: str) -> None:
    """``net.prototxt``: NET reading ``train_lmdb`` (batch 8) through a Data layer whose
    transform_param holds ``transform``."""
    data = (
        'layer {\n  name: "data" type: "Data" top: "data" top: "label"\n'
        f"  transform_param {{ {transform} }}\n"
        '  data_param { source: "train_lmdb" batch_size: 8 backend: LMDB }\n}'
    )
    head = NET[: NET.index("layer {")]
    Path("net.prototxt").write_text(head + data + NET[NET.index('layer {\n  name: "conv"') - 1 :])


def test_images_with_a_mean_cross_the_link_as_bytes(tmp_path, monkeypatch, datum_lmdb) -> None:
    """A Data layer's uint8 images with a mean: the host sends the bytes it read, the
    device subtracts the mean, and its input equals the data layer's output exactly."""
    from barista_hw.device import machine as device_machine
    from barista_hw.device.vector import VecOp

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, 1, 6, 6), dtype=np.uint8)
    datum_lmdb(tmp_path / "train_lmdb", images, labels=rng.integers(0, 2, 16))
    _lmdb_net("scale: 0.00390625 mean_value: 100")
    seen: list[np.ndarray] = []
    original = device_machine.VECTOR_OPS[VecOp.MEAN_SUB]

    def spy(m, inst, rnd) -> None:
        original(m, inst, rnd)
        name = m.program.tensors[inst["dst"]]["name"]
        seen.append(m.tensor(name) * 2.0 ** -m.scales.stored(name))

    monkeypatch.setitem(device_machine.VECTOR_OPS, VecOp.MEAN_SUB, spy)
    solver = _solver(_solver_file("solver.prototxt", max_iter=2))
    assert solver.dnet.wire8 == {"data": 8} and list(solver.dnet.means) == ["data"]
    solver.step(1)  # probe passes choose the first exponents, then the iteration runs
    got = seen[-1]
    want = (images[:8].astype(np.float64) - 100) / 256
    np.testing.assert_array_equal(got, want)
    link = solver.counts.sections["link/data"].link_bytes
    assert link == images[:8].size  # a byte a pixel


TEST_DATA = """
layer {
  name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TEST }
  hdf5_data_param { source: "train.txt" batch_size: 12 }
}
"""
ACCURACY = """layer {
  name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
  include { phase: TEST }
}
"""


def test_test_passes_run_on_the_device_in_chunks_of_its_batch(tiny) -> None:
    """A test batch of 12 through a program of batch 8: two chunks, the second padded; an
    image's logits do not depend on its chunk (nearest-even); the statistics, counts and
    exponents stay as they were."""
    train_only = '  hdf5_data_param { source: "train.txt" batch_size: 8 }\n'
    net = NET.replace(train_only, train_only + "  include { phase: TRAIN }\n")
    net = net.replace('layer {\n  name: "conv"', TEST_DATA + 'layer {\n  name: "conv"')
    net = net.replace('layer { name: "loss"', ACCURACY + 'layer { name: "loss"')
    Path("net.prototxt").write_text(net)
    path = _solver_file("solver.prototxt", max_iter=4)
    Path(path).write_text(Path(path).read_text() + "test_iter: 1\ntest_interval: 100\n")
    solver = _solver(path)
    solver.step(2)
    m = solver.machine
    scales, counts = m.scales.state_dict(), solver.counts
    test_net = solver.test_nets[0]
    solver._forward_pass(test_net)
    got = test_net.blobs["ip"].data.copy()
    assert m.scales.state_dict() == scales and solver.counts is counts
    x = test_net.blobs["data"].data.copy()
    out = m.scales.stored("ip")
    assert np.array_equal(np.rint(got * 2.0**out), got * 2.0**out)  # the device's integers
    for start in (0, 4):  # each 8-image window alone gives its images' logits
        solver.net.blobs["data"].data[...] = x[start : start + 8]
        host = device_backend.ForwardHost(solver)
        m.forward(host, solver.scalars(), iteration=solver.iter)
        np.testing.assert_array_equal(host.logits, got[start : start + 8])
    (name, accuracy), *_ = solver.test(0)
    assert name == "accuracy" and 0.0 <= accuracy <= 1.0


def test_a_preloaded_dataset_trains_as_the_streamed_batches(
    tmp_path, monkeypatch, datum_lmdb
) -> None:
    """``preload``: the images sit in the device's DRAM and each iteration FETCHes its batch
    there (20 records, batch 8: the third batch wraps around); losses, weights, masters
    and momentum equal the run whose batches cross the link, bit for bit, and so do the
    logits of a test pass (whose batch comes from the host); no image crosses the link."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (20, 1, 6, 6), dtype=np.uint8)
    datum_lmdb(tmp_path / "train_lmdb", images, labels=rng.integers(0, 2, 20))
    _lmdb_net("scale: 0.00390625 mean_value: 100")
    path = _solver_file("solver.prototxt", max_iter=4)
    streamed, preloaded = _solver(path), _solver(path, preload=True)
    ops = [i.op.name for i in preloaded.compiled.program.instructions]
    assert "FETCH" in ops and "HOST_IN" in ops  # the logits' gradient still comes in
    assert "FETCH" not in {i.op.name for i in streamed.compiled.program.instructions}
    assert _losses(preloaded, 4) == _losses(streamed, 4)
    assert _device_state(preloaded) == _device_state(streamed)
    assert "link/data" not in preloaded.counts.sections
    assert preloaded.counts.sections["fetch/data"].link_bytes == 0
    saved = streamed.counts.total.link_bytes - preloaded.counts.total.link_bytes
    assert saved == images[:8].size  # the batch, a byte a pixel
    logits = []
    for solver in (streamed, preloaded):
        solver._forward_pass(solver.net)  # the host's next batch, through the device
        logits.append(solver.net.blobs["ip"].data.copy())
    np.testing.assert_array_equal(logits[0], logits[1])


def test_preload_refuses_transformed_images(tmp_path, monkeypatch, datum_lmdb) -> None:
    monkeypatch.chdir(tmp_path)
    images = np.zeros((8, 1, 6, 6), dtype=np.uint8)
    datum_lmdb(tmp_path / "train_lmdb", images, labels=np.zeros(8, dtype=int))
    _lmdb_net("scale: 0.00390625 mirror: true")
    with pytest.raises(InputError, match="layer data crops or mirrors"):
        _solver(_solver_file("solver.prototxt", max_iter=1), preload=True)
