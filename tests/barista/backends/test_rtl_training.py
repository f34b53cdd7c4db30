"""RTL in the loop: generated accelerators run real layer passes and train LeNet.

* Issue "accelerator generation": the accelerator generated for LeNet (and
  cifar10_quick) runs each Convolution/InnerProduct pass (forward,
  backward-data, weight-gradient) on the Verilated RTL with results
  bit-identical to the golden model of the same accelerator, and the cycles the
  RTL takes are within 5% of the cycle model of :mod:`barista_hw.plan`.
* Issue "RTL in the training loop": ``barista train --backend rtl`` gives the
  same losses and final weights, bit for bit, as ``--backend golden``.

Small batches by default (CI); ``BARISTA_FULL=1`` uses LeNet's batch of 64.
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from barista import cli
from barista.backends.hardware import GoldenBackend
from barista.backends.plan import gemm_layers
from barista.backends.rtl import RtlBackend
from barista.backends.rtl_formats import rtl_engine_format
from barista.manifest import load_accelerator, write_rtl_dir
from barista_hw.generate import generate
from barista_hw.plan import plan_net
from caffe_bridge.datasets import example_dir, write_digits
from caffe_bridge.net import Net

FULL = os.environ.get("BARISTA_FULL") == "1"
BATCH = 64 if FULL else 2
TARGET = "ulx3s-45f"  # a mid-sized array keeps the Verilator build and the cycles modest


NETS = {
    "lenet": (example_dir("mnist") / "lenet_train_test.prototxt", (1, 28, 28)),
    "cifar10_quick": (example_dir("cifar10") / "cifar10_quick_train_test.prototxt", (3, 32, 32)),
}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["lenet", "cifar10_quick"])
def test_generated_accelerator_runs_layer_passes(which: str, tmp_path: Path) -> None:
    proto, image = NETS[which]
    shapes = {"data": (BATCH, *image), "label": (BATCH,)}
    layers = gemm_layers(Net(str(proto), "TRAIN", data_shapes=shapes))
    out = tmp_path / which
    cfg = write_rtl_dir(generate(layers, target=TARGET, fmt="fx16", name=which), out).config

    rtl = RtlBackend(accelerator=load_accelerator(out), rounding="stochastic")
    golden = GoldenBackend(accelerator=cfg, rounding="stochastic")
    runs = []
    for backend in (rtl, golden):
        net = Net(str(proto), "TRAIN", data_shapes=shapes, seed=7, backend=backend)
        rng = np.random.default_rng(3)
        net.blobs["data"].data[...] = rng.random(net.blobs["data"].shape)
        net.blobs["label"].data[...] = rng.integers(0, 10, BATCH)
        net.forward()
        net.backward()
        runs.append(net)
    for name in runs[0].blobs:
        np.testing.assert_array_equal(runs[0].blobs[name].data, runs[1].blobs[name].data, name)
        np.testing.assert_array_equal(runs[0].blobs[name].diff, runs[1].blobs[name].diff, name)
    for name, params in runs[0].params.items():
        for i, p in enumerate(params):
            np.testing.assert_array_equal(p.diff, runs[1].params[name][i].diff, f"{name}[{i}]")

    predicted = {
        (p.workload.layer, p.workload.kind.value): p.cycles for p in plan_net(cfg, layers).passes
    }
    report = rtl.cycle_report()
    assert {(r["layer"], r["pass"]) for r in report.rows()} == set(predicted)
    for row in report.rows():
        assert row["source"] == "rtl"
        model = predicted[(row["layer"], row["pass"])]
        assert abs(row["cycles"] - model) <= 0.05 * model, (row, model)


def _solver(work: Path, name: str, net: Path) -> Path:
    text = (work / "examples/mnist/lenet_solver.prototxt").read_text()
    text = re.sub(r'net: ".*"', f'net: "{net}"', text)
    text = re.sub(r"display: \d+", "display: 1", text)
    text = re.sub(r"test_iter: \d+", "test_iter: 2", text)
    text = re.sub(r'snapshot_prefix: ".*"', f'snapshot_prefix: "{work / name}"', text)
    text += "random_seed: 1701\n"  # the same initial weights in both runs
    path = work / f"{name}_solver.prototxt"
    path.write_text(text)
    return path


def _small_lenet(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The digits data in ``work`` (the working directory now) and the unmodified LeNet,
    with its TRAIN batch made small when not FULL."""
    write_digits(work)
    monkeypatch.chdir(work)
    net = work / "lenet_small.prototxt"
    text = (work / "examples/mnist/lenet_train_test.prototxt").read_text()
    net.write_text(
        text.replace("batch_size: 64", f"batch_size: {BATCH}").replace(
            "batch_size: 100", "batch_size: 10"
        )
    )
    return net


