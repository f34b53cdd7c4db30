"""Training on the device model: test accuracy against golden (issue 20's proof).

1. LeNet: the unmodified ``examples/mnist/lenet_solver.prototxt`` on the digits data
   (``caffe_bridge.datasets.write_digits``, what ``barista data digits`` writes), trained
   with ``--backend golden`` and ``--backend device --target ulx3s-85f`` for the same
   iterations and seed, golden in the number format of the design the device runs (the
   accelerator ``barista compile`` and ``barista train --backend device`` choose for the
   net on the target). Prints the test accuracy and loss of both at every test, their
   difference, whether the device is within 1 point of golden at the end, and each
   backend's time per iteration.
2. cifar10_quick: the unmodified solver and net of ``../shared/caffe-models/cifar10``
   (copied into the work directory), on a CIFAR-shaped stand-in
   (``caffe_bridge.datasets.write_colour_digits``: the digits as 3x32x32 colour images,
   and their mean image), trained on the device and on golden (same format); prints the
   loss every few iterations, the test accuracy at the end, and whether the device
   trained without diverging (every loss finite, the mean of the last ten losses below
   that of the first ten).

Both solvers are built as ``barista train`` builds them and stepped one iteration at a
time, so the tests the solver file asks for run where Caffe runs them; a test at the
end runs whether or not the solver file's ``test_interval`` asks for it.

    OPENBLAS_NUM_THREADS=1 python bench/bench_device_accuracy.py [--work DIR]
        [--iterations 1000] [--cifar-iterations 200] [--seed 1] [--skip-lenet|--skip-cifar]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads its BLAS

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from barista.backends import backend_factory  # noqa: E402
from barista.backends.device import DeviceSolver  # noqa: E402
from barista.device_net import device_design  # noqa: E402
from barista.manifest import AcceleratorFiles  # noqa: E402
from caffe_bridge.datasets import write_colour_digits, write_digits  # noqa: E402
from caffe_bridge.solvers import Solver, get_solver, train_net  # noqa: E402

TARGET = "ulx3s-85f"
LENET_SOLVER = "examples/mnist/lenet_solver.prototxt"
CIFAR_DIR = "examples/cifar10"
CIFAR_FILES = ("cifar10_quick_solver.prototxt", "cifar10_quick_train_test.prototxt")
CIFAR_SOLVER = f"{CIFAR_DIR}/{CIFAR_FILES[0]}"
SHARED_CIFAR = ROOT.parent / "shared" / "caffe-models" / "cifar10"
WITHIN = 1.0  # points of test accuracy: the bound
QUIET_LOG = ("Iteration", "    ")  # the solver's per-iteration lines: the bench prints its own


@dataclass
class Run:
    """One backend's training run: its losses, tests and times."""

    backend: str
    losses: list[float] = field(default_factory=list)  # per iteration
    tests: dict[int, dict[str, float]] = field(default_factory=dict)  # iteration -> outputs
    seconds: list[float] = field(default_factory=list)  # per iteration, tests excluded

    def time_summary(self) -> str:
        """Median seconds an iteration, the first (setup, the device's probe) apart."""
        if not self.seconds:
            return f"{self.backend}: no iteration"
        rest = self.seconds[1:] or self.seconds
        return (
            f"{self.backend}: {statistics.median(rest):.3f} s/iteration (median of "
            f"{len(rest)}; mean {statistics.fmean(rest):.3f}), first {self.seconds[0]:.2f} s"
        )


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run in ``path``: the paths in Caffe's solver and net files are relative to it."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def log(line: str) -> None:
    """The solvers' log, less the per-iteration lines the bench reports itself."""
    if not line.startswith(QUIET_LOG):
        print(f"  | {line}", flush=True)


def device_accelerator(solver_file: str) -> AcceleratorFiles:
    """The design ``barista train --backend device --target ulx3s-85f`` runs (its cache)."""
    files, _ = device_design(train_net(solver_file), target=TARGET)
    return files


def build(backend: str, solver_file: str, files: AcceleratorFiles, seed: int, iters: int) -> Solver:
    """The solver ``barista train --backend BACKEND`` builds (golden: in the device's format)."""
    common = {"max_iter": iters, "random_seed": seed, "log": log}
    if backend == "device":
        return DeviceSolver(solver_file, accelerator=files, target=TARGET, **common)
    fmt = files.config.engine.fmt.name
    return get_solver(solver_file, backend=backend_factory("golden", fmt=fmt), **common)


def train(solver: Solver, backend: str, every: int) -> Run:
    """Step ``solver`` to its ``max_iter``, then test; a loss every ``every`` iterations."""
    run = Run(backend)
    p = solver.param
    started = [0.0]
    solver.add_callback(on_start=lambda: started.__setitem__(0, time.perf_counter()))
    while solver.iter < p.max_iter:
        tested = bool(p.test_interval) and solver.iter % p.test_interval == 0
        tested = tested and (solver.iter > 0 or p.test_initialization)
        solver.step(1)  # average_loss 1 (both files): smoothed_loss is this iteration's
        run.seconds.append(time.perf_counter() - started[0])
        if tested:
            run.tests[solver.iter - 1] = dict(solver.test_scores[0])
        run.losses.append(solver.smoothed_loss)
        i = solver.iter - 1
        if i % every == 0 or solver.iter == p.max_iter or not math.isfinite(run.losses[-1]):
            print(f"  {backend} iteration {i}: loss {run.losses[-1]:.4f}", flush=True)
    run.tests[solver.iter] = dict(solver.test(0))
    return run


