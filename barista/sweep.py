"""Train-and-test runs for sweeps: one call per (backend, number format, rounding) point.

Researchers compare number formats and rounding schemes by training the same
net under each; :func:`train_and_test` is that one run, returning the figures
a table or plot needs. It uses the ordinary solver, so the run is exactly what
``barista train`` would do for the same iterations.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from barista_hw.scaling import parse_scaling
from caffe_bridge.solvers import get_solver

from .backends import backend_factory


@dataclass(frozen=True)
class RunResult:
    """What one training run reached."""

    label: str
    iterations: int
    accuracy: float
    loss: float
    seconds: float

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(self.iterations, 1)


def train_and_test(
    solver_path: str | os.PathLike[str],
    *,
    iterations: int,
    backend: str = "cpu",
    backend_options: dict[str, Any] | None = None,
    test_batches: int | None = None,
    label: str | None = None,
    seed: int | None = None,
    scaling: str | None = None,
) -> RunResult:
    """Train ``iterations`` steps from the solver file, then test once with test net 0.

    Paths in the solver file are relative to the current directory, as in Caffe.
    Intermediate tests are skipped (they would only cost time); ``test_batches``
    overrides the solver's ``test_iter``, ``seed`` its ``random_seed`` (a run with a
    seed is repeatable to the bit). ``scaling`` (``"dynamic"`` or ``"static"``) sets a
    hardware backend's scaling mode, as ``barista train --scaling`` does.
    """
    options = dict(backend_options or {})
    if scaling is not None:
        options["scaling"] = parse_scaling(scaling)
    solver = get_solver(
        solver_path,
        backend=backend_factory(backend, **options),
        max_iter=iterations,
        random_seed=seed,
        log=lambda _line: None,
    )
    solver.param.test_interval = 0
    solver.param.snapshot = 0
    solver.param.snapshot_after_train = False
    if test_batches is not None:
        solver.param.test_iter[0] = test_batches
    start = time.perf_counter()
    solver.step(iterations)
    seconds = time.perf_counter() - start
    scores = dict(solver.test(0))
    accuracy = float(scores.get("accuracy", float("nan")))
    loss = float(solver.smoothed_loss)
    name = label or backend + "".join(f" {k}={v}" for k, v in sorted(options.items()))
    return RunResult(name, iterations, accuracy, loss, seconds)
