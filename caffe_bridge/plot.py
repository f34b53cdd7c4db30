"""Loss and accuracy curves from training log lines (ours or Caffe's glog output).

:func:`parse_log` reads the lines a solver prints (``Iteration N, loss = X``,
``Iteration N, lr = Z``, ``Iteration N, Testing net (#k)``, ``Test net output
#i: name = Y``, ``Train net output #i: name = Y``), with or without glog's
``I0101 12:00:00.000 123 solver.cpp:228]`` prefix. A test phase (``Testing net
(#k)`` and the outputs that follow it) is one :class:`TestPoint` however many outputs it
reports (LeNet's has two: accuracy and loss).

:func:`training_figure` draws the curves as a matplotlib figure (losses on the left
axis; accuracy and the other outputs on the right, from 0 to 1 when they lie there;
the legend below the axes, where it covers no data) and :func:`plot_training` writes
it as a PNG with the Agg canvas (no display needed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from barista_base.errors import InputError

_NUM = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|-?inf))"
_LOSS = re.compile(rf"Iteration (\d+)(?: \([^)]*\))?, loss = {_NUM}")
_LR = re.compile(rf"Iteration (\d+), lr = {_NUM}")
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_OUTPUT = re.compile(rf"(Train|Test) net output #(\d+): (\S+) = {_NUM}")

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Series = list[tuple[int, float]]


@dataclass
class TestPoint:
    """One test phase: the iteration, the test net's index, and every output it reported."""

    __test__ = False  # a Caffe test phase, not a pytest test class

    iteration: int
    net: int
    outputs: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingLog:
    """Curves read from a log: each series is a list of ``(iteration, value)``."""

    loss: Series = field(default_factory=list)
    lr: Series = field(default_factory=list)
    tests: list[TestPoint] = field(default_factory=list)
    train_outputs: dict[str, Series] = field(default_factory=dict)  # displayed train outputs

    @property
    def test(self) -> dict[tuple[int, str], Series]:
        """The test outputs as curves: (net index, output name) -> series."""
        curves: dict[tuple[int, str], Series] = {}
        for point in self.tests:
            for name, value in point.outputs.items():
                curves.setdefault((point.net, name), []).append((point.iteration, value))
        return curves

    def __bool__(self) -> bool:
        return bool(self.loss or self.tests)


def parse_log(lines: Iterable[str]) -> TrainingLog:
    """Read the curves out of solver log lines (other lines are ignored)."""
    log = TrainingLog()
    test_at: tuple[int, int] | None = None  # (iteration, net) of the test being reported
    point: TestPoint | None = None  # the test point its outputs go to (made by the first)
    train_at: int | None = None
    for line in lines:
        if m := _TESTING.search(line):
            test_at, point = (int(m[1]), int(m[2])), None
            continue
        if m := _LR.search(line):
            log.lr.append((int(m[1]), float(m[2])))
            continue
        if m := _LOSS.search(line):
            train_at = int(m[1])
            log.loss.append((train_at, float(m[2])))
            test_at = point = None
            continue
        if m := _OUTPUT.search(line):
            name, value = m[3], float(m[4])
            if m[1] == "Test" and test_at is not None:
                if point is None:
                    point = TestPoint(*test_at)
                    log.tests.append(point)
                if name in point.outputs:  # an output blob of several values: one per index
                    name = f"{name} #{m[2]}"
                point.outputs[name] = value
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


def _other_limits(values: list[float]) -> tuple[float, float]:
    """The range of the right axis: 0..1 (a little over, so that 0 and 1 show) when every
    value is a fraction, as accuracies are; else the values' range, padded by a tenth (a
    single value gets a range around it, not a sliver)."""
    lo, hi = min(values), max(values)
    if lo >= 0.0 and hi <= 1.0:
        return -0.03, 1.03
    pad = 0.1 * (hi - lo) or 0.1 * max(abs(hi), 1.0)
    return lo - pad, hi + pad


def training_figure(log: TrainingLog, title: str | None = None) -> Figure:
    """The curves of ``log`` as a figure: the training loss and test losses on the left
    axis (from 0 when no loss is negative), the other test outputs (accuracy) on the
    right one, and the legend below both, outside the axes, so that it hides no data."""
    # A bare Figure (no pyplot) renders PNGs with the Agg canvas and leaves the
    # process-wide backend alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    handles = []
    losses: list[float] = []
    if log.loss:
        it, val = zip(*log.loss, strict=True)
        marker = "o" if len(it) == 1 else None  # a line of one point is not drawn
        handles += ax.plot(it, val, color="tab:blue", lw=1.2, marker=marker, label="train loss")
        losses += val
    right = None
    others: list[float] = []
    colors = iter(["tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"])
    curves = log.test
    several_nets = any(net for net, _ in curves)
    for (net, name), series in sorted(curves.items()):
        it, val = zip(*series, strict=True)
        label = f"test #{net} {name}" if several_nets else f"test {name}"
        color = next(colors, None)
        if _is_loss(name):
            handles += ax.plot(it, val, "o-", ms=3, color=color, label=label)
            losses += val
        else:
            if right is None:
                right = ax.twinx()
                right.set_ylabel("accuracy / other outputs")
            handles += right.plot(it, val, "s--", ms=3, color=color, label=label)
            others += val
    if losses and min(losses) >= 0.0:
        ax.set_ylim(bottom=0.0)
    if right is not None:
        right.set_ylim(*_other_limits(others))
    if handles:
        fig.legend(
            handles=handles,
            labels=[h.get_label() for h in handles],
            loc="outside lower center",
            ncols=min(len(handles), 4),
            frameon=False,
        )
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def plot_training(log: TrainingLog, out: str | os.PathLike[str], title: str | None = None) -> None:
    """Write :func:`training_figure` of ``log`` to ``out`` as a PNG, atomically."""
    from .solvers.snapshot import atomic_write

    fig = training_figure(log, title)

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png")

    try:
        atomic_write(out, write)
    except OSError as exc:
        raise InputError(f"{out}: cannot write plot: {exc}") from None
