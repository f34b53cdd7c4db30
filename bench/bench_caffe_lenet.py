"""LeNet training step (forward + backward, batch 64): Barista's runtime vs PyTorch CPU.

Runs Caffe's unmodified ``lenet_train_test.prototxt`` (TRAIN phase, the Data layer
replaced by externally fed ``data``/``label`` blobs of the same shapes) on our
runtime with the ``cpu`` GEMM backend, and the same network with the same weights
in PyTorch, in one process. For every thread count of ``--threads`` (default: one,
and every CPU) both libraries use that many threads: numpy's BLAS (set through
threadpoolctl, whatever ``OPENBLAS_NUM_THREADS`` says) and PyTorch
(``torch.set_num_threads``).
Prints, per thread count, the median step time and the peak memory of each, with
the ratios (targets, issue 26: ours within 1.5x of PyTorch in time and 2x in memory).

Timings are medians of blocks of steps that alternate between the libraries and the
thread counts, so that load from other processes hits all alike; still, a core busy
with other work slows every multi-threaded figure (a thread that waits for a core
holds up the rest), so run it on a quiet machine: the load average is printed with
the figures. PyTorch is needed only here (``pip install torch``); the project does
not depend on it. Recorded figures: docs/testing.md ("cpu vs PyTorch CPU").

    python bench/bench_caffe_lenet.py [--threads 1,2] [--iters 30] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def find_prototxt() -> Path:
    """The project's copy of BVLC's LeNet (examples/mnist)."""
    from caffe_bridge.datasets import example_dir

    return example_dir("mnist") / "lenet_train_test.prototxt"


def build_ours(path: Path, batch: int):
    from caffe_bridge.net import Net

    net = Net(str(path), "TRAIN", data_shapes={"data": (batch, 1, 28, 28), "label": (batch,)})
    return net


def params_of(net) -> dict[str, list]:
    """pycaffe's ``net.params``: layer name -> list of Blobs."""
    return {name: list(blobs) for name, blobs in net.params.items()}


def clear_param_diffs(net) -> None:
    for blobs in net.params.values():
        for b in blobs:
            b.diff[...] = 0


def build_torch(ours_params: dict[str, list]):
    """The same LeNet in PyTorch, with our initial weights copied in."""
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 20, 5),
        torch.nn.MaxPool2d(2, 2, ceil_mode=True),  # Caffe rounds pooled sizes up
        torch.nn.Conv2d(20, 50, 5),
        torch.nn.MaxPool2d(2, 2, ceil_mode=True),
        torch.nn.Flatten(),
        torch.nn.Linear(800, 500),
        torch.nn.ReLU(),
        torch.nn.Linear(500, 10),
    )
    with torch.no_grad():
        for module, name in zip(
            [net[0], net[2], net[5], net[7]], ["conv1", "conv2", "ip1", "ip2"], strict=True
        ):
            module.weight.copy_(torch.from_numpy(np.array(ours_params[name][0].data)))
            module.bias.copy_(torch.from_numpy(np.array(ours_params[name][1].data)))
    return net


