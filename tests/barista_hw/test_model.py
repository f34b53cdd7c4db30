"""The bit-exact engine model against independent scalar references."""

import contextlib
import os
import shutil
from fractions import Fraction

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import lfsr, model, native
from barista_hw.command import GemmCommand
from barista_hw.config import EngineConfig
from barista_hw.numfmt import FixedFormat, Rounding


def _requant_reference(
    acc: int, fmt: FixedFormat, shift: int, rounding: Rounding, word: int
) -> int:
    """Scalar requantisation from the definitions, with Python integers and fractions."""
    bits = fmt.acc_width
    acc = ((acc + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
    exact = Fraction(acc, 1 << shift)
    floor = exact.numerator // exact.denominator
    if rounding is Rounding.FLOOR:
        q = floor
    elif rounding is Rounding.NEAREST_EVEN:
        q = round(exact)  # Python rounds halves to even
    else:
        q = (acc + (word % (1 << shift))) // (1 << shift)
    return max(fmt.min_int, min(fmt.max_int, q))


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("shift", [0, 1, 3, 8, 17])
def test_requantize_matches_scalar_reference(rounding: Rounding, shift: int) -> None:
    fmt = FixedFormat(8, 4, 24)
    rng = np.random.default_rng(shift)
    acc = np.concatenate(
        [
            rng.integers(-(2**26), 2**26, 300),  # includes accumulator wrap-around
            np.arange(-40, 40) << max(shift - 1, 0),  # exact halves
        ]
    )
    words = rng.integers(0, 2**32, acc.size, dtype=np.uint64).astype(np.uint32)
    got = model.requantize(acc, fmt, shift, rounding, words)
    want = [
        _requant_reference(int(a), fmt, shift, rounding, int(w))
        for a, w in zip(acc, words, strict=True)
    ]
    assert got.tolist() == want


def test_exact_matmul_is_exact_in_every_path() -> None:
    rng = np.random.default_rng(1)
    small = rng.integers(-8, 8, (5, 40))  # float32 path
    np.testing.assert_array_equal(model.exact_matmul(small, small.T), small @ small.T)
    k = 600_000
    big = rng.integers(-(2**17), 2**17, (2, k))  # float64 in several K chunks
    bt = rng.integers(-(2**17), 2**17, (k, 2))
    big[:, :10] = -(2**17)
    bt[:10] = -(2**17)
    assert float(2**34) * k > 2**53  # really needs chunking
    np.testing.assert_array_equal(model.exact_matmul(big, bt), big @ bt)


def test_output_beats_follow_engine_order() -> None:
    m, n, rows, cols = 7, 11, 3, 5
    expected = np.full((m, n), -1)
    beat = 0
    for tm in range(-(-m // rows)):
        for tn in range(-(-n // cols)):
            for r in range(min(rows, m - tm * rows)):
                for c in range(cols):
                    j = tn * cols + c
                    if j < n:
                        expected[tm * rows + r, j] = beat
                beat += 1
    np.testing.assert_array_equal(model.output_beats(m, n, rows, cols), expected)


def test_stochastic_gemm_uses_lane_words() -> None:
    cfg = EngineConfig(2, 3, FixedFormat(8, 4, 24))
    rng = np.random.default_rng(2)
    a = cfg.fmt.random_operands(rng, (5, 6))
    b = cfg.fmt.random_operands(rng, (6, 7))
    got = model.gemm(a, b, cfg, shift=6, rounding=Rounding.STOCHASTIC, seed=11)
    acc = a @ b
    beats = model.output_beats(5, 7, 2, 3)
    words = lfsr.lane_words(11, 3, int(beats.max()) + 1)
    for i in range(5):
        for j in range(7):
            w = int(words[beats[i, j], j % 3])
            assert got[i, j] == _requant_reference(
                int(acc[i, j]), cfg.fmt, 6, Rounding.STOCHASTIC, w
            )


def test_stochastic_rounding_is_unbiased_on_average() -> None:
    cfg = EngineConfig(4, 4, FixedFormat(16, 8, 48))
    a = np.full((64, 1), 3)
    b = np.full((1, 64), 1)  # every product is 3/256 in units of 2**-8 after shift 8
    got = model.gemm(a, b, cfg, shift=8, rounding=Rounding.STOCHASTIC, seed=5)
    assert abs(got.mean() - 3 / 256) < 0.01


def test_pass_mappings() -> None:
    cfg = EngineConfig(3, 2, FixedFormat(12, 6, 40))
    rng = np.random.default_rng(3)
    w = cfg.fmt.random_operands(rng, (4, 9))
    x = cfg.fmt.random_operands(rng, (9, 5))
    dy = cfg.fmt.random_operands(rng, (4, 5))
    cmd = {"shift": 6, "rounding": Rounding.NEAREST_EVEN}
    np.testing.assert_array_equal(model.forward(w, x, cfg, **cmd), model.gemm(w, x, cfg, **cmd))
    np.testing.assert_array_equal(
        model.backward_data(w, dy, cfg, **cmd), model.gemm(w.T, dy, cfg, **cmd)
    )
    dys = cfg.fmt.random_operands(rng, (3, 4, 5))
    xs = cfg.fmt.random_operands(rng, (3, 9, 5))
    total = sum(dys[i] @ xs[i].T for i in range(3))  # full-width sum over the batch
    expected = model.requantize(total, cfg.fmt, 6, Rounding.NEAREST_EVEN)
    np.testing.assert_array_equal(model.weight_grad(dys, xs, cfg, **cmd), expected)


def test_float_reference_path_agrees_within_quantisation() -> None:
    cfg = EngineConfig(4, 4, FixedFormat(16, 8, 48))
    rng = np.random.default_rng(4)
    af = rng.uniform(-1, 1, (8, 16)).astype(np.float32)
    bf = rng.uniform(-1, 1, (16, 8)).astype(np.float32)
    q = model.gemm(cfg.fmt.quantize(af), cfg.fmt.quantize(bf), cfg, shift=8)
    np.testing.assert_allclose(cfg.fmt.dequantize(q), model.gemm_float32(af, bf), atol=0.05)


def test_operands_out_of_range_are_rejected() -> None:
    cfg = EngineConfig(2, 2, FixedFormat(8, 4, 24))
    with pytest.raises(InputError, match="operand A"):
        model.gemm(np.array([[200]]), np.array([[1]]), cfg, shift=0)
    with pytest.raises(InputError, match="integers"):
        model.gemm(np.array([[0.5]]), np.array([[1]]), cfg, shift=0)
    with pytest.raises(InputError, match="shift"):
        model.gemm(np.array([[1]]), np.array([[1]]), cfg, shift=40)


@pytest.mark.parametrize(
    "m, n, rows, cols", [(7, 11, 3, 5), (6, 8, 2, 4), (1, 9, 4, 4), (9, 1, 4, 4)]
)
def test_output_words_are_the_lane_words_at_each_beat(m: int, n: int, rows: int, cols: int) -> None:
    beats = model.output_beats(m, n, rows, cols)
    table = lfsr.lane_words(77, cols, int(beats.max()) + 1)
    expected = table[beats, np.arange(n)[None, :] % cols]
    np.testing.assert_array_equal(model.output_words(77, m, n, rows, cols, 32), expected)
    low = model.output_words(77, m, n, rows, cols, 6)
    np.testing.assert_array_equal(low, expected & np.uint32(63))


def test_the_compiled_helper_is_built() -> None:
    """Where a C compiler exists (as it must for Verilator), the fused passes are used
    (unless switched off with ``BARISTA_NATIVE=0``)."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler and os.environ.get(native.ENV, "1") != "0":
        assert native.library() is not None


FORMATS = {
    "float32 products": FixedFormat(8, 4, 32),
    "float64 products": FixedFormat(16, 8, 48),
    "exact integers": FixedFormat(16, 8, 32),  # partial sums may wrap: int64 path
}


@pytest.mark.parametrize("fmt", FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize("rounding", list(Rounding))
def test_every_path_gives_the_reference_bits(fmt: FixedFormat, rounding: Rounding) -> None:
    """The compiled passes and the numpy passes, for whole results and block by block
    (several column blocks, partial tiles), against requantisation of the exact integer
    product with the lane words indexed by beat (the definitions)."""
    cfg = EngineConfig(3, 4, fmt)
    rng = np.random.default_rng(int(fmt.width) + int(rounding))
    m, k, n = 37, 29, 4102
    a = fmt.random_operands(rng, (m, k))
    b = fmt.random_operands(rng, (k, n))
    exact = a @ b
    beats = model.output_beats(m, n, cfg.rows, cfg.cols)
    for shift, seed in [(0, 1), (1, 2), (9, 3), (fmt.width + 4, 4)]:
        words = lfsr.lane_words(seed, cfg.cols, int(beats.max()) + 1)
        words = words[beats, np.arange(n)[None, :] % cfg.cols]
        want = model.requantize(exact, fmt, shift, rounding, words)
        cmd = GemmCommand(shift, rounding, seed)
        for fused in (True, False):
            with contextlib.nullcontext() if fused else native.disabled():
                q = model.gemm_quantized(a.astype(np.float64), b.astype(np.float64), cfg, cmd)
                np.testing.assert_array_equal(q, want)
                got, peak = model.gemm_dequantized(
                    a.astype(np.float64), b.astype(np.float64), cfg, cmd, 11
                )
                np.testing.assert_array_equal(got, fmt.dequantize(want, 11))
                assert peak == np.abs(want).max()


@pytest.mark.parametrize("cols", [5, 8])
def test_stochastic_lanes_in_vectors_and_alone(cols: int) -> None:
    """The compiled stochastic pass draws four lanes at a time and any others one by one:
    both give the reference bits (lane counts of one vector and a remainder, two vectors)."""
    fmt = FixedFormat(16, 8, 48)
    cfg = EngineConfig(3, cols, fmt)
    rng = np.random.default_rng(cols)
    m, k, n = 11, 7, 203
    a = fmt.random_operands(rng, (m, k))
    b = fmt.random_operands(rng, (k, n))
    beats = model.output_beats(m, n, cfg.rows, cfg.cols)
    words = lfsr.lane_words(5, cols, int(beats.max()) + 1)[beats, np.arange(n)[None, :] % cols]
    want = model.requantize(a @ b, fmt, 9, Rounding.STOCHASTIC, words)
    cmd = GemmCommand(9, Rounding.STOCHASTIC, 5)
    got, _ = model.gemm_dequantized(a.astype(np.float64), b.astype(np.float64), cfg, cmd, 3)
    np.testing.assert_array_equal(got, fmt.dequantize(want, 3))
