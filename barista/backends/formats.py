"""The golden backend for minifloat and MX formats (``--backend golden --format e4m3``).

Every GEMM operand is rounded to the format, the product of the rounded values is formed
and the result returned in float32 (Caffe's layers take float32):

* **Minifloat** (``e4m3``, ``e5m2``, ...): one power-of-two scale per operand tensor, the
  smallest ``2**S`` with ``max|x| / 2**S <= max_value`` (nothing saturates; the top of the
  format's range is used), then each element rounded to the format (nearest-even, or
  stochastic with LFSR words seeded per call). The product is exact in float64 while
  ``K * max_units**2 < 2**53`` (E4M3: K < 2**17), so the result is the exact sum rounded
  once to float32: the same value as :func:`barista_hw.fpgemm.minifloat_gemm`.
* **MX** (``mxfp8_e4m3``, ...): blocks of 32 along the reduction dimension K (zero padded
  to a multiple of 32), the OCP rule of :mod:`barista_hw.mx`; no per-tensor scale (the
  block scales do that). The blocks' products are summed in float64, which is exact while
  the scales within one dot product span less than 53 - ``partial_width`` bits; beyond
  that this backend is not bit-exact with :func:`barista_hw.fpgemm.mx_gemm` (whose exact
  accumulation is too slow for training).

Formats per pass (``fwd=e4m3,grad=e5m2``, :mod:`barista_hw.passformats`): weights and
activations are rounded to ``fwd`` in every pass, the gradients dY to ``grad`` (the
backward-data pass's B operand, the weight gradient's A operand); each operand gets its own
per-tensor scale as above.

This backend models the arithmetic, not an engine (``rtl`` runs minifloats on one).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw.config import Pass
from barista_hw.minifloat import MinifloatFormat, random_words
from barista_hw.mx import MXFormat
from barista_hw.numfmt import Rounding
from barista_hw.passformats import (
    FloatFormat,
    PassFormats,
    is_per_pass,
    operand_formats,
    parse_training_format,
)
from barista_hw.scaling import DYNAMIC, max_abs, parse_scaling
from caffe_bridge.backend import GemmBackend


def is_float_format(spec: object) -> bool:
    """Whether a ``--format`` value names minifloat or MX formats (this backend's): one, or
    one per pass (``fwd=e4m3,grad=e5m2``)."""
    if isinstance(spec, MinifloatFormat | MXFormat | PassFormats):
        return True
    if not isinstance(spec, str):
        return False
    try:
        return isinstance(parse_training_format(spec), MinifloatFormat | MXFormat | PassFormats)
    except InputError:
        if is_per_pass(spec):  # only this backend takes them: its error is the one to see
            raise
        return False


def tensor_scale(peak: float, fmt: MinifloatFormat) -> int:
    """Smallest ``S`` with ``peak / 2**S <= fmt.max_value`` (0 for a zero tensor)."""
    if peak <= 0:
        return 0
    s = math.frexp(peak / fmt.max_value)[1]
    while s > -1100 and peak <= math.ldexp(fmt.max_value, s - 1):
        s -= 1
    while peak > math.ldexp(fmt.max_value, s):
        s += 1
    return s


class FormatBackend(GemmBackend):
    """Float32 in and out; each GEMM on operands rounded to a minifloat or MX format."""

    name = "golden"

    def __init__(
        self,
        fmt: MinifloatFormat | MXFormat | PassFormats | str,
        rounding: Rounding | str = Rounding.NEAREST_EVEN,
        scaling: str = "dynamic",
    ) -> None:
        if parse_scaling(scaling) != DYNAMIC:
            raise InputError(
                f"--scaling {scaling}: static scaling uses a fixed-point format's fraction "
                f"bits; {fmt} is scaled per tensor (docs/formats.md)"
            )
        parsed = parse_training_format(fmt) if isinstance(fmt, str) else fmt
        if not isinstance(parsed, MinifloatFormat | MXFormat | PassFormats):
            raise InputError(f"format {fmt!r} is not a minifloat or MX format")
        self.fmt = parsed
        #: The (A, B) operand formats of each pass.
        self.operands = operand_formats(parsed)
        self.rounding = Rounding.parse(rounding) if isinstance(rounding, str) else rounding
        if self.rounding is Rounding.FLOOR:
            raise InputError("minifloat and MX formats round nearest-even or stochastic")
        self._calls: dict[str, int] = {}
        #: Per "layer/pass/operand": the tensor scale exponent of the latest call (minifloat).
        self.last_scale: dict[str, int] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"calls": dict(self._calls)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._calls = dict(state.get("calls", {}))

    # -- operands ---------------------------------------------------------------------
    def _words(self, key: str, call: int, shape: tuple[int, ...]) -> np.ndarray | None:
        """Stochastic rounding's LFSR words; the seed depends only on the call."""
        if self.rounding is not Rounding.STOCHASTIC:
            return None
        return random_words(zlib.crc32(f"{key}:{call}".encode()), shape)

    def _round(self, key: str, call: int, x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
        """``x`` (2-D, reduction along the last axis) rounded to ``fmt``, float64."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if isinstance(fmt, MinifloatFormat):
            coded = self._codes(key, call, x, fmt)
            if coded is None:
                return np.full(x.shape, np.nan)
            return np.ldexp(fmt.decode(coded[0]).astype(np.float64), coded[1])
        pad = -x.shape[-1] % fmt.block
        if pad:
            x = np.pad(x, ((0, 0), (0, pad)))
        q = fmt.quantize(x, self.rounding, words=self._words(key, call, x.shape))
        return q[:, : q.shape[1] - pad].astype(np.float64)

    def _codes(
        self, key: str, call: int, x: np.ndarray, fmt: MinifloatFormat
    ) -> tuple[np.ndarray, int] | None:
        """``x`` (float32) as codes of ``fmt`` and its tensor scale ``S`` (value = code's
        value * 2**S), or None when ``x`` is not finite."""
        peak = max_abs(x)
        if not math.isfinite(peak):
            return None
        s = tensor_scale(peak, fmt)
        self.last_scale[key] = s
        scaled = np.ldexp(x.astype(np.float64), -s)
        words = self._words(key, call, x.shape)
        return fmt.encode(scaled, self.rounding, saturate=True, words=words), s

    def _gemm(
        self, key: str, a: np.ndarray, bt: np.ndarray, fa: FloatFormat, fb: FloatFormat
    ) -> np.ndarray:
        """``A @ Bt.T`` with the operands rounded along K (their last axis) to ``fa``, ``fb``."""
        call = self._calls[key] = self._calls.get(key, -1) + 1
        qa, qb = self._round(f"{key}/a", call, a, fa), self._round(f"{key}/b", call, bt, fb)
        return (qa @ qb.T).astype(np.float32)

    # -- the three passes ---------------------------------------------------------------
    def forward(self, w: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        bsz, k, n = x.shape
        xt = x.transpose(0, 2, 1).reshape(bsz * n, k)  # B.T: one row per column of X
        y = self._gemm(f"{layer}/forward", w, xt, *self.operands[Pass.FORWARD])
        return y.reshape(w.shape[0], bsz, n).transpose(1, 0, 2)

    def backward_data(self, w: np.ndarray, dy: np.ndarray, *, layer: str = "") -> np.ndarray:
        bsz, m, n = dy.shape
        dyt = dy.transpose(0, 2, 1).reshape(bsz * n, m)
        dx = self._gemm(f"{layer}/backward", w.T, dyt, *self.operands[Pass.BACKWARD_DATA])
        return dx.reshape(w.shape[1], bsz, n).transpose(1, 0, 2)

    def weight_grad(self, dy: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        bsz, m, n = dy.shape
        k = x.shape[1]
        a = dy.transpose(1, 0, 2).reshape(m, bsz * n)  # reduction over (batch, pixel)
        bt = x.transpose(1, 0, 2).reshape(k, bsz * n)
        return self._gemm(f"{layer}/gradient", a, bt, *self.operands[Pass.WEIGHT_GRAD])
