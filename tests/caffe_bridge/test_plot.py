"""Training curves: the log parser on Caffe's own log lines, and the figure's axes and legend.

The figure is checked through matplotlib's objects (axis limits, the legend's and the
axes' extents after a draw), not by its pixels.
"""

from __future__ import annotations

import pytest

from caffe_bridge import plot

# BVLC Caffe's glog output of `caffe train` on LeNet (solver.cpp / sgd_solver.cpp lines, a
# data layer's line between them), its last lines as published with a LeNet run.
CAFFE_LOG = """\
I0522 11:51:41.947263  7754 solver.cpp:56] Solving LeNet
I0522 11:51:41.947268  7754 solver.cpp:57] Learning Rate Policy: inv
I0522 11:51:41.948084  7754 solver.cpp:351] Iteration 0, Testing net (#0)
I0522 11:51:42.038612  7774 data_layer.cpp:73] Restarting data prefetching from start.
I0522 11:51:42.040290  7754 solver.cpp:418]     Test net output #0: accuracy = 0.0806
I0522 11:51:42.040315  7754 solver.cpp:418]     Test net output #1: loss = 2.36871 (* 1 = 2.36871 loss)
I0522 11:51:42.042163  7754 solver.cpp:239] Iteration 0 (-2.75934e-31 iter/s, 0.094s/100 iters), loss = 2.35924
I0522 11:51:42.042188  7754 solver.cpp:258]     Train net output #0: loss = 2.35924 (* 1 = 2.35924 loss)
I0522 11:51:42.042203  7754 sgd_solver.cpp:112] Iteration 0, lr = 0.01
I0522 11:51:42.238373  7754 solver.cpp:239] Iteration 100 (509.718 iter/s, 0.196187s/100 iters), loss = 0.221493
I0522 11:51:42.238412  7754 solver.cpp:258]     Train net output #0: loss = 0.221493 (* 1 = 0.221493 loss)
I0522 11:51:42.238425  7754 sgd_solver.cpp:112] Iteration 100, lr = 0.00992565
I0522 11:52:02.485299  7754 solver.cpp:468] Snapshotting to binary proto file snapshots/my_net_iter_10000.caffemodel
I0522 11:52:02.490921  7754 sgd_solver.cpp:280] Snapshotting solver state to binary proto file snapshots/my_net_iter_10000.solverstate
I0522 11:52:02.494045  7754 solver.cpp:331] Iteration 10000, loss = 0.00245183
I0522 11:52:02.494065  7754 solver.cpp:351] Iteration 10000, Testing net (#0)
I0522 11:52:02.563616  7774 data_layer.cpp:73] Restarting data prefetching from start.
I0522 11:52:02.565438  7754 solver.cpp:418]     Test net output #0: accuracy = 0.9905
I0522 11:52:02.565479  7754 solver.cpp:418]     Test net output #1: loss = 0.0294303 (* 1 = 0.0294303 loss)
I0522 11:52:02.565484  7754 solver.cpp:336] Optimization Done.
I0522 11:52:02.565486  7754 caffe.cpp:250] Optimization Done.
"""  # noqa: E501


def test_a_test_phase_is_one_point_with_all_its_outputs() -> None:
    log = plot.parse_log(CAFFE_LOG.splitlines())
    assert log.loss == [(0, 2.35924), (100, 0.221493), (10000, 0.00245183)]
    assert log.lr == [(0, 0.01), (100, 0.00992565)]
    assert log.train_outputs == {"loss": [(0, 2.35924), (100, 0.221493)]}
    # Two test phases, each with two outputs: two test points, not four.
    assert [(p.iteration, p.net, p.outputs) for p in log.tests] == [
        (0, 0, {"accuracy": 0.0806, "loss": 2.36871}),
        (10000, 0, {"accuracy": 0.9905, "loss": 0.0294303}),
    ]
    assert log.test == {
        (0, "accuracy"): [(0, 0.0806), (10000, 0.9905)],
        (0, "loss"): [(0, 2.36871), (10000, 0.0294303)],
    }


def test_test_nets_and_outputs_of_several_values() -> None:
    lines = [
        "Iteration 20, Testing net (#0)",
        "    Test net output #0: accuracy = 0.5",
        "Iteration 20, Testing net (#1)",  # a second test net: a point of its own
        "    Test net output #0: prob = 0.25",
        "    Test net output #1: prob = 0.75",  # one output blob of two values
        "Iteration 40, Testing net (#0)",  # a test phase that reported nothing: no point
        "Iteration 40, loss = 0.5",
    ]
    log = plot.parse_log(lines)
    assert [(p.iteration, p.net, p.outputs) for p in log.tests] == [
        (20, 0, {"accuracy": 0.5}),
        (20, 1, {"prob": 0.25, "prob #1": 0.75}),
    ]
    assert log.loss == [(40, 0.5)]


def _axes(fig) -> tuple:  # noqa: ANN001 - a matplotlib Figure
    """(loss axis, accuracy axis) of a training figure."""
    by_label = {ax.get_ylabel(): ax for ax in fig.axes}
    return by_label["loss"], by_label["accuracy / other outputs"]


def test_one_test_point_gets_the_whole_accuracy_range() -> None:
    log = plot.parse_log(CAFFE_LOG.splitlines()[:12])  # up to iteration 100: one test point
    assert len(log.tests) == 1
    loss_ax, acc_ax = _axes(plot.training_figure(log))
    lo, hi = acc_ax.get_ylim()
    assert lo <= 0.0 and hi >= 1.0 and hi - lo <= 1.1  # 0..1, a little padded
    assert loss_ax.get_ylim()[0] == 0.0  # losses from 0
    assert loss_ax.get_ylim()[1] >= 2.36871


def test_outputs_outside_zero_to_one_get_a_padded_range() -> None:
    log = plot.parse_log(["Iteration 0, Testing net (#0)", "    Test net output #0: psnr = 31.5"])
    _, other = _axes(plot.training_figure(log))
    lo, hi = other.get_ylim()
    assert lo < 31.5 < hi and 1.0 <= hi - lo <= 10.0  # around the value, not a sliver


@pytest.mark.parametrize("lines", [CAFFE_LOG.splitlines(), CAFFE_LOG.splitlines()[:12]])
def test_the_legend_covers_no_data(lines: list[str]) -> None:
    fig = plot.training_figure(plot.parse_log(lines), title="LeNet")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["train loss", "test accuracy", "test loss"]
    box = legend.get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1  # on the figure, whole
    assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
    for ax in fig.axes:
        # Neither the data area nor the axes' labels and tick labels.
        assert not box.overlaps(ax.get_window_extent(renderer))
        assert not box.overlaps(ax.get_tightbbox(renderer))
