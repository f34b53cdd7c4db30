"""The ``rtl`` backend for minifloat and MX formats (``--backend rtl --format e4m3``,
``--format mxfp8_e4m3``).

Operands are rounded to codes exactly as :class:`~barista.backends.formats.FormatBackend`
(``golden``) rounds them (per-tensor power-of-two scales, nearest-even or stochastic); the
codes run on the Verilated accelerator, whose engine sums their exact products and rounds
the sum once to float32 (format ``<fmt>_fp32_nosat``,
:func:`rtl_engine_format`); the host multiplies by ``2**(S_a + S_b)``. That is golden's
float32 of the exact sum whenever the scaled result is a normal float32 or zero (a power of
two then changes no bit); a result outside that range raises rather than differ. Test nets
run on ``golden`` (the same bits).

MX: operands are quantised per block along K exactly as ``golden`` quantises them, sent as
words of element and scale (:meth:`~barista_hw.mxpe.MXArith.pack`) to an MX engine with
float32 results over the whole scale range (``<fmt>_fp32_nosat``), and come back as golden's
float32 of the exact sum with no host scale (golden's float64 sum is exact for these
operands, as it states). Blocks with a NaN scale make golden's rows/columns NaN; so here.

Formats per pass (``--format fwd=e4m3,grad=e5m2``, minifloats): the accelerator's engine is
a :class:`~barista_hw.passengine.PassGemmFormat` with float32 results in every pass
(``fwd=e4m3_fp32,grad=e5m2_fp32_nosat``); each GEMM's command names its pass (``pass_id``),
so the engine reads W and X as ``fwd`` codes and dY as ``grad`` codes, as golden rounds them.
The accelerator cuts long reductions at multiples of the block
(:func:`barista_hw.schedule.reduction_chunks`), as the engine counts blocks from each
chunk's first term.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw.command import PASS_IDS, GemmCommand
from barista_hw.config import AcceleratorConfig, Pass
from barista_hw.fpformat import MinifloatGemmFormat
from barista_hw.minifloat import FP32, MinifloatFormat
from barista_hw.mx import SCALE_NAN, MXFormat
from barista_hw.mxformat import FloatGemmFormat, MXGemmFormat
from barista_hw.numfmt import Rounding
from barista_hw.passengine import PassGemmFormat
from barista_hw.passformats import FloatFormat, PassFormats, parse_training_format
from barista_hw.scaling import DYNAMIC
from caffe_bridge.backend import GemmBackend

from ..manifest import AcceleratorFiles
from .formats import FormatBackend


def rtl_engine_format(fmt: MinifloatFormat | MXFormat | PassFormats | str) -> FloatGemmFormat:
    """The engine format that trains in ``fmt`` on the rtl backend: ``fmt`` operands,
    float32 results that overflow to inf as a float32 cast does (MX: the whole scale range).

    Minifloat formats per pass (``fwd=e4m3,grad=e5m2``) give a per-pass engine with float32
    results in every pass; MX formats per pass are refused (no per-pass MX engine).
    """
    element = parse_training_format(fmt) if isinstance(fmt, str) else fmt
    if isinstance(element, PassFormats):
        if not isinstance(element.fwd, MinifloatFormat) or not isinstance(
            element.grad, MinifloatFormat
        ):
            raise InputError(
                f"rtl backend: --format {element.name}: formats per pass run in RTL for "
                "minifloats (fwd=e4m3,grad=e5m2); MX formats per pass run on golden only"
            )
        return PassGemmFormat(element.fwd, element.grad, FP32, FP32, saturate=False)
    if isinstance(element, MXFormat):
        return MXGemmFormat(element, element, FP32, saturate=False)
    if not isinstance(element, MinifloatFormat):
        raise InputError(f"rtl backend: {fmt} is not a minifloat or MX format")
    return MinifloatGemmFormat(element, element, FP32, saturate=False)


def is_minifloat_accelerator(accelerator: object) -> bool:
    """Whether an ``accelerator=`` option (config or files) has a minifloat engine."""
    if isinstance(accelerator, AcceleratorFiles):
        accelerator = accelerator.config
    return isinstance(accelerator, AcceleratorConfig) and isinstance(
        accelerator.engine.fmt, FloatGemmFormat
    )


def _training_format(engine: FloatGemmFormat) -> MinifloatFormat | MXFormat | PassFormats:
    """The training format whose operands ``engine`` reads (its A operand's, or per pass)."""
    if isinstance(engine, PassGemmFormat):
        return PassFormats(engine.fwd, engine.grad)
    return engine.a


class RtlFormatBackend(FormatBackend):
    """Minifloat or MX GEMMs on the Verilated accelerator (see the module docstring)."""

    name = "rtl"

    def __init__(
        self,
        rounding: Rounding | str = Rounding.NEAREST_EVEN,
        *,
        accelerator: AcceleratorConfig | AcceleratorFiles,
        fmt: MinifloatFormat | MXFormat | PassFormats | str | None = None,
        scaling: str = DYNAMIC,
        host: str = "overlap",
        cache_dir: str | None = None,
    ) -> None:
        self.files = accelerator if isinstance(accelerator, AcceleratorFiles) else None
        config = accelerator.config if isinstance(accelerator, AcceleratorFiles) else accelerator
        engine = config.engine.fmt
        if not isinstance(engine, FloatGemmFormat):
            raise InputError(
                f"rtl backend: the accelerator's {engine.name} is not a minifloat or MX format"
            )
        trains = _training_format(engine) if fmt is None else fmt
        want = rtl_engine_format(trains)
        if replace(want, k=engine.k) != engine:  # any k; all else as rtl_engine_format
            raise InputError(
                f"rtl backend: training in {_training_format(want).name} needs an accelerator "
                f"in {want.name} (float32 results); this one is {engine.name}"
            )
        super().__init__(_training_format(want), rounding, scaling)
        self.accelerator, self.host = config, host
        self.cache_dir = cache_dir
        self._sim: Any = None

    def simulator(self) -> Any:
        """The loaded simulator (built on first use, cached on disk across runs)."""
        if self._sim is None:
            from pathlib import Path

            from sim.verilator_driver import simulator

            verilog = self.files.verilog() if self.files is not None else None
            root = Path(self.cache_dir) if self.cache_dir is not None else None
            self._sim = simulator(self.accelerator, verilog=verilog, root=root)
        return self._sim

    def prepare(self, log: Any) -> None:
        log(f"Loading the Verilated {self.fmt.name} accelerator (built once, then cached)")
        self.simulator()

    def for_test_nets(self) -> GemmBackend:
        return FormatBackend(self.fmt, self.rounding)

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None

    def _gemm(
        self, key: str, a: np.ndarray, bt: np.ndarray, fa: FloatFormat, fb: FloatFormat
    ) -> np.ndarray:
        call = self._calls[key] = self._calls.get(key, -1) + 1
        a = np.ascontiguousarray(a, dtype=np.float32)
        bt = np.ascontiguousarray(bt, dtype=np.float32)
        if isinstance(fa, MXFormat):  # one format for every pass here (rtl_engine_format)
            return self._mx_gemm(key, call, a, bt)
        assert isinstance(fa, MinifloatFormat) and isinstance(fb, MinifloatFormat)
        ca, cb = self._codes(f"{key}/a", call, a, fa), self._codes(f"{key}/b", call, bt, fb)
        if ca is None or cb is None:  # as golden: a non-finite operand makes all NaN
            return np.full((a.shape[0], bt.shape[0]), np.nan, dtype=np.float32)
        pass_id = PASS_IDS[Pass(key.rsplit("/", 1)[-1])]  # keys end in the pass's name
        cmd = GemmCommand(shift=0, rounding=Rounding.NEAREST_EVEN, seed=0, pass_id=pass_id)
        run = self.simulator().run_gemm(
            ca[0].astype(np.int32), cb[0].T.astype(np.int32), cmd, host=self.host, label=key
        )
        y = run.result.astype(np.uint32).view(np.float32)
        scaled = y.astype(np.float64) * 2.0 ** (ca[1] + cb[1])
        out = scaled.astype(np.float32)
        if not np.array_equal(out.astype(np.float64), scaled) or (
            out.size and np.abs(out[out != 0]).min(initial=np.inf) < np.finfo(np.float32).tiny
        ):
            raise InputError(
                f"{key}: a result leaves float32's normal range after the tensor scales; the "
                "engine rounds before scaling, so it would differ from golden there"
            )
        return out

    def _mx_gemm(self, key: str, call: int, a: np.ndarray, bt: np.ndarray) -> np.ndarray:
        """``A @ Bt.T`` in MX on the accelerator (module notes)."""
        (wa, nan_a), (wb, nan_b) = (
            self._mx_words(f"{key}/a", call, a),
            self._mx_words(f"{key}/b", call, bt),
        )
        cmd = GemmCommand(shift=0, rounding=Rounding.NEAREST_EVEN, seed=0)
        run = self.simulator().run_gemm(wa, wb.T, cmd, host=self.host, label=key)
        y = run.result.astype(np.uint32).view(np.float32).copy()
        y[nan_a, :] = np.nan
        y[:, nan_b] = np.nan
        return y

    def _mx_words(self, key: str, call: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``x`` quantised as golden's ``_round`` does, as engine words (int32), and
        the rows holding a NaN block (sent as zeros)."""
        fmt = self.fmt
        assert isinstance(fmt, MXFormat)
        pad = -x.shape[1] % fmt.block
        xp = np.pad(x, ((0, 0), (0, pad))) if pad else x
        elements, scales = fmt.encode(xp, self.rounding, words=self._words(key, call, xp.shape))
        nan = scales == SCALE_NAN
        per_element = np.repeat(np.where(nan, 0, scales), fmt.block, axis=1)
        words = self.accelerator.engine.fmt.arith.pack(elements, per_element)
        return words[:, : x.shape[1]].astype(np.int32), nan.any(axis=1)
