"""Simulated cycles per second of the ``rtl`` backend on LeNet-sized layer passes.

Builds (or loads from the cache) the Verilated accelerator of a preset (default
``ulx3s-45f``: 8 x 8 fx16, 1024-word buffers) and runs LeNet's GEMM passes with
the batch folded in, through the same C++ host as :class:`barista.backends.rtl.RtlBackend`.
Prints, per pass: GEMM shape, simulated cycles, wall and CPU time of the simulation
call, cycles per second of both (target >= 500k), PE utilisation, and the Python
time to build the program; ``--check`` also compares every result with the
bit-exact model. The machine is shared: CPU-time rates show the simulator's own
speed when other processes take cores.

    python bench/bench_rtl.py [--preset ulx3s-45f] [--batch 64] [--passes conv2-fwd,...] [--check]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from barista_hw import model  # noqa: E402
from barista_hw.command import GemmCommand  # noqa: E402
from barista_hw.numfmt import Rounding  # noqa: E402
from barista_hw.presets import get_preset  # noqa: E402
from sim import verilator_driver as vd  # noqa: E402
from sim.verilator_program import make_program  # noqa: E402


def lenet_passes(batch: int) -> dict[str, tuple[int, int, int, int]]:
    """(m, k, n, images) of LeNet's passes as the hardware backend issues them."""
    return {
        # conv1: 20 x (1*5*5), 24*24 pixels; conv2: 50 x (20*5*5), 8*8 pixels; ip1: 500 x 800.
        "conv1-fwd": (20, 25, batch * 576, 1),
        "conv2-fwd": (50, 500, batch * 64, 1),
        "conv2-bwd": (500, 50, batch * 64, 1),
        "conv2-grad": (50, 64, 500, batch),
        "ip1-fwd": (500, 800, batch, 1),
        "ip1-grad": (500, batch, 800, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="ulx3s-45f")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--passes", default="conv2-fwd,conv2-bwd,conv2-grad,ip1-fwd")
    ap.add_argument("--rounding", default="stochastic")
    ap.add_argument("--check", action="store_true", help="compare with the bit-exact model")
    args = ap.parse_args()

    cfg = get_preset(args.preset)
    e = cfg.engine
    t0 = time.perf_counter()
    sim = vd.simulator(cfg)
    t_build = time.perf_counter() - t0
    print(
        f"accelerator {args.preset}: {e.rows}x{e.cols} {e.fmt.name}, buffers "
        f"{cfg.a_depth}/{cfg.b_depth}, acc {e.acc_depth}; build/load {t_build:.1f} s"
    )

    # ctypes call overhead: a one-tile pass, many times.
    one = np.ones((1, 1), dtype=np.int64)
    prog = make_program(cfg, one, one, GemmCommand(shift=0))
    t0 = time.perf_counter()
    for _ in range(200):
        tiny = sim.run_program(prog)
    per_call = (time.perf_counter() - t0) / 200
    print(f"smallest pass ({tiny.cycles} cycles): {per_call * 1e6:.0f} us per call incl. checks")

    rounding = Rounding.parse(args.rounding)
    rng = np.random.default_rng(0)
    table = lenet_passes(args.batch)
    total_cycles = total_wall = total_cpu = 0.0
    print(
        f"{'pass':<11}{'m':>5}{'k':>5}{'n':>7}{'img':>4}{'cycles':>11}{'wall s':>8}"
        f"{'Mc/s wall':>10}{'Mc/s cpu':>9}{'PE util':>8}{'prog s':>7}"
    )
    for name in args.passes.split(","):
        m, k, n, images = table[name]
        lo, hi = e.fmt.min_int // 64, e.fmt.max_int // 64  # typical trained magnitudes
        a = rng.integers(lo, hi, (m, k * images), endpoint=True)
        b = rng.integers(lo, hi, (k * images, n), endpoint=True)
        cmd = GemmCommand(shift=e.fmt.frac, rounding=rounding, seed=7, images=images)
        t0 = time.perf_counter()
        prog = make_program(cfg, a, b, cmd)
        t_prog = time.perf_counter() - t0
        c0 = time.process_time()
        run = sim.run_program(prog, label=name)
        cpu = time.process_time() - c0
        util = m * k * images * n / (e.pes * run.cycles)
        total_cycles += run.cycles
        total_wall += run.wall_seconds
        total_cpu += cpu
        print(
            f"{name:<11}{m:>5}{k:>5}{n:>7}{images:>4}{run.cycles:>11,}{run.wall_seconds:>8.2f}"
            f"{run.cycles / run.wall_seconds / 1e6:>10.3f}{run.cycles / cpu / 1e6:>9.3f}"
            f"{util:>8.1%}{t_prog:>7.2f}"
        )
        if args.check:
            want = model.gemm_on_accelerator(a, b, cfg, cmd)
            same = np.array_equal(run.result, want)
            print(f"  bit-exact with the model: {same}")
            if not same:
                return 1
    print(
        f"{'all':<11}{'':>21}{int(total_cycles):>11,}{total_wall:>8.2f}"
        f"{total_cycles / total_wall / 1e6:>10.3f}{total_cycles / total_cpu / 1e6:>9.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
