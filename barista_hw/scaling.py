"""Dynamic fixed point: per-tensor power-of-two scales for training on integer engines.

Training values span many orders of magnitude (weights ~1e-2, activations
~1..10, gradients ~1e-5), so one fixed ``frac`` cannot hold them all in 8-16
bits. The host therefore gives every operand tensor its own fraction-bit count
(block floating point with one exponent per tensor), and chooses the engine's
requantisation ``shift`` per call so the result lands in a good range:

* operands: ``frac = width - 1 - e`` with ``max|x| < 2**e`` (no operand saturates
  except by rounding up the largest value);
* results: each (layer, pass) keeps an output ``frac``. The first call
  calibrates it from a float32 estimate of the result's magnitude; later calls
  adapt it from the integers the engine returned (saturated: two bits less;
  unused top bits: that many more, keeping one bit of headroom). The decision
  depends only on host data and engine outputs, so every backend that returns
  the same bits (golden model, RTL, board) makes the same decisions.

Static fixed point (``scaling="static"``, :class:`StaticScales`) is the other mode:
every operand and result has the format's own fraction bits as written (``fx16.12``:
12), as in Gupta et al. 2015; what does not fit saturates, and operands are rounded
with the engines' rounding mode (:func:`quantize_static`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from barista_base.errors import InputError

from . import native
from .numfmt import MAX_SHIFT, FixedFormat, Rounding

FRAC_LIMIT = 64  # clamp for all-zero or extreme tensors
#: The scaling modes: per-tensor power-of-two scales, or the format's fraction bits.
DYNAMIC = "dynamic"
STATIC = "static"
SCALINGS = (DYNAMIC, STATIC)


def parse_scaling(text: str) -> str:
    """A scaling mode name (:data:`SCALINGS`, any case); anything else is an ``InputError``."""
    mode = text.strip().lower()
    if mode not in SCALINGS:
        raise InputError(f"unknown scaling {text!r}: use {' or '.join(SCALINGS)}")
    return mode


def exponent(max_abs: float) -> int:
    """Smallest ``e`` with ``max_abs < 2**e`` (``frexp``); tiny for zero."""
    if not math.isfinite(max_abs):
        raise ValueError(f"non-finite value {max_abs} cannot be quantised")
    if max_abs <= 0:
        return -FRAC_LIMIT
    return math.frexp(max_abs)[1]


def max_abs(x: np.ndarray) -> float:
    """``max |x|`` (0 for an empty array, nan if ``x`` holds a nan), without a temporary."""
    x = np.asarray(x)
    fused = native.peak(x)
    if fused is not None:
        return fused
    return float(max(x.max(), -x.min())) if x.size else 0.0


def frac_for(peak: float, fmt: FixedFormat) -> int:
    """Fraction bits that fit values up to ``|peak|`` into ``fmt.width`` signed bits."""
    return max(-FRAC_LIMIT, min(FRAC_LIMIT, fmt.width - 1 - exponent(peak)))


def tensor_frac(x: np.ndarray, fmt: FixedFormat) -> int:
    """Fraction bits that fit ``x`` into ``fmt.width`` signed bits."""
    return frac_for(max_abs(x), fmt)


def quantize_fitted(
    x: np.ndarray, fmt: FixedFormat, guess: int | None = None, out: np.ndarray | None = None
) -> tuple[np.ndarray, int, float]:
    """``x`` quantised (to nearest, as float64) with the fraction bits that fit it: the
    integers, :func:`tensor_frac` and ``max |x|``; for a non-finite ``x`` only the peak
    means anything (check it). ``out`` as for ``fmt.quantize``.

    ``guess``: the fraction bits a similar tensor had (the same operand last call). The
    compiled pass then quantises and measures in one read of ``x``, and quantises
    again only when the peak shows the guess was wrong; the result is the same.
    """
    if guess is not None:
        # Saturating is a no-op within the range: clipping unconditionally is harmless.
        fused = native.quantize(x, 2.0**guess, False, (fmt.min_int, fmt.max_int), out)
        if fused is not None:
            q, peak = fused
            if not math.isfinite(peak) or frac_for(peak, fmt) == guess:
                return q, guess, peak
    peak = max_abs(x)
    if not math.isfinite(peak):
        return np.empty(np.shape(x)) if out is None else out, 0, peak
    frac = frac_for(peak, fmt)
    return fmt.quantize(x, frac, dtype=np.float64, peak=peak, out=out), frac, peak


def quantize_static(
    x: np.ndarray,
    fmt: FixedFormat,
    out: np.ndarray | None = None,
    rounding: Rounding = Rounding.NEAREST_EVEN,
    seed: int = 0,
) -> tuple[np.ndarray, int, float]:
    """``x`` quantised (saturating, as float64) with ``fmt.frac`` fraction bits:
    :func:`quantize_fitted`'s ``(integers, frac, max |x|)`` for static scaling.

    ``rounding``: to nearest even, down, or stochastically with draws from
    ``numpy.random.default_rng(seed)``. Static formats have no headroom to spare, so
    every conversion into them rounds as the engines do (Gupta et al. round operands
    and results alike): a gradient below half an LSB survives stochastic rounding on
    average, where rounding to nearest makes it zero.
    """
    if rounding is Rounding.NEAREST_EVEN:
        fused = native.quantize(x, 2.0**fmt.frac, False, (fmt.min_int, fmt.max_int), out)
        if fused is not None:
            return fused[0], fmt.frac, fused[1]
    peak = max_abs(x)
    if not math.isfinite(peak):
        return np.empty(np.shape(x)) if out is None else out, 0, peak
    rng = np.random.default_rng(seed) if rounding is Rounding.STOCHASTIC else None
    q = fmt.quantize(x, fmt.frac, rounding, rng, dtype=np.float64, peak=peak, out=out)
    return q, fmt.frac, peak


class ScaleTracker:
    """Output fraction bits per (layer, pass) key, calibrated once and adapted per call."""

    def __init__(self, fmt: FixedFormat) -> None:
        self.fmt = fmt
        self.frac: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    @property
    def target_bits(self) -> int:
        """Magnitude bits the largest result should use: one bit of headroom."""
        return self.fmt.width - 2

    def output_frac(self, key: str, estimate_max: Callable[[], float]) -> int:
        """The output ``frac`` for the next call of ``key`` (calibrating on first use)."""
        if key not in self.frac:
            e = exponent(float(estimate_max()))
            self.frac[key] = max(-FRAC_LIMIT, min(FRAC_LIMIT, self.target_bits - e))
        return self.frac[key]

    def plan_shift(
        self, key: str, frac_a: int, frac_b: int, estimate_max: Callable[[], float]
    ) -> tuple[int, int]:
        """(shift, output frac) for a product with operand fractions ``frac_a``, ``frac_b``."""
        want = self.output_frac(key, estimate_max)
        shift = max(0, min(MAX_SHIFT, frac_a + frac_b - want))
        return shift, frac_a + frac_b - shift

    def observe(self, key: str, q: np.ndarray, frac_used: int) -> None:
        """Adapt ``key``'s output frac from the integers of the call that used ``frac_used``."""
        self.observe_peak(key, max_abs(q), frac_used)

    def observe_peak(self, key: str, peak: float, frac_used: int) -> None:
        """:meth:`observe` from the integers' ``max |q|`` alone (what it depends on)."""
        self.calls[key] = self.calls.get(key, 0) + 1
        peak = int(peak)
        if peak >= self.fmt.max_int:  # saturated (or at the edge): back off fast
            new = frac_used - 2
        elif peak == 0:
            new = frac_used + 4  # everything underflowed: look for the signal
        else:
            new = frac_used + (self.target_bits - peak.bit_length())
        self.frac[key] = max(-FRAC_LIMIT, min(FRAC_LIMIT, new))

    def call_index(self, key: str) -> int:
        return self.calls.get(key, 0)

    def state_dict(self) -> dict[str, dict[str, int]]:
        """JSON-able state, so a resumed training run makes the same decisions."""
        return {"frac": dict(self.frac), "calls": dict(self.calls)}

    def load_state_dict(self, state: dict[str, dict[str, int]]) -> None:
        self.frac = {k: int(v) for k, v in state.get("frac", {}).items()}
        self.calls = {k: int(v) for k, v in state.get("calls", {}).items()}


class StaticScales(ScaleTracker):
    """Static scaling: every result has the format's fraction bits; nothing adapts.

    With operands at ``fmt.frac`` the products have ``2 * fmt.frac`` fraction bits, so
    the engine's shift is ``fmt.frac``. Calls are still counted: the stochastic-rounding
    seeds depend on them as in dynamic mode.
    """

    def output_frac(self, key: str, estimate_max: Callable[[], float]) -> int:
        return self.fmt.frac

    def observe_peak(self, key: str, peak: float, frac_used: int) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1
