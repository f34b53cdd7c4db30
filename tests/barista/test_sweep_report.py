"""The sweep report: rows from records, the Pareto front, the tables and the plots."""

from __future__ import annotations

import csv
from pathlib import Path

from barista.sweep_report import REPORT_FILES, markdown, pareto, rows, write_report


def record(i: int, backend: str, accuracy: float | None, **hardware: float) -> dict:
    settings = {"solver": "s.prototxt", "backend": backend, "seed": i}
    if backend != "cpu":
        settings.update(format="fx12.6a40" if i % 2 else "fx16.8a48", rounding="stochastic")
    r = {
        "id": f"p{i}",
        "settings": settings | ({"overrides": {"base_lr": 0.1}} if i == 2 else {}),
        "status": "ok" if accuracy is not None else "diverged",
        "accuracy": accuracy,
        "node": "n",
    }
    if hardware:
        r["hardware"] = hardware
    return r


def test_pareto_keeps_the_points_nothing_beats() -> None:
    costs = [10, 10, 20, 30, 30, 5, 40]
    accs = [0.5, 0.7, 0.7, 0.9, 0.9, 0.1, 0.8]
    # 0 is beaten by 1 (same cost, more accurate), 2 by 1 (dearer, no better), 6 by 3;
    # 3 and 4 are equal and both kept; sorted by cost.
    assert pareto(costs, accs) == [5, 1, 3, 4]
    assert pareto([], []) == []


def test_rows_tables_and_plots(tmp_path: Path) -> None:
    records = [
        record(0, "cpu", 0.9),
        record(1, "golden", 0.8, mults=16, luts=9000, energy_mj_per_image=3.0),
        record(2, "golden", None, mults=32, luts=12000),
    ]
    table = rows(records)
    assert [r["id"] for r in table] == ["p0", "p1", "p2"]
    assert table[1]["format"] == "fx12.6a40" and table[0]["format"] is None
    assert [r["base_lr"] for r in table] == [None, None, 0.1]  # an override's own column
    assert (table[1]["mults"], table[1]["luts"], table[1]["mj_per_image"]) == (16, 9000, 3.0)
    md = markdown(table)
    assert md.splitlines()[0].startswith("| id | backend | format | rounding | seed |")
    assert "array" not in md  # no row has one
    assert "| p2 | golden | fx16.8a48 | stochastic | 2 | diverged |" in md
    paths = write_report(records, tmp_path, "t")
    assert [p.name for p in paths] == list(REPORT_FILES)
    with open(paths[0]) as f:
        got = list(csv.DictReader(f))
    assert [(r["id"], r["accuracy"], r["mults"]) for r in got] == [
        ("p0", "0.9", ""),
        ("p1", "0.8", "16"),
        ("p2", "", "32"),
    ]
    for png in paths[2:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
