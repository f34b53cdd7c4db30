"""barista.manifest: the RTL directory's files, the manifest's contents, and the one reader."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from barista.manifest import Manifest, load_accelerator, write_rtl_dir
from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.generate import generate
from barista_hw.numfmt import FixedFormat
from barista_hw.plan import GemmLayer
from boards.report import BuildReport

LAYERS = [
    GemmLayer("conv1", "conv", 4, 6, 9, 36, backward_data=False),
    GemmLayer("conv2", "conv", 4, 8, 54, 9, group=2),
    GemmLayer("ip1", "fc", 4, 10, 72),
]


def _design(name: str = "Tiny Net"):  # noqa: ANN202 - a Design
    return generate(LAYERS, target="ulx3s-25f", preset="tiny", name=name)


def test_files_written_and_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "net"
    write_rtl_dir(_design(), out)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["accelerator.v", "manifest.json", "summary.txt"]
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    write_rtl_dir(_design(), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert [p.name for p in tmp_path.iterdir()] == ["net"]  # no temporary directories left
    assert "module tiny_net(" in first["accelerator.v"].decode()
    assert _design().summary == first["summary.txt"].decode()


def test_manifest_contents(tmp_path: Path) -> None:
    manifest = write_rtl_dir(_design("n"), tmp_path / "n")
    m = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert m == json.loads(json.dumps(manifest.to_dict()))
    assert m["config"]["engine"]["rows"] == 2 and m["config"]["target"] == "ulx3s-25f"
    assert m["number_format"] == manifest.config.engine.fmt.to_dict()
    assert m["number_format"]["name"] == m["config"]["engine"]["fmt"]
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


def test_dse_design_records_the_pareto_front(tmp_path: Path) -> None:
    from barista_hw.targets import Budget

    budget = Budget.parse("mults=6,bram_blocks=16,luts=9000,mhz=40")
    manifest = write_rtl_dir(generate(LAYERS, target=budget, array="2x3", name="x"), tmp_path)
    pareto = manifest.design["dse"]["pareto"]
    assert pareto and sum(r["chosen"] for r in pareto) == 1


def test_manifest_round_trips(tmp_path: Path) -> None:
    manifest = write_rtl_dir(_design(), tmp_path / "n")
    again = Manifest.from_dict(json.loads((tmp_path / "n" / "manifest.json").read_text()))
    assert again == manifest


def test_refuses_to_replace_a_directory_it_did_not_write(tmp_path: Path) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="refusing"):
        write_rtl_dir(_design(), keep)
    assert (keep / "notes.txt").read_text() == "x"


def test_load_accelerator_reads_a_directory_or_its_manifest(tmp_path: Path) -> None:
    design = _design()
    write_rtl_dir(design, tmp_path / "n")
    for path in (tmp_path / "n", tmp_path / "n" / "manifest.json"):
        files = load_accelerator(path)
        assert files.config == design.config and files.baud is None
        assert files.verilog() == (design.verilog, design.top)
    bare = tmp_path / "bare.json"  # a configuration alone is a manifest without files
    bare.write_text(json.dumps({"config": design.config.to_dict()}))
    assert load_accelerator(bare).config == design.config


def test_load_accelerator_reads_a_board_build(tmp_path: Path) -> None:
    design = _design()
    write_rtl_dir(design, tmp_path / "rtl")
    cfg = design.config
    report = BuildReport("ok", "ulx3s-25f", "LFE5U-25F", cfg.to_dict(), "00", {}, 115200, 4, 16)
    report.write(tmp_path / "report.json")
    files = load_accelerator(tmp_path)
    assert files.config == cfg and files.baud == 115200
    assert files.verilog() == (design.verilog, design.top)
    # Built at another clock than generated: the configuration is the report's.
    other = replace(cfg, clock_mhz=75.0)
    replace(report, config=other.to_dict()).write(tmp_path / "report.json")
    files = load_accelerator(tmp_path)
    assert files.config == other and files.verilog() is None


def test_unreadable_manifests_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the manifest"):
        load_accelerator(tmp_path)
    (tmp_path / "manifest.json").write_text("{\n  oops")
    with pytest.raises(InputError, match=r"manifest.json:2"):
        load_accelerator(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"engine": 3}}))
    with pytest.raises(InputError, match="manifest.json: no usable accelerator configuration"):
        load_accelerator(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"manifest_version": 99}))
    with pytest.raises(InputError, match="newer"):
        load_accelerator(tmp_path)


@pytest.mark.slow
def test_written_verilog_simulates_with_the_same_build(tmp_path: Path) -> None:
    """The simulator of an RTL directory is the one of its configuration (same Verilog)."""
    from sim import verilator_driver as vd
    from sim.tools import SimulatorNotFound, simulator_version

    try:
        simulator_version("verilator")
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))
    cfg = AcceleratorConfig(
        EngineConfig(2, 3, FixedFormat(8, 4, 24), acc_depth=8), a_depth=16, b_depth=16
    )
    verilog, top = vd.accelerator_verilog(cfg)
    (tmp_path / "accelerator.v").write_text(verilog)
    doc = {"config": cfg.to_dict(), "top": top, "verilog": "accelerator.v"}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    files = load_accelerator(tmp_path)
    s = vd.simulator(files.config, verilog=files.verilog())
    assert s.build.path == vd.simulator(cfg).build.path and s.cfg == cfg


def test_manifest_records_a_minifloat_format(tmp_path: Path) -> None:
    """``barista generate --format e4m3``: the manifest names the format in the config and
    spells it out; the backends read it back."""
    design = generate(LAYERS, target="ulx3s-25f", fmt="e4m3", array="2x2", name="fp")
    write_rtl_dir(design, tmp_path / "fp")
    m = json.loads((tmp_path / "fp" / "manifest.json").read_text())
    assert m["config"]["engine"]["fmt"] == "e4m3"
    fmt = m["number_format"]
    assert (fmt["kind"], fmt["a"], fmt["b"], fmt["out"]) == ("minifloat", "e4m3", "e4m3", "e4m3")
    assert fmt["acc_width"] == design.config.engine.fmt.acc_width and fmt["saturate"]
    assert m["resources"]["mults"] == 0
    assert load_accelerator(tmp_path / "fp").config == design.config
