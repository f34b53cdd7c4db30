"""``barista cosim``: one GEMM pass on a generated engine in an HDL simulator, checked bit-exact.

The operands and the expected result come from :func:`sim.cases.pass_case`
(``--shape M,K,N``; for the gradient engine K is the reduction per image,
repeated ``--images`` times).
"""

from __future__ import annotations

import argparse

import numpy as np

from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ARRAY, EngineConfig, Pass
from barista_hw.engine import cycle_bound, useful_macs
from barista_hw.numfmt import DEFAULT_FORMAT, MAX_SHIFT, FixedFormat, Rounding
from sim.cases import OPERANDS, auto_shift, pass_case, utilisation
from sim.runner import build, mismatch, run_cases
from sim.tools import SIMULATORS

NAME = "cosim"
HELP = "cosimulate one GEMM pass of a generated engine (Icarus/Verilator) against the numpy model"

ENGINE_NAMES = {p.value: p for p in Pass}  # forward, backward, gradient


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"M,K,N"`` -> three positive ints; errors are one line."""
    parts = text.replace("x", ",").split(",")
    try:
        m, k, n = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--shape {text!r} must look like M,K,N, e.g. 37,29,41") from None
    if min(m, k, n) <= 0:
        raise InputError(f"--shape {text!r}: M, K and N must be positive")
    return m, k, n


def parse_engine(text: str) -> Pass:
    try:
        return ENGINE_NAMES[text.strip().lower()]
    except KeyError:
        raise InputError(f"unknown engine {text!r} (use {', '.join(ENGINE_NAMES)})") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``barista cosim`` (validated in :func:`run`, so errors are one line)."""
    parser.add_argument("--engine", default="forward", help="forward | backward | gradient")
    parser.add_argument(
        "--array", default=DEFAULT_ARRAY, help="array size RxC (default %(default)s)"
    )
    parser.add_argument(
        "--format",
        default=DEFAULT_FORMAT.name,
        help="number format, e.g. fx16, fx8.4a32 (default %(default)s)",
    )
    parser.add_argument("--shape", default="37,29,41", help="GEMM shape M,K,N (default 37,29,41)")
    parser.add_argument("--images", type=str, default="1", help="images (gradient engine)")
    parser.add_argument("--rounding", default="nearest-even", help="nearest-even|floor|stochastic")
    parser.add_argument("--shift", default="auto", help="requantisation shift 0..31 (default auto)")
    parser.add_argument("--seed", default="1", help="seed of operands and stochastic lanes")
    parser.add_argument("--sim", default="icarus", help="icarus | verilator")
    parser.add_argument("--stall", default="0", help="probability of stream stalls, 0 <= P < 1")
    parser.add_argument("--operands", default="random", help="random | min | extreme")


def _int(name: str, text: str, lo: int, hi: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise InputError(f"--{name} {text!r} must be an integer") from None
    if not lo <= v <= hi:
        raise InputError(f"--{name} {v} out of range {lo}..{hi}")
    return v


def run(args: argparse.Namespace) -> int:
    """Build, simulate, compare; 0 when bit-exact, 1 on any mismatch."""
    kind = parse_engine(args.engine)
    rows, cols = EngineConfig.parse_array(args.array)
    cfg = EngineConfig(rows, cols, FixedFormat.parse(args.format))
    m, k, n = parse_shape(args.shape)
    images = _int("images", args.images, 1, cfg.max_dim)
    for name, v in (("M", m), ("K", k), ("N", n)):
        if v > cfg.max_dim:
            raise InputError(f"--shape: {name} = {v} exceeds the engine's {cfg.max_dim}")
    rounding = Rounding.parse(args.rounding)
    auto = args.shift == "auto"
    shift = auto_shift(cfg.fmt, k * images) if auto else _int("shift", args.shift, 0, MAX_SHIFT)
    seed = _int("seed", args.seed, 0, 2**32 - 1)
    try:
        stall = float(args.stall)
    except ValueError:
        raise InputError(f"--stall {args.stall!r} must be a number") from None
    if not 0.0 <= stall < 1.0:
        raise InputError(f"--stall {stall} must be in [0, 1)")
    if args.sim not in SIMULATORS:
        raise InputError(f"unknown simulator {args.sim!r} (use {' or '.join(SIMULATORS)})")
    if args.operands not in OPERANDS:
        raise InputError(f"--operands {args.operands!r}: use {', '.join(OPERANDS)}")

    case = pass_case(
        kind,
        cfg,
        m,
        k,
        n,
        images=images,
        shift=shift,
        rounding=rounding,
        seed=seed,
        stall=stall,
        operands=args.operands,
    )
    design = build(kind, cfg, args.sim)
    sim_run = run_cases(design, [case])
    result = sim_run.results[0]
    img = f" x {images} images" if images > 1 else ""
    print(
        f"cosim {design.label}: M,K,N = {m},{k},{n}{img}, shift {shift}"
        f"{' (auto)' if auto else ''}, {rounding.label}, seed {seed}, stall {stall}"
    )
    exp = np.asarray(case.expected)
    matched = int((result.got == exp).sum())
    saturated = int(np.isin(exp, (cfg.fmt.min_int, cfg.fmt.max_int)).sum())
    print(
        f"matched {matched}/{exp.size} elements with barista_hw.model "
        f"({saturated} saturated in the model)"
    )
    bound = cycle_bound(cfg, m, k, n, images)
    util = utilisation(cfg, m, k, n, images, result.cycles)
    # The bound holds only without stalls: with --stall the cycles may exceed it.
    print(
        f"cycles {result.cycles} (upper bound without stalls: {bound}); PE utilisation "
        f"{100 * util:.1f}% = {useful_macs(m, k, n, images)} MACs / ({cfg.pes} PEs x "
        f"{result.cycles} cycles)"
    )
    print(f"simulated {sim_run.sim_cycles} cycles at {sim_run.cycles_per_second:.0f} cycles/s")
    problem = mismatch(design, result)
    if problem:
        print(f"MISMATCH: {problem}")
        return 1
    return 0
