"""The ``barista`` command: one entry point, one module per subcommand.

Each subcommand module (:mod:`barista.commands`) defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``, and imports what it needs
(Amaranth, the simulators) inside ``run``, so ``barista info`` stays quick. Bad
input exits with status 2 and a one-line message naming what is wrong.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import ModuleType

from barista_base.errors import InputError

from .commands import (
    build,
    compile,
    cosim,
    data,
    demo,
    demo_engines,
    generate,
    info,
    plot,
    sweep,
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
    sweep,
    data,
    generate,
    compile,
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


#: Exit status when the reader of stdout went away (``barista info --json | head``):
#: 128 + SIGPIPE, what a shell reports for a program that SIGPIPE ended, as ``cat`` would.
BROKEN_PIPE_STATUS = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``barista`` command; returns the exit status.

    A closed stdout (the reader of a pipe exited) ends any command quietly with
    :data:`BROKEN_PIPE_STATUS`: stdout is pointed at devnull so that the interpreter's
    last flush at exit cannot raise the same error again (Python's documented recipe).
    """
    try:
        try:
            return _run(build_parser(), argv)
        finally:
            sys.stdout.flush()  # a broken pipe shows here, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_STATUS


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its subcommand: bad input is one line and status 2."""
    args = parser.parse_args(argv)  # --help is printed here (and may meet a closed pipe)
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"barista {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"barista {args.command}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Send whatever stdout still holds to devnull (its reader is gone)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (e.g. a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
