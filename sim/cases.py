"""Cosimulation cases of one GEMM pass: random layer tensors mapped onto an engine's streams.

Random layer tensors from a seed go through the pass functions of
:mod:`barista_hw.model` (``forward``, ``backward_data``, ``weight_grad``) for
the expected result, and through the same mapping onto the engine's ``A``/``B``
streams for the RTL, so the operand mapping of each pass is exercised too.
The GEMM's shape is ``M, K, N`` (``A``: M x K, ``B``: K x N; for the gradient
engine K is the reduction per image, repeated ``images`` times):

* forward:  ``Y (M x N) = W (M x K) @ X (K x N)``;
* backward: ``dX (M x N) = W.T @ dY`` with the layer's ``W`` (K x M), ``dY`` (K x N);
* gradient: ``dW (M x N) = sum_b dY[b] (M x K) @ X[b].T`` with ``X[b]`` (N x K).
"""

from __future__ import annotations

import math

import numpy as np

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.config import EngineConfig, EngineFormat, Pass
from barista_hw.engine import useful_macs
from barista_hw.fpformat import MinifloatGemmFormat
from barista_hw.minifloat import MinifloatFormat
from barista_hw.numfmt import MAX_SHIFT, FixedFormat, Rounding

from .runner import GemmCase

OPERANDS = ("random", "min", "extreme")
#: Operand kinds of a minifloat engine: besides :data:`OPERANDS`, codes whose sums land in
#: the output's normal range (``mid``) or near its subnormals (``tiny``).
MINIFLOAT_OPERANDS = (*OPERANDS, "mid", "tiny")


def auto_shift(fmt: FixedFormat, kt: int) -> int:
    """A requantisation shift that keeps most results of random full-range operands in range.

    A sum of ``kt`` products of uniform operands has a spread of about
    ``sqrt(kt) * 2**(2w-2) / 3``; shifting by ``w - 2 + log2(kt)/2`` maps it
    to about half the output range, so a few per cent saturate.
    """
    return min(MAX_SHIFT, max(0, fmt.width - 2 + math.ceil(math.log2(max(kt, 1)) / 2)))


def minifloat_codes(
    rng: np.random.Generator, fmt: MinifloatFormat, shape: tuple[int, ...], kind: str
) -> np.ndarray:
    """Finite codes of ``fmt``: ``random`` (any finite code), ``min`` (the most negative value
    everywhere), ``extreme`` (zeros, smallest subnormals, smallest normals, one and largest
    normals, both signs), ``mid`` (binades 2**-3 to 2**1) or ``tiny`` (subnormals and the
    three lowest binades)."""
    codes = np.arange(1 << fmt.bits)
    finite = codes[np.isfinite(fmt.table)]
    field = (finite >> fmt.mant) & ((1 << fmt.exp) - 1)
    sign = 1 << (fmt.bits - 1)
    one = fmt.bias << fmt.mant
    pools = {
        "random": finite,
        "min": np.array([fmt.max_code | sign]),
        "extreme": np.array([0, 1, 1 << fmt.mant, one, fmt.max_code])[:, None] | [0, sign],
        "mid": finite[(field >= fmt.bias - 3) & (field <= fmt.bias + 1)],
        "tiny": finite[field <= 3],
    }
    if kind not in pools:
        raise InputError(f"unknown operand kind {kind!r} (use {', '.join(MINIFLOAT_OPERANDS)})")
    return rng.choice(np.ravel(pools[kind]), size=shape).astype(np.int64)


def _operands(
    rng: np.random.Generator, fmt: EngineFormat, shape: tuple[int, ...], kind: str, side: str
) -> np.ndarray:
    """Operands of side ``a`` or ``b`` of the engine's GEMM."""
    if isinstance(fmt, MinifloatGemmFormat):
        return minifloat_codes(rng, fmt.a if side == "a" else fmt.b, shape, kind)
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
        w = _operands(rng, fmt, (m, k), operands, "a")
        x = _operands(rng, fmt, (k, n), operands, "b")
        a, b, expected = w, x, model.forward(w, x, cfg, **cmd)
    elif kind is Pass.BACKWARD_DATA:
        w = _operands(rng, fmt, (k, m), operands, "a")  # layer weights: C_out x (C_in*kh*kw)
        dy = _operands(rng, fmt, (k, n), operands, "b")
        a, b, expected = w.T, dy, model.backward_data(w, dy, cfg, **cmd)
    else:
        dy = _operands(rng, fmt, (images, m, k), operands, "a")
        x = _operands(rng, fmt, (images, n, k), operands, "b")
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
