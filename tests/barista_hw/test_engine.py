"""GEMM engines in the Amaranth simulator against the model (the cocotb suite does the rest)."""

from dataclasses import replace

import numpy as np
import pytest

from barista_hw import model
from barista_hw.command import GemmCommand
from barista_hw.config import EngineConfig
from barista_hw.engine import (
    BackwardDataEngine,
    ForwardEngine,
    WeightGradEngine,
    cycle_bound,
)
from barista_hw.numfmt import FixedFormat, Rounding
from sim.pysim import run_gemm

FMT = FixedFormat(8, 4, 24)


@pytest.mark.parametrize("rounding", list(Rounding))
def test_forward_partial_tiles_and_stalls(rounding: Rounding) -> None:
    cfg = EngineConfig(2, 3, FMT)
    rng = np.random.default_rng(int(rounding))
    w = FMT.random_operands(rng, (5, 4))
    x = FMT.random_operands(rng, (4, 7))
    expected = model.forward(w, x, cfg, shift=4, rounding=rounding, seed=21)
    cmd = GemmCommand(shift=4, rounding=rounding, seed=21)
    got, cycles = run_gemm(ForwardEngine(cfg), w, x, cmd)
    np.testing.assert_array_equal(got, expected)
    assert cycles <= cycle_bound(cfg, 5, 4, 7)
    stalled, stalled_cycles = run_gemm(ForwardEngine(cfg), w, x, cmd, stall=0.4, stall_seed=3)
    np.testing.assert_array_equal(stalled, expected)
    assert stalled_cycles > cycles


def test_backward_data_k1_on_one_pe() -> None:
    cfg = EngineConfig(1, 1, FMT)
    rng = np.random.default_rng(7)
    w = FMT.random_operands(rng, (1, 3))  # M = 1 output channel: K of this pass is 1
    dy = FMT.random_operands(rng, (1, 4))
    got, _ = run_gemm(BackwardDataEngine(cfg), w.T, dy, GemmCommand(0, Rounding.FLOOR))
    np.testing.assert_array_equal(
        got, model.backward_data(w, dy, cfg, shift=0, rounding=Rounding.FLOOR)
    )


def test_weight_grad_accumulates_across_images() -> None:
    cfg = EngineConfig(3, 2, FMT)
    rng = np.random.default_rng(8)
    dy = FMT.random_operands(rng, (3, 4, 5))
    x = FMT.random_operands(rng, (3, 5, 5))
    a, b = model.weight_grad_operands(dy, x)
    cmd = {"shift": 7, "rounding": Rounding.STOCHASTIC, "seed": 99}
    got, cycles = run_gemm(WeightGradEngine(cfg), a, b, GemmCommand(**cmd, images=3))
    np.testing.assert_array_equal(got, model.weight_grad(dy, x, cfg, **cmd))
    assert cycles <= cycle_bound(cfg, 4, 5, 5, images=3)


def test_saturation_both_ways() -> None:
    cfg = EngineConfig(2, 2, FMT)
    a = np.array([[-128, -128], [-128, 127]])
    b = np.array([[-128, 1], [-128, -1]])
    got, _ = run_gemm(ForwardEngine(cfg), a, b, GemmCommand(0, Rounding.NEAREST_EVEN))
    assert got.tolist() == [[127, 0], [127, -128]]  # 32768 -> 127; -16384-127 -> -128
    np.testing.assert_array_equal(got, model.gemm(a, b, cfg, shift=0))


@pytest.mark.parametrize("rounding", [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC])
def test_accumulator_memory_carries_partial_sums_across_commands(rounding: Rounding) -> None:
    cfg = EngineConfig(2, 3, FixedFormat(8, 4, 16), acc_depth=8)  # 16 bits: sums wrap too
    rng = np.random.default_rng(9)
    a = FMT.random_operands(rng, (3, 12))  # 2 x 2 tiles = 4 tiles of 2 rows: 8 rows
    b = FMT.random_operands(rng, (12, 5))
    cmd = {"shift": 5, "rounding": rounding, "seed": 4}
    expected = model.gemm(a, b, cfg, **cmd)
    got, _ = run_gemm(
        ForwardEngine(cfg), a, b, GemmCommand(**cmd), k_chunks=3, stall=0.3, stall_seed=2
    )
    np.testing.assert_array_equal(got, expected)
    whole, _ = run_gemm(ForwardEngine(cfg), a, b, GemmCommand(**cmd))
    np.testing.assert_array_equal(whole, expected)