def score(outputs: dict[str, float], name: str) -> float:
    return outputs.get(name, math.nan)


def compare(golden: Run, device: Run) -> tuple[float, float]:
    """Print the test table; (final golden accuracy, final device accuracy) in points."""
    print(
        f"{'iteration':>9} | {'golden acc':>10} {'loss':>7} | {'device acc':>10} {'loss':>7} | diff"
    )
    for i in sorted(set(golden.tests) | set(device.tests)):
        g, d = golden.tests.get(i, {}), device.tests.get(i, {})
        ga, da = 100 * score(g, "accuracy"), 100 * score(d, "accuracy")
        print(
            f"{i:>9} | {ga:>9.2f}% {score(g, 'loss'):>7.4f} | {da:>9.2f}% "
            f"{score(d, 'loss'):>7.4f} | {da - ga:+.2f} points"
        )
    last = max(golden.tests)
    return 100 * score(golden.tests[last], "accuracy"), 100 * score(device.tests[last], "accuracy")


def lenet(work: Path, iterations: int, seed: int) -> None:
    print(f"== LeNet on the digits, {iterations} iterations, seed {seed}")
    data = write_digits(work, force=True)
    print(f"digits: {data.train.count} training, {data.test.count} test images in {work}")
    with working_directory(work):
        files = device_accelerator(LENET_SOLVER)
        print(f"device design on {TARGET}: {files.config.engine.fmt.name} ({files.path.parent})")
        runs = {
            b: train(build(b, LENET_SOLVER, files, seed, iterations), b, 100)
            for b in ("golden", "device")
        }
    g, d = compare(runs["golden"], runs["device"])
    verdict = "met" if abs(d - g) <= WITHIN else "missed"
    print(f"final test accuracy: golden {g:.2f}%, device {d:.2f}%, difference {d - g:+.2f} points")
    print(f"within {WITHIN:g} point of golden: {verdict}")
    for run in runs.values():
        print(run.time_summary())


def window(run: Run) -> int:
    """Losses averaged at each end for the verdict: one batch's loss is noisy."""
    return max(1, min(10, len(run.losses) // 10))


def diverged(run: Run) -> str | None:
    """Why a run diverged (a loss not finite, or the last losses not below the first), or
    None."""
    bad = [i for i, x in enumerate(run.losses) if not math.isfinite(x)]
    if bad:
        return f"loss not finite at iteration {bad[0]}"
    n = window(run)
    if not run.losses or statistics.fmean(run.losses[-n:]) >= statistics.fmean(run.losses[:n]):
        return "final loss not below the initial one"
    return None


def cifar(work: Path, iterations: int, seed: int) -> None:
    print(f"== cifar10_quick on colour digits, {iterations} iterations, seed {seed}")
    if not SHARED_CIFAR.is_dir():
        print(f"skipped: {SHARED_CIFAR} is absent (the unmodified cifar10_quick files)")
        return
    data = write_colour_digits(work, force=True)
    for name in CIFAR_FILES:
        shutil.copyfile(SHARED_CIFAR / name, work / CIFAR_DIR / name)
    print(
        f"colour digits: {data.train.count} training, {data.test.count} test images "
        f"(3x32x32), mean {data.mean}"
    )
    with working_directory(work):
        files = device_accelerator(CIFAR_SOLVER)
        print(f"device design on {TARGET}: {files.config.engine.fmt.name} ({files.path.parent})")
        every = max(1, iterations // 20)
        runs = {
            b: train(build(b, CIFAR_SOLVER, files, seed, iterations), b, every)
            for b in ("device", "golden")
        }
    compare(runs["golden"], runs["device"])
    for run in runs.values():
        n, why = window(run), diverged(run)
        first, last = statistics.fmean(run.losses[:n]), statistics.fmean(run.losses[-n:])
        print(
            f"{run.backend}: loss {run.losses[0]:.4f} at iteration 0, {run.losses[-1]:.4f} at "
            f"{len(run.losses) - 1}; mean of the first {n} {first:.4f}, of the last {n} "
            f"{last:.4f}; all finite: {'no' if 'finite' in (why or '') else 'yes'}: "
            + (f"diverged ({why})" if why else "did not diverge")
        )
    for run in runs.values():
        print(run.time_summary())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    ap.add_argument("--iterations", type=int, default=1000, help="LeNet iterations")
    ap.add_argument("--cifar-iterations", type=int, default=200, help="cifar10_quick iterations")
    ap.add_argument("--seed", type=int, default=1)
    skip = ap.add_mutually_exclusive_group()
    skip.add_argument("--skip-lenet", action="store_true")
    skip.add_argument("--skip-cifar", action="store_true")
    args = ap.parse_args()

    print(
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work = work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_lenet:
            lenet(work, args.iterations, args.seed)
        if not args.skip_cifar:
            cifar(work, args.cifar_iterations, args.seed)


if __name__ == "__main__":
    main()
