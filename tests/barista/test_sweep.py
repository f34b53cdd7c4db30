"""The unmodified Caffe LeNet example trains on the digits data, in float32 and in fx16.

Small by default (CI); ``BARISTA_FULL=1`` runs the issue's full claim: the cpu
backend reaches >= 95% test accuracy and the golden backend in 16-bit fixed
point lands within one point of it.
"""

import os
from pathlib import Path

import pytest

from barista.sweep import train_and_test
from barista_base.errors import InputError
from caffe_bridge.datasets import write_digits

FULL = os.environ.get("BARISTA_FULL") == "1"
ITERATIONS = 1000 if FULL else 50
SOLVER = "examples/mnist/lenet_solver.prototxt"


@pytest.mark.slow
def test_lenet_trains_on_digits_in_float32_and_fx16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_digits(tmp_path)
    monkeypatch.chdir(tmp_path)
    cpu = train_and_test(SOLVER, iterations=ITERATIONS, test_batches=4)
    golden = train_and_test(
        SOLVER,
        iterations=ITERATIONS,
        test_batches=4,
        backend="golden",
        backend_options={"fmt": "fx16"},
    )
    print(f"\n{cpu}\n{golden}")  # shown with -s: the figures behind the claim
    if FULL:
        assert cpu.accuracy >= 0.95
        assert abs(golden.accuracy - cpu.accuracy) <= 0.01
    else:
        assert cpu.accuracy >= 0.8
        assert golden.accuracy >= cpu.accuracy - 0.05


def test_scaling_reaches_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``scaling="static"`` trains with the format's fraction bits (the label says so)."""
    write_digits(tmp_path)
    monkeypatch.chdir(tmp_path)
    run = train_and_test(
        SOLVER,
        iterations=2,
        test_batches=1,
        backend="golden",
        backend_options={"fmt": "fx16.12"},
        scaling="static",
        seed=1,
    )
    assert run.label == "golden fmt=fx16.12 scaling=static" and run.iterations == 2
    with pytest.raises(InputError, match="unknown scaling"):
        train_and_test(SOLVER, iterations=1, backend="golden", scaling="fixed")
