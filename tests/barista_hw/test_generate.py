"""barista_hw.generate: determinism, ports, the DSE and presets, errors, lint."""

import re
import shutil

import pytest

from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.generate import generate, module_name
from barista_hw.plan import GemmLayer, plan_net

LAYERS = [
    GemmLayer("conv1", "conv", 4, 6, 9, 36, backward_data=False),
    GemmLayer("conv2", "conv", 4, 8, 54, 9, group=2),
    GemmLayer("ip1", "fc", 4, 10, 72),
]


def test_same_inputs_same_design_and_verilog() -> None:
    r1 = generate(LAYERS, target="ulx3s-25f", preset="tiny", name="Tiny Net")
    r2 = generate(LAYERS, target="ulx3s-25f", preset="tiny", name="Tiny Net")
    assert r1.verilog == r2.verilog and r1.summary == r2.summary and r1.config == r2.config
    assert r1.top == "tiny_net" and "module tiny_net(" in r1.verilog
    assert r1.preset == "tiny" and r1.dse is None and "preset tiny" in r1.summary


def test_ports_are_the_verilog_header() -> None:
    r = generate(LAYERS, target="ulx3s-25f", preset="tiny", name="n")
    header = re.search(r"module n\((.*?)\);", r.verilog, re.S).group(1)
    assert {p.name for p in r.ports} == {s.strip() for s in header.split(",")}
    for p in r.ports:
        decl = f"{p.direction} {'' if p.width == 1 else f'[{p.width - 1}:0] '}{p.name};"
        assert decl in r.verilog, decl
    cmd = next(p for p in r.ports if p.name == "cmd__payload")
    assert cmd.fields["m"] == (0, 16) and "acc_last" in cmd.fields


def test_dse_design_and_budget(tmp_path) -> None:
    from barista_hw.targets import Budget

    r = generate(
        LAYERS,
        target=Budget.parse("mults=6,bram_blocks=16,luts=9000,mhz=40"),
        array="2x3",
        name="x",
    )
    assert (r.config.engine.rows, r.config.engine.cols) == (2, 3)
    assert r.config.clock_mhz == 40 and r.dse is not None and r.dse.pareto


def test_failing_net_names_the_layer() -> None:
    with pytest.raises(
        InputError,
        match=r"layer fc9, forward pass: N = 70000 exceeds the "
        r"16-bit command field \(needs dim_bits >= 17\)",
    ):
        generate([GemmLayer("fc9", "fc", 70000, 4, 4)], preset="tiny", target="ulx3s-25f")
    # No accumulator memory and 128-word buffer halves: a reduction of 500 cannot be split.
    small = AcceleratorConfig(EngineConfig(2, 1), 256, 256)
    with pytest.raises(InputError, match=r"layer ip1, forward pass: a reduction of 500"):
        plan_net(small, [GemmLayer("ip1", "fc", 4, 10, 500)])
    with pytest.raises(InputError, match="preset ulx3s-85f does not fit icebreaker"):
        generate(LAYERS, preset="ulx3s-85f", target="icebreaker")


def test_module_names() -> None:
    assert module_name("LeNet") == "lenet"
    assert module_name("CIFAR10_quick") == "cifar10_quick"
    assert module_name("3 layers!") == "net_3_layers"


@pytest.mark.parametrize("fmt", [None, "e4m3", "mxfp4k256_wm8_8", "fwd=e4m3,grad=e5m2"])
def test_verilog_lints(tmp_path, fmt: str | None) -> None:
    lint = pytest.importorskip("sim.lint")
    try:
        from sim.tools import check_simulator

        check_simulator("verilator")
    except Exception as exc:  # noqa: BLE001 - any missing tool means skip
        pytest.skip(f"verilator not usable: {exc}")
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    if fmt is None:
        r = generate(LAYERS, target="ulx3s-25f", preset="tiny", name="lint_me")
    else:  # barista generate --format e4m3, on a small array (lint time grows with it)
        r = generate(LAYERS, target="ulx3s-25f", fmt=fmt, array="2x3", name="lint_me")
    (tmp_path / "accelerator.v").write_text(r.verilog)
    assert lint.lint(tmp_path / "accelerator.v", r.top) == []


def test_minifloat_design_and_reduction_check() -> None:
    """``--format e4m3``: a minifloat accelerator sized by logic, no multipliers; a pass whose
    reduction exceeds the accumulators' k is refused with the name that would hold it."""
    from barista_hw.fpformat import MinifloatGemmFormat

    r = generate(LAYERS, target="ulx3s-25f", fmt="e4m3", name="fp")
    assert r.config.engine.fmt == MinifloatGemmFormat.parse("e4m3")
    assert r.resources.mults == 0 and r.dse is not None
    assert "module fp(" in r.verilog and " e4m3 " in r.summary
    with pytest.raises(InputError, match=r"reduction of 144 terms .* use e4m3k256_nosat"):
        generate(LAYERS, target="ulx3s-25f", fmt="e4m3k128_nosat", name="fp")


def test_per_pass_design_and_manifest_format() -> None:
    """``--format fwd=e4m3,grad=e5m2``: one engine with the per-pass PE (logic-bound, no
    multipliers), a ``pass_id`` in the run command, the
    manifest's format spelt out and read back; a reduction beyond k is refused."""
    from barista_hw.accelerator import run_layout
    from barista_hw.passengine import PassGemmFormat

    r = generate(LAYERS, target="ulx3s-25f", fmt="fwd=e4m3,grad=e5m2", name="pp")
    fmt = r.config.engine.fmt
    assert isinstance(fmt, PassGemmFormat) and r.resources.mults == 0 and r.dse is not None
    assert "pass_id" in dict(run_layout(r.config).members) and "module pp(" in r.verilog
    assert AcceleratorConfig.from_dict(r.config.to_dict()) == r.config
    d = fmt.to_dict()
    assert (d["kind"], d["fwd"], d["grad"], d["out_fwd"], d["out_grad"]) == (
        "per_pass",
        "e4m3",
        "e5m2",
        "e4m3",
        "e5m2",
    )
    with pytest.raises(InputError, match=r"reduction of 144 terms .* use fwd=e4m3,grad=e5m2k256"):
        generate(LAYERS, target="ulx3s-25f", fmt="fwd=e4m3,grad=e5m2k128", array="2x2")


def test_mx_design_and_manifest_format() -> None:
    """``--format mxfp4k256_wm8_8``: an MX accelerator (words of element and scale, logic-bound,
    no multipliers) whose manifest spells the format out; a reduction beyond k is refused."""
    from barista_hw.mxformat import MXGemmFormat

    r = generate(LAYERS, target="ulx3s-25f", fmt="mxfp4k256_wm8_8", array="2x2", name="mx")
    fmt = r.config.engine.fmt
    assert fmt == MXGemmFormat.parse("mxfp4_e2m1k256_wm8_8") and fmt.width == 4 + 8
    assert r.resources.mults == 0 and "module mx(" in r.verilog
    assert r.config.to_dict()["engine"]["fmt"] == fmt.name
    assert AcceleratorConfig.from_dict(r.config.to_dict()) == r.config
    assert fmt.to_dict()["kind"] == "mx" and fmt.to_dict()["block"] == 32
    with pytest.raises(InputError, match=r"reduction of 144 terms .* use mxfp4_e2m1k256_wm8_8"):
        generate(LAYERS, target="ulx3s-25f", fmt="mxfp4k128_wm8_8", array="2x2", name="mx")
