"""``barista cosim``: one GEMM pass on a generated engine in an HDL simulator, checked bit-exact.

Random layer tensors from ``--seed`` go through the pass functions of
:mod:`barista_hw.model` (``forward``, ``backward_data``, ``weight_grad``) for
the expected result, and through the same mapping onto the engine's ``A``/``B``
streams for the RTL, so the operand mapping of each pass is exercised too.
``--shape M,K,N`` is the GEMM's shape (``A``: M x K, ``B``: K x N; for the
gradient engine K is the reduction per image, repeated ``--images`` times):

* forward:  ``Y (M x N) = W (M x K) @ X (K x N)``;
* backward: ``dX (M x N) = W.T @ dY`` with the layer's ``W`` (K x M), ``dY`` (K x N);
* gradient: ``dW (M x N) = sum_b dY[b] (M x K) @ X[b].T`` with ``X[b]`` (N x K).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from barista_hw import model
from barista_hw.config import EngineConfig, Pass
from barista_hw.engine import cycle_bound, useful_macs
from barista_hw.errors import InputError
from barista_hw.numfmt import MAX_SHIFT, FixedFormat, Rounding

from .runner import SIMULATORS, GemmCase, build, mismatch, run_cases

NAME = "cosim"
HELP = "cosimulate one GEMM pass of a generated engine (Icarus/Verilator) against the numpy model"

ENGINE_NAMES = {p.value: p for p in Pass}  # forward, backward, gradient
OPERANDS = ("random", "min", "extreme")


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


def auto_shift(fmt: FixedFormat, kt: int) -> int:
    """A requantisation shift that keeps most results of random full-range operands in range.

    A sum of ``kt`` products of uniform operands has a spread of about
    ``sqrt(kt) * 2**(2w-2) / 3``; shifting by ``w - 2 + log2(kt)/2`` maps it
    to about half the output range, so a few per cent saturate.
    """
    return min(MAX_SHIFT, max(0, fmt.width - 2 + math.ceil(math.log2(max(kt, 1)) / 2)))


def _operands(
    rng: np.random.Generator, fmt: FixedFormat, shape: tuple[int, ...], kind: str
) -> np.ndarray:
    if kind == "random":
        return fmt.random_operands(rng, shape)
    if kind == "min":  # the most negative value everywhere: the largest products
        return np.full(shape, fmt.min_int, dtype=np.int64)
    if kind == "extreme":  # only the two range ends: saturation in both directions
        return rng.choice(np.array([fmt.min_int, fmt.max_int]), size=shape)
    raise InputError(f"unknown operand kind {kind!r} (use {', '.join(OPERANDS)})")


def pass_case(
    kind: Pass,
    cfg: EngineConfig,
    m: int,
    k: int,
    n: int,
    *,
    images: int = 1,
    shift: int,
    rounding: Rounding,
    seed: int,
    stall: float = 0.0,
    operands: str = "random",
    name: str | None = None,
) -> GemmCase:
    """Random layer tensors of a pass mapped onto the engine's streams, with the model's answer."""
    if images < 1:
        raise InputError(f"--images {images} must be >= 1")
    if images > 1 and kind is not Pass.WEIGHT_GRAD:
        raise InputError(f"--images {images}: only the gradient engine sums over images")
    rng = np.random.default_rng(seed)
    fmt = cfg.fmt
    cmd = {"shift": shift, "rounding": rounding, "seed": seed}
    if kind is Pass.FORWARD:
        w = _operands(rng, fmt, (m, k), operands)
        x = _operands(rng, fmt, (k, n), operands)
        a, b, expected = w, x, model.forward(w, x, cfg, **cmd)
    elif kind is Pass.BACKWARD_DATA:
        w = _operands(rng, fmt, (k, m), operands)  # layer weights: C_out x (C_in*kh*kw)
        dy = _operands(rng, fmt, (k, n), operands)
        a, b, expected = w.T, dy, model.backward_data(w, dy, cfg, **cmd)
    else:
        dy = _operands(rng, fmt, (images, m, k), operands)
        x = _operands(rng, fmt, (images, n, k), operands)
        a, b = model.weight_grad_operands(dy, x)
        expected = model.weight_grad(dy, x, cfg, **cmd)
    label = name or f"{kind.value} {m}x{k}x{n}"
    return GemmCase(
        label,
        np.ascontiguousarray(a),
        np.ascontiguousarray(b),
        shift=shift,
        rounding=rounding,
        seed=seed,
        images=images,
        stall=stall,
        pad_seed=seed + 1,
        expected=expected,
    )


def utilisation(cfg: EngineConfig, m: int, k: int, n: int, images: int, cycles: int) -> float:
    """Useful MACs / (PEs x cycles)."""
    return useful_macs(m, k, n, images) / (cfg.pes * cycles) if cycles else 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``barista cosim`` (validated in :func:`run`, so errors are one line)."""
    parser.add_argument("--engine", default="forward", help="forward | backward | gradient")
    parser.add_argument("--array", default="4x4", help="array size RxC (default 4x4)")
    parser.add_argument("--format", default="fx16", help="number format, e.g. fx16, fx8.4a32")
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
    print(
        f"cycles {result.cycles} (stall-free bound {bound}); PE utilisation {100 * util:.1f}% "
        f"= {useful_macs(m, k, n, images)} MACs / ({cfg.pes} PEs x {result.cycles} cycles)"
    )
    print(f"simulated {sim_run.sim_cycles} cycles at {sim_run.cycles_per_second:.0f} cycles/s")
    problem = mismatch(design, result)
    if problem:
        print(f"MISMATCH: {problem}")
        return 1
    return 0
