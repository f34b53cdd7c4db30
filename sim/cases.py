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

import dataclasses
import math

import numpy as np

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.command import PASS_IDS
from barista_hw.config import EngineConfig, EngineFormat, Pass
from barista_hw.engine import useful_macs
from barista_hw.fpformat import MinifloatGemmFormat
from barista_hw.minifloat import MinifloatFormat
from barista_hw.mx import E8M0
from barista_hw.mxformat import MXGemmFormat
from barista_hw.numfmt import MAX_SHIFT, FixedFormat, Rounding
from barista_hw.passengine import PassGemmFormat

from .runner import GemmCase

OPERANDS = ("random", "min", "extreme")
#: Operand kinds of a minifloat engine: besides :data:`OPERANDS`, codes whose sums land in
#: the output's normal range (``mid``) or near its subnormals (``tiny``).
MINIFLOAT_OPERANDS = (*OPERANDS, "mid", "tiny")
#: Operand kinds of an MX engine: besides :data:`MINIFLOAT_OPERANDS` (element codes; block
#: scales near 1, or low for ``tiny``), scales anywhere in the window (``wide``).
MX_OPERANDS = (*MINIFLOAT_OPERANDS, "wide")


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


def mx_words(
    rng: np.random.Generator, fmt: MXGemmFormat, shape: tuple[int, int], kind: str, side: str
) -> np.ndarray:
    """Words of side ``a`` or ``b`` of an MX engine, ``shape`` = (rows, K), blocks along K from
    term 0 (:meth:`~barista_hw.mxpe.MXArith.pack`). Elements as :func:`minifloat_codes`
    (``wide`` takes random codes; MXINT8: random integers, or the range ends for
    ``extreme``/``min``); one scale per block, each side's ``X`` within half the format's
    window: near 0, low (``tiny``: mid elements whose sums land near the output's
    subnormals), anywhere (``wide``), or its two ends and 0 (``extreme``),
    with some blocks all zero (all of A's first row) and some holding one largest element
    among the smallest."""
    if kind not in MX_OPERANDS:
        raise InputError(f"unknown operand kind {kind!r} (use {', '.join(MX_OPERANDS)})")
    arith, mx = fmt.arith, fmt.a if side == "a" else fmt.b
    el = mx.element
    ekind = {"wide": "random", "tiny": "mid"}.get(kind, kind)
    if isinstance(el, MinifloatFormat):
        codes = minifloat_codes(rng, el, shape, ekind)
        huge, small = el.max_code, 1
    else:
        pool = {"extreme": [el.min_int, -1, 0, 1, el.max_int], "min": [el.min_int]}
        codes = rng.choice(pool.get(ekind, np.arange(el.min_int, el.max_int + 1)), size=shape)
        huge, small = el.min_int, 1
    lo, hi = max(-(-arith.lo // 2), -127), min(arith.hi // 2, 127)
    nb = -(-shape[1] // arith.block)
    low = min(max((fmt.out.emin - 4) // 2, lo), hi)  # sums of about K near the subnormals
    ranges = {"tiny": (low, min(hi, low + 1)), "wide": (lo, hi)}
    x_lo, x_hi = ranges.get(kind, (max(lo, min(hi, -1)), min(hi, max(lo, 1))))
    x = rng.integers(x_lo, x_hi + 1, size=(shape[0], nb))
    if kind == "extreme":
        x = rng.choice(np.array([lo, hi, min(max(0, lo), hi)]), size=(shape[0], nb))
        codes = codes.reshape(shape).copy()
        for r, blk in zip(*np.nonzero(rng.random((shape[0], nb)) < 0.25), strict=True):
            codes[r, blk * arith.block : (blk + 1) * arith.block] = 0  # a zero block
        for r, blk in zip(*np.nonzero(rng.random((shape[0], nb)) < 0.25), strict=True):
            part = codes[r, blk * arith.block : (blk + 1) * arith.block]
            part[:] = small
            part[rng.integers(0, len(part))] = huge  # one huge element among tiny ones
        if side == "a":
            codes[0] = 0  # a row of zero blocks: its results are zero whatever the scales
    scales = np.repeat(x + E8M0.bias, arith.block, axis=1)[:, : shape[1]]
    return arith.pack(codes, scales)


def _operands(
    rng: np.random.Generator, fmt: EngineFormat, shape: tuple[int, ...], kind: str, side: str
) -> np.ndarray:
    """Operands of side ``a`` or ``b`` of the engine's GEMM (not for MX: :func:`mx_words`)."""
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
    """Random layer tensors of a pass mapped onto the engine's streams, with the model's answer.

    A per-pass engine's case carries the pass in its command (``pass_id``); its operands and
    expected codes are those of the engine format of that pass
    (:meth:`~barista_hw.passengine.PassGemmFormat.for_pass`, what its model computes)."""
    pass_id = PASS_IDS[kind] if isinstance(cfg.fmt, PassGemmFormat) else 0
    if isinstance(cfg.fmt, PassGemmFormat):
        cfg = dataclasses.replace(cfg, fmt=cfg.fmt.for_pass(pass_id))
    if images < 1:
        raise InputError(f"--images {images} must be >= 1")
    if images > 1 and kind is not Pass.WEIGHT_GRAD:
        raise InputError(f"--images {images}: only the gradient engine sums over images")
    rng = np.random.default_rng(seed)
    fmt = cfg.fmt
    cmd = {"shift": shift, "rounding": rounding, "seed": seed}
    given = _mx_tensors(rng, fmt, kind, (m, k, n, images), operands)

    def tensor(i: int, shape: tuple[int, ...], side: str) -> np.ndarray:
        return given[i] if given else _operands(rng, fmt, shape, operands, side)

    if kind is Pass.FORWARD:
        w, x = tensor(0, (m, k), "a"), tensor(1, (k, n), "b")
        a, b, expected = w, x, model.forward(w, x, cfg, **cmd)
    elif kind is Pass.BACKWARD_DATA:
        w = tensor(0, (k, m), "a")  # layer weights: C_out x (C_in*kh*kw)
        dy = tensor(1, (k, n), "b")
        a, b, expected = w.T, dy, model.backward_data(w, dy, cfg, **cmd)
    else:
        dy, x = tensor(0, (images, m, k), "a"), tensor(1, (images, n, k), "b")
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
        pass_id=pass_id,
    )


def _mx_tensors(
    rng: np.random.Generator,
    fmt: EngineFormat,
    kind: Pass,
    shape: tuple[int, int, int, int],
    operands: str,
) -> tuple[np.ndarray, np.ndarray] | None:
    """An MX engine's layer tensors of a pass, made as the GEMM's ``A`` and ``B.T`` (blocks
    along the whole reduction, the gradient's images included); None for other formats."""
    if not isinstance(fmt, MXGemmFormat):
        return None
    m, k, n, images = shape
    a = mx_words(rng, fmt, (m, k * images), operands, "a")
    bt = mx_words(rng, fmt, (n, k * images), operands, "b")
    if kind is Pass.FORWARD:
        return a, bt.T
    if kind is Pass.BACKWARD_DATA:
        return a.T, bt.T
    return a.reshape(m, images, k).transpose(1, 0, 2), bt.reshape(n, images, k).transpose(1, 0, 2)


def utilisation(cfg: EngineConfig, m: int, k: int, n: int, images: int, cycles: int) -> float:
    """Useful MACs / (PEs x cycles)."""
    return useful_macs(m, k, n, images) / (cfg.pes * cycles) if cycles else 0.0
