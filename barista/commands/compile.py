"""``barista compile``: lower a net's training iteration into a device program.

``barista compile NET.prototxt [--target T] [--format SPEC] [--accelerator DIR]
[--rounding MODE] [--data-shape ...] [-o DIR] [--dump]`` reads the net in the TRAIN
phase, takes the design the device trains it on for the target
(:func:`barista.device_net.device_design`, or ``--accelerator``), compiles one
iteration (``docs/device.md``) and writes ``program.bin`` (the program file),
``program.txt`` (its listing) and ``summary.txt`` (what runs where, and per section the
traffic, time and energy of one iteration) into ``DIR`` (default
``rtl_out/<net name>/device``), all or nothing. ``--dump`` prints the listing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_data_shape_argument, parse_data_shapes

NAME = "compile"
HELP = "compile a net's training iteration into a device program (docs/device.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``barista compile``."""
    from barista_hw.targets import DEFAULT_TARGET, TARGETS

    parser.add_argument("net", metavar="NET.prototxt", help="the net (its TRAIN phase is used)")
    parser.add_argument(
        "--target",
        choices=sorted(TARGETS),
        help=f"the board: its accelerator design and memory (default {DEFAULT_TARGET})",
    )
    parser.add_argument("--format", metavar="SPEC", help="the number format, e.g. fx16")
    parser.add_argument(
        "--accelerator",
        metavar="DIR",
        help="an accelerator written by `barista generate` instead of the target's design",
    )
    parser.add_argument(
        "--rounding",
        metavar="MODE",
        default="nearest-even",
        help="rounding of the device's results: nearest-even, floor or stochastic",
    )
    parser.add_argument(
        "--preload",
        action="store_true",
        help="the training images live in the device's DRAM, loaded once: each iteration "
        "fetches its batch there instead of receiving it over the link",
    )
    add_data_shape_argument(parser)
    parser.add_argument("-o", "--out", metavar="DIR", help="output directory")
    parser.add_argument("--dump", action="store_true", help="print the program's listing")


def run(args: argparse.Namespace) -> int:
    """Compile, write the directory, print the summary."""
    from barista.device_net import compile_device, describe, device_design
    from barista_base.cache import atomic_directory
    from barista_hw.generate import module_name
    from barista_hw.numfmt import Rounding
    from barista_hw.targets import DEFAULT_TARGET

    from ..manifest import load_accelerator
    from .generate import train_net_at

    net = train_net_at(args.net, parse_data_shapes(args.data_shape))
    name = net.name or Path(args.net).stem
    target = args.target or DEFAULT_TARGET
    if args.accelerator:
        files = load_accelerator(args.accelerator)
    else:
        files, _ = device_design(net, target=target, fmt=args.format, name=name)
    dc = compile_device(
        net,
        files.config,
        target=args.target,
        rounding=Rounding.parse(args.rounding),
        preload=args.preload,
    )
    summary = "\n".join(
        [
            f"{name} on {dc.config.target}: {files.config.engine.rows}x"
            f"{files.config.engine.cols} array, {files.config.engine.fmt.name}, "
            f"batch {dc.net.batch}",
            describe(dc.net),
            dc.compiled.summary(),
            dc.cost.table(),
            dc.cost.summary(),
        ]
    )
    out = Path(args.out) if args.out else Path("rtl_out") / module_name(name) / "device"
    listing = dc.compiled.program.listing()
    with atomic_directory(out, replace=True) as tmp:
        (tmp / "program.bin").write_bytes(dc.compiled.program.to_bytes())
        (tmp / "program.txt").write_text(listing)
        (tmp / "summary.txt").write_text(summary + "\n")
    if args.dump:
        print(listing, end="")
    print(summary)
    print(f"wrote {out}/program.bin, program.txt, summary.txt")
    return 0
