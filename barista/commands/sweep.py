"""``barista sweep SPEC``: train every point of a sweep spec on Ray; tables and plots.

The points run as Ray tasks, on a local Ray with the machine's cores (``--cpus``) or
on the cluster at ``--address``; ``--local`` runs them in this process instead, one
after another. Each finished point is written at once to ``OUT/points/<id>.json``, so
a rerun after a crash or Ctrl-C runs only the points missing there. When all points
are done, ``OUT`` gets ``results.csv``, ``results.md`` and the plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from barista_base.errors import InputError

NAME = "sweep"
HELP = "train the points of a sweep spec (YAML/JSON axes) on Ray; tables and plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``barista sweep`` options."""
    parser.add_argument("spec", metavar="SPEC.yaml", help="the sweep spec (YAML or JSON)")
    parser.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        help="output directory: points/, results.csv, results.md, plots "
        "(default sweeps/<spec name>); a rerun skips the points already there",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="join the Ray cluster at this address (`ray start --head` prints it)",
    )
    where.add_argument(
        "--local", action="store_true", help="run the points in this process, without Ray"
    )
    parser.add_argument(
        "--cpus",
        type=int,
        metavar="N",
        help="local Ray: points run at once (default: the machine's cores)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the missing points, then write the report; returns the exit status."""
    from tqdm import tqdm

    from ..sweep import InlineExecutor, RayExecutor, load_spec, run_sweep
    from ..sweep_report import write_report

    if args.cpus is not None and (args.cpus < 1 or args.address or args.local):
        raise InputError("--cpus N takes N >= 1, for a local Ray (not with --address/--local)")
    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path("sweeps") / Path(args.spec).stem
    executor = InlineExecutor() if args.local else RayExecutor(args.address, args.cpus)
    bar = tqdm(total=len(spec.points), unit="point", file=sys.stderr, disable=None, desc="sweep")

    resumed: list[int] = []

    def progress(done: int, total: int) -> None:
        if not resumed:  # the first call: what earlier runs finished
            resumed.append(done)
        bar.n = done
        bar.refresh()

    def on_record(record: dict) -> None:
        if record["status"] == "error":
            tqdm.write(f"point {record['id']}: failed: {record['error']}", file=sys.stderr)
            return
        acc = record.get("accuracy")
        shown = f"accuracy {acc:.4f}" if isinstance(acc, float) else record["status"]
        tqdm.write(f"point {record['id']}: {shown} ({record['seconds']:.1f} s)", file=sys.stdout)

    try:
        records = run_sweep(spec, out, executor, progress=progress, on_record=on_record)
    finally:
        bar.close()
    failed = [r for r in records if r["status"] == "error"]
    if failed:  # no report of a partial sweep: a rerun runs what failed
        print(
            f"barista sweep: error: {len(failed)} of {len(records)} points failed "
            f"({', '.join(r['id'] for r in failed)}); the others are kept in {out / 'points'}, "
            "and a rerun runs the failed ones again",
            file=sys.stderr,
        )
        return 1
    paths = write_report(records, out, f"Sweep {args.spec}")
    print(
        f"{len(records)} points ({resumed[0]} finished earlier, {len(records) - resumed[0]} "
        f"run now); wrote {', '.join(str(p) for p in paths)}"
    )
    return 0
