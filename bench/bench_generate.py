"""Benchmark of ``barista generate``: wall time, and modelled PE utilisation per layer and pass.

Run from the repository: ``python bench/bench_generate.py``. Prints the wall time
of ``barista generate`` for LeNet (examples/mnist) and CaffeNet
(examples/bvlc_reference_caffenet) on ULX3S 85F,
and the modelled PE utilisation of every layer pass of LeNet and cifar10_quick on
ULX3S 85F with the whole-iteration figure (target: >= 80%, transfers included).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TARGET_UTIL = 0.80


def _generate(net: Path, shapes: list[str], out: Path) -> float:
    from barista.commands import generate as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    argv = [str(net), "--target", "ulx3s-85f", "-o", str(out)]
    for s in shapes:
        argv += ["--data-shape", s]
    start = time.perf_counter()
    cmd.run(parser.parse_args(argv))
    return time.perf_counter() - start


def _utilisation(name: str, net: Path, shapes: dict) -> None:
    from barista.backends.plan import gemm_layers
    from barista_hw.dse import explore
    from barista_hw.targets import get_target
    from caffe_bridge.net import Net

    layers = gemm_layers(Net(net, "TRAIN", data_shapes=shapes))
    res = explore(layers, get_target("ulx3s-85f").budget, name=name)
    plan = res.plan
    print(f"\n{name} on ULX3S 85F: {res.best.label}")
    print(f"  {'layer':8} {'pass':9} {'cycles':>12} {'PE util':>8}")
    for p in plan.passes:
        print(
            f"  {p.workload.layer:8} {p.workload.kind.value:9} {p.cycles:>12} {p.utilisation:>8.1%}"
        )
    ok = "meets" if plan.utilisation >= TARGET_UTIL else "MISSES"
    print(
        f"  whole iteration: {plan.cycles} cycles, PE utilisation {plan.utilisation:.1%} "
        f"({ok} the {TARGET_UTIL:.0%} target), {plan.images_per_second:.1f} images/s"
    )


def main() -> None:
    lenet = REPO / "examples" / "mnist" / "lenet_train_test.prototxt"
    with tempfile.TemporaryDirectory() as tmp:
        t = _generate(lenet, ["data=64,1,28,28", "label=64"], Path(tmp) / "lenet")
        print(f"\nbarista generate LeNet: {t:.1f} s wall")
        caffenet = EXAMPLES / "bvlc_reference_caffenet" / "train_val.prototxt"
        t = _generate(caffenet, ["data=256,3,227,227", "label=256"], Path(tmp) / "caffenet")
        print(f"\nbarista generate CaffeNet: {t:.1f} s wall")
    _utilisation("LeNet", lenet, {"data": (64, 1, 28, 28), "label": (64,)})
    quick = EXAMPLES / "cifar10" / "cifar10_quick_train_test.prototxt"
    _utilisation("cifar10_quick", quick, {"data": (100, 3, 32, 32), "label": (100,)})


if __name__ == "__main__":
    main()
