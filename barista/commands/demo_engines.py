"""``barista demo``: generate the three default engines and prove them bit-exact in a simulator.

Writes the Verilog of the forward, backward-data and weight-gradient engines
into ``rtl_out/demo/``, then cosimulates each (one simulation per engine,
all cases back to back) for a few shapes, including partial tiles and
``K = 1``, in every rounding mode, and prints one table row per case. Exit
status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ARRAY, EngineConfig, Pass
from barista_hw.numfmt import DEFAULT_FORMAT, FixedFormat, Rounding
from barista_hw.rtl import write_engine
from sim.cases import auto_shift, pass_case, utilisation
from sim.runner import build, mismatch, run_cases
from sim.tools import SIMULATORS

NAME = "demo-engines"
HELP = "generate the default engines into rtl_out/demo and cosimulate them against the model"

#: (M, K, N, images) per engine: partial tiles in M and N, K = 1, a batch for the gradient.
SHAPES: dict[Pass, list[tuple[int, int, int, int]]] = {
    Pass.FORWARD: [(16, 24, 20), (13, 1, 7), (9, 30, 11)],
    Pass.BACKWARD_DATA: [(20, 16, 12), (5, 3, 18)],
    Pass.WEIGHT_GRAD: [(8, 6, 13, 3), (6, 1, 5, 2)],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``barista demo``."""
    parser.add_argument("--sim", default="icarus", help="icarus | verilator (default icarus)")
    parser.add_argument(
        "--array", default=DEFAULT_ARRAY, help="array size RxC (default %(default)s)"
    )
    parser.add_argument(
        "--format", default=DEFAULT_FORMAT.name, help="number format (default %(default)s)"
    )
    parser.add_argument(
        "--out", default=str(Path("rtl_out") / "demo"), help="Verilog output directory"
    )


def run(args: argparse.Namespace) -> int:
    """Generate, simulate, print the table; 1 on any mismatch."""
    if args.sim not in SIMULATORS:
        raise InputError(f"unknown simulator {args.sim!r} (use {' or '.join(SIMULATORS)})")
    rows, cols = EngineConfig.parse_array(args.array)
    cfg = EngineConfig(rows, cols, FixedFormat.parse(args.format))
    out = Path(args.out)
    start = time.perf_counter()
    header = (
        f"{'engine':<10} {'M,K,N':<12} {'images':>6} {'rounding':<13} "
        f"{'matched/total':>14} {'cycles':>7} {'util':>6}"
    )
    failures = 0
    for kind, shapes in SHAPES.items():
        path, _ = write_engine(kind, cfg, out)
        print(f"wrote {path}")
        cases = []
        for i, (m, k, n, *rest) in enumerate(shapes):
            images = rest[0] if rest else 1
            for rounding in Rounding:
                cases.append(
                    pass_case(
                        kind,
                        cfg,
                        m,
                        k,
                        n,
                        images=images,
                        shift=auto_shift(cfg.fmt, k * images),
                        rounding=rounding,
                        seed=100 * i + int(rounding) + 1,
                    )
                )
        design = build(kind, cfg, args.sim)
        sim_run = run_cases(design, cases)
        print(
            f"{design.label}: {sim_run.sim_cycles} cycles simulated in "
            f"{sim_run.total_seconds:.1f} s"
        )
        print(header)
        for res in sim_run.results:
            c = res.case
            matched = int((res.got == c.expected).sum())
            util = utilisation(cfg, c.m, c.k, c.n, c.images, res.cycles)
            problem = mismatch(design, res)
            failures += problem is not None
            print(
                f"{kind.value:<10} {f'{c.m},{c.k},{c.n}':<12} {c.images:>6} "
                f"{Rounding(c.rounding).label:<13} {f'{matched}/{c.expected.size}':>14} "
                f"{res.cycles:>7} {100 * util:>5.1f}%" + ("  MISMATCH" if problem else "")
            )
            if problem:
                print(f"  {problem}")
        print()
    verdict = "all bit-exact" if not failures else f"{failures} case(s) MISMATCH"
    print(f"demo on {args.sim}: {verdict} ({time.perf_counter() - start:.0f} s)")
    return 1 if failures else 0
