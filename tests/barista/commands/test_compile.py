"""``barista compile`` on the project's LeNet: the program directory, the listing, host
layers between segments, and bad input that writes nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from barista.cli import main
from barista.commands import generate
from barista_hw.device.isa import Op, Program

REPO = Path(__file__).resolve().parents[3]
LENET = REPO / "examples" / "mnist" / "lenet_train_test.prototxt"
# A small batch keeps the program short (the GEMMs' columns are images x pixels).
SHAPES = ("--data-shape", "data=4,1,28,28", "--data-shape", "label=4")
FILES = ["program.bin", "program.txt", "summary.txt"]


@pytest.fixture(scope="module")
def accelerator(tmp_path_factory) -> str:
    """A fixed small array for LeNet (quick to generate; the target's own design is
    explored by ``barista generate``'s tests)."""
    out = tmp_path_factory.mktemp("acc") / "lenet"
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    args = [str(LENET), *SHAPES, "--array", "4x4", "--target", "ulx3s-85f", "-o", str(out)]
    assert generate.run(parser.parse_args(args)) == 0
    return str(out)


def _compile(*argv: str) -> int:
    return main(["compile", *argv])


def test_preload_fetches_the_batch_from_dram(accelerator, tmp_path) -> None:
    out = tmp_path / "pre"
    args = [str(LENET), *SHAPES, "--accelerator", accelerator, "--preload", "-o", str(out)]
    assert _compile(*args) == 0
    program = Program.from_bytes((out / "program.bin").read_bytes())
    assert [i.op for i in program.instructions].count(Op.FETCH) == 1
    summary = (out / "summary.txt").read_text()
    assert "fetch/data" in summary and "link/data" not in summary


def test_lenet_writes_the_program_directory(accelerator, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the default output is relative: rtl_out/<net>/device
    capsys.readouterr()
    assert _compile(str(LENET), *SHAPES, "--accelerator", accelerator) == 0
    out = tmp_path / "rtl_out" / "lenet" / "device"
    assert sorted(p.name for p in out.iterdir()) == FILES
    program = Program.from_bytes((out / "program.bin").read_bytes())
    assert (out / "program.txt").read_text() == program.listing()
    assert program.meta["batch"] == 4 and program.meta["output"] == "ip2"
    ops = {i.op for i in program.instructions}
    assert {Op.HOST_IN, Op.HOST_OUT, Op.LOAD, Op.STORE, Op.GEMM, Op.VEC, Op.SCALE} <= ops
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("LeNet on ulx3s-85f: 4x4 array")
    assert "on the device: conv1, pool1, conv2, pool2, ip1, relu1, ip2" in summary
    assert "device segment 0: conv1, pool1, conv2, pool2, ip1, relu1, ip2" in summary
    assert "run by the host" not in summary
    # Byte-a-pixel images (scale 2**-8, no mean): the batch in is 4 x 784 bytes.
    assert "link/data                    3,136" in summary
    assert "per iteration:" in summary and "mJ per image" in summary
    printed = capsys.readouterr().out
    assert summary in printed and "# instructions" not in printed
    assert "wrote rtl_out/lenet/device/program.bin, program.txt, summary.txt" in printed


def test_dump_prints_the_listing(accelerator, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    capsys.readouterr()
    assert (
        _compile(str(LENET), *SHAPES, "--accelerator", accelerator, "-o", str(out), "--dump") == 0
    )
    printed = capsys.readouterr().out
    listing = (out / "program.txt").read_text()
    assert printed.startswith("# tensors\n") and listing in printed


def test_a_layer_the_device_cannot_run_splits_the_program(accelerator, tmp_path, capsys) -> None:
    net = tmp_path / "lenet_tanh.prototxt"
    text = LENET.read_text()
    relu = 'name: "relu1"\n  type: "ReLU"'
    assert relu in text
    net.write_text(text.replace(relu, 'name: "relu1"\n  type: "TanH"'))
    out = tmp_path / "out"
    assert _compile(str(net), *SHAPES, "--accelerator", accelerator, "-o", str(out)) == 0
    summary = (out / "summary.txt").read_text()
    assert "on the host between device segments: relu1 (TanH)" in summary
    assert "device segment 0: conv1, pool1, conv2, pool2, ip1\n" in summary
    assert "device segment 1: ip2\n" in summary
    assert "run by the host between segments: relu1 (TanH)" in summary
    program = Program.from_bytes((out / "program.bin").read_bytes())
    names = [t["name"] for t in program.tensors]
    crossing = {names[i["tensor"]] for i in program.instructions if i.op is Op.HOST_OUT}
    assert crossing == {"ip1", "ip2", "d:ip1"}


BIG = """
name: "Big"
layer {
  name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 1 dim: 3 dim: 64 dim: 64 } shape { dim: 1 } }
}
layer {
  name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 1000 }
}
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""


def test_bad_input_writes_nothing(accelerator, tmp_path, capsys) -> None:
    big = tmp_path / "big.prototxt"
    big.write_text(BIG)
    absent = tmp_path / "absent"
    assert _compile(str(big), "--accelerator", accelerator, "-o", str(absent)) == 2
    err = capsys.readouterr().err
    assert "tensor 'm:ip1' (master, shape [1000, 12288]) does not fit the DRAM" in err
    assert "the device has 33,554,432" in err and err.count("\n") == 1
    assert not absent.exists()
    # An earlier program stays as it was.
    kept = tmp_path / "kept"
    assert _compile(str(LENET), *SHAPES, "--accelerator", accelerator, "-o", str(kept)) == 0
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    capsys.readouterr()
    assert _compile(str(big), "--accelerator", accelerator, "-o", str(kept)) == 2
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before
    assert "does not fit the DRAM" in capsys.readouterr().err
    assert _compile(str(tmp_path / "missing.prototxt"), "-o", str(absent)) == 2
    assert "missing.prototxt: no such net file" in capsys.readouterr().err
    assert not absent.exists()
