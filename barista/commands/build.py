"""``barista build``: plan an accelerator for a net and board, build its bitstream, report.

``barista build NET.prototxt --board ulx3s-85f [--preset NAME | --config manifest.json]
[--format SPEC] [--array RxC] [--mhz F] [--baud N] [--data-shape ...] [-o DIR]``

Plans the design for the board's budget (the design-space exploration of
:func:`barista_hw.generate.generate`, a preset, or the configuration of an existing
manifest), writes the generated Verilog and manifest into ``DIR/rtl``, builds the board
top (accelerator + UART host link) with the YoWASP toolchain (:mod:`boards.build`) and
writes ``DIR/report.json``, the bitstream and the logs. Exit status 0 when the design
fits and meets timing, 1 (with the figures) when it does not or a tool fails, 2 for
bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from barista_base.errors import InputError

from .args import add_data_shape_argument, parse_data_shapes
from .generate import load_layers

NAME = "build"
HELP = "build a bitstream for a net's accelerator on a board and report Fmax and utilisation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``barista build``."""
    from barista_hw.presets import PRESETS
    from boards.platforms import BOARDS
    from boards.protocol import DEFAULT_BAUD

    parser.add_argument("net", metavar="NET.prototxt", help="the net (its TRAIN phase is used)")
    parser.add_argument("--board", required=True, choices=sorted(BOARDS), help="board to build")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--preset", choices=sorted(PRESETS), help="a named design")
    what.add_argument(
        "--config", metavar="manifest.json", help="the design of an earlier barista generate"
    )
    parser.add_argument("--format", metavar="SPEC", help="fix the number format for the DSE")
    parser.add_argument("--array", metavar="RxC", help="fix the array shape for the DSE")
    parser.add_argument("--mhz", type=float, help="clock (default: the target's)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="UART baud rate")
    add_data_shape_argument(parser)
    parser.add_argument("--timeout", type=float, help="stop a build after this many seconds")
    parser.add_argument("--verbose", action="store_true", help="show the tools' output")
    parser.add_argument(
        "-o", "--out", metavar="DIR", help="output directory (default build/<net>-<board>)"
    )


def run(args: argparse.Namespace) -> int:
    """Plan, build, report; see the module docstring for the exit status."""
    from dataclasses import replace

    from barista_hw.generate import generate, module_name
    from barista_hw.plan import plan_net
    from boards.build import build_board
    from boards.platforms import get_board
    from boards.traffic import describe

    from ..manifest import load_accelerator, write_rtl_dir

    board = get_board(args.board)
    name, layers = load_layers(args.net, parse_data_shapes(args.data_shape))
    out = Path(args.out) if args.out else Path("build") / f"{module_name(name)}-{board.name}"
    budget = board.target.budget
    if args.mhz:
        budget = replace(budget, mhz=args.mhz)
    if args.config:
        if args.format or args.array:
            raise InputError("--config fixes the whole design: drop --format and --array")
        cfg = load_accelerator(args.config).config
        if cfg.target != board.name:
            cfg = replace(cfg, target=board.name, clock_mhz=budget.mhz)
        elif args.mhz:
            cfg = replace(cfg, clock_mhz=args.mhz)
    else:
        design = generate(
            layers,
            target=budget,
            fmt=args.format,
            array=args.array,
            preset=args.preset,
            name=name,
        )
        write_rtl_dir(design, out / "rtl")
        cfg = design.config
        print(design.summary, end="")
    print(f"building for {board.name} at {cfg.clock_mhz:g} MHz (this can take minutes)...")
    report = build_board(
        cfg, board, out=out, baud=args.baud, timeout=args.timeout, progress=args.verbose
    )
    print(report.summary())
    if report.fmax:  # routed: the iteration at the clock the design reached
        fmax = min(f["achieved_mhz"] for f in report.fmax.values())
        print(describe(plan_net(cfg, layers), baud=args.baud, mhz=min(fmax, cfg.clock_mhz)))
    print(f"wrote {out / 'report.json'}")
    if not report.ok:
        msg = "; ".join(report.messages) or report.status
        print(f"barista build: {board.name}: {msg}", file=sys.stderr)
        return 1
    return 0
