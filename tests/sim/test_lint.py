"""``verilator --lint-only -Wall`` passes on the generated Verilog of every engine kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from barista_hw.config import EngineConfig, Pass, parse_engine_format
from sim.lint import WAIVERS, lint, waiver_control_text
from sim.runner import engine_verilog


@pytest.mark.parametrize("kind", list(Pass), ids=lambda p: p.value)
@pytest.mark.parametrize(
    ("rows", "cols", "fmt"),
    [(2, 3, "fx8"), (1, 1, "fx18"), (2, 3, "e4m3"), (1, 2, "e2m3xe3m2_e2m1k64_nosat")],
    ids=["2x3-fx8", "1x1-fx18", "2x3-e4m3", "1x2-e2m3xe3m2"],
)
def test_engine_verilog_is_lint_clean(kind: Pass, rows: int, cols: int, fmt: str) -> None:
    path, top = engine_verilog(kind, EngineConfig(rows, cols, parse_engine_format(fmt)))
    assert lint(path, top) == []


def test_lint_reports_what_is_not_waived(tmp_path: Path) -> None:
    """An undriven output and a width mismatch: only the first is left after the waivers."""
    src = tmp_path / "bad.v"
    src.write_text(
        "module bad(input [3:0] a, output [1:0] y, output z);\n"
        "  assign y = a;\n"  # WIDTHTRUNC: waived
        "endmodule\n"  # z is never driven: UNDRIVEN, not waived
    )
    found = lint(src, "bad")
    assert len(found) == 1 and "UNDRIVEN" in found[0] and "'z'" in found[0]


def test_waivers_are_few_and_documented() -> None:
    assert len(WAIVERS) <= 6
    text = waiver_control_text()
    for rule, reason in WAIVERS.items():
        assert f"lint_off -rule {rule}" in text
        assert len(reason) > 40  # a reason, not a placeholder
