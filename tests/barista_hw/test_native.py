"""The compiled helper's exact 16-bit matrix product (AMX) against exact integer products."""

import numpy as np
import pytest

from barista_hw import model, native
from barista_hw.command import GemmCommand
from barista_hw.config import EngineConfig
from barista_hw.numfmt import FixedFormat, Rounding

needs_amx = pytest.mark.skipif(
    not native.exact_products(), reason="no AMX-INT8 here (or no compiled helper)"
)
EXTREMES = np.array([-32768, -32767, -257, -256, -255, -129, -128, -1, 0, 1, 127, 128, 255, 256])


def _operands(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random 16-bit integers, a third of them the byte splits' edge cases."""
    x = rng.integers(-32768, 32767, shape, endpoint=True)
    edge = rng.random(shape) < 1 / 3
    x[edge] = rng.choice(np.append(EXTREMES, 32767), int(edge.sum()))
    return x


def _exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with Python integers (no float involved)."""
    return (a.astype(object) @ b.astype(object)).astype(np.int64)


def _layouts(x: np.ndarray) -> list[np.ndarray]:
    """``x`` as float64 in row-major, column-major and sliced (strided) memory."""
    f = x.astype(np.float64)
    wide = np.zeros((x.shape[0], 2 * x.shape[1] + 1))
    wide[:, 1::2] = f
    return [f, np.asfortranarray(f), wide[:, 1::2]]


@needs_amx
@pytest.mark.parametrize(
    "m, k, n", [(1, 1, 1), (3, 5, 7), (16, 64, 16), (17, 65, 33), (33, 130, 47), (5, 251, 2)]
)
def test_exact_product_is_the_integer_product(m: int, k: int, n: int) -> None:
    """Every layout of both operands, partial tiles and groups of four in every
    dimension, the byte splits' edge values."""
    rng = np.random.default_rng(m * k * n)
    a, b = _operands(rng, (m, k)), _operands(rng, (k, n))
    want = _exact(a, b)
    for fa in _layouts(a):
        for fb in _layouts(b):
            got = native.exact_product(fa, fb)
            assert got is not None and got.flags.c_contiguous
            np.testing.assert_array_equal(got, want)
    scaled = native.exact_product(a.astype(np.float64), b.astype(np.float64), 2.0**-7)
    np.testing.assert_array_equal(scaled, want * 2.0**-7)


@needs_amx
@pytest.mark.parametrize("value", [-32768, 32767, -1, -129])
def test_exact_product_sums_past_one_int32_chunk(value: int) -> None:
    """K beyond the 32768 terms one int32 sum takes, at the values whose byte products
    are largest (each byte sum at its bound), and a mixed row; rounded in every mode."""
    k = 70_001
    a = np.full((2, k), value)
    a[1, ::3] = -value - 1
    b = np.full((k, 3), value)
    b[::7, 2] = 32767
    exact = _exact(a, b)
    got = native.exact_product(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_array_equal(got, exact)
    fmt = FixedFormat(16, 8, 48)
    cfg = EngineConfig(2, 2, fmt)
    words = model.output_words(7, 2, 3, cfg.rows, cfg.cols, 32)
    for rounding in list(Rounding):
        want = model.requantize(exact, fmt, 21, rounding, words)
        cmd = GemmCommand(21, rounding, 7)
        q, peak = model.gemm_dequantized(a.astype(np.float64), b.astype(np.float64), cfg, cmd, 0)
        np.testing.assert_array_equal(q, want)
        assert peak == np.abs(want).max()


@needs_amx
def test_exact_product_declines_what_it_does_not_take() -> None:
    x = np.ones((3, 3))
    assert native.exact_product(x.astype(np.int64), x) is None
    assert native.exact_product(x[:, :0], x[:0]) is None
    with native.disabled():
        assert native.exact_product(x, x) is None


def _engine_results(
    a: np.ndarray, b: np.ndarray, cfg: EngineConfig, cmd: GemmCommand
) -> tuple[np.ndarray, np.ndarray, float]:
    """gemm_quantized's integers, gemm_dequantized's values (9 fraction bits) and peak."""
    q = model.gemm_quantized(a, b, cfg, cmd)
    return (q, *model.gemm_dequantized(a, b, cfg, cmd, 9))


@needs_amx
@pytest.mark.parametrize("rounding", list(Rounding))
def test_engine_results_match_with_and_without_amx(rounding: Rounding) -> None:
    """gemm_quantized and gemm_dequantized of 16-bit formats (whose products now run on
    AMX) against requantisation of the exact integer product, every rounding mode,
    shifts from none to past the operand width; the same with the numpy passes."""
    fmt = FixedFormat(16, 8, 48)
    cfg = EngineConfig(4, 5, fmt)  # neither divides the result's sides, nor 16
    rng = np.random.default_rng(int(rounding) + 5)
    m, k, n = 21, 67, 1031
    a, b = _operands(rng, (m, k)), _operands(rng, (k, n))
    exact = _exact(a, b)
    fa, fb = a.astype(np.float64), np.asfortranarray(b.astype(np.float64))
    for shift, seed in [(0, 1), (1, 2), (13, 3), (30, 4)]:
        # The lanes' words at each element's beat (test_model pins output_words to them).
        words = model.output_words(seed, m, n, cfg.rows, cfg.cols, 32)
        want = model.requantize(exact, fmt, shift, rounding, words)
        cmd = GemmCommand(shift, rounding, seed)
        amx = _engine_results(fa, fb, cfg, cmd)
        with native.disabled():
            reference = _engine_results(fa, fb, cfg, cmd)
        for q, values, peak in (amx, reference):
            np.testing.assert_array_equal(q, want)
            np.testing.assert_array_equal(values, fmt.dequantize(want, 9))
            assert peak == np.abs(want).max()
