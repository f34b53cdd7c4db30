"""Iteration time of the bit-exact golden and device backends against the float32 cpu backend.

LeNet (the unmodified prototxt, its Data layer replaced by fed blobs of the same
shapes), batch 64, random input data (random bytes scaled as the Data layer's
``scale`` does, so the device's byte-a-pixel input is exact) and random labels.
Every backend runs the same net with the same weights and data, in one process, in
interleaved rounds (one step of each backend per round) so machine noise hits all
alike; prints each backend's median time and its ratio to cpu. Two units are timed:

* forward + backward (``Net.forward``, ``Net.backward``): cpu and golden. The golden
  backends run twice: with the compiled passes (:mod:`barista_hw.native`) and on numpy
  alone (what runs without a C compiler), which shows what the helper buys.
* a solver step (``Solver.step(1)``: forward, backward and the SGD update): cpu's
  SGD solver and the device backend (:class:`~barista.backends.device.DeviceSolver`:
  the iteration as the device program on its bit-exact model, the host's softmax loss
  between), both rounding modes. The device's update is part of its program, so this is
  its smallest unit comparable to the others; its ratios are given to both cpu figures.
  The device is the DSE's design for the net on ULX3S 85F in ``--format``.

Targets (issue 26): golden nearest-even within 2x of cpu, golden stochastic
within 2.5x. The BLAS thread count is ``OPENBLAS_NUM_THREADS`` (set to 1 here
when the environment does not say), printed with the figures.

    OPENBLAS_NUM_THREADS=1 python bench/bench_golden_speed.py [--repeats 25] [--format fx16]
        [--no-device]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads its BLAS

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from barista.backends import get_backend  # noqa: E402
from barista.backends.device import DeviceSolver  # noqa: E402
from barista.device_net import device_design  # noqa: E402
from barista_hw import native  # noqa: E402
from caffe_bridge.backend import GemmBackend  # noqa: E402
from caffe_bridge.datasets import example_dir  # noqa: E402
from caffe_bridge.net import Net  # noqa: E402
from caffe_bridge.solvers import read_solver_param  # noqa: E402
from caffe_bridge.solvers.updates import SGDSolver  # noqa: E402

BATCH = 64
SHAPES = {"data": (BATCH, 1, 28, 28), "label": (BATCH,)}
TARGETS = {"golden nearest-even": 2.0, "golden stochastic": 2.5}
TARGET = "ulx3s-85f"  # the device's board
STEP = "(solver step)"


def backends(fmt: str) -> dict[str, tuple[GemmBackend, bool]]:
    """Name -> (backend, runs on numpy alone)."""
    out: dict[str, tuple[GemmBackend, bool]] = {"cpu": (get_backend("cpu"), False)}
    for rounding in ("nearest-even", "stochastic"):
        for numpy_only in (False, True):
            name = f"golden {rounding}" + (" (numpy)" if numpy_only else "")
            out[name] = (get_backend("golden", fmt=fmt, rounding=rounding), numpy_only)
    return out


def fed(solver: type[SGDSolver]) -> type[SGDSolver]:
    """``solver`` whose train net's data layers are shape-only stand-ins the bench feeds."""

    class Fed(solver):  # type: ignore[misc, valid-type]
        def _make_net(self, net_param: Any, state: Any, seed: int, path: str | None = None) -> Net:
            return Net(
                path or net_param,
                "TRAIN",
                data_shapes=SHAPES,
                seed=seed,
                backend=self._new_backend(),
            )

    return Fed


def solver_file(tmp: Path, proto: Path) -> Path:
    """LeNet's solver with the net at ``proto``, no test nets, display or snapshots."""
    param, _ = read_solver_param(str(Path(example_dir("mnist")) / "lenet_solver.prototxt"))
    param.net = str(proto)
    param.ClearField("test_iter")
    param.test_interval = param.display = param.snapshot = 0
    param.snapshot_after_train = False
    path = tmp / "solver.prototxt"
    path.write_text(text_format.MessageToString(param))
    return path


