"""``barista info`` and ``barista time``; what every command shares: a closed stdout, the
backends' names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from barista.backends import BACKEND_HELP, BACKENDS, SOLVER_HELP, get_backend
from barista.cli import BROKEN_PIPE_STATUS, main
from barista_base.errors import InputError
from caffe_bridge.datasets import example_dir

REPO = Path(__file__).resolve().parents[2]

NET = """
name: "tiny"
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "tiny_lmdb" batch_size: 2 backend: LMDB } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch, datum_lmdb):
    monkeypatch.chdir(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (3, 2, 6, 6), dtype=np.uint8)
    datum_lmdb(tmp_path / "tiny_lmdb", images, np.array([0, 1, 2]))
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    return path


def test_info_json(tiny, capsys):
    assert main(["info", str(tiny), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"name", "layers"} and info["name"] == "tiny"
    keys = {"name", "type", "bottoms", "tops", "top_shapes", "params", "macs"}
    assert all(set(layer) == keys for layer in info["layers"])
    by = {layer["name"]: layer for layer in info["layers"]}
    assert by["data"]["top_shapes"] == [[2, 2, 6, 6], [2]]
    assert by["conv"]["top_shapes"] == [[2, 4, 4, 4]]
    # conv: 2*4*4*4 outputs x K = 2*3*3; ip: 2*3 outputs x K = 4*4*4.
    assert by["conv"]["macs"] == 128 * 18 and by["conv"]["params"] == 4 * 18 + 4
    assert by["ip"]["macs"] == 6 * 64 and by["ip"]["params"] == 3 * 64 + 3
    assert by["relu"]["macs"] == 0 and by["relu"]["bottoms"] == ["conv"]
    assert by["loss"]["top_shapes"] == [[]]


def test_info_table_and_data_shapes(tiny, tmp_path, capsys):
    assert main(["info", str(tiny)]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "2x4x4x4" in out and "total" in out
    lenet = example_dir("mnist") / "lenet_train_test.prototxt"
    args = ["info", str(lenet), "--phase", "TEST", "--json"]
    assert main([*args, "--data-shape", "data=10,1,28,28", "--data-shape", "label=10"]) == 0
    by = {layer["name"]: layer for layer in json.loads(capsys.readouterr().out)["layers"]}
    assert by["conv1"]["top_shapes"] == [[10, 20, 24, 24]]
    assert by["conv1"]["macs"] == 10 * 20 * 24 * 24 * 25
    assert by["ip1"]["macs"] == 10 * 500 * 800
    assert "accuracy" in by


def test_info_counts_deconvolution_macs(tmp_path, capsys):
    # A Deconvolution's forward is a convolution's backward-data GEMM: per bottom element,
    # num_output/group * kh * kw multiply-accumulates.
    net = tmp_path / "up.prototxt"
    net.write_text(
        'name: "up" layer { name: "in" type: "Input" top: "data" '
        "input_param { shape { dim: 2 dim: 6 dim: 5 dim: 4 } } } "
        'layer { name: "up" type: "Deconvolution" bottom: "data" top: "up" '
        "convolution_param { num_output: 4 kernel_size: 3 stride: 2 group: 2 } }"
    )
    assert main(["info", str(net), "--json"]) == 0
    by = {layer["name"]: layer for layer in json.loads(capsys.readouterr().out)["layers"]}
    assert by["up"]["top_shapes"] == [[2, 4, 11, 9]]
    assert by["up"]["macs"] == (2 * 6 * 5 * 4) * (2 * 3 * 3)
    assert by["up"]["params"] == 6 * 2 * 3 * 3 + 4


def test_errors_exit_2_with_one_line(tiny, tmp_path, capsys):
    missing = tmp_path / "missing.prototxt"
    missing.write_text(NET.replace("tiny_lmdb", "nowhere_lmdb"))
    assert main(["info", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"{missing}:3: layer 'data' (Data)" in err and "nowhere_lmdb" in err

    unknown = tmp_path / "unknown.prototxt"
    unknown.write_text(NET.replace('type: "ReLU"', 'type: "ReLUX"'))
    assert main(["info", str(unknown)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown.prototxt:7: layer 'relu'" in err and "ReLUX" in err

    enum = tmp_path / "enum.prototxt"
    enum.write_text(NET.replace("backend: LMDB", "backend: LMDBX"))
    assert main(["info", str(enum)]) == 2
    err = capsys.readouterr().err.strip()
    assert "enum.prototxt:4:" in err and "LMDBX" in err and "(in layer 'data')" in err

    assert main(["info", str(tiny), "--data-shape", "data=2,x"]) == 2
    assert "--data-shape" in capsys.readouterr().err

    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\x0a\xff\xff")
    assert main(["time", "--model", str(tiny), "--weights", str(bad), "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.caffemodel" in err and "\n" not in err


def test_time(tiny, capsys):
    assert main(["time", "--model", str(tiny), "--iterations", "2"]) == 0
    out = capsys.readouterr().out
    for name in ("data", "conv", "relu", "ip", "loss"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    assert "Average Forward pass" in out and "Average Backward pass" in out
    assert "Total Time" in out
    assert main(["time", "--model", str(tiny), "--iterations", "0"]) == 2


# -- a closed stdout ---------------------------------------------------------------------


def test_closed_stdout_ends_quietly_with_the_sigpipe_status(tiny) -> None:  # noqa: ANN001
    """`barista info --json NET | head`: the reader leaves; no traceback, status 141."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "barista", "info", "--json", str(tiny)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # before the command writes: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == BROKEN_PIPE_STATUS == 141
    assert err == ""


def test_every_command_handles_a_closed_stdout(tiny, monkeypatch) -> None:  # noqa: ANN001
    read, write = os.pipe()
    os.close(read)
    stdout = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["time", "--model", str(tiny), "--iterations", "1"]) == BROKEN_PIPE_STATUS
        stdout.write("x" * 100_000)  # what is left goes nowhere, without an error
        stdout.flush()
    finally:
        stdout.close()


# -- the backends ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "test", "time"])
def test_backend_help_and_choices_name_every_backend(command: str, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for name, what in BACKEND_HELP.items():
        assert f"{name} ({what})" in help_text
    assert set(BACKEND_HELP) == set(BACKENDS) == {"cpu", "golden", "rtl", "board"}
    with pytest.raises(SystemExit) as done:
        main([command, "--backend", "gpu", "--model", "m", "--solver", "s", "--weights", "w"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    solvers = ", 'device', 'device-rtl'" if command == "train" else ""
    assert f"invalid choice: 'gpu' (choose from 'cpu', 'golden', 'rtl', 'board'{solvers})" in err
    for name, what in SOLVER_HELP.items():  # the whole-iteration solvers: train only
        assert (f"{name} ({what})" in help_text) == (command == "train")


def test_unknown_backend_from_python_names_every_backend() -> None:
    with pytest.raises(
        InputError, match=r"unknown backend 'gpu' \(known: cpu, golden, rtl, board\)"
    ):
        get_backend("gpu")
