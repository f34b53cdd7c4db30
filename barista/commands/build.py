"""``barista build``: plan an accelerator for a net and board, build its bitstream, report.

``barista build NET.prototxt --board ulx3s-85f [--preset NAME | --config manifest.json]
[--format SPEC] [--array RxC] [--mhz F] [--baud N] [--data-shape ...] [-o DIR]``

``barista build NET.prototxt --device --board ulx3s-85f [--batch N] [--mhz F] ...`` builds
the device accelerator instead (:func:`run_device`; :mod:`boards.device_board`: the host
protocol of :mod:`boards.device_protocol`, the device top and the SDRAM controller).

Plans the design for the board's budget (the design-space exploration of
:func:`barista_hw.generate.generate`, a preset, or the configuration of an existing
manifest), writes the generated Verilog and manifest into ``DIR/rtl``, builds the board
top (accelerator + UART host link) with the YoWASP toolchain (:mod:`boards.build`) and
writes ``DIR/report.json``, the bitstream and the logs.

When the explored design does not fit the device after all (status ``no-fit``), the
build steps down by itself: to the fastest design of the exploration's Pareto front that
is estimated to fit once the estimate of each resource that overshot is corrected by
what the build measured (:meth:`barista_hw.dse.DseResult.step_down`), at most
:data:`MAX_STEP_DOWNS` times, saying which design was dropped, why, and which is built
now; ``report.json`` lists the steps in its messages. A design fixed by ``--preset`` or
``--config`` is reported as it is. Exit status 0 when the design built fits and meets
timing, 1 (with the figures) when it does not or a tool fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from barista_base.errors import InputError

from .args import add_data_shape_argument, parse_data_shapes
from .generate import load_layers

if TYPE_CHECKING:
    from barista_hw.config import AcceleratorConfig
    from barista_hw.dse import Candidate, DseResult
    from boards.report import BuildReport

NAME = "build"
#: Designs ``barista build`` builds after the explored one did not fit: each board build
#: takes minutes (iCE40) to half an hour (ULX3S 85F).
MAX_STEP_DOWNS = 3
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
    parser.add_argument(
        "--device",
        action="store_true",
        help="build the device accelerator's board top (boards.device_board: host protocol, "
        "device, SDRAM) for the net's training program, designed as barista generate "
        "--device designs it",
    )
    parser.add_argument("--batch", type=int, metavar="N", help="with --device: the batch")
    parser.add_argument("--timeout", type=float, help="stop a build after this many seconds")
    parser.add_argument("--verbose", action="store_true", help="show the tools' output")
    parser.add_argument(
        "-o", "--out", metavar="DIR", help="output directory (default build/<net>-<board>)"
    )


def run(args: argparse.Namespace) -> int:
    """Plan, build (stepping down if need be), report; see the module docstring."""
    if args.device:
        return run_device(args)
    if args.batch is not None:
        raise InputError("--batch applies to --device builds (the DSE plans its own)")
    from dataclasses import replace

    from barista_hw.generate import generate, module_name, step_down
    from barista_hw.plan import plan_net
    from boards.build import build_board
    from boards.platforms import get_board
    from boards.report import REPORT, BuildReport
    from boards.traffic import describe

    from ..manifest import load_accelerator, write_rtl_dir

    board = get_board(args.board)
    name, layers = load_layers(args.net, parse_data_shapes(args.data_shape))
    out = Path(args.out) if args.out else Path("build") / f"{module_name(name)}-{board.name}"
    budget = board.target.budget
    if args.mhz:
        budget = replace(budget, mhz=args.mhz)
    design = None
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
    steps: list[str] = []  # what each step down did, for the output and the report
    built: list[AcceleratorConfig] = []
    scale: dict[str, float] = {}  # measured / estimated, per resource that overshot
    while True:
        built.append(cfg)
        print(f"building for {board.name} at {cfg.clock_mhz:g} MHz (this can take minutes)...")
        report = build_board(
            cfg, board, out=out, baud=args.baud, timeout=args.timeout, progress=args.verbose
        )
        print(report.summary())
        if report.status != "no-fit" or design is None or design.dse is None:
            break
        last = len(steps) == MAX_STEP_DOWNS
        step, choice = _step_down(report, design.dse, built, scale, board.family, last)
        steps.append(step)
        if choice is None:
            break
        print(f"barista build: {step}")
        design = step_down(design, choice)
        write_rtl_dir(design, out / "rtl")
        cfg = design.config
        print(design.summary, end="")
    if steps:  # the published report says how its design was reached
        published = BuildReport.read(out / REPORT)
        published.messages = [*steps, *published.messages]
        published.write(out / REPORT)
        report.messages = [*steps, *report.messages]
    if report.fmax:  # routed: the iteration at the clock the design reached
        fmax = min(f["achieved_mhz"] for f in report.fmax.values())
        print(describe(plan_net(cfg, layers), baud=args.baud, mhz=min(fmax, cfg.clock_mhz)))
    print(f"wrote {out / 'report.json'}")
    if not report.ok:
        msg = "; ".join(report.messages) or report.status
        print(f"barista build: {board.name}: {msg}", file=sys.stderr)
        return 1
    return 0


def run_device(args: argparse.Namespace) -> int:
    """``--device``: the device top of the net's training program on the board (its design
    as :func:`~barista.device_top.compile_for_top` picks it), built and reported."""
    from barista_hw.device.rtl.decode import decoder_sizes
    from barista_hw.generate import module_name
    from boards.build import build_device_board
    from boards.device_board import DEVICE_MHZ
    from boards.platforms import get_board

    from ..device_top import compile_for_top, top_resources
    from .generate import train_net_at

    fixed = [f"--{k}" for k in ("preset", "config", "format", "array") if getattr(args, k)]
    if fixed:
        raise InputError(f"--device builds the device top's one design: drop {', '.join(fixed)}")
    board = get_board(args.board)
    net = train_net_at(args.net, parse_data_shapes(args.data_shape), args.batch)
    name = net.name or Path(args.net).stem
    out = Path(args.out) if args.out else Path("build") / f"{module_name(name)}_device-{board.name}"
    dc = compile_for_top(net, target=board.name)
    program = dc.compiled.program
    sizes = decoder_sizes(program)
    est = top_resources(dc.config, program)
    e, mhz = dc.config.accelerator.engine, args.mhz or DEVICE_MHZ
    print(
        f"device top: {e.rows}x{e.cols} {e.fmt.name} engine, decoder of {sizes['tensors']} "
        f"tensors and {sizes['registers']} registers; estimate {est.luts} LUT4, {est.mults} "
        f"multipliers, {est.bram_blocks} block RAMs, {est.ffs} FFs"
    )
    print(f"building for {board.name} at {mhz:g} MHz (an hour or more)...")
    report = build_device_board(
        dc.config,
        board,
        out=out,
        mhz=mhz,
        baud=args.baud,
        timeout=args.timeout,
        progress=args.verbose,
        **sizes,
    )
    print(report.summary())
    print(f"wrote {out / 'report.json'}")
    return 0 if report.ok else 1


def _step_down(
    report: BuildReport,
    dse: DseResult,
    built: list[AcceleratorConfig],
    scale: dict[str, float],
    family: str,
    last: bool,
) -> tuple[str, Candidate | None]:
    """After a no-fit build of ``dse.best``: what happened, for people, and the design to
    build next (None when there is none, or when this was the ``last`` build allowed).

    ``scale`` gains, for each resource that overshot, the ratio of nextpnr's count to
    the estimate (the largest seen so far); the next design is the fastest of the Pareto
    front not yet ``built`` that fits with its estimate so corrected.
    """
    from barista_hw.targets import PNR_CELLS, RESOURCES

    cells, tried = PNR_CELLS[family], dse.best
    over = []
    for r in RESOURCES:
        u = report.utilisation.get(cells[r])
        if u and u["used"] > u["available"]:
            est = getattr(tried.resources, r)
            scale[r] = max(scale.get(r, 1.0), u["used"] / max(est, 1))
            over.append(f"{cells[r]} {u['used']} / {u['available']} where {est} were estimated")
    if not over:  # another kind of cell ran out: there is no estimate to correct
        return f"{tried.label} did not fit {report.device}", None
    step = f"{tried.label} did not fit {report.device}: {', '.join(over)}"
    if last:
        return f"{step}; stopped after stepping down {MAX_STEP_DOWNS} times", None
    choice = dse.step_down(built, scale)
    if choice is None:
        return (
            f"{step}; no other design of the Pareto front is estimated to fit with the "
            "estimate corrected by that (fix one with --array, --format or --preset)",
            None,
        )
    corrected = ", ".join(
        f"{getattr(choice.resources, r) * k:.0f} of the {dse.budget.usable(r)} {cells[r]} "
        "a design may plan"
        for r, k in scale.items()
    )
    return (
        f"{step}; stepping down to {choice.label}, the fastest design of the Pareto front "
        f"that fits with the estimate corrected by that ({corrected})",
        choice,
    )
