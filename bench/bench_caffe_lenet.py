"""LeNet training step (forward + backward, batch 64): Barista's runtime vs PyTorch CPU.

Runs Caffe's unmodified ``lenet_train_test.prototxt`` (TRAIN phase, the Data layer
replaced by externally fed ``data``/``label`` blobs of the same shapes) on our
runtime with the ``cpu`` GEMM backend, and the same network with the same weights
in PyTorch, in one process. Prints median step times and peak memory of each,
with the ratios (targets, issue 26: ours within 1.5x of PyTorch in time and 2x in
memory). Both libraries use the same number of threads: ``OPENBLAS_NUM_THREADS``
(set to 1 here when the environment does not say) for numpy's BLAS, and as many
for PyTorch.

PyTorch is needed only here (``pip install torch``); the project does not depend on it.

    OPENBLAS_NUM_THREADS=1 python bench/bench_caffe_lenet.py [--iters 30] [--batch 64]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads its BLAS

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        raise SystemExit("this benchmark needs PyTorch: pip install torch") from None
    threads = int(os.environ["OPENBLAS_NUM_THREADS"])
    torch.set_num_threads(threads)

    path = find_prototxt()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, args.batch)

    # ---- memory, ours: every numpy allocation from net construction through one step.
    tracemalloc.start()
    net = build_ours(path, args.batch)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = labels
    net.forward()
    net.backward()
    ours_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    # ---- memory, torch: its profiler's allocation timeline over the same scope.
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    params = params_of(net)
    tx = torch.from_numpy(x)
    tlabels = torch.from_numpy(labels.astype(np.int64))
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        tnet = build_torch(params)
        torch.nn.functional.cross_entropy(tnet(tx), tlabels).backward()
    current = torch_peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action in (Action.PREEXISTING, Action.CREATE):
            current += size
        elif action == Action.DESTROY:
            current -= size
        torch_peak = max(torch_peak, current)

    # ---- same arithmetic: one step from identical weights.
    tnet = build_torch(params)
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

    # ---- time: alternate blocks of steps so that machine load hits both alike, without
    # one library's idle worker threads spinning while the other computes.
    def ours_step() -> None:
        clear_param_diffs(net)
        net.forward()
        net.backward()

    def torch_step() -> None:
        tnet.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(tnet(tx), tlabels).backward()

    ours_t: list[float] = []
    torch_t: list[float] = []
    rounds = 3
    for _ in range(rounds):
        for step, times in ((ours_step, ours_t), (torch_step, torch_t)):
            for i in range(args.iters // rounds + 2):
                t0 = time.perf_counter()
                step()
                if i >= 2:  # warm-up after switching libraries
                    times.append(time.perf_counter() - t0)
    ours_ms = statistics.median(ours_t) * 1e3
    torch_ms = statistics.median(torch_t) * 1e3
    print(
        f"torch threads {torch.get_num_threads()}, OPENBLAS_NUM_THREADS={threads}, "
        f"{os.cpu_count()} CPUs; batch {args.batch}, {args.iters} timed steps (medians)"
    )
    print(
        f"time   (median fwd+bwd): ours {ours_ms:8.2f} ms  torch {torch_ms:8.2f} ms  "
        f"ratio {ours_ms / torch_ms:5.2f}x (target <= 1.5)"
    )
    print(
        f"memory (peak):           ours {ours_peak / 2**20:8.2f} MiB torch "
        f"{torch_peak / 2**20:8.2f} MiB ratio {ours_peak / torch_peak:5.2f}x (target <= 2)"
    )
    print(
        "memory method: ours = tracemalloc peak of numpy allocations from Net construction "
        "through one forward+backward; torch = peak of torch.profiler's CPU allocation "
        "timeline (profile_memory) from model construction through one forward+backward, "
        "input tensors included."
    )


if __name__ == "__main__":
    main()