class Threads:
    """Both libraries at ``n`` threads while in effect: OpenBLAS and PyTorch."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> Threads:
        import torch

        self._blas = threadpool_limits(self.n, user_api="blas")
        self._torch = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self._torch)
        self._blas.restore_original_limits()


def ours_peak_memory(path: Path, batch: int, x: np.ndarray, labels: np.ndarray) -> int:
    """Peak of numpy allocations (tracemalloc) from Net construction through one step."""
    tracemalloc.start()
    try:
        net = build_ours(path, batch)
        net.blobs["data"].data[...] = x
        net.blobs["label"].data[...] = labels
        net.forward()
        net.backward()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def torch_peak_memory(params: dict[str, list], x: np.ndarray, labels: np.ndarray) -> int:
    """Peak of torch.profiler's CPU allocation timeline over the same scope."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    tx = torch.from_numpy(x)
    tlabels = torch.from_numpy(labels.astype(np.int64))
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        tnet = build_torch(params)
        torch.nn.functional.cross_entropy(tnet(tx), tlabels).backward()
    current = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action in (Action.PREEXISTING, Action.CREATE):
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--threads",
        default=",".join(dict.fromkeys(["1", str(os.cpu_count() or 1)])),
        help="comma-separated thread counts (default: 1 and the number of CPUs)",
    )
    ap.add_argument("--iters", type=int, default=30, help="timed steps per library and count")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        raise SystemExit("this benchmark needs PyTorch: pip install torch") from None
    counts = [int(t) for t in args.threads.split(",")]

    path = find_prototxt()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, args.batch)

    net = build_ours(path, args.batch)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = labels
    params = params_of(net)
    memory: dict[int, tuple[int, int]] = {}
    for n in counts:
        with Threads(n):
            memory[n] = (
                ours_peak_memory(path, args.batch, x, labels),
                torch_peak_memory(params, x, labels),
            )

    # ---- same arithmetic: one step from identical weights.
    tnet = build_torch(params)
    tx = torch.from_numpy(x)
    tlabels = torch.from_numpy(labels.astype(np.int64))
    clear_param_diffs(net)
    net.forward()
    net.backward()
    tnet.zero_grad()
    tloss = torch.nn.functional.cross_entropy(tnet(tx), tlabels)
    tloss.backward()
    ours_loss = float(np.asarray(net.blobs["loss"].data).reshape(-1)[0])
    dw = np.abs(params["conv1"][0].diff - tnet[0].weight.grad.numpy()).max()
    print(f"prototxt: {path}")
    print(
        f"check: loss ours {ours_loss:.6f} vs torch {float(tloss.detach()):.6f}; "
        f"max |d conv1 weight grad| = {dw:.2e}"
    )

    # ---- time: alternate blocks of steps (libraries, thread counts) so that machine load
    # hits all alike, without one library's idle worker threads spinning while the other
    # computes.
    def ours_step() -> None:
        clear_param_diffs(net)
        net.forward()
        net.backward()

    def torch_step() -> None:
        tnet.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(tnet(tx), tlabels).backward()

    steps: dict[str, Callable[[], None]] = {"ours": ours_step, "torch": torch_step}
    times: dict[tuple[str, int], list[float]] = {(s, n): [] for s in steps for n in counts}
    rounds = 3
    for _ in range(rounds):
        for n in counts:
            with Threads(n):
                for name, step in steps.items():
                    for i in range(args.iters // rounds + 2):
                        t0 = time.perf_counter()
                        step()
                        if i >= 2:  # warm-up after switching libraries or thread counts
                            times[name, n].append(time.perf_counter() - t0)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"batch {args.batch}; {os.cpu_count()} CPUs, load average {load}; "
        f"{args.iters // rounds * rounds} timed steps per figure (medians)"
    )
    for n in counts:
        ours_ms = statistics.median(times["ours", n]) * 1e3
        torch_ms = statistics.median(times["torch", n]) * 1e3
        ours_mem, torch_mem = memory[n]
        print(f"{n} thread{'s' if n > 1 else ''}:")
        print(
            f"  time   (median fwd+bwd): ours {ours_ms:8.2f} ms  torch {torch_ms:8.2f} ms  "
            f"ratio {ours_ms / torch_ms:5.2f}x (target <= 1.5)"
        )
        print(
            f"  memory (peak):           ours {ours_mem / 2**20:8.2f} MiB torch "
            f"{torch_mem / 2**20:8.2f} MiB ratio {ours_mem / torch_mem:5.2f}x (target <= 2)"
        )
    print(
        "memory method: ours = tracemalloc peak of numpy allocations from Net construction "
        "through one forward+backward; torch = peak of torch.profiler's CPU allocation "
        "timeline (profile_memory) from model construction through one forward+backward, "
        "input tensors included."
    )


if __name__ == "__main__":
    main()
