"""``barista train`` / ``barista test`` / ``barista plot`` end to end on a tiny HDF5-fed net.

The data set is linearly separable (label = sign of a fixed projection), so a
small net reaches high accuracy in a few dozen iterations; the net, solver
and data are written to a temporary directory, which is the working
directory (paths in Caffe's files are relative to it).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from barista.commands import plot as plot_cmd
from barista.commands import test as test_cmd
from barista.commands import train as train_cmd
from barista_base.errors import InputError
from caffe_bridge.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[3]
DIM = 8

NET = """
name: "TinyNet"
layer {{
  name: "data" type: "HDF5Data" top: "data" top: "label"
  include {{ phase: TRAIN }}
  hdf5_data_param {{ source: "train.txt" batch_size: {batch} shuffle: true }}
}}
layer {{
  name: "data" type: "HDF5Data" top: "data" top: "label"
  include {{ phase: TEST }}
  hdf5_data_param {{ source: "test.txt" batch_size: 20 }}
}}
layer {{
  name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: {hidden} weight_filler {{ type: "xavier" }} }}
}}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{
  name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param {{ dropout_ratio: 0.1 }}
}}
layer {{
  name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "xavier" }} }}
}}
layer {{
  name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include {{ phase: TEST }}
}}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

SOLVER = """
net: "net.prototxt"
{tests}
base_lr: 0.05
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.001
power: 0.75
display: {display}
max_iter: {max_iter}
snapshot: {snapshot}
snapshot_prefix: "{prefix}"
random_seed: 42
{extra}
"""


def _write_data(d: Path) -> None:
    import h5py

    rng = np.random.default_rng(0)
    u = rng.standard_normal(DIM)
    for name, rows in (("train", 160), ("test", 100)):
        x = rng.standard_normal((rows, DIM)).astype(np.float32)
        y = (x @ u > 0).astype(np.float32)
        with h5py.File(d / f"{name}.h5", "w") as f:
            f["data"] = x
            f["label"] = y
        (d / f"{name}.txt").write_text(f"{name}.h5\n")


def _setup(
    d: Path,
    *,
    batch: int = 16,
    hidden: int = 16,
    prefix: str = "snap/tiny",
    max_iter: int = 60,
    snapshot: int = 0,
    display: int = 10,
    test_interval: int = 20,
    extra: str = "",
    name: str = "solver.prototxt",
) -> Path:
    if not (d / "train.h5").exists():
        _write_data(d)
    (d / "net.prototxt").write_text(NET.format(batch=batch, hidden=hidden))
    Path(d / prefix).parent.mkdir(parents=True, exist_ok=True)
    solver = d / name
    tests = f"test_iter: 5\ntest_interval: {test_interval}" if test_interval else ""
    solver.write_text(
        SOLVER.format(
            max_iter=max_iter,
            snapshot=snapshot,
            display=display,
            prefix=prefix,
            tests=tests,
            extra=extra,
        )
    )
    return solver


def _parse(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"barista {module.NAME}")
    module.add_arguments(parser)
    return parser.parse_args(argv)


def _main(module, argv: list[str]) -> int:
    """Run a subcommand as the ``barista`` command does: InputError -> one line, status 2."""
    try:
        return module.run(_parse(module, argv))
    except InputError as exc:
        print(f"barista {module.NAME}: error: {exc}", file=sys.stderr)
        return 2


def _barista(*argv: str) -> list[str]:
    """The command line of a real ``barista`` process for one subcommand."""
    return [sys.executable, "-m", "barista", *argv]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _blobs(model: Path) -> dict[str, list[bytes]]:
    net = caffe_pb2.NetParameter.FromString(model.read_bytes())
    return {
        layer.name: [np.asarray(b.data, np.float32).tobytes() for b in layer.blobs]
        for layer in net.layer
        if len(layer.blobs)
    }


# -- end to end --------------------------------------------------------------------------