def solvers(solver: Path, ref: Net, fmt: str, device: bool) -> dict[str, SGDSolver]:
    """Name -> a solver on the fed net with ``ref``'s weights: cpu's SGD solver and, with
    ``device``, the device backend in both rounding modes."""
    out: dict[str, SGDSolver] = {f"cpu {STEP}": fed(SGDSolver)(str(solver), random_seed=1)}
    if device:
        files, _ = device_design(ref, target=TARGET, fmt=fmt)
        for rounding in ("nearest-even", "stochastic"):
            out[f"device {rounding}"] = fed(DeviceSolver)(
                str(solver),
                accelerator=files,
                rounding=rounding,
                target=TARGET,
                random_seed=1,
                log=lambda line: None,
            )
    for s in out.values():
        for mine, theirs in zip(s.net.learnable_params, ref.learnable_params, strict=True):
            mine.data[...] = theirs.data
        if isinstance(s, DeviceSolver):
            s.upload()  # the weights onto the device
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--format", default="fx16")
    ap.add_argument("--no-device", action="store_true", help="leave the device backend out")
    args = ap.parse_args()

    proto = Path(example_dir("mnist")) / "lenet_train_test.prototxt"
    rng = np.random.default_rng(0)
    # Bytes scaled as LeNet's Data layer scales them (1/256): exact on the device's wire.
    data = (rng.integers(0, 256, SHAPES["data"]) / 256).astype(np.float32)
    labels = rng.integers(0, 10, BATCH)
    chosen = backends(args.format)
    nets = {
        name: Net(str(proto), "TRAIN", data_shapes=SHAPES, seed=1, backend=backend)
        for name, (backend, _) in chosen.items()
    }
    steps: dict[str, Callable[[], None]] = {}
    for name, net in nets.items():
        steps[name] = _forward_backward(net, numpy_only=chosen[name][1])
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in solvers(
            solver_file(Path(tmp), proto), nets["cpu"], args.format, not args.no_device
        ).items():
            nets[name] = s.net
            steps[name] = lambda s=s: s.step(1)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for rnd in range(2 + args.repeats):  # two warm-up rounds: scales calibrate, device probes
        for name, step in steps.items():
            nets[name].blobs["data"].data[...] = data
            nets[name].blobs["label"].data[...] = labels
            t = time.perf_counter()
            step()
            if rnd >= 2:
                times[name].append(time.perf_counter() - t)
    report({name: statistics.median(ts) for name, ts in times.items()}, args)


def _forward_backward(net: Net, *, numpy_only: bool) -> Callable[[], None]:
    def step() -> None:
        with native.disabled() if numpy_only else contextlib.nullcontext():
            net.forward()
            net.backward()

    return step


def report(med: dict[str, float], args: argparse.Namespace) -> None:
    print(
        f"LeNet batch {BATCH}, random data, format {args.format}, "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
        f"{args.repeats} interleaved rounds (medians); compiled helper: "
        f"{'yes' if native.library() is not None else 'no (numpy only)'}"
    )
    print("forward + backward:")
    for name, m in med.items():
        if name.startswith("cpu ") or name.startswith("device "):
            continue
        target = f" (target <= {TARGETS[name]}x)" if name in TARGETS else ""
        print(f"  {name:28s} {m * 1e3:8.1f} ms  {m / med['cpu']:6.2f}x cpu{target}")
    print(
        "solver step (forward + backward + SGD update; device: its program on the "
        f"bit-exact model, the DSE's {TARGET} design):"
    )
    cpu_step = med[f"cpu {STEP}"]
    for name, m in med.items():
        if name.startswith("cpu ") or name.startswith("device "):
            print(
                f"  {name:28s} {m * 1e3:8.1f} ms  {m / med['cpu']:6.2f}x cpu forward+backward, "
                f"{m / cpu_step:6.2f}x cpu solver step"
            )


if __name__ == "__main__":
    main()
