"""``barista generate`` on real Caffe nets: the shared model zoo and the project's LeNet."""

import argparse
import json
from pathlib import Path

import pytest

from barista.backends.plan import gemm_layers
from barista.commands import generate as cmd
from barista_base.errors import InputError
from caffe_bridge.datasets import example_dir
from caffe_bridge.net import Net

REPO = Path(__file__).resolve().parents[3]

# Data-layer tops of each net (TRAIN phase), since the LMDBs are not here.
NETS = {
    "mnist/lenet_train_test.prototxt": ["data=64,1,28,28", "label=64"],
    "cifar10/cifar10_quick_train_test.prototxt": ["data=100,3,32,32", "label=100"],
    "cifar10/cifar10_full_train_test.prototxt": ["data=100,3,32,32", "label=100"],
    "bvlc_alexnet/train_val.prototxt": ["data=256,3,227,227", "label=256"],
    "bvlc_reference_caffenet/train_val.prototxt": ["data=256,3,227,227", "label=256"],
}


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return cmd.run(parser.parse_args(list(argv)))


@pytest.mark.parametrize("rel", sorted(NETS))
def test_example_nets_generate(rel: str, tmp_path, capsys) -> None:
    model, name = rel.split("/")
    path = example_dir(model) / name
    shapes = [a for s in NETS[rel] for a in ("--data-shape", s)]
    out = tmp_path / "out"
    # A fixed small array keeps elaboration quick; buffers and format are still explored.
    assert _run(str(path), "--target", "ulx3s-25f", "--array", "2x2", *shapes, "-o", str(out)) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["resources"]["fits"] and m["resources"]["mults"] == 4
    assert m["layers"] and m["layers"][0]["backward_data"] is False
    assert "Pareto front" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra", [("--array", "2x2"), pytest.param((), marks=pytest.mark.slow, id="full-ulx3s-85f")]
)
def test_project_lenet(extra, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the default output is relative: rtl_out/<net>
    net = REPO / "examples" / "mnist" / "lenet_train_test.prototxt"
    shapes = ("--data-shape", "data=64,1,28,28", "--data-shape", "label=64")
    assert _run(str(net), *shapes, *extra) == 0
    out = tmp_path / "rtl_out" / "lenet"
    m = json.loads((out / "manifest.json").read_text())
    assert m["top"] == "lenet" and [layer["name"] for layer in m["layers"]] == [
        "conv1",
        "conv2",
        "ip1",
        "ip2",
    ]
    conv2 = m["layers"][1]
    assert (conv2["m"], conv2["k"], conv2["p"], conv2["batch"]) == (50, 500, 64, 64)
    assert m["iteration"]["pe_utilisation"] >= (0.8 if not extra else 0.5)
    out_text = capsys.readouterr().out
    assert "one TRAIN iteration (batch 64)" in out_text
    # The array's own figure and the end-to-end one over the host link, each labelled.
    assert "array alone (one buffer word per cycle):" in out_text
    assert "end to end over the UART host link at 1,000,000 baud:" in out_text


def test_gemm_layers_of_grouped_and_fc_nets() -> None:
    path = example_dir("bvlc_reference_caffenet") / "train_val.prototxt"
    net = Net(path, "TRAIN", data_shapes={"data": (2, 3, 227, 227), "label": (2,)})
    layers = {layer.name: layer for layer in gemm_layers(net)}
    c2 = layers["conv2"]
    assert (c2.group, c2.m, c2.k, c2.p, c2.batch) == (2, 128, 48 * 25, 27 * 27, 2)
    assert (layers["fc6"].m, layers["fc6"].k) == (4096, 256 * 6 * 6)
    assert not layers["conv1"].backward_data and layers["conv2"].backward_data


def test_missing_data_suggests_data_shape(tmp_path) -> None:
    net = REPO / "examples" / "mnist" / "lenet_train_test.prototxt"
    with pytest.raises(InputError, match="--data-shape"):
        cmd.load_layers(str(net), {})
    with pytest.raises(InputError, match="NAME=N,C,H,W"):
        cmd.parse_data_shapes(["data=64,x"])
    with pytest.raises(InputError, match="no such net file"):
        cmd.load_layers(str(tmp_path / "none.prototxt"), {})


def test_target_and_preset_choices_are_the_registry() -> None:
    from barista_hw.presets import PRESETS
    from barista_hw.targets import TARGETS

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    text = parser.format_help()
    assert "{" + ",".join(sorted(TARGETS)) + "}" in text
    assert "{" + ",".join(sorted(PRESETS)) + "}" in text
    for name in TARGETS:
        assert parser.parse_args(["net.prototxt", "--target", name]).target == name
