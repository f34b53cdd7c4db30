"""The ``barista`` command: one entry point, one module per subcommand.

Each subcommand module (:mod:`barista.commands`) defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``, and imports what it needs
(Amaranth, the simulators) inside ``run``, so ``barista info`` stays quick. Bad
input exits with status 2 and a one-line message naming what is wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from barista_base.errors import InputError

from .commands import (
    build,
    cosim,
    data,
    demo,
    demo_engines,
    generate,
    info,
    plot,
    test,
    time,
    train,
)

#: The subcommands, in the order ``barista --help`` lists them.
SUBCOMMANDS: tuple[ModuleType, ...] = (
    info,
    time,
    train,
    test,
    plot,
    data,
    generate,
    demo,
    build,
    cosim,
    demo_engines,
)


def build_parser(subcommands: Sequence[ModuleType] = SUBCOMMANDS) -> argparse.ArgumentParser:
    """The argument parser of ``barista`` with ``subcommands``."""
    parser = argparse.ArgumentParser(
        prog="barista",
        description="Caffe nets on FPGA systolic arrays: RTL, cosimulation, training, bitstreams.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in subcommands:
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``barista`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"barista {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"barista {args.command}: interrupted", file=sys.stderr)
        return 130
