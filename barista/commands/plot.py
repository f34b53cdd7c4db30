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
    counts = [_count(len(log.loss), "loss point"), _count(len(log.tests), "test point")]
    print(f"Wrote {args.out}: {', '.join(counts)}", file=sys.stderr)
    return 0


def _count(n: int, noun: str) -> str:
    """``1 test point``, ``2 test points`` (a test phase is one point, whatever it reports)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