def test_train_prints_caffe_lines_learns_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path)
    status = _main(train_cmd, ["--solver", "solver.prototxt", "--plot", "curves.png"])
    out, err = capsys.readouterr()
    assert status == 0, err
    for pattern in (
        r"^Iteration 0, loss = [\d.]+$",
        r"^    Train net output #0: loss = [\d.]+ \(\* 1 = [\d.]+ loss\)$",
        r"^Iteration 0, Testing net \(#0\)$",
        r"^    Test net output #0: accuracy = [\d.]+$",
        r"^    Test net output #1: loss = [\d.]+ \(\* 1 = [\d.]+ loss\)$",
        r"^Iteration 10, lr = [\d.e-]+$",
        r"^Snapshotting solver state to binary proto file snap/tiny_iter_60\.solverstate$",
        r"^Optimization Done\.$",
    ):
        assert re.search(pattern, out, re.M), pattern
    accuracies = [float(a) for a in re.findall(r"Test net output #0: accuracy = ([\d.]+)", out)]
    assert len(accuracies) == 4  # iterations 0, 20, 40 and the final test at 60
    assert accuracies[-1] >= 0.9 > accuracies[0]
    png = (tmp_path / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    (tmp_path / "train.log").write_text(out)

    # barista test on the trained weights: per-batch lines, then the means.
    status = _main(
        test_cmd,
        [
            "--model",
            "net.prototxt",
            "--weights",
            "snap/tiny_iter_60.caffemodel",
            "--iterations",
            "5",
        ],
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    assert len(re.findall(r"^Batch \d, accuracy = [\d.]+$", out, re.M)) == 5
    final = float(re.search(r"^accuracy = ([\d.]+)$", out, re.M)[1])
    assert final == pytest.approx(accuracies[-1], abs=1e-6)  # the solver's final test, same data
    assert re.search(r"^loss = [\d.]+ \(\* 1 = [\d.]+ loss\)$", out, re.M)

    # barista plot from the saved log.
    assert _main(plot_cmd, ["train.log", "--out", "replot.png"]) == 0
    assert (tmp_path / "replot.png").read_bytes().startswith(b"\x89PNG")


def test_fpga_solver_mode_selects_golden(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path, max_iter=2, test_interval=0, display=1, extra="solver_mode: FPGA")
    assert _main(train_cmd, ["--solver", "solver.prototxt", "--format", "fx16"]) == 0
    assert "Using the golden backend (fmt=fx16)" in capsys.readouterr().out
    assert _main(train_cmd, ["--solver", "solver.prototxt", "--backend", "cpu"]) == 0
    assert "Using the cpu backend" in capsys.readouterr().out
    argv = ["--solver", "solver.prototxt", "--format", "fx16.12", "--scaling", "static"]
    assert _main(train_cmd, argv) == 0
    assert "Using the golden backend (fmt=fx16.12, scaling=static)" in capsys.readouterr().out
    argv = ["--solver", "solver.prototxt", "--format", "e4m3,grad=e5m2"]
    assert _main(train_cmd, argv) == 0
    assert "Using the golden backend (fmt=e4m3,grad=e5m2)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--solver", "missing.prototxt"], r"missing\.prototxt: solver file not found"),
        (["--solver", "bad.prototxt"], r"bad\.prototxt:2:\d+ : .*no field named \"bsae_lr\""),
        (["--solver", "nodata.prototxt"], r"nodata\.txt"),
        (["--solver", "solver.prototxt", "--format", "fx8"], r"--format applies to hardware"),
        (
            ["--solver", "solver.prototxt", "--format", "fx8", "--rounding", "floor"],
            r"--format and --rounding apply to hardware",
        ),
        (["--solver", "solver.prototxt", "--snapshot", "none.solverstate"], r"none\.solverstate"),
        (["--solver", "solver.prototxt", "--scaling", "static"], r"--scaling applies to hardware"),
        (
            ["--solver", "solver.prototxt", "--backend", "device", "--scaling", "static"],
            r"--scaling applies to the golden, rtl and board backends",
        ),
        (
            ["--solver", "solver.prototxt", "--backend", "golden", "--scaling", "fixed"],
            r"unknown scaling 'fixed': use dynamic or static",
        ),
        (
            ["--solver", "solver.prototxt", "--backend", "golden", "--format", "e4m3,grad=e9m9"],
            r"format 'e4m3,grad=e9m9': grad: unknown number format 'e9m9'",
        ),
        (
            [
                *("--solver", "solver.prototxt", "--backend", "rtl"),
                *("--format", "mxfp8_e4m3,grad=mxfp8_e5m2"),
            ],
            r"--format fwd=mxfp8_e4m3,grad=mxfp8_e5m2: .* MX formats per pass run on golden only",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path)
    (tmp_path / "bad.prototxt").write_text('net: "net.prototxt"\nbsae_lr: 0.1\n')
    (tmp_path / "nodata.prototxt").write_text(
        'net: "nodata_net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1\n'
    )
    (tmp_path / "nodata_net.prototxt").write_text(
        (tmp_path / "net.prototxt").read_text().replace("train.txt", "nodata.txt")
    )
    assert _main(train_cmd, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_nan_stops_training_and_keeps_last_snapshot(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # An exploding learning rate ("exp" with gamma > 1) makes the loss overflow.
    solver = _setup(tmp_path, snapshot=2, max_iter=200, test_interval=0, display=1)
    text = solver.read_text().replace(
        'lr_policy: "inv"\ngamma: 0.001', 'lr_policy: "exp"\ngamma: 1000'
    )
    solver.write_text(text)
    status = _main(train_cmd, ["--solver", "solver.prototxt"])
    err = capsys.readouterr().err
    assert status == 1
    m = re.search(r"iteration (\d+): .*non-finite.*\(last snapshot: (\S+)\)", err)
    assert m, err
    bad, last = int(m[1]), Path(m[2])
    assert last.is_file() and int(re.search(r"_iter_(\d+)", last.name)[1]) <= bad
    assert not list(tmp_path.glob("snap/*.tmp"))
    state = caffe_pb2.SolverState.FromString(last.read_bytes())
    for blobs in _blobs(Path(state.learned_net)).values():
        for b in blobs:
            assert np.isfinite(np.frombuffer(b, np.float32)).all()


CONV_NET = """
name: "TinyLeNet"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "images.txt" batch_size: 16 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 6 kernel_size: 2 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 16 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""


@pytest.mark.parametrize("backend", ["cpu", "golden"])
def test_divergence_stops_every_backend_with_one_line(tmp_path, backend):
    """``base_lr: 1e6`` on a small conv net: the loss and the gradients overflow. Every
    backend stops with status 1 and one line naming the iteration and the first
    non-finite layer output (the golden backend used to end in a traceback when an
    operand of its integer GEMMs was no longer finite)."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["data"] = rng.random((64, 1, 12, 12)).astype(np.float32)
        f["label"] = rng.integers(0, 3, 64).astype(np.float32)
    (tmp_path / "images.txt").write_text("images.h5\n")
    (tmp_path / "net.prototxt").write_text(CONV_NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 1e6\nmomentum: 0.9\nweight_decay: 0.0005\n'
        'lr_policy: "fixed"\nmax_iter: 30\ndisplay: 1\nrandom_seed: 1\n'
    )
    run = subprocess.run(
        [*_barista("train", "--solver", "solver.prototxt", "--backend", backend)],
        cwd=tmp_path,
        env=dict(_env(), PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert re.fullmatch(
        r"barista train: error: iteration \d+: loss is nan; first non-finite output: "
        r"layer '\w+' top '\w+'; training stopped \(no snapshot was written\)",
        run.stderr.strip(),
    ), run.stderr


# -- kill and resume -------------------------------------------------------------------


def test_kill_and_resume_is_bit_identical(tmp_path):
    """SIGKILL a real `barista train` after a snapshot, resume from the last snapshot on
    disk, and compare the final weights and history with an uninterrupted run."""
    common = dict(batch=32, hidden=256, max_iter=300, snapshot=25, display=1, test_interval=50)
    _setup(tmp_path, prefix="full/tiny", name="full.prototxt", **common)
    _setup(tmp_path, prefix="cut/tiny", name="cut.prototxt", **common)

    full = subprocess.run(
        _barista("train", "--solver", "full.prototxt"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr

    proc = subprocess.Popen(
        _barista("train", "--solver", "cut.prototxt"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # The snapshot line is printed before the file is written: kill on the line after.
        seen = False
        for line in proc.stdout:
            if seen:
                proc.send_signal(signal.SIGKILL)
                break
            seen = "Snapshotting solver state" in line and "_iter_100." in line
    finally:
        proc.stdout.close()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert not (tmp_path / "cut/tiny_iter_300.caffemodel").exists()

    def iteration(p: Path) -> int:
        return int(re.search(r"_iter_(\d+)\.solverstate$", p.name)[1])

    last = max((tmp_path / "cut").glob("*.solverstate"), key=iteration)
    assert 100 <= iteration(last) < 300
    resumed = subprocess.run(
        _barista("train", "--solver", "cut.prototxt", "--snapshot", f"cut/{last.name}"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr

    a, b = tmp_path / "full/tiny_iter_300.caffemodel", tmp_path / "cut/tiny_iter_300.caffemodel"
    assert _blobs(a) == _blobs(b)
    assert a.read_bytes() == b.read_bytes()
    sa = caffe_pb2.SolverState.FromString(
        (tmp_path / "full/tiny_iter_300.solverstate").read_bytes()
    )
    sb = caffe_pb2.SolverState.FromString((tmp_path / "cut/tiny_iter_300.solverstate").read_bytes())
    assert [h.SerializeToString() for h in sa.history] == [
        h.SerializeToString() for h in sb.history
    ]
    # The test scores printed after the resume point match too.
    tail = f"Iteration {iteration(last) + 50 - iteration(last) % 50}, Testing net"
    assert (
        full.stdout[full.stdout.index(tail) :].split("Snapshotting")[0]
        == (resumed.stdout[resumed.stdout.index(tail) :].split("Snapshotting")[0])
    )


@pytest.mark.slow
def test_rtl_backend_without_accelerator_generates_one_into_the_cache(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARISTA_CACHE", str(tmp_path / "cache"))
    _setup(tmp_path, max_iter=1, test_interval=0, display=1)
    argv = ["--solver", "solver.prototxt", "--backend", "rtl", "--target", "icebreaker"]
    assert _main(train_cmd, argv) == 0
    first = capsys.readouterr().out
    entries = list((tmp_path / "cache" / "accelerators").iterdir())
    assert len(entries) == 1 and (entries[0] / "manifest.json").is_file()
    assert f"Generated the accelerator for TinyNet on icebreaker into {entries[0]}" in first
    assert f"Using the rtl backend (accelerator={entries[0]})" in first
    assert _main(train_cmd, argv) == 0
    again = capsys.readouterr().out
    assert (
        f"Using the accelerator generated earlier for TinyNet on icebreaker: {entries[0]}" in again
    )
    loss = [line for line in first.splitlines() if "loss =" in line]
    assert loss and loss == [line for line in again.splitlines() if "loss =" in line]
    assert _main(train_cmd, [*argv[:3], "golden", "--target", "icebreaker"]) == 2
    assert "--target applies to the rtl and board backends" in capsys.readouterr().err


# -- the rtl backend's waveform --------------------------------------------------------


@pytest.mark.slow
def test_rtl_trace_counts_iterations_as_the_log_and_says_where(tmp_path, monkeypatch, capsys):
    from barista import cli

    monkeypatch.chdir(tmp_path)
    _setup(tmp_path, max_iter=3, test_interval=2, display=1)
    assert cli.main(["generate", "net.prototxt", "--preset", "tiny", "-o", "rtl_out/tiny"]) == 0
    train = ["train", "--backend", "rtl", "--accelerator", "rtl_out/tiny"]
    capsys.readouterr()

    # Iteration 0 is the log's first ("Iteration 0, loss = ..."): its waveform is written.
    assert cli.main([*train, "--solver", "solver.prototxt", "--trace", "ip2,forward,0"]) == 0
    out = capsys.readouterr().out
    fst = Path("build/traces/ip2-forward-it0.fst")
    assert f"Wrote the waveform of layer ip2, forward pass, iteration 0: {fst}\n" in out
    assert (tmp_path / fst).stat().st_size > 100
    assert re.search(r"^Iteration 0, loss = ", out, re.M)

    # max_iter 3 runs iterations 0 to 2: iteration 3 is refused before building or training.
    assert cli.main([*train, "--solver", "solver.prototxt", "--trace", "ip2,forward,3"]) == 2
    out, err = capsys.readouterr()
    assert err == (
        "barista train: error: trace ip2,forward,3: iteration 3 is not run (training runs "
        "iterations 0 to 2, counted from 0 as in the log)\n"
    )
    assert "Solving" not in out and "Verilated" not in out

    # A pass that never runs (ip1 frozen: no weight gradient) shows at the end: status 1,
    # after a complete training.
    frozen = (
        (tmp_path / "net.prototxt")
        .read_text()
        .replace('top: "ip1"\n', 'top: "ip1"\n  param { lr_mult: 0 } param { lr_mult: 0 }\n', 1)
    )
    (tmp_path / "frozen.prototxt").write_text(frozen)
    solver = (tmp_path / "solver.prototxt").read_text().replace("net.prototxt", "frozen.prototxt")
    (tmp_path / "frozen_solver.prototxt").write_text(solver)
    assert (
        cli.main([*train, "--solver", "frozen_solver.prototxt", "--trace", "ip1,gradient,1"]) == 1
    )
    out, err = capsys.readouterr()
    assert "Using the cached build of the Verilated accelerator (" in out
    assert "Building" not in out
    assert "Optimization Done." in out
    assert err.splitlines()[-1] == (
        "barista train: error: --trace ip1,gradient,1: no waveform written: layer 'ip1' never "
        "ran its gradient pass on the RTL"
    )
    assert not list((tmp_path / "build/traces").glob("ip1-*"))


def test_preload_applies_to_the_device_backend_only(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path, max_iter=1, test_interval=0)
    argv = ["--solver", "solver.prototxt", "--backend", "golden", "--preload"]
    assert _main(train_cmd, argv) == 2
    assert "--preload applies to --backend device only" in capsys.readouterr().err


def test_device_backend_without_accelerator_takes_the_device_design_at_the_solvers_batch(
    tmp_path, monkeypatch, capsys
):
    import barista.device_net

    monkeypatch.chdir(tmp_path)
    _setup(tmp_path, batch=8, max_iter=1, test_interval=0)
    asked = []

    def design(net, *, target, fmt):
        asked.append((net.blobs["data"].shape[0], target, fmt))
        raise InputError("stop here")

    monkeypatch.setattr(barista.device_net, "device_design", design)
    argv = ["--solver", "solver.prototxt", "--backend", "device", "--target", "ulx3s-12f"]
    assert _main(train_cmd, argv) == 2
    assert "stop here" in capsys.readouterr().err
    assert asked == [(8, "ulx3s-12f", None)]
