"""Training iterations per second of ``barista train --devices N`` (data-parallel, Ray actors).

LeNet on the digits data (written once into ``--work``) at a chosen batch, on the
accelerator ``barista_hw.generate`` designs for it on ``--target`` (fx16), trained with
the ``rtl`` backend (each device its own Verilated simulator) and the ``golden`` backend,
on 1 and 2 devices. After one warm-up iteration (simulator loads, first scale estimates,
Ray workers' imports) it times ``--iterations`` iterations and prints iterations/s,
images/s and the speed-up over one device; it also checks that the weights after
training are the same bits whatever the number of devices. The Ray start and the
actors' creation are not timed (once per run, not per iteration).

Pin BLAS threads (done here: OPENBLAS_NUM_THREADS=1) and report the machine's load: two
devices on two shared cores cannot be twice as fast when other processes take cores.

``--splits`` lists how runs on several devices share the weight gradients
(``--split-gradient``: ``auto``, the cycle model's choice; ``images``, the batch split with
the partial sums read out; ``blocks``, output tiles), one run each; the figures are
interleaved in the order ``--devices`` gives (``1,2,1,2`` repeats both).

    python bench/bench_data_parallel.py [--batch 16] [--iterations 3] [--devices 1,2]
        [--splits auto] [--backends rtl,golden] [--target ulx3s-45f]
        [--work /tmp/barista-bench-dp]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from barista.backends import backend_factory  # noqa: E402
from barista.backends.plan import gemm_layers  # noqa: E402
from barista.data_parallel import data_parallel_factory  # noqa: E402
from barista.manifest import load_accelerator, write_rtl_dir  # noqa: E402
from barista_hw.generate import generate  # noqa: E402
from caffe_bridge.datasets import write_digits  # noqa: E402
from caffe_bridge.solvers import get_solver, read_solver_param, train_net  # noqa: E402

SOLVER = "examples/mnist/lenet_solver.prototxt"


def _setup(work: Path, batch: int, target: str) -> Path:
    """Digits data, a LeNet of batch ``batch`` and its accelerator in ``work``."""
    if not (work / "examples/mnist/mnist_train_lmdb").is_dir():
        write_digits(work)
    net = work / "examples/mnist/lenet_train_test.prototxt"
    text = net.read_text()
    (work / "lenet_bench.prototxt").write_text(
        text.replace("batch_size: 64", f"batch_size: {batch}", 1)
    )
    param, _ = read_solver_param(work / SOLVER)
    param.net = "lenet_bench.prototxt"
    (work / "solver_bench.prototxt").write_text(str(param))
    out = work / f"rtl_out/lenet-b{batch}-{target}"
    if not (out / "manifest.json").is_file():
        layers = gemm_layers(train_net(str(work / "solver_bench.prototxt")))
        write_rtl_dir(generate(layers, target=target, fmt="fx16", name="lenet"), out)
    return out


def _run(
    backend: str, devices: int, accelerator: Path, iterations: int, split: str = "auto"
) -> tuple[float, list]:
    """Seconds for ``iterations`` timed iterations, and the weights after them."""
    param, _ = read_solver_param("solver_bench.prototxt")
    param.test_interval = 1_000_000  # no test pass in the timed iterations
    param.test_initialization = False
    param.display = 0
    param.snapshot = 0
    param.snapshot_after_train = False
    param.random_seed = 1  # the same initial weights in every run
    options = {"accelerator": load_accelerator(accelerator), "rounding": "stochastic"}
    if devices == 1:
        factory = backend_factory(backend, **options)
    else:
        factory = data_parallel_factory(backend, devices, split=split, **options)
    solver = get_solver(param, backend=factory, log=lambda line: None)
    engine = solver.net.backend
    try:
        engine.prepare(lambda line: None)
        solver.step(1)  # warm-up
        t0 = time.perf_counter()
        solver.step(iterations)
        seconds = time.perf_counter() - t0
        weights = [p.data.copy() for p in solver.net.learnable_params]
    finally:
        engine.close()
    return seconds, weights


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--devices", default="1,2")
    ap.add_argument("--splits", default="auto")
    ap.add_argument("--backends", default="rtl,golden")
    ap.add_argument("--target", default="ulx3s-45f")
    ap.add_argument("--work", type=Path, default=Path("/tmp/barista-bench-dp"))
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)  # the solver's and the net's paths are relative to it, as in Caffe
    accelerator = _setup(Path("."), args.batch, args.target).resolve()
    cfg = load_accelerator(accelerator).config
    e = cfg.engine
    print(
        f"LeNet, batch {args.batch}, {e.rows}x{e.cols} {e.fmt.name} accelerator for "
        f"{args.target}, stochastic rounding; {args.iterations} timed iterations after 1 "
        f"warm-up; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'backend':<8}{'devices':>8}{'dW split':>9}{'s/iter':>10}{'iter/s':>10}"
        f"{'images/s':>10}{'speed-up':>10}"
    )
    splits = args.splits.split(",")
    for backend in args.backends.split(","):
        base_rate, base_weights = None, None
        runs = [
            (devices, split if devices > 1 else "-")
            for devices in (int(d) for d in args.devices.split(","))
            for split in (splits if devices > 1 else ["-"])
        ]
        for devices, split in runs:
            seconds, weights = _run(
                backend, devices, accelerator, args.iterations, "auto" if split == "-" else split
            )
            rate = args.iterations / seconds
            base_rate = base_rate or rate
            speedup = rate / base_rate
            if base_weights is None:
                base_weights, same = weights, "(reference)"
            else:
                equal = all(
                    np.array_equal(a, b) for a, b in zip(base_weights, weights, strict=True)
                )
                same = "same bits" if equal else "DIFFERENT BITS"
            print(
                f"{backend:<8}{devices:>8}{split:>9}{seconds / args.iterations:>10.3f}"
                f"{rate:>10.3f}{rate * args.batch:>10.1f}{speedup:>9.2f}x  {same}",
                f"(load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
