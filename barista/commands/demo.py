"""``barista demo``: the whole path on the built-in example, from one command.

1. writes the three default GEMM engines and proves them bit-exact against the
   numpy model in an HDL simulator (``barista demo-engines``);
2. writes the digits data set in Caffe's format beside the unmodified LeNet
   example (``barista data digits``);
3. sizes an accelerator for LeNet on a board target and writes its Verilog and
   manifest (``barista generate``);
4. trains LeNet with float32 GEMMs and with the bit-exact hardware arithmetic
   (``--format``, default :data:`barista_hw.numfmt.DEFAULT_FORMAT`) for the same
   iterations from the same seed, and compares test accuracy (``barista train
   --backend cpu|golden``).

Everything it writes goes under one work directory (``--work``, default
``barista-demo`` in the current directory): the data, ``rtl_out/demo`` and
``rtl_out/lenet``. The same seed gives the same figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

NAME = "demo"
HELP = "the whole flow on the built-in LeNet/digits example: RTL, cosim, plan, training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``barista demo``."""
    from barista_hw.numfmt import DEFAULT_FORMAT
    from barista_hw.targets import DEFAULT_TARGET

    parser.add_argument(
        "--work", default="barista-demo", help="directory for everything the demo writes"
    )
    parser.add_argument("--iterations", type=int, default=300, help="training iterations per run")
    parser.add_argument("--seed", type=int, default=1, help="random seed of both training runs")
    parser.add_argument(
        "--format", default=DEFAULT_FORMAT.name, help="number format of the hardware run"
    )
    parser.add_argument("--sim", default="icarus", help="HDL simulator: icarus | verilator")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="board target of the accelerator")


def run(args: argparse.Namespace) -> int:
    """Run the four steps; non-zero exit if a cosimulation mismatched."""
    from barista.sweep import train_and_test
    from barista_base.errors import InputError
    from barista_hw.config import DEFAULT_ARRAY
    from barista_hw.generate import generate
    from caffe_bridge.datasets import write_digits

    from ..manifest import write_rtl_dir
    from . import demo_engines
    from .generate import load_layers

    if args.iterations < 1:
        raise InputError(f"--iterations must be at least 1, got {args.iterations}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    start = time.perf_counter()
    work = Path(args.work).resolve()
    rtl_out = work / "rtl_out"
    print(f"== 1/4 engines: generate into {rtl_out / 'demo'} and cosimulate against the model")
    status = demo_engines.run(
        argparse.Namespace(
            sim=args.sim, array=DEFAULT_ARRAY, format=args.format, out=str(rtl_out / "demo")
        )
    )

    print(f"\n== 2/4 data: digits in Caffe's LMDB format under {work}")
    if (work / "examples" / "mnist" / "mnist_train_lmdb").exists():
        print("   (already there)")
    else:
        result = write_digits(work)
        print(f"   {result.train.count} training and {result.test.count} test images, 28x28")
    proto = work / "examples" / "mnist" / "lenet_train_test.prototxt"

    print(f"\n== 3/4 accelerator for LeNet on {args.target}: {rtl_out / 'lenet'}")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        name, layers = load_layers(str(proto), {})
        design = generate(layers, target=args.target, fmt=args.format, name=name)
        write_rtl_dir(design, rtl_out / "lenet")
        print(design.summary, end="")

        print(
            f"\n== 4/4 training LeNet for {args.iterations} iterations from seed {args.seed}, "
            f"float32 vs {args.format}"
        )
        runs = [
            train_and_test(
                "examples/mnist/lenet_solver.prototxt",
                iterations=args.iterations,
                test_batches=4,
                label="float32 (cpu)",
                seed=args.seed,
            ),
            train_and_test(
                "examples/mnist/lenet_solver.prototxt",
                iterations=args.iterations,
                test_batches=4,
                backend="golden",
                backend_options={"fmt": args.format},
                label=f"{args.format} (golden, bit-exact hardware model)",
                seed=args.seed,
            ),
        ]
    finally:
        os.chdir(cwd)
    width = max(len(r.label) for r in runs)
    for r in runs:
        print(
            f"   {r.label:{width}s}  test accuracy {r.accuracy:.4f}  loss {r.loss:.4f}  "
            f"{r.seconds_per_iteration * 1e3:.0f} ms/iter"
        )
    print(
        f"\ndemo done in {time.perf_counter() - start:.0f} s; engines "
        + ("bit-exact" if status == 0 else "MISMATCHED")
        + f"; everything it wrote is under {work}"
    )
    return status
