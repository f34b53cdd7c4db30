"""``barista plot``: loss and accuracy curves from a training log (ours or Caffe's)."""

from __future__ import annotations

import argparse
import sys

NAME = "plot"
HELP = "plot the loss/accuracy curves of a training log (barista train or caffe train output)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``barista plot`` options."""
    parser.add_argument("log", metavar="LOG", help="the training log (stdout/stderr of training)")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    parser.add_argument("--title", help="plot title (default: the log's file name)")


def run(args: argparse.Namespace) -> int:
    """Read the log and write the plot; returns the exit status."""
    from caffe_bridge.plot import plot_training, read_log

    log = read_log(args.log)
    plot_training(log, args.out, title=args.title or args.log)
    n_test = sum(len(s) for s in log.test.values())
    print(f"Wrote {args.out}: {len(log.loss)} loss points, {n_test} test points", file=sys.stderr)
    return 0
