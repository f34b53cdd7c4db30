"""bench/bench_formats.py's reading of sweep points: each net's column takes only its own
solver's points, at its own iterations; a point no sweep has reads "not run"."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_formats as bf  # noqa: E402

from barista_base.errors import InputError  # noqa: E402


def point(solver: str, iterations: int, accuracy: float, **settings: Any) -> dict[str, Any]:
    """A sweep point record as ``barista sweep`` writes it."""
    base = {"solver": solver, "seed": 1, "iterations": iterations, "test_batches": 4}
    return {"status": "ok", "accuracy": accuracy, "settings": base | settings}


def golden(solver: str, iterations: int, accuracy: float, fmt: str, rounding: str) -> dict:
    return point(solver, iterations, accuracy, backend="golden", format=fmt, rounding=rounding)


POINTS = [
    point(bf.SOLVER, 1000, 0.97, backend="cpu"),
    point(bf.CIFAR_SOLVER, 200, 0.6275, backend="cpu"),
    golden(bf.SOLVER, 1000, 0.9725, "e4m3", "nearest-even"),
    golden(bf.CIFAR_SOLVER, 200, 0.55, "e4m3", "nearest-even"),
    golden(bf.CIFAR_SOLVER, 200, 0.41, "e4m3", "stochastic"),
    golden(bf.CIFAR_SOLVER, 200, 0.60, "fx16.8a48", "nearest-even"),
    golden(bf.CIFAR_SOLVER, 100, 0.11, "e5m2", "nearest-even"),
    point(bf.CIFAR_SOLVER, 200, 0.99, backend="golden", format="e5m2",
          rounding="nearest-even", overrides={"base_lr": 0.01}),
]  # fmt: skip


def test_each_net_reads_only_its_own_solver_points() -> None:
    def cifar(name: str, rounding: str, iterations: int = 200) -> float | None:
        return bf.find_accuracy(POINTS, name, rounding, 1, iterations, bf.CIFAR_SOLVER)

    assert bf.find_accuracy(POINTS, bf.FLOAT32, "-", 1, 1000) == 0.97
    assert cifar(bf.FLOAT32, "-") == 0.6275
    assert bf.find_accuracy(POINTS, "e4m3", "nearest-even", 1, 1000) == 0.9725
    assert cifar("e4m3", "nearest-even") == 0.55
    assert cifar("e4m3", "stochastic") == 0.41
    assert cifar("fx16", "nearest-even") == 0.60  # the sweep's canonical name, fx16.8a48
    # LeNet's iterations do not find cifar points, nor the other way round
    assert cifar("e4m3", "nearest-even", 1000) is None
    assert bf.find_accuracy(POINTS, "e4m3", "nearest-even", 1, 200) is None
    # another iteration count, or a point with solver overrides, is not the point
    assert cifar("e5m2", "nearest-even") is None
    assert cifar("e5m2", "nearest-even", 100) == 0.11
    assert cifar("mxfp4", "nearest-even") is None


def test_sweep_points_reads_finished_points_of_each_directory(tmp_path: Path) -> None:
    for name, records in (("a", POINTS[:2]), ("b", POINTS[2:4])):
        (tmp_path / name / "points").mkdir(parents=True)
        for i, record in enumerate(records):
            (tmp_path / name / "points" / f"{i}.json").write_text(json.dumps(record))
    (tmp_path / "b" / "points" / "failed.json").write_text(json.dumps({"status": "error"}))
    found = bf.sweep_points([tmp_path / "a", tmp_path / "b"])
    assert sorted(p["accuracy"] for p in found) == [0.55, 0.6275, 0.97, 0.9725]
    with pytest.raises(InputError, match="not a sweep directory"):
        bf.sweep_points([tmp_path])


def test_table_has_a_cifar_column_and_says_not_run() -> None:
    cost = bf.Cost(per_pe={"LUT4": 299, "cells": 374, "DSP": 0}, pj_per_mac=23.2)
    rows = [
        bf.Row(bf.FLOAT32, "-", 0.97, bf.Cost(missing="cpu reference"), 0.6275),
        bf.Row("e4m3", "nearest-even", 0.9725, cost, None),
        bf.Row("e4m3", "stochastic", None, cost, 0.41),
    ]
    lines = bf.table(rows, (2, 2)).splitlines()
    assert "| LeNet accuracy | cifar10_quick accuracy |" in lines[0]
    assert lines[2] == "| float32 | - | 97.00 | 62.75 | cpu reference | - | - | - |"
    assert lines[3] == "| e4m3 | nearest-even | 97.25 | not run | 299 | 374 | 0 | 23.2 |"
    assert lines[4] == "| e4m3 | stochastic | not run | 41.00 | 299 | 374 | 0 | 23.2 |"
