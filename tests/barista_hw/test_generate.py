"""barista_hw.generate: files, determinism, manifest contents, errors, lint."""

import json
import re
import shutil

import pytest

from barista_base.errors import InputError
from barista_hw.generate import generate, module_name
from barista_hw.plan import GemmLayer

LAYERS = [
    GemmLayer("conv1", "conv", 4, 6, 9, 36, backward_data=False),
    GemmLayer("conv2", "conv", 4, 8, 54, 9, group=2),
    GemmLayer("ip1", "fc", 4, 10, 72),
]


def test_files_written_and_byte_identical(tmp_path) -> None:
    out = tmp_path / "net"
    r1 = generate(LAYERS, target="ulx3s-25f", preset="tiny", out=out, name="Tiny Net")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["accelerator.v", "manifest.json", "summary.txt"]
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    generate(LAYERS, target="ulx3s-25f", preset="tiny", out=out, name="Tiny Net")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert [p.name for p in tmp_path.iterdir()] == ["net"]  # no temporary directories left
    assert r1.top == "tiny_net" and "module tiny_net(" in first["accelerator.v"].decode()
    assert r1.summary == first["summary.txt"].decode()


def test_manifest_contents(tmp_path) -> None:
    r = generate(LAYERS, target="ulx3s-25f", preset="tiny", out=tmp_path / "n", name="n")
    m = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert m == json.loads(json.dumps(r.manifest))
    assert m["config"]["engine"]["rows"] == 2 and m["config"]["target"] == "ulx3s-25f"
    verilog = (tmp_path / "n" / "accelerator.v").read_text()
    header = re.search(r"module n\((.*?)\);", verilog, re.S).group(1)
    names = {p["name"] for p in m["ports"]}
    assert names == {s.strip() for s in header.split(",")}
    for p in m["ports"]:
        width = p["width"]
        decl = f"{p['direction']} {'' if width == 1 else f'[{width - 1}:0] '}{p['name']};"
        assert decl in verilog, decl
    cmd = next(p for p in m["ports"] if p["name"] == "cmd__payload")
    assert cmd["fields"]["m"] == [0, 16] and "acc_last" in cmd["fields"]
    conv2 = m["layers"][1]
    assert conv2["group"] == 2 and set(conv2["passes"]) == {"forward", "backward", "gradient"}
    fwd = conv2["passes"]["forward"]
    assert fwd["gemm"] == {"m": 8, "k": 54, "n": 36, "images": 1, "groups": 2}
    assert fwd["macs"] == 2 * 8 * 54 * 36
    assert 0 < fwd["pe_utilisation"] <= 1 and fwd["cycles"] > 0 and fwd["chunks"] >= 2
    assert set(m["layers"][0]["passes"]) == {"forward", "gradient"}  # first layer
    it = m["iteration"]
    assert it["cycles"] == sum(
        p["cycles"] for layer in m["layers"] for p in layer["passes"].values()
    )
    assert m["resources"]["fits"] is True and m["resources"]["mults"] == 4
    assert m["tools"]["amaranth"] and m["design"] == {"preset": "tiny"}


def test_dse_design_and_budget(tmp_path) -> None:
    from barista_hw.targets import Budget

    r = generate(
        LAYERS,
        target=Budget.parse("mults=6,bram_blocks=16,luts=9000,mhz=40"),
        array="2x3",
        name="x",
    )
    assert (r.config.engine.rows, r.config.engine.cols) == (2, 3) and r.out is None
    assert r.config.clock_mhz == 40 and r.manifest["design"]["dse"]["pareto"]


def test_failing_net_names_the_layer(tmp_path) -> None:
    with pytest.raises(
        InputError,
        match=r"layer fc9, forward pass: N = 70000 exceeds the "
        r"16-bit command field \(needs dim_bits >= 17\)",
    ):
        generate([GemmLayer("fc9", "fc", 70000, 4, 4)], preset="tiny", target="ulx3s-25f")
    # The iCEBreaker preset has no accumulator memory and 128-word buffer halves.
    with pytest.raises(InputError, match=r"layer ip1, forward pass: a reduction of 500"):
        generate([GemmLayer("ip1", "fc", 4, 10, 500)], preset="icebreaker", target="icebreaker")
    with pytest.raises(InputError, match="preset ulx3s-85f does not fit icebreaker"):
        generate(LAYERS, preset="ulx3s-85f", target="icebreaker")
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="refusing"):
        generate(LAYERS, preset="tiny", target="ulx3s-25f", out=keep)
    assert (keep / "notes.txt").read_text() == "x"


def test_module_names() -> None:
    assert module_name("LeNet") == "lenet"
    assert module_name("CIFAR10_quick") == "cifar10_quick"
    assert module_name("3 layers!") == "net_3_layers"


def test_verilog_lints(tmp_path) -> None:
    lint = pytest.importorskip("sim.lint")
    try:
        from sim.tools import check_simulator

        check_simulator("verilator")
    except Exception as exc:  # noqa: BLE001 - any missing tool means skip
        pytest.skip(f"verilator not usable: {exc}")
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    r = generate(LAYERS, target="ulx3s-25f", preset="tiny", out=tmp_path / "n", name="lint_me")
    assert lint.lint(tmp_path / "n" / "accelerator.v", r.top) == []
