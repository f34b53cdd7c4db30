"""``barista generate --device``: the device top for a small net (files, manifest, program,
lint), the design rule (LeNet's is the RTL tests' design) and the nets it refuses, with
nothing written. With ``BARISTA_FULL=1`` also LeNet's top at batch 2, linted (about 2 minutes)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from barista.cli import main
from barista.commands.generate import train_net_at
from barista.device_generate import DEVICE_MANIFEST, read_device_manifest
from barista.device_top import TOP_UNITS, compile_for_top, top_accelerator
from barista_base.errors import InputError
from barista_hw.device.isa import Program
from barista_hw.device.memory import DeviceConfig
from barista_hw.device.rtl.design import LENET_ACC, LENET_CONFIG
from sim.lint import lint
from sim.tools import SimulatorNotFound, simulator_version

REPO = Path(__file__).resolve().parents[2]
LENET = REPO / "examples" / "mnist" / "lenet_train_test.prototxt"
FULL = os.environ.get("BARISTA_FULL") == "1"
FILES = ["device.v", "device_manifest.json", "program.bin", "program.txt"]

# conv 3 x 3 on 8 x 8 (36 output pixels: 4 columns, not 8), max pool, ReLU, ip.
TINY = """
name: "Tiny"
layer {{
  name: "data" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: 2 dim: 1 dim: 8 dim: 8 }} shape {{ dim: 2 }} }}
}}
layer {{
  name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 4 kernel_size: 3 weight_filler {{ type: "xavier" }} }}
}}
layer {{
  name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param {{ pool: MAX kernel_size: {pool} stride: {pool} }}
}}
layer {{ name: "relu" type: "ReLU" bottom: "pool" top: "pool" }}
layer {{
  name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }}
}}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""


def _tiny(d: Path, pool: int = 2) -> Path:
    path = d / f"tiny_pool{pool}.prototxt"
    path.write_text(TINY.format(pool=pool))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """(net, output directory): generated once."""
    d = tmp_path_factory.mktemp("device")
    net, out = _tiny(d), d / "out"
    assert main(["generate", str(net), "--device", "--target", "ulx3s-85f", "-o", str(out)]) == 0
    return net, out


def test_writes_the_files_and_the_manifest_round_trips(tiny) -> None:
    net, out = tiny
    assert sorted(p.name for p in out.iterdir()) == FILES
    m = read_device_manifest(out)
    assert m == json.loads((out / DEVICE_MANIFEST).read_text())
    assert read_device_manifest(out / DEVICE_MANIFEST) == m
    cfg = DeviceConfig.from_dict(m["device"])
    assert cfg == DeviceConfig.for_accelerator(
        LENET_ACC.derive(cols=4), target="ulx3s-85f", **TOP_UNITS
    )
    assert m["top"] == "tiny_device" and "module tiny_device(" in (out / "device.v").read_text()
    assert m["design"] == {
        "rows": 8,
        "cols": 4,
        "format": "fx16.8a48",
        "bus_bits": 16,
        "vector_lanes": 1,
        "decoder": {"tensors": 24, "registers": 37},
    }
    names = [t["name"] for t in m["memory"]["tensors"]]
    assert names[:3] == ["data", "w:conv", "m:conv"] and len(names) == 24
    assert 0 < m["memory"]["dram_bytes"] <= m["memory"]["dram_size_bytes"]
    r = m["resources"]
    assert set(r["lut_detail"]) == {
        "engine", "dma", "packed", "vector", "decoder", "sequencer", "fifos",
        "fetch", "link", "arbiter",
    }  # fmt: skip
    assert r["luts"] == sum(r["lut_detail"].values()) and r["mults"] == 72  # measured
    assert r["bram_blocks"] == sum(r["bram_detail"].values())


