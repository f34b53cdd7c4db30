"""``barista plot``: a Caffe log in, a PNG out, and what it drew counted right."""

from __future__ import annotations

from pathlib import Path

import pytest

from barista.cli import main

# Two test phases of `caffe train` (glog lines), each reporting two outputs.
LOG = """\
I0522 11:51:41.948084  7754 solver.cpp:351] Iteration 0, Testing net (#0)
I0522 11:51:42.040290  7754 solver.cpp:418]     Test net output #0: accuracy = 0.0806
I0522 11:51:42.040315  7754 solver.cpp:418]     Test net output #1: loss = 2.36871 (* 1 = 2.36871 loss)
I0522 11:51:42.042163  7754 solver.cpp:239] Iteration 0 (-2.75934e-31 iter/s, 0.094s/100 iters), loss = 2.35924
I0522 11:51:42.238373  7754 solver.cpp:239] Iteration 100 (509.718 iter/s, 0.196187s/100 iters), loss = 0.221493
I0522 11:52:02.494045  7754 solver.cpp:331] Iteration 10000, loss = 0.00245183
I0522 11:52:02.494065  7754 solver.cpp:351] Iteration 10000, Testing net (#0)
I0522 11:52:02.565438  7754 solver.cpp:418]     Test net output #0: accuracy = 0.9905
I0522 11:52:02.565479  7754 solver.cpp:418]     Test net output #1: loss = 0.0294303 (* 1 = 0.0294303 loss)
"""  # noqa: E501


@pytest.mark.parametrize(
    "lines, counts",
    [
        (LOG.splitlines(), "3 loss points, 2 test points"),
        (LOG.splitlines()[:4], "1 loss point, 1 test point"),
    ],
)
def test_plot_counts_a_test_phase_as_one_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], counts: str
) -> None:
    path = tmp_path / "caffe.log"
    path.write_text("\n".join(lines) + "\n")
    assert main(["plot", str(path), "--out", str(tmp_path / "curves.png")]) == 0
    assert f"curves.png: {counts}" in capsys.readouterr().err
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
