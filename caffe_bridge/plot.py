"""Loss and accuracy curves from training log lines (ours or Caffe's glog output).

:func:`parse_log` reads the lines a solver prints (``Iteration N, loss = X``,
``Iteration N, lr = Z``, ``Iteration N, Testing net (#k)``, ``Test net output
#i: name = Y``, ``Train net output #i: name = Y``), with or without glog's
``I0101 12:00:00.000 123 solver.cpp:228]`` prefix, and :func:`plot_training`
draws them with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from barista_base.errors import InputError

_NUM = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|-?inf))"
_LOSS = re.compile(rf"Iteration (\d+)(?: \([^)]*\))?, loss = {_NUM}")
_LR = re.compile(rf"Iteration (\d+), lr = {_NUM}")
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_OUTPUT = re.compile(rf"(Train|Test) net output #(\d+): (\S+) = {_NUM}")

Series = list[tuple[int, float]]


@dataclass
class TrainingLog:
    """Curves read from a log: each is a list of ``(iteration, value)``."""

    loss: Series = field(default_factory=list)
    lr: Series = field(default_factory=list)
    # (net index, output name) -> series; also the train net's displayed outputs.
    test: dict[tuple[int, str], Series] = field(default_factory=dict)
    train_outputs: dict[str, Series] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.loss or self.test)


def parse_log(lines: Iterable[str]) -> TrainingLog:
    """Read the curves out of solver log lines (other lines are ignored)."""
    log = TrainingLog()
    test_at: tuple[int, int] | None = None  # (iteration, net) of the test being reported
    train_at: int | None = None
    for line in lines:
        if m := _TESTING.search(line):
            test_at = (int(m[1]), int(m[2]))
            continue
        if m := _LR.search(line):
            log.lr.append((int(m[1]), float(m[2])))
            continue
        if m := _LOSS.search(line):
            train_at = int(m[1])
            log.loss.append((train_at, float(m[2])))
            test_at = None
            continue
        if m := _OUTPUT.search(line):
            name, value = m[3], float(m[4])
            if m[1] == "Test" and test_at is not None:
                log.test.setdefault((test_at[1], name), []).append((test_at[0], value))
            elif m[1] == "Train" and train_at is not None:
                log.train_outputs.setdefault(name, []).append((train_at, value))
    return log


def read_log(path: str | os.PathLike[str]) -> TrainingLog:
    """:func:`parse_log` of a file; :class:`InputError` if it has no curves."""
    try:
        with open(path, errors="replace") as f:
            log = parse_log(f)
    except FileNotFoundError:
        raise InputError(f"{path}: log file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read log: {exc}") from None
    if not log:
        raise InputError(
            f"{path}: no training curves found (expected lines such as "
            f"'Iteration 100, loss = 0.5' or 'Test net output #0: accuracy = 0.9')"
        )
    return log


def _is_loss(name: str) -> bool:
    return "loss" in name.lower()


def plot_training(log: TrainingLog, out: str | os.PathLike[str], title: str | None = None) -> None:
    """Draw the training loss (and test losses) on the left axis and the other test
    outputs (accuracy) on the right, and write a PNG to ``out`` atomically."""
    # A bare Figure (no pyplot) renders PNGs with the Agg canvas and leaves the
    # process-wide backend alone.
    from matplotlib.figure import Figure

    from .solvers.snapshot import atomic_write

    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    handles = []
    if log.loss:
        it, val = zip(*log.loss, strict=True)
        handles += ax.plot(it, val, color="tab:blue", lw=1.2, label="train loss")
    right = None
    colors = iter(["tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"])
    for (net, name), series in sorted(log.test.items()):
        it, val = zip(*series, strict=True)
        label = f"test #{net} {name}" if any(k[0] for k in log.test) else f"test {name}"
        color = next(colors, None)
        if _is_loss(name):
            handles += ax.plot(it, val, "o-", ms=3, color=color, label=label)
        else:
            if right is None:
                right = ax.twinx()
                right.set_ylabel("accuracy / other outputs")
            handles += right.plot(it, val, "s--", ms=3, color=color, label=label)
    if handles:
        ax.legend(handles=handles, labels=[h.get_label() for h in handles], loc="best")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png")

    try:
        atomic_write(out, write)
    except OSError as exc:
        raise InputError(f"{out}: cannot write plot: {exc}") from None
