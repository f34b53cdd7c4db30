"""Iteration time of the golden backend over the cpu backend for LeNet, batch 64.

Both nets are built from the unmodified LeNet prototxt with the same weights
and data shapes (no dataset needed); each iteration is forward + backward.
Prints the median times and their ratio (target: golden <= 3x cpu), measured
in one process, interleaved so machine noise hits both alike.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from barista.backends import get_backend
from caffe_bridge.datasets import example_dir
from caffe_bridge.net import Net

REPEATS = 15


def main() -> None:
    proto = Path(example_dir("mnist")) / "lenet_train_test.prototxt"
    shapes = {"data": (64, 1, 28, 28), "label": (64,)}
    nets = {
        name: Net(str(proto), "TRAIN", data_shapes=shapes, seed=1, backend=get_backend(name))
        for name in ("cpu", "golden")
    }
    for net in nets.values():
        net.blobs["data"].data[...] = 0.5
        net.forward()
        net.backward()
    times: dict[str, list[float]] = {name: [] for name in nets}
    for _ in range(REPEATS):
        for name, net in nets.items():
            t = time.perf_counter()
            net.forward()
            net.backward()
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, m in med.items():
        print(f"{name:7s} median {m * 1e3:8.1f} ms per forward+backward (batch 64)")
    print(f"golden / cpu = {med['golden'] / med['cpu']:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
