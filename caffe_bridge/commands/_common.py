"""Argument helpers shared by the Caffe-side subcommands."""

from __future__ import annotations

import argparse

from barista_hw.errors import InputError


def add_net_arguments(parser: argparse.ArgumentParser) -> None:
    """``--phase``, ``--level``, ``--stage`` and ``--data-shape``."""
    parser.add_argument(
        "--phase", choices=("TRAIN", "TEST"), default="TRAIN", help="net phase (default TRAIN)"
    )
    parser.add_argument("--level", type=int, default=0, help="net state level (default 0)")
    parser.add_argument(
        "--stage", action="append", default=[], metavar="STAGE", help="net state stage (repeat)"
    )
    parser.add_argument(
        "--data-shape",
        action="append",
        default=[],
        metavar="NAME=N,C,H,W",
        help="shape of a data-source top; the source is not read (repeat per top)",
    )


def parse_data_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``["data=64,1,28,28", "label=64"]`` -> ``{"data": (64, 1, 28, 28), "label": (64,)}``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.split(",") if d.strip() != "")
            if not shape or any(d <= 0 for d in shape):
                raise ValueError
        except ValueError:
            raise InputError(
                f"--data-shape {item!r}: expected NAME=N,C,H,W with positive integers"
            ) from None
        shapes[name.strip()] = shape
    return shapes
