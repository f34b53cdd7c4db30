"""A sweep's results as tables (CSV, Markdown) and plots, from its persisted point records.

One row per point (:func:`rows`); the plots show accuracy against the number format
and against the hardware cost of each hardware point's design (multipliers, LUTs and,
where estimated, energy per image), with the points no other beats on both accuracy
and cost (:func:`pareto`) joined and marked.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Columns of the tables: (header, where in a record: a key or "settings.<axis>", ...).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("backend", "settings.backend"),
    ("format", "settings.format"),
    ("rounding", "settings.rounding"),
    ("scaling", "settings.scaling"),
    ("array", "settings.array"),
    ("seed", "settings.seed"),
    ("iterations", "iterations"),
    ("status", "status"),
    ("accuracy", "accuracy"),
    ("loss", "loss"),
    ("train_s", "train_seconds"),
    ("design", "hardware.design"),
    ("mults", "hardware.mults"),
    ("luts", "hardware.luts"),
    ("bram", "hardware.bram_blocks"),
    ("img_per_s", "hardware.images_per_second"),
    ("mj_per_image", "hardware.energy_mj_per_image"),
    ("node", "node"),
)
#: Cost axes of the Pareto plot: (label, column).
COSTS = (("multipliers", "mults"), ("LUTs", "luts"), ("energy (mJ/image)", "mj_per_image"))


def _get(record: dict[str, Any], where: str) -> Any:
    value: Any = record
    for key in where.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per record: the columns of :data:`COLUMNS`, then one per solver override
    (``lr:base_lr`` style names would hide them: they keep their field names)."""
    overrides = sorted({k for r in records for k in r["settings"].get("overrides", {})})
    out = []
    for r in records:
        row = {name: _get(r, where) for name, where in COLUMNS}
        for key in overrides:
            row[key] = r["settings"].get("overrides", {}).get(key)
        out.append(row)
    return out


def write_csv(table: Sequence[dict[str, Any]], path: Path) -> None:
    """The rows as CSV (empty cells for what a point does not have)."""
    with open(path, "w", newline="") as f:
        if not table:
            return
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        for row in table:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown(table: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table, without the columns no row fills."""
    if not table:
        return "(no points)\n"
    cols = [c for c in table[0] if any(row[c] is not None for row in table)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(row[c]) for c in cols) + " |" for row in table]
    return "\n".join(lines) + "\n"


def pareto(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (cost no higher and accuracy no lower,
    one of them strictly), sorted by cost; equal points are all kept."""
    idx = range(len(costs))
    return sorted(
        (
            i
            for i in idx
            if not any(
                costs[j] <= costs[i]
                and accuracies[j] >= accuracies[i]
                and (costs[j], accuracies[j]) != (costs[i], accuracies[i])
                for j in idx
            )
        ),
        key=lambda i: (costs[i], -accuracies[i]),
    )


def _format_key(name: str) -> tuple[int, int, str]:
    """Fixed-point formats by width, then fraction bits (fx16.8 before fx16.10); other
    names after them, float32 last."""
    from barista_base.errors import InputError
    from barista_hw.numfmt import FixedFormat

    if name == "float32":
        return (1 << 20, 0, name)
    try:
        fmt = FixedFormat.parse(name)
    except InputError:
        return (1 << 19, 0, name)
    return (fmt.width, fmt.frac, name)


def plot_accuracy_by_format(table: Sequence[dict[str, Any]], path: Path) -> None:
    """Accuracy of every point against its format (cpu points as float32), one series per
    rounding mode; each point a marker, each series' mean a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in table if _finite(r["accuracy"])]
    formats = sorted({r["format"] or "float32" for r in done}, key=_format_key)
    series = sorted({r["rounding"] or "float32" for r in done})
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(formats) + 2), 3.6))
    for k, mode in enumerate(series):
        mine = [r for r in done if (r["rounding"] or "float32") == mode]
        shift = (k - (len(series) - 1) / 2) * 0.08
        xs = [formats.index(r["format"] or "float32") + shift for r in mine]
        color = f"C{k}"  # the series' markers and mean line alike
        ax.scatter(xs, [r["accuracy"] for r in mine], label=mode, s=18, color=color)
        means = []
        for i, fmt in enumerate(formats):
            accs = [r["accuracy"] for r in mine if (r["format"] or "float32") == fmt]
            if accs:
                means.append((i + shift, sum(accs) / len(accs)))
        if len(means) > 1:
            ax.plot(*zip(*means, strict=True), alpha=0.6, color=color)
    ax.set_xticks(range(len(formats)), formats)
    ax.set_xlabel("number format")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    if series:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy_by_cost(table: Sequence[dict[str, Any]], path: Path) -> None:
    """Accuracy against multipliers, LUTs and energy per image of the hardware points,
    the Pareto front of each joined with a line and ringed (a panel without estimates
    says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(COSTS), figsize=(4.2 * len(COSTS), 3.6), sharey=True)
    for ax, (label, col) in zip(axes, COSTS, strict=True):
        mine = [r for r in table if _finite(r["accuracy"]) and _finite(r[col])]
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        if not mine:
            ax.text(0.5, 0.5, "no estimates", ha="center", va="center", transform=ax.transAxes)
            continue
        costs = [float(r[col]) for r in mine]
        accs = [float(r["accuracy"]) for r in mine]
        ax.scatter(costs, accs, s=18, color="tab:blue", label="points")
        front = pareto(costs, accs)
        ax.plot(
            [costs[i] for i in front],
            [accs[i] for i in front],
            "o-",
            mfc="none",
            ms=9,
            color="tab:red",
            label="Pareto front",
        )
        ax.legend(fontsize="small")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(0, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


#: What :func:`write_report` writes into the output directory.
REPORT_FILES = ("results.csv", "results.md", "accuracy_by_format.png", "accuracy_by_cost.png")


def write_report(records: Sequence[dict[str, Any]], out: Path, title: str) -> list[Path]:
    """The tables and plots of ``records`` into ``out``; the paths written."""
    table = rows(records)
    paths = [out / name for name in REPORT_FILES]
    write_csv(table, paths[0])
    paths[1].write_text(f"# {title}\n\n{len(table)} points\n\n{markdown(table)}")
    plot_accuracy_by_format(table, paths[2])
    plot_accuracy_by_cost(table, paths[3])
    return paths
