"""Engine benchmark: PE utilisation from RTL cycle counts, simulator speed, numpy model speed.

Prints (no timed assertions):

(a) PE utilisation of a 64 x 576 x 576 forward GEMM on an 8 x 8 fx16 array,
    measured from the RTL's ``cycles`` output under cocotb + Verilator with
    the streams at full speed (target >= 90 %), and whether it is bit-exact;
(b) simulated cycles per second of that run on each simulator (Icarus runs a
    smaller shape, ``--icarus-shape``, since at its speed the full GEMM would
    take many minutes; the line says which);
(c) the numpy model: a 256 x 2304 x 1024 bit-exact ``model.gemm`` (fx16)
    against float32 ``numpy.matmul`` of the same shape, median of several
    runs in this process, and their ratio (target within 3x).

Run: ``python bench/bench_engine.py`` (first run builds the 8 x 8 engine for
both simulators: a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from barista.commands.cosim import parse_shape
from barista_hw import model
from barista_hw.config import EngineConfig, Pass
from barista_hw.engine import cycle_bound, useful_macs
from barista_hw.numfmt import FixedFormat, Rounding
from sim.cases import auto_shift, pass_case, utilisation
from sim.runner import build, mismatch, run_cases


def simulate(sim: str, cfg: EngineConfig, shape: tuple[int, int, int]) -> None:
    m, k, n = shape
    t0 = time.perf_counter()
    design = build(Pass.FORWARD, cfg, sim)
    built = time.perf_counter() - t0
    case = pass_case(
        Pass.FORWARD,
        cfg,
        m,
        k,
        n,
        shift=auto_shift(cfg.fmt, k),
        rounding=Rounding.NEAREST_EVEN,
        seed=1,
    )
    run = run_cases(design, [case])
    res = run.results[0]
    problem = mismatch(design, res)
    util = utilisation(cfg, m, k, n, 1, res.cycles)
    print(
        f"  {sim:<9} {m}x{k}x{n}: {res.cycles} cycles (bound {cycle_bound(cfg, m, k, n)}, "
        f"ideal {useful_macs(m, k, n) // cfg.pes}), PE utilisation {100 * util:.2f}%, "
        f"{'bit-exact' if problem is None else 'MISMATCH: ' + problem}"
    )
    print(
        f"  {sim:<9} {run.sim_cycles} cycles simulated in {run.wall_seconds:.1f} s "
        f"= {run.cycles_per_second:,.0f} cycles/s (cocotb, per-cycle Python); "
        f"{run.total_seconds:.1f} s with start-up, build/cache lookup {built:.1f} s"
    )


def model_speed(shape: tuple[int, int, int], repeats: int) -> None:
    m, k, n = shape
    cfg = EngineConfig(8, 8, FixedFormat.parse("fx16"))
    rng = np.random.default_rng(0)
    a = cfg.fmt.random_operands(rng, (m, k))
    b = cfg.fmt.random_operands(rng, (k, n))
    af, bf = a.astype(np.float32), b.astype(np.float32)
    shift = auto_shift(cfg.fmt, k)

    def median(fn) -> float:  # noqa: ANN001
        fn()  # warm-up (BLAS threads, caches)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    t_model = median(lambda: model.gemm(a, b, cfg, shift=shift, rounding=Rounding.NEAREST_EVEN))
    t_sr = median(lambda: model.gemm(a, b, cfg, shift=shift, rounding=Rounding.STOCHASTIC))
    t_f32 = median(lambda: np.matmul(af, bf))
    print(
        f"  model.gemm fx16 nearest-even {m}x{k}x{n}: {1e3 * t_model:.1f} ms (median of {repeats})"
    )
    print(f"  model.gemm fx16 stochastic   {m}x{k}x{n}: {1e3 * t_sr:.1f} ms")
    print(f"  numpy.matmul float32         {m}x{k}x{n}: {1e3 * t_f32:.1f} ms")
    print(
        f"  ratio model / float32: {t_model / t_f32:.2f}x (nearest-even), "
        f"{t_sr / t_f32:.2f}x (stochastic); target within 3x"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="64,576,576", help="RTL GEMM M,K,N (default 64,576,576)")
    p.add_argument("--icarus-shape", default="16,576,64", help="smaller GEMM for Icarus")
    p.add_argument("--array", default="8x8")
    p.add_argument("--model-shape", default="256,2304,1024")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-sim", action="store_true", help="only the numpy model figures")
    args = p.parse_args()
    rows, cols = EngineConfig.parse_array(args.array)
    cfg = EngineConfig(rows, cols, FixedFormat.parse("fx16"))
    if not args.skip_sim:
        print(f"(a, b) forward GEMM on a {rows}x{cols} fx16 array, streams at full speed:")
        simulate("verilator", cfg, parse_shape(args.shape))
        simulate("icarus", cfg, parse_shape(args.icarus_shape))
    print("(c) numpy model speed:")
    model_speed(parse_shape(args.model_shape), args.repeats)


if __name__ == "__main__":
    main()
