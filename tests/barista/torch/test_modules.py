"""barista.torch's layers against the Caffe path: LeNet in PyTorch with the Caffe LeNet's
weights gets every GEMM result of the three passes bit-identical on the same operands and
backend (golden), and trains with a Caffe-equivalent SGD to the same losses."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from barista.backends import get_backend
from caffe_bridge.net import Net
from caffe_bridge.proto import caffe_pb2
from caffe_bridge.solvers import get_solver

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: pip install 'barista[torch]'"
)

from barista.torch import BaristaConv2d, BaristaLinear, CaffeSGD, caffe_softmax_loss, convert  # noqa: E402

GEMM_LAYERS = ("conv1", "conv2", "ip1", "ip2")


def _batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1) and labels."""
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.float32)


def _replay(model, net: Net) -> None:
    """Each GEMM layer of ``model`` run forward and backward on the operands the Caffe
    layer of the same name had in the last pass of ``net``: its bottom and top gradient."""
    for name in GEMM_LAYERS:
        bottom = net.blobs[net.bottom_names[name][0]]
        top = net.blobs[net.top_names[name][0]]
        x = torch.from_numpy(bottom.data.copy())
        x.requires_grad_(name != "conv1")  # Caffe gives the data no gradient
        module = getattr(model, name)
        y = module(x if name.startswith("conv") else x.flatten(1))
        y.backward(torch.from_numpy(top.diff.copy()).view(y.shape))
        assert isinstance(module, BaristaConv2d | BaristaLinear)


def test_lenet_gemms_bit_identical_to_caffe(lenet: SimpleNamespace) -> None:
    batch = 4
    caffe = lenet.Recorder(get_backend("golden", rounding="stochastic"))
    net = Net(str(lenet.prototxt(batch)), "TRAIN", seed=5, backend=caffe)
    model = lenet.TorchLeNet()
    lenet.copy_weights(model, net.params)
    ours = lenet.Recorder(get_backend("golden", rounding="stochastic"))
    model, _ = convert(model, ours)
    rng = np.random.default_rng(0)
    for _ in range(2):  # the second pass starts from the scaling state the first left
        net.clear_param_diffs()
        model.zero_grad()
        net.blobs["data"].data[...], net.blobs["label"].data[...] = _batch(rng, batch)
        net.forward()
        net.backward()
        _replay(model, net)
        for name in GEMM_LAYERS:
            w, b = getattr(model, name).weight.grad, getattr(model, name).bias.grad
            # Caffe's weight diff is the weight-gradient GEMM's result (diffs were cleared).
            np.testing.assert_array_equal(w.numpy(), net.params[name][0].diff, name)
            np.testing.assert_allclose(b.numpy(), net.params[name][1].diff, rtol=1e-6)
    # Same calls, in the same order per layer and pass, same operands, same results.
    assert len(ours.calls) == len(caffe.calls) == 2 * (4 * 3 - 1)
    key = lambda call: (call[0], call[1])  # noqa: E731
    for kind in ("forward", "backward_data", "weight_grad"):
        for layer in GEMM_LAYERS:
            mine = [c for c in ours.calls if key(c) == (layer, kind)]
            theirs = [c for c in caffe.calls if key(c) == (layer, kind)]
            assert (
                len(mine)
                == len(theirs)
                == (0 if (layer, kind) == ("conv1", "backward_data") else 2)
            )
            for a, b in zip(mine, theirs, strict=True):
                for got, want in zip(a[2:], b[2:], strict=True):
                    np.testing.assert_array_equal(got, want, f"{layer} {kind}")


def _caffe_losses(lenet: SimpleNamespace, data: list, batch: int) -> tuple[list[float], dict]:
    """Losses of the Caffe LeNet trained by Caffe's SGD solver on golden, one per batch of
    ``data``, and its initial weights."""
    param = caffe_pb2.SolverParameter(
        net=str(lenet.prototxt(batch)),
        base_lr=0.01,
        momentum=0.9,
        weight_decay=0.0005,
        lr_policy="fixed",
        max_iter=len(data),
        random_seed=1701,
    )
    solver = get_solver(param, backend=get_backend("golden"))
    net = solver.net
    initial = {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}
    losses = []
    for images, labels in data:
        net.blobs["data"].data[...], net.blobs["label"].data[...] = images, labels
        solver.step(1)
        losses.append(float(net.blobs["loss"].data))
    return losses, initial


def _torch_losses(lenet: SimpleNamespace, data: list, initial: dict) -> list[float]:
    """The same in PyTorch: LeNet converted to golden, Caffe's softmax loss, trained by
    CaffeSGD set up as the solver (biases at lr_mult 2)."""
    model = lenet.TorchLeNet()
    with torch.no_grad():
        for name, (w, b) in initial.items():
            getattr(model, name).weight.copy_(torch.from_numpy(w))
            getattr(model, name).bias.copy_(torch.from_numpy(b))
    model, _ = convert(model, "golden")
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = CaffeSGD(
        [{"params": weights}, {"params": biases, "lr": 0.02}],
        lr=0.01,
        momentum=0.9,
        weight_decay=0.0005,
    )
    losses = []
    for images, labels in data:
        opt.zero_grad()
        out = model(torch.from_numpy(images))
        loss = caffe_softmax_loss(out, torch.from_numpy(labels).long())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    "batch, iterations",
    [
        (8, 5),
        pytest.param(64, 50, marks=pytest.mark.slow, id="lenet-64x50"),
    ],
)
def test_lenet_trains_to_caffe_losses(lenet: SimpleNamespace, batch: int, iterations: int) -> None:
    rng = np.random.default_rng(1)
    # A few batches seen repeatedly, so that the losses fall.
    batches = [_batch(rng, batch) for _ in range(3)]
    data = [batches[i % len(batches)] for i in range(iterations)]
    caffe, initial = _caffe_losses(lenet, data, batch)
    ours = _torch_losses(lenet, data, initial)
    np.testing.assert_allclose(ours, caffe, rtol=0, atol=1e-5)
    assert caffe[-1] < caffe[0]  # it trains
