"""GEMM backends with the hardware arithmetic: quantise, run on an integer engine, dequantise.

:class:`HardwareBackend` maps the three layer passes onto engine GEMMs, with
the batch folded into the GEMM (``N = batch * pixels`` for forward and
backward-data; the reduction dimension, image-major, for the weight gradient),
and handles the number format with per-tensor power-of-two scales
(:mod:`barista_hw.scaling`), or with ``scaling="static"`` the format's own
fraction bits for every tensor. Subclasses only say how an integer GEMM is run:
:class:`GoldenBackend` with the bit-exact numpy model; the RTL and board
backends run the same commands on the generated Verilog, so every backend
returns the same bits.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.command import GemmCommand
from barista_hw.config import DEFAULT_COLS, DEFAULT_ROWS, AcceleratorConfig, EngineConfig, Pass
from barista_hw.numfmt import DEFAULT_FORMAT, FixedFormat, Rounding
from barista_hw.scaling import (
    DYNAMIC,
    STATIC,
    ScaleTracker,
    StaticScales,
    max_abs,
    parse_scaling,
    quantize_fitted,
    quantize_static,
)
from barista_hw.schedule import block_rects
from caffe_bridge.backend import GemmBackend

from ..manifest import AcceleratorFiles


class HardwareBackend(GemmBackend):
    """Float32 in, float32 out; every GEMM in between runs on an integer engine."""

    name = "hardware"
    # The weight gradient reuses the forward pass's quantised columns (_kept_x).
    keeps_columns = True

    def __init__(
        self,
        fmt: FixedFormat | str = DEFAULT_FORMAT,
        rounding: Rounding | str = Rounding.NEAREST_EVEN,
        rows: int = DEFAULT_ROWS,
        cols: int = DEFAULT_COLS,
        config: EngineConfig | None = None,
        accelerator: AcceleratorConfig | AcceleratorFiles | None = None,
        scaling: str = DYNAMIC,
    ) -> None:
        # The files an accelerator was read from (its Verilog, its board's report), if any.
        self.files = accelerator if isinstance(accelerator, AcceleratorFiles) else None
        if isinstance(accelerator, AcceleratorFiles):
            accelerator = accelerator.config
        if accelerator is not None:
            config = accelerator.engine
        elif config is None:
            fmt = FixedFormat.parse(fmt) if isinstance(fmt, str) else fmt
            config = EngineConfig(rows, cols, fmt)
        self.cfg = config
        # With an accelerator, GEMMs follow its schedule (output blocks, seeds).
        self.accelerator = accelerator
        self.rounding = Rounding.parse(rounding) if isinstance(rounding, str) else rounding
        # dynamic: per-tensor scales; static: the format's fraction bits as written.
        self.scaling = parse_scaling(scaling)
        self.scales = (StaticScales if self.scaling == STATIC else ScaleTracker)(config.fmt)
        # The engine command of the latest call per "layer/pass" (for reports and tests).
        self.last_call: dict[str, dict[str, int]] = {}
        # Memory reused by every GEMM (operands, accumulators): a net repeats the same
        # sizes each iteration, and fresh arrays of this size cost page faults.
        self._scratch: dict[str, np.ndarray] = {}
        # Each operand's fraction bits at its last call: a guess that saves a pass.
        self._fracs: dict[tuple[str, str], int] = {}
        # Per layer: the read-only X of its latest forward pass (see _identity) and X
        # quantised, with its fraction bits; the weight gradient of the same X reuses it.
        self._kept_x: dict[str, tuple[tuple[Any, ...], np.ndarray, int]] = {}
        self._last_b: tuple[np.ndarray, int] | None = None

    def _scratch_array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous float64 array of ``shape`` in memory kept for ``name`` (overwritten
        by the next request for ``name``)."""
        size = int(np.prod(shape))
        buf = self._scratch.get(name)
        if buf is None or buf.size < size:
            buf = self._scratch[name] = np.empty(size, dtype=np.float64)
        return buf[:size].reshape(shape)

    # -- what subclasses provide ------------------------------------------------
    def run(
        self,
        kind: Pass,
        layer: str,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        blocks: Collection[int] | None = None,
    ) -> np.ndarray:
        """Integer ``a @ b`` requantised as ``cmd`` says; int64 (M, N). ``blocks``: only
        these output blocks of the accelerator's schedule (the rest is 0)."""
        raise NotImplementedError

    def run_blocks(
        self,
        kind: Pass,
        layer: str,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        blocks: Collection[int],
    ) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """One device's share of a data-parallel GEMM (:mod:`barista.data_parallel`): the
        output blocks ``blocks`` of the accelerator's schedule (numbered as in the whole
        GEMM), as ``((m0, m1, n0, n1), integers)`` each: the bits :meth:`run` gives them."""
        if self.accelerator is None:
            raise InputError(f"{self.name} backend: sharing a GEMM's blocks needs an accelerator")
        q = self.run(kind, layer, a, b, cmd, blocks=blocks)
        m, kt, n = a.shape[0], a.shape[1], b.shape[1]
        rects = block_rects(self.accelerator, m, kt // cmd.images, n, cmd.images, blocks)
        return [((m0, m1, n0, n1), q[m0:m1, n0:n1]) for m0, m1, n0, n1 in rects]

    def run_dequantized(
        self, kind: Pass, layer: str, a: np.ndarray, b: np.ndarray, cmd: GemmCommand, frac: int
    ) -> tuple[np.ndarray, float]:
        """:meth:`run`'s integers as float32 values with ``frac`` fraction bits, and their
        ``max |q|``. Subclasses may do this in fewer passes; the values must be the same."""
        q = self.run(kind, layer, a, b, cmd)
        return self.cfg.fmt.dequantize(q, frac), max_abs(q)

    # -- the three passes ---------------------------------------------------------
    def forward(self, w: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        bsz, k, n = x.shape
        xt = x.transpose(1, 0, 2)
        ident = _identity(x)
        self._kept_x.pop(layer, None)
        if ident is None:
            y = self._gemm(Pass.FORWARD, layer, w, w.shape, xt, (k, bsz * n))
        else:
            # Quantised into memory of its own, kept for the weight gradient.
            memory = f"x:{layer}"
            y = self._gemm(Pass.FORWARD, layer, w, w.shape, xt, (k, bsz * n), b_name=memory)
            done = self._last_b
            if done is not None:
                self._kept_x[layer] = (ident, *done)
        return y.reshape(w.shape[0], bsz, n).transpose(1, 0, 2)

    def backward_data(self, w: np.ndarray, dy: np.ndarray, *, layer: str = "") -> np.ndarray:
        bsz, m, n = dy.shape
        dyt = dy.transpose(1, 0, 2)
        # W quantised in its own order (one pass in memory order); the product takes W.T.
        dx = self._gemm(Pass.BACKWARD_DATA, layer, w, w.shape, dyt, (m, bsz * n), a_t=True)
        return dx.reshape(w.shape[1], bsz, n).transpose(1, 0, 2)

    def weight_grad(self, dy: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        bsz, m, n = dy.shape
        k = x.shape[1]
        # A = [dY[0] .. dY[B-1]] (M x B*N), B = [X[0].T; ..] (B*N x K): model.weight_grad_operands.
        # B is quantised as its transpose [X[0] .. X[B-1]] (K x B*N), in runs of N as the
        # forward pass lays X out, rather than element by element across X's rows.
        a, bt = dy.transpose(1, 0, 2), x.transpose(1, 0, 2)
        kept = self._kept_x.pop(layer, None)
        ident = _identity(x)
        # The forward pass quantised this X in the same layout: quantising is a function
        # of the values alone (the fraction bits fit their peak), so the result is the same.
        b_done = kept[1:] if kept is not None and _same(kept[0], ident) else None
        return self._gemm(
            Pass.WEIGHT_GRAD,
            layer,
            a,
            (m, bsz * n),
            bt,
            (k, bsz * n),
            images=bsz,
            b_t=True,
            b_done=b_done,
        )

    # -- state for snapshots ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"scales": self.scales.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scales.load_state_dict(state.get("scales", {}))

    def _gemm(
        self,
        kind: Pass,
        layer: str,
        a_f: np.ndarray,
        a_shape: tuple[int, int],
        b_f: np.ndarray,
        b_shape: tuple[int, int],
        images: int = 1,
        *,
        a_t: bool = False,
        b_t: bool = False,
        b_name: str = "b",
        b_done: tuple[np.ndarray, int] | None = None,
    ) -> np.ndarray:
        """Quantise, run and dequantise one GEMM.

        Operands may be strided views; ``*_shape`` is the 2-D shape a view takes
        once laid out contiguously (the quantisation pass does that copy). With ``a_t``
        (``b_t``) the GEMM's operand is the transpose of that matrix (a transposed view
        of the quantised copy: the matrix product takes either order). A
        non-finite operand has no fixed-point value: the result is then all NaN
        (float arithmetic would make it non-finite too), so the solver's divergence
        check stops training and names the layer, as it does for the cpu backend.

        ``b_name``: the memory B is quantised into (the scratch array of that name);
        ``b_done``: B already quantised (its float64 integers and fraction bits). The
        quantised B and its fraction bits are left in ``self._last_b`` (None when B is
        not finite).
        """
        fmt = self.cfg.fmt
        key = f"{layer}/{kind.value}"
        # Float64 arrays of integers: the float matrix product below and the model take
        # them. Each operand's frac of the last call is the guess for this one.
        quantised = []
        self._last_b = None
        for role, x in (("a", a_f), ("b", b_f)):
            if role == "b" and b_done is not None:
                quantised.append(b_done)
                continue
            guess = self._fracs.get((key, role))
            out = self._scratch_array(role if role == "a" else b_name, x.shape)
            if self.scaling == STATIC:
                seed = operand_seed(key, role, self.scales.call_index(key))
                q, frac, peak = quantize_static(x, fmt, out, self.rounding, seed)
            else:
                q, frac, peak = quantize_fitted(x, fmt, guess, out)
            if not math.isfinite(peak):
                rows, cols = a_shape[1 if a_t else 0], b_shape[0 if b_t else 1]
                return np.full((rows, cols), np.nan, dtype=np.float32)
            self._fracs[(key, role)] = frac
            quantised.append((q, frac))
        (a, frac_a), (b, frac_b) = quantised
        self._last_b = (b, frac_b)
        a, b = a.reshape(a_shape), b.reshape(b_shape)
        a, b = a.T if a_t else a, b.T if b_t else b
        shift, frac_out = self.scales.plan_shift(
            key,
            frac_a,
            frac_b,
            lambda: float(np.abs(a @ b).max(initial=0.0)) * 2.0 ** -(frac_a + frac_b),
        )
        # The seed depends only on the call, so every backend draws the same bits.
        seed = zlib.crc32(f"{key}:{self.scales.call_index(key)}".encode())
        self.last_call[key] = {
            "shift": shift,
            "seed": seed,
            "frac_a": frac_a,
            "frac_b": frac_b,
            "frac_out": frac_out,
            "images": images,
        }
        cmd = GemmCommand(shift=shift, rounding=self.rounding, seed=seed, images=images)
        out, peak = self.run_dequantized(kind, layer, a, b, cmd, frac_out)
        self.scales.observe_peak(key, peak, frac_out)
        return out


def operand_seed(key: str, role: str, call: int) -> int:
    """The seed of static scaling's stochastic rounding of operand ``role`` (``"a"`` or
    ``"b"``) in call ``call`` (from 0) of ``key`` (``"layer/pass"``): a function of the call
    alone, as the engines' seeds are, so every backend and a resumed run draw the same."""
    return zlib.crc32(f"{key}:{role}:{call}".encode())


def _identity(x: np.ndarray) -> tuple[Any, ...] | None:
    """What identifies a read-only ``x`` whose memory belongs to a read-only array: that
    owner, ``x``'s address and layout (see :attr:`GemmBackend.keeps_columns`); None for
    arrays that may change."""
    owner = x
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if x.flags.writeable or owner.flags.writeable:
        return None
    return (owner, x.__array_interface__["data"][0], x.shape, x.strides)


def _same(a: tuple[Any, ...], b: tuple[Any, ...] | None) -> bool:
    """Whether two :func:`_identity` results name the same array."""
    return b is not None and a[0] is b[0] and a[1:] == b[1:]


def check_same_design(
    accelerator: AcceleratorConfig,
    who: str,
    fmt: FixedFormat | str | None = None,
    rows: int | None = None,
    cols: int | None = None,
) -> None:
    """Options that restate an accelerator's format or array must agree with it."""
    e = accelerator.engine
    if fmt is not None:
        want = FixedFormat.parse(fmt) if isinstance(fmt, str) else fmt
        if want != e.fmt:
            raise InputError(
                f"{who}: format {want.name} differs from the accelerator's {e.fmt.name}"
            )
    for name, v, have in (("rows", rows, e.rows), ("cols", cols, e.cols)):
        if v is not None and v != have:
            raise InputError(f"{who}: {name} = {v} differs from the accelerator's {have}")


class GoldenBackend(HardwareBackend):
    """The bit-exact numpy model of the engines (:mod:`barista_hw.model`)."""

    name = "golden"

    def run(
        self,
        kind: Pass,
        layer: str,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        blocks: Collection[int] | None = None,
    ) -> np.ndarray:
        if self.accelerator is not None:
            return model.gemm_on_accelerator(a, b, self.accelerator, cmd, blocks=blocks)
        return model.gemm_quantized(a, b, self.cfg, cmd)

    def run_dequantized(
        self, kind: Pass, layer: str, a: np.ndarray, b: np.ndarray, cmd: GemmCommand, frac: int
    ) -> tuple[np.ndarray, float]:
        if self.accelerator is not None:
            return super().run_dequantized(kind, layer, a, b, cmd, frac)
        return model.gemm_dequantized(a, b, self.cfg, cmd, frac)
