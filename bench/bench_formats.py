"""Training accuracy versus number format for LeNet on the digits data: a table and a plot.

Trains the unmodified Caffe LeNet example once per format (float32 on the cpu
backend; fixed point 16, 12 and 8 bits on the golden backend, each with
nearest-even and stochastic rounding) for the same iterations and seed, then
tests once. Usage::

    python bench/bench_formats.py [--iterations 1000] [--out bench/out]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from barista.sweep import RunResult, train_and_test  # noqa: E402
from caffe_bridge.datasets import write_digits  # noqa: E402

POINTS = [("float32", "cpu", {})] + [
    (f"{fmt} {rnd}", "golden", {"fmt": fmt, "rounding": rnd})
    for fmt in ("fx16", "fx12", "fx8")
    for rnd in ("nearest-even", "stochastic")
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory() as work:
        write_digits(work)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            for label, backend, options in POINTS:
                r = train_and_test(
                    "examples/mnist/lenet_solver.prototxt",
                    iterations=args.iterations,
                    test_batches=4,
                    backend=backend,
                    backend_options=options,
                    label=label,
                )
                results.append(r)
                print(
                    f"{label:26s} accuracy {r.accuracy:.4f}  loss {r.loss:.4f}  "
                    f"{r.seconds_per_iteration * 1e3:7.1f} ms/iter",
                    flush=True,
                )
        finally:
            os.chdir(cwd)
    print()
    print(f"LeNet on digits, {args.iterations} iterations, test accuracy by number format:")
    print("| format | rounding | accuracy | final loss | ms/iter |")
    print("| --- | --- | --- | --- | --- |")
    for (_label, _backend, options), r in zip(POINTS, results, strict=True):
        fmt = options.get("fmt", "float32")
        rnd = options.get("rounding", "-")
        print(
            f"| {fmt} | {rnd} | {r.accuracy:.4f} | {r.loss:.4f} | "
            f"{r.seconds_per_iteration * 1e3:.1f} |"
        )
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([r.label for r in results], [r.accuracy * 100 for r in results], color="#4878a8")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(min(r.accuracy * 100 for r in results) - 5, 100)
    ax.set_title(f"LeNet on digits, {args.iterations} iterations")
    ax.tick_params(axis="x", rotation=35)
    fig.tight_layout()
    fig.savefig(out / "formats.png", dpi=120)
    print(f"plot: {out / 'formats.png'}")


if __name__ == "__main__":
    main()
