"""Iteration time of the bit-exact golden backend against the float32 cpu backend.

LeNet (the unmodified prototxt, its Data layer replaced by fed blobs of the same
shapes), batch 64, forward + backward on random input data and labels. Every
backend runs the same net with the same weights and data, in one process, in
interleaved rounds (one step of each backend per round) so machine noise hits
all alike; prints each backend's median time and its ratio to cpu. The golden
backends run twice: with the compiled passes (:mod:`barista_hw.native`) and on
numpy alone (what runs without a C compiler), which shows what the helper buys.

Targets (issue 26): golden nearest-even within 2x of cpu, golden stochastic
within 2.5x. The BLAS thread count is ``OPENBLAS_NUM_THREADS`` (set to 1 here
when the environment does not say), printed with the figures.

    OPENBLAS_NUM_THREADS=1 python bench/bench_golden_speed.py [--repeats 25] [--format fx16]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads its BLAS

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from barista.backends import get_backend  # noqa: E402
from barista_hw import native  # noqa: E402
from caffe_bridge.backend import GemmBackend  # noqa: E402
from caffe_bridge.datasets import example_dir  # noqa: E402
from caffe_bridge.net import Net  # noqa: E402

BATCH = 64
TARGETS = {"golden nearest-even": 2.0, "golden stochastic": 2.5}


def backends(fmt: str) -> dict[str, tuple[GemmBackend, bool]]:
    """Name -> (backend, runs on numpy alone)."""
    out: dict[str, tuple[GemmBackend, bool]] = {"cpu": (get_backend("cpu"), False)}
    for rounding in ("nearest-even", "stochastic"):
        for numpy_only in (False, True):
            name = f"golden {rounding}" + (" (numpy)" if numpy_only else "")
            out[name] = (get_backend("golden", fmt=fmt, rounding=rounding), numpy_only)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--format", default="fx16")
    args = ap.parse_args()

    proto = Path(example_dir("mnist")) / "lenet_train_test.prototxt"
    shapes = {"data": (BATCH, 1, 28, 28), "label": (BATCH,)}
    rng = np.random.default_rng(0)
    data = rng.random(shapes["data"], dtype=np.float32)
    labels = rng.integers(0, 10, BATCH)
    chosen = backends(args.format)
    nets = {
        name: Net(str(proto), "TRAIN", data_shapes=shapes, seed=1, backend=backend)
        for name, (backend, _) in chosen.items()
    }
    times: dict[str, list[float]] = {name: [] for name in nets}
    for rnd in range(2 + args.repeats):  # two warm-up rounds: the hardware scales calibrate
        for name, net in nets.items():
            with native.disabled() if chosen[name][1] else contextlib.nullcontext():
                net.blobs["data"].data[...] = data
                net.blobs["label"].data[...] = labels
                t = time.perf_counter()
                net.forward()
                net.backward()
                if rnd >= 2:
                    times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(
        f"LeNet batch {BATCH}, forward+backward, random data, format {args.format}, "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
        f"{args.repeats} interleaved rounds (medians); compiled helper: "
        f"{'yes' if native.library() is not None else 'no (numpy only)'}"
    )
    for name, m in med.items():
        ratio = m / med["cpu"]
        target = f" (target <= {TARGETS[name]}x)" if name in TARGETS else ""
        print(f"{name:28s} {m * 1e3:8.1f} ms  {ratio:5.2f}x cpu{target}")


if __name__ == "__main__":
    main()
