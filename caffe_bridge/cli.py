"""The ``barista`` command: one entry point, one module per subcommand.

Each subcommand module defines ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``.  Bad input exits with status 2 and a one-line
message naming what is wrong.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from barista_hw.errors import InputError

# Imported lazily so that ``barista info`` does not pay for Amaranth, etc.
SUBCOMMANDS: tuple[str, ...] = (
    "caffe_bridge.commands.info",
    "caffe_bridge.commands.time",
    "caffe_bridge.commands.train",
    "caffe_bridge.commands.test",
    "caffe_bridge.commands.plot",
    "caffe_bridge.commands.data",
    "caffe_bridge.commands.generate",
    "caffe_bridge.commands.demo",
    "boards.build_cmd",
    "sim.cosim",
    "sim.demo",
)


# Kept as an alias: subcommands raise it for bad arguments.
UsageError = InputError


def _load(module: str):  # noqa: ANN202 - a module object
    return importlib.import_module(module)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="barista",
        description="Caffe nets on FPGA systolic arrays: RTL, cosimulation, training, bitstreams.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        mod = _load(name)
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


if __name__ == "__main__":
    sys.exit(main())