@pytest.mark.parametrize(("fmt", "k_chunks", "stall"), [("fx8.4a16", 3, 0.3), ("fx4.2a10", 1, 0)])
def test_raw_read_out_returns_every_accumulator_bit(fmt: str, k_chunks: int, stall: float) -> None:
    """The read-out: full-width sums (wrapped: a16 wraps here), through the accumulator
    memory and stalls, on the engine a data-parallel device runs; then a plain command."""
    cfg = EngineConfig(2, 3, FixedFormat.parse(fmt), acc_depth=8)
    assert cfg.raw_beats == (2 if fmt == "fx8.4a16" else 3)
    rng = np.random.default_rng(11)
    a = cfg.fmt.random_operands(rng, (3, 12))
    b = cfg.fmt.random_operands(rng, (12, 5))
    cmd = GemmCommand(5, Rounding.STOCHASTIC, seed=4, raw=True)
    got, cycles = run_gemm(
        WeightGradEngine(cfg), a, b, cmd, k_chunks=k_chunks, stall=stall, stall_seed=3
    )
    np.testing.assert_array_equal(got, model.accumulators(a, b, cfg))
    if not stall:
        assert cycles <= cycle_bound(cfg, 3, 12, 5, raw=True)
    assert (model.accumulators(a, b, cfg) != model.gemm(a, b, cfg, shift=0)).any()
    plain, _ = run_gemm(WeightGradEngine(cfg), a, b, replace(cmd, raw=False), stall=stall)
    np.testing.assert_array_equal(
        plain, model.gemm(a, b, cfg, shift=5, rounding=cmd.rounding, seed=4)
    )


@pytest.mark.parametrize("rounding", [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC])
def test_rounding_bias_wider_than_a_narrow_accumulator(rounding: Rounding) -> None:
    cfg = EngineConfig(1, 1, FixedFormat(8, 4, 16))  # shift 20 > acc_width: bias up to 2**19
    a, b = np.array([[-1], [-128]]), np.array([[1, 127]])
    for shift in (15, 16, 20, 31):
        got, _ = run_gemm(ForwardEngine(cfg), a, b, GemmCommand(shift, rounding, seed=3))
        np.testing.assert_array_equal(
            got, model.gemm(a, b, cfg, shift=shift, rounding=rounding, seed=3)
        )


#: SHA-256 of fixed-point engines' and an accelerator's Verilog as main generated them before
#: the minifloat engine joined (commit 8e7a928): that change must leave them byte-identical.
#: Built without the accumulator read-out (``raw_readout=False``, as every accelerator made
#: before it reads back from its manifest), which must leave them so too.
FIXED_VERILOG = {
    ("forward", None): "1ad56dab34a6f4a33cec9afdce984b751861bf1a3facfef2ab8538d93b961b52",
    ("backward", None): "55ccd5f96fa2aa6d1c44cad43f8cf6ba37fd3f7a994c179205f93e0b22993f30",
    ("gradient", "ecp5"): "14e68a9a0ad05c72927835cff90e980b3f3f0774c39cd2b828e4c9d07e28ed2d",
    ("accelerator", None): "ca708417f9fcb27b2c5694e428d432be144dad09bbfcae1d3c9b2576eb0f27eb",
}


@pytest.mark.parametrize(("what", "family"), list(FIXED_VERILOG), ids=str)
def test_fixed_point_verilog_is_unchanged(what: str, family: str | None) -> None:
    import hashlib

    from barista_hw.accelerator import Accelerator
    from barista_hw.config import AcceleratorConfig, Pass
    from barista_hw.rtl import engine_text, to_verilog

    fmt = FixedFormat.parse("fx16" if family else "fx8")
    if what == "accelerator":
        cfg = AcceleratorConfig().derive(
            rows=2, cols=3, fmt=fmt, depth=16, acc_depth=4, raw_readout=False
        )
        text = to_verilog(Accelerator(cfg), "acc")
    else:
        engine = EngineConfig(2, 3, fmt, acc_depth=4, raw_readout=False)
        text = engine_text(Pass(what), engine, family)[0]
    assert hashlib.sha256(text.encode()).hexdigest() == FIXED_VERILOG[(what, family)]
