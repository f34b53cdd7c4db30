"""The C++ host's view of the accelerator's ports: bit layout, generated header and wrapper."""

from __future__ import annotations

from barista_hw.accelerator import run_layout, write_layout
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.engine import output_layout
from barista_hw.numfmt import FixedFormat
from sim.verilator_ports import SIM_TOP, PortLayout

FMT = FixedFormat(8, 4, 24)
CFG = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=16, b_depth=16)


def test_port_layout_follows_the_amaranth_layouts() -> None:
    lay = PortLayout.from_config(CFG)
    run = {name: (f.offset, f.width) for name, f in run_layout(CFG)}
    assert [(n, o, w) for n, (o, w) in run.items()] == list(lay.cmd_fields)
    wr = {name: (f.offset, f.width) for name, f in write_layout(CFG)}
    assert lay.wr_sel == wr["sel"] and lay.wr_addr == wr["addr"] and lay.wr_data == wr["data"][0]
    out = {name: (f.offset, f.width) for name, f in output_layout(CFG.engine)}
    assert lay.o_last == out["last"][0] == 3 * FMT.width
    header = lay.header("accel")
    assert "#define BS_WR_VALID wr___05Fvalid" in header
    assert f"#define BS_CMD_FIELDS {len(run)}" in header
    offsets = ", ".join(str(o) for o, _ in run.values())
    assert f"BS_CMD_OFF[BS_CMD_FIELDS] = {{{offsets}}};" in header


def test_wrapper_ties_reset_low_around_the_top() -> None:
    lay = PortLayout.from_config(CFG)
    text = lay.wrapper("accel")
    assert text.startswith(f"module {SIM_TOP}(")
    assert f"input [{lay.cmd_width - 1}:0] cmd__payload;" in text
    assert "accel dut (" in text and ".rst(1'b0)" in text
    assert PortLayout.from_config(CFG).to_json() == lay.to_json()