@pytest.mark.slow
def test_lenet_trains_bit_identically_on_rtl_and_golden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    net = _small_lenet(tmp_path, monkeypatch)
    assert (
        cli.main(
            ["generate", str(net), "--target", TARGET, "--format", "fx16", "-o", "rtl_out/lenet"]
        )
        == 0
    )
    losses = {}
    for backend in ("golden", "rtl"):
        capsys.readouterr()
        assert (
            cli.main(
                [
                    "train",
                    "--solver",
                    str(_solver(tmp_path, backend, net)),
                    "--backend",
                    backend,
                    "--accelerator",
                    "rtl_out/lenet",
                    "--rounding",
                    "stochastic",
                    "--iterations",
                    "20",
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        losses[backend] = re.findall(r"Iteration (\d+), loss = (\S+)", out)
        if backend == "rtl":
            assert "PE util" in out and "iteration" in out  # the cycle report
    assert len(losses["rtl"]) >= 20
    assert losses["rtl"] == losses["golden"]
    weights = [(tmp_path / f"{b}_iter_20.caffemodel").read_bytes() for b in ("golden", "rtl")]
    assert weights[0] == weights[1]


@pytest.mark.slow
# MXFP8 over the whole scale range: its three engines' first Verilator build takes minutes.
@pytest.mark.parametrize(
    "fmt",
    [
        "e4m3",
        # Formats per pass: one engine reading E4M3 W and X and E5M2 dY per command.
        "fwd=e4m3,grad=e5m2",
        pytest.param(
            "mxfp8_e4m3",
            marks=pytest.mark.skipif(
                not FULL, reason="the full form (BARISTA_FULL=1): minutes of builds"
            ),
        ),
    ],
)
def test_lenet_trains_bit_identically_in_e4m3_on_rtl_and_golden(
    fmt: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--backend rtl --format e4m3`` (a minifloat engine with float32 results; MXFP8: an MX
    engine over the whole scale range; formats per pass: a per-pass engine) against
    ``--backend golden`` in the same format: the same losses, .caffemodel and .solverstate
    bytes."""
    net = _small_lenet(tmp_path, monkeypatch)
    engine = rtl_engine_format(fmt).name  # e4m3_fp32_nosat, fwd=e4m3_fp32,grad=e5m2_fp32_nosat
    generate_args = ["generate", str(net), "--target", TARGET, "--format", engine]
    assert cli.main([*generate_args, "--array", "2x2", "-o", "rtl_out/lenet_fp"]) == 0
    iterations = "20" if FULL else "3"
    losses = {}
    for backend in ("golden", "rtl"):
        capsys.readouterr()
        extra = ["--accelerator", "rtl_out/lenet_fp"] if backend == "rtl" else []
        # Prefixes of one length: the solverstate names its caffemodel.
        args = ["train", "--solver", str(_solver(tmp_path, f"fp{backend[0]}", net))]
        args += ["--backend", backend, "--format", fmt, "--iterations", iterations, *extra]
        assert cli.main(args) == 0
        losses[backend] = re.findall(r"Iteration (\d+), loss = (\S+)", capsys.readouterr().out)
    assert len(losses["rtl"]) >= int(iterations) and losses["rtl"] == losses["golden"]
    for ext in ("caffemodel", "solverstate"):
        golden, rtl = (tmp_path / f"fp{b}_iter_{iterations}.{ext}" for b in "gr")
        assert golden.read_bytes() == rtl.read_bytes().replace(b"fpr_iter", b"fpg_iter"), ext