def test_program_is_the_compilers(tiny) -> None:
    net_path, out = tiny
    net = train_net_at(str(net_path), {})
    dc = compile_for_top(net, target="ulx3s-85f")
    data = dc.compiled.program.to_bytes()
    assert (out / "program.bin").read_bytes() == data
    assert (out / "program.txt").read_text() == Program.from_bytes(data).listing()
    assert read_device_manifest(out)["program"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_device_verilog_is_lint_clean(tiny) -> None:
    try:
        simulator_version("verilator")
    except SimulatorNotFound:
        pytest.skip("verilator not installed")
    _, out = tiny
    assert lint(out / "device.v", "tiny_device") == []


def test_lenet_is_the_rtl_tests_design() -> None:
    net = train_net_at(str(LENET), {"data": (2, 1, 28, 28), "label": (2,)})
    acc = top_accelerator(net)
    assert acc == LENET_ACC
    assert DeviceConfig.for_accelerator(acc, target="ulx3s-85f", **TOP_UNITS) == LENET_CONFIG


def test_the_engine_search_compiles_each_engine_once_and_checks_the_chosen(
    tmp_path, monkeypatch
) -> None:
    """On a ULX3S 25F no engine's top fits: every one tried is compiled, each once, and
    only the narrowest, returned, is checked; its program is the one compiled for it alone."""
    import barista.device_top as top

    net = train_net_at(str(_tiny(tmp_path)), {})
    compiled, checked = [], []
    compile_device, check_top = top.compile_device, top.check_top
    monkeypatch.setattr(
        top, "compile_device", lambda n, a, **kw: compiled.append(a) or compile_device(n, a, **kw)
    )
    monkeypatch.setattr(top, "check_top", lambda p, c: checked.append(c) or check_top(p, c))
    dc = compile_for_top(net, target="ulx3s-25f")
    tried = len(top.top_engines(net))
    assert compiled == top.top_engines(net) and tried > 1
    assert checked == [dc.config] and dc.config.accelerator.engine.cols == 1
    alone = compile_for_top(net, compiled[-1], target="ulx3s-25f")
    assert alone.compiled.program.to_bytes() == dc.compiled.program.to_bytes()
    assert len(compiled) == tried + 1 and len(checked) == 2


def test_batch_sets_the_data_tops(tmp_path) -> None:
    net = train_net_at(str(_tiny(tmp_path)), {}, batch=3)
    assert net.blobs["data"].shape == (3, 1, 8, 8) and net.blobs["label"].shape == (3,)
    with pytest.raises(InputError, match="--batch 0: the batch must be at least 1"):
        train_net_at(str(_tiny(tmp_path)), {}, batch=0)


def test_refusals_name_the_culprit_and_write_nothing(tmp_path, capsys) -> None:
    absent = tmp_path / "absent"
    pool5 = _tiny(tmp_path, pool=5)  # 6 x 6 -> 1 x 1 by a 5 x 5 window: more than 4 x 4
    assert main(["generate", str(pool5), "--device", "-o", str(absent)]) == 2
    err = capsys.readouterr().err
    assert "pool/forward (instruction " in err and "the device top cannot run it" in err
    assert "pooling kernel (5, 5) exceeds 4 x 4" in err and err.count("\n") == 1
    assert not absent.exists()
    tiny = _tiny(tmp_path)
    for flag in (["--format", "fx8"], ["--array", "4x4"]):
        assert main(["generate", str(tiny), "--device", *flag, "-o", str(absent)]) == 2
        assert f"{flag[0]} do not apply" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["generate", str(tiny), "--device", "-o", str(mine)]) == 2
    assert "holds no device_manifest.json: refusing to replace it" in capsys.readouterr().err
    assert main(["generate", str(tiny), "--device", "--batch", "0", "-o", str(absent)]) == 2
    assert "--batch 0" in capsys.readouterr().err
    assert not absent.exists() and (mine / "notes.txt").read_text() == "keep"


@pytest.mark.skipif(
    not FULL, reason="LeNet's top at batch 2: generated and linted in about 2 minutes"
)
def test_lenet_device_generates_lint_clean(tmp_path) -> None:
    out = tmp_path / "lenet"
    shapes = ["--data-shape", "data=64,1,28,28", "--data-shape", "label=64"]
    assert main(["generate", str(LENET), "--device", *shapes, "--batch", "2", "-o", str(out)]) == 0
    m = read_device_manifest(out)
    assert (m["design"]["rows"], m["design"]["cols"], m["program"]["batch"]) == (8, 8, 2)
    assert lint(out / "device.v", m["top"]) == []
