"""``barista train --devices N``: the GEMMs shared among Ray actors, bit-identical to one device.

A tiny LeNet-like net (two convolutions, an InnerProduct; batch 4 of 1x8x8 images) on the
``tiny`` preset's accelerator, whose 2x2 array cuts every pass into several output blocks
(and conv1's weight gradient into reduction chunks), trains for 3 iterations on one device
and on two: the logged losses and the final .caffemodel and .solverstate bytes must be
equal. One local Ray serves the whole module.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from barista import cli
from barista.backends.hardware import GoldenBackend
from barista.backends.plan import gemm_layers
from barista.data_parallel import DataParallelBackend, GemmDevice, check_devices
from barista.manifest import load_accelerator
from barista.ray_cluster import join_ray
from barista_base.errors import InputError
from barista_hw.plan import batch_split, plan_net
from caffe_bridge.net import Net

# One worker runs every test that starts Ray (parallel workers would race for its ports).
pytestmark = pytest.mark.xdist_group("ray")

REPO = Path(__file__).resolve().parents[2]

NET = """name: "TinyConv"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "train.txt" batch_size: 4 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 6 kernel_size: 2 weight_filler { type: "xavier" } } }
layer { name: "ip1" type: "InnerProduct" bottom: "conv2" top: "ip1"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""

SOLVER = """net: "net.prototxt"
base_lr: 0.1
momentum: 0.9
lr_policy: "fixed"
display: 1
max_iter: 3
snapshot_prefix: "snap/tiny"
random_seed: 42
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The net, its data and its accelerator (``rtl_out/tiny``), and one local Ray whose
    workers import this checkout."""
    import h5py

    d = tmp_path_factory.mktemp("dp")
    rng = np.random.default_rng(0)
    with h5py.File(d / "train.h5", "w") as f:
        f["data"] = rng.random((16, 1, 8, 8)).astype(np.float32)
        f["label"] = rng.integers(0, 3, 16).astype(np.float32)
    (d / "train.txt").write_text("train.h5\n")
    (d / "net.prototxt").write_text(NET)
    (d / "solver.prototxt").write_text(SOLVER)
    (d / "snap").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        assert cli.main(["generate", "net.prototxt", "--preset", "tiny", "-o", "rtl_out/tiny"]) == 0
        mp.setenv("PYTHONPATH", str(REPO))
        started = join_ray(num_cpus=2)
        try:
            yield d
        finally:
            if started:
                import ray

                ray.shutdown()


def _train(
    work: Path, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[list[str], bytes, bytes]:
    """Train in ``work`` with ``options``; the loss lines and the final snapshot's bytes
    (taken away, so the next run writes the same paths: the solver state names them)."""
    capsys.readouterr()
    argv = ["train", "--solver", "solver.prototxt", "--accelerator", "rtl_out/tiny", *options]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    if "--devices" in options:
        assert f"Sharing every GEMM among 2 {options[1]} devices" in out
    losses = [line for line in out.splitlines() if "loss =" in line]
    assert len(losses) >= 3
    snap = work / "snap" / "tiny_iter_3"
    files = [snap.with_suffix(suffix) for suffix in (".caffemodel", ".solverstate")]
    data = [f.read_bytes() for f in files]
    for f in files:
        f.unlink()
    return losses, data[0], data[1]


def test_every_pass_has_blocks_for_both_devices(work: Path) -> None:
    """Otherwise two devices would prove nothing: each pass is cut into >= 2 output blocks,
    and some reduction into chunks."""
    cfg = load_accelerator(work / "rtl_out/tiny").config
    shapes = {"data": (4, 1, 8, 8), "label": (4,)}
    net = Net(str(work / "net.prototxt"), "TRAIN", data_shapes=shapes)
    passes = plan_net(cfg, gemm_layers(net)).passes
    assert all(p.tiling.blocks_m * p.tiling.blocks_n >= 2 for p in passes)
    assert any(p.tiling.k_chunks > 1 for p in passes)


_ONE: dict[tuple[str, str], tuple[list[str], bytes, bytes]] = {}  # one device's runs


@pytest.mark.parametrize(
    ("backend", "rounding", "split"),
    [
        *((b, r, "auto") for b in ("golden", "rtl") for r in ("nearest-even", "stochastic")),
        # Weight gradients with the batch split: each device reads out its partial sums.
        ("golden", "stochastic", "images"),
        ("rtl", "stochastic", "images"),
        ("rtl", "nearest-even", "images"),
    ],
)
def test_two_devices_train_as_one_bit_for_bit(
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch,
    backend: str,
    rounding: str,
    split: str,
) -> None:
    monkeypatch.chdir(work)
    common = ("--backend", backend, "--rounding", rounding)
    if (backend, rounding) not in _ONE:
        _ONE[backend, rounding] = _train(work, capsys, *common)
    one = _ONE[backend, rounding]
    two = _train(work, capsys, *common, "--devices", "2", "--split-gradient", split)
    assert two[0] == one[0]
    assert two[1] == one[1]
    assert two[2] == one[2]


def test_the_cycle_model_splits_a_long_reduction_over_few_blocks(work: Path) -> None:
    """``auto``: conv1-like gradients (long reduction, one block) split the batch; the tiny
    net's (many blocks of a short reduction), and engines without the read-out, do not."""
    cfg = load_accelerator(work / "rtl_out/tiny").config
    assert batch_split(cfg, 2, 200, 2, 8, 2) == ((0, 4), (4, 8))
    assert batch_split(cfg, 3, 4, 24, 4, 2) is None
    assert batch_split(cfg, 2, 200, 2, 1, 2) is None  # no batch to split
    older = cfg.derive(raw_readout=False)  # as an accelerator generated before read-out
    assert batch_split(older, 2, 200, 2, 8, 2) is None
    with pytest.raises(InputError, match="--split-gradient images: the accelerator's fx8"):
        check_devices("golden", 2, {"accelerator": older}, "images")
    with pytest.raises(InputError, match="--split-gradient 'rows': use one of auto, images"):
        check_devices("golden", 2, None, "rows")


@pytest.mark.slow  # two simulated boards (their bridge is built once, into the cache)
def test_two_simulated_boards_train_as_one_bit_for_bit(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from boards.sim_board import SimulatedBoard

    monkeypatch.chdir(work)
    cfg = load_accelerator(work / "rtl_out/tiny").config
    runs = []
    # One board; two sharing blocks; two splitting the weight gradients' batch (read-outs).
    for devices, split in ((1, None), (2, "blocks"), (2, "images")):
        # A simulated board serves one connection: fresh ones per run.
        with SimulatedBoard(cfg) as b0, SimulatedBoard(cfg) as b1:
            ports = b0.url if devices == 1 else f"{b0.url},{b1.url}"
            more = ("--devices", "2", "--split-gradient", split) if split else ()
            common = ("--backend", "board", "--rounding", "stochastic", "--port", ports)
            runs.append(_train(work, capsys, *common, *more))
    assert runs[1] == runs[0]
    assert runs[2] == runs[0]
    golden = _train(work, capsys, "--backend", "golden", "--rounding", "stochastic")
    assert runs[0] == golden


class MeetingDevice(GemmDevice):
    """A device that, before computing its share, waits until the other device of the
    same GEMM has started too: sequential devices never meet (then it fails)."""

    def __init__(self, backend: str, options: dict, meeting: Any) -> None:
        super().__init__(backend, options)
        self.meeting = meeting

    def run_blocks(self, *args: Any) -> Any:
        import ray

        ticket = ray.get(self.meeting.arrive.remote())  # 1, 2 for the first GEMM, ...
        everyone = (ticket + 1) // 2 * 2
        deadline = time.monotonic() + 120  # a guard against a hang, not a speed test
        while ray.get(self.meeting.count.remote()) < everyone:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ticket {ticket}: the other device never ran at once")
            time.sleep(0.01)
        return super().run_blocks(*args)


class Meeting:
    def __init__(self) -> None:
        self.arrived = 0

    def arrive(self) -> int:
        self.arrived += 1
        return self.arrived

    def count(self) -> int:
        return self.arrived


@pytest.mark.parametrize("split", ["blocks", "images"])
def test_devices_run_at_the_same_time_and_return_one_devices_bits(work: Path, split: str) -> None:
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
    cfg = load_accelerator(work / "rtl_out/tiny").config
    meeting = ray.remote(Meeting).remote()
    dp = DataParallelBackend(
        "golden",
        2,
        accelerator=cfg,
        rounding="stochastic",
        device=(MeetingDevice, (meeting,)),
        split=split,
    )
    one = GoldenBackend(accelerator=cfg, rounding="stochastic")
    rng = np.random.default_rng(1)
    w, x, dy = (
        rng.standard_normal((4, 9)),
        rng.standard_normal((4, 9, 36)),
        rng.standard_normal((4, 4, 36)),
    )
    w, x, dy = (v.astype(np.float32) for v in (w, x, dy))
    try:
        for backend in (dp, one):
            backend.out = [  # type: ignore[attr-defined]
                backend.forward(w, x, layer="c"),
                backend.backward_data(w, dy, layer="c"),
                backend.weight_grad(dy, x, layer="c"),
            ]
    finally:
        dp.close()
    for got, want in zip(dp.out, one.out, strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(got, want)
    assert ray.get(meeting.count.remote()) == 6  # three GEMMs, two devices each


@pytest.mark.parametrize(
    "options, error",
    [
        (("--backend", "cpu"), "--devices 2: backend 'cpu' cannot share its GEMMs"),
        (("--backend", "device"), "--devices 2: backend 'device' cannot share its GEMMs"),
        (("--backend", "golden"), "--devices 2 with --backend golden needs --accelerator"),
        (
            ("--backend", "rtl", "--accelerator", "rtl_out/tiny", "--trace", "ip1,forward,0"),
            "--trace applies to one device, not to --devices 2",
        ),
        (
            ("--backend", "board", "--accelerator", "rtl_out/tiny", "--port", "/dev/null"),
            "--devices 2 with --backend board needs one --port per board (comma-separated), got 1",
        ),
    ],
)
def test_what_cannot_run_on_devices_is_refused_naming_the_option(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch, options, error: str
) -> None:
    monkeypatch.chdir(work)
    argv = ["train", "--solver", "solver.prototxt", *options, "--devices", "2"]
    assert cli.main(argv) == 2
    assert error in capsys.readouterr().err


def test_devices_must_be_positive(work: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(work)
    assert cli.main(["train", "--solver", "solver.prototxt", "--devices", "0"]) == 2
    assert "--devices must be at least 1, got 0" in capsys.readouterr().err
