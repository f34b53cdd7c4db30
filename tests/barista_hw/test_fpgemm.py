"""The minifloat and MX GEMM model and its requantiser, every bit against exact rationals.

The reference decodes operands with ml_dtypes, sums with :class:`fractions.Fraction` and
rounds by searching the output format's values (nearest, ties to the even code), so it
shares no arithmetic with the model.
"""

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import fpgemm
from barista_hw.minifloat import PRESETS as MF
from barista_hw.minifloat import SR_BITS, random_words
from barista_hw.mx import PRESETS as MX
from barista_hw.numfmt import FixedFormat, Rounding

DTYPES = {
    "e4m3": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
    "e3m2": ml_dtypes.float6_e3m2fn,
    "e2m3": ml_dtypes.float6_e2m3fn,
    "e2m1": ml_dtypes.float4_e2m1fn,
}
LOW = (1 << SR_BITS) - 1


def values_of(name: str, codes: np.ndarray) -> np.ndarray:
    """Exact operand values (float64) decoded by ml_dtypes."""
    return np.asarray(codes, dtype=np.uint8).view(DTYPES[name]).astype(np.float64)


def finite_values(name: str) -> list[tuple[Fraction, int]]:
    """(value, code) of every finite non-negative value of a format, by ml_dtypes."""
    bits = {"e4m3": 8, "e5m2": 8, "e3m2": 6, "e2m3": 6, "e2m1": 4}[name]
    codes = np.arange(1 << (bits - 1), dtype=np.uint8)
    vals = values_of(name, codes)
    return [
        (Fraction(float(v)), int(c)) for v, c in zip(vals, codes, strict=True) if np.isfinite(v)
    ]


def round_nearest(v: Fraction, name: str) -> tuple[Fraction, int]:
    """Nearest value of the format (saturating), ties to the even code; (value, code)."""
    best = min(finite_values(name), key=lambda vc: (abs(abs(v) - vc[0]), vc[1] & 1))
    return (best[0] if v >= 0 else -best[0]), best[1]


def round_stochastic(v: Fraction, name: str, r: int) -> Fraction:
    """The documented rule: magnitude's significand, SR_BITS bits below it kept, r added."""
    fmt = MF[name]
    mag = abs(v)
    e = fmt.emin if mag == 0 else max(math.floor(math.log2(mag)), fmt.emin)
    while e > fmt.emin and Fraction(2) ** e > mag:  # log2's float rounding, corrected
        e -= 1
    while Fraction(2) ** (e + 1) <= mag:
        e += 1
    step = Fraction(2) ** (e - fmt.mant)
    n = (math.floor(mag / step * 2**SR_BITS) + r) >> SR_BITS
    out = min(n * step, Fraction(fmt.max_value))
    return out if v >= 0 else -out


def exact_product(a: np.ndarray, b: np.ndarray) -> list[list[Fraction]]:
    return [
        [
            sum(
                (Fraction(float(x)) * Fraction(float(y)) for x, y in zip(row, col, strict=True)),
                Fraction(0),
            )
            for col in b.T
        ]
        for row in a
    ]


def operands(name: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Codes covering zeros, subnormals, max normal and wide random magnitudes."""
    fmt = MF[name]
    x = np.ldexp(rng.uniform(-1, 1, shape), rng.integers(fmt.emin - fmt.mant, fmt.emax + 2, shape))
    x.flat[:: max(1, x.size // 5)] = 0
    x.flat[1] = fmt.max_value
    x.flat[2] = -fmt.max_value
    x.flat[3] = fmt.unit
    return fmt.encode(x.astype(np.float32), saturate=True)


@pytest.mark.parametrize(
    "fa, fb, k",
    [("e4m3", "e4m3", 37), ("e4m3", "e5m2", 40), ("e5m2", "e5m2", 33), ("e2m1", "e3m2", 9)],
)
def test_minifloat_accumulator_is_exact(fa: str, fb: str, k: int) -> None:
    rng = np.random.default_rng(k)
    a, b = operands(fa, (3, k), rng), operands(fb, (k, 4), rng)
    acc, exp = fpgemm.minifloat_gemm(a, MF[fa], b, MF[fb])
    want = exact_product(values_of(fa, a), values_of(fb, b))
    for i in range(3):
        for j in range(4):
            assert Fraction(int(acc[i, j])) * Fraction(2) ** exp == want[i][j]
            assert abs(int(acc[i, j])) < 2 ** (MF[fa].acc_width(k, MF[fb]) - 1)


@pytest.mark.parametrize("out", ["e4m3", "e5m2", "e2m1"])
def test_requantise_to_minifloat_nearest_and_stochastic(out: str) -> None:
    rng = np.random.default_rng(11)
    a, b = operands("e5m2", (4, 24), rng), operands("e4m3", (24, 5), rng)
    acc, exp = fpgemm.minifloat_gemm(a, MF["e5m2"], b, MF["e4m3"])
    value = fpgemm.to_odd_float(acc, exp) * 2.0 ** -(MF["e5m2"].emax + 2)  # bring into range
    want = exact_product(values_of("e5m2", a), values_of("e4m3", b))
    want = [[w * Fraction(2) ** -(MF["e5m2"].emax + 2) for w in row] for row in want]
    ne = fpgemm.requantize(value, MF[out])
    words = random_words(3, value.shape)
    sr = fpgemm.requantize(value, MF[out], Rounding.STOCHASTIC, words=words)
    for i in range(4):
        for j in range(5):
            ref, _ = round_nearest(want[i][j], out)
            got = values_of(out, ne[i, j])
            assert Fraction(float(got)) == ref, (i, j)
            if want[i][j] < 0:
                assert np.signbit(got)
            ref_sr = round_stochastic(want[i][j], out, int(words[i, j]) & LOW)
            assert Fraction(float(values_of(out, sr[i, j]))) == ref_sr, (i, j)


def test_to_odd_keeps_rounding_exact() -> None:
    """A sum needing more than 53 bits: 57344**2 = 24.5 * 2**27 plus the tiniest product
    2**-32, which decides the tie when rounding to a multiple of 2**27."""
    e5m2 = MF["e5m2"]
    a = e5m2.encode(np.float32([[57344.0, 2.0**-16]]))
    acc, exp = fpgemm.minifloat_gemm(a, e5m2, a.T.copy(), e5m2)
    assert acc.dtype == object and int(acc[0, 0]).bit_length() > 53
    assert Fraction(int(acc[0, 0])) * Fraction(2) ** exp == Fraction(57344**2) + Fraction(2) ** -32
    value = fpgemm.to_odd_float(acc, exp)
    fx = FixedFormat(16, 0, 48)
    assert fpgemm.requantize(value, fx, frac=-27)[0, 0] == 25  # 24.5 + tiny: up
    assert fpgemm.requantize(np.float64([[57344.0**2]]), fx, frac=-27)[0, 0] == 24  # tie: even
    below = fpgemm.to_odd_float(np.array([[-(49 * 2**80) - 1]], dtype=object), -81)
    assert fpgemm.requantize(below, fx)[0, 0] == -25  # -24.5 - tiny
    assert fpgemm.requantize(below, fx, Rounding.FLOOR)[0, 0] == -25


@pytest.mark.parametrize("rounding", [Rounding.NEAREST_EVEN, Rounding.FLOOR, Rounding.STOCHASTIC])
def test_requantise_to_fixed(rounding: Rounding) -> None:
    rng = np.random.default_rng(5)
    fx = FixedFormat(8, 4, 32)
    a, b = operands("e4m3", (5, 16), rng), operands("e4m3", (16, 6), rng)
    acc, exp = fpgemm.minifloat_gemm(a, MF["e4m3"], b, MF["e4m3"])
    value = fpgemm.to_odd_float(acc, exp) * 2.0**-12
    words = random_words(8, value.shape)
    got = fpgemm.requantize(value, fx, rounding, words=words, frac=6)
    want = exact_product(values_of("e4m3", a), values_of("e4m3", b))
    for i in range(5):
        for j in range(6):
            s = want[i][j] * Fraction(2) ** (6 - 12)
            if rounding is Rounding.NEAREST_EVEN:
                q = round(s)  # Fraction rounds half to even
            elif rounding is Rounding.FLOOR:
                q = math.floor(s)
            else:
                q = (math.floor(s * 2**SR_BITS) + (int(words[i, j]) & LOW)) >> SR_BITS
            assert got[i, j] == min(max(q, fx.min_int), fx.max_int), (i, j)


def mx_operand(name: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=shape) * np.exp2(rng.integers(-20, 20, (shape[0], 1)))
    x[0, 5] = 1e6  # a block with one huge element
    x[1, 32:64] = 0  # a zero block
    return x.astype(np.float32)


@pytest.mark.parametrize(
    "fa, fb", [("mxfp8_e4m3", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxfp4"), ("mxint8", "mxfp6_e2m3")]
)
def test_mx_accumulator_is_exact(fa: str, fb: str) -> None:
    rng = np.random.default_rng(7)
    a, bt = mx_operand(fa, (3, 96), rng), mx_operand(fb, (4, 96), rng)
    ea, eb = MX[fa].encode(a), MX[fb].encode(bt)
    acc, exp, nan = fpgemm.mx_gemm(ea, MX[fa], eb, MX[fb])
    qa = MX[fa].decode(*ea).astype(np.float64)  # exact values (checked in test_mx)
    qb = MX[fb].decode(*eb).astype(np.float64)
    want = exact_product(qa, qb.T)
    assert not nan.any()
    for i in range(3):
        for j in range(4):
            assert Fraction(int(acc[i, j])) * Fraction(2) ** exp == want[i][j], (i, j)


def test_mx_nan_block_poisons_its_row() -> None:
    f = MX["mxfp8_e4m3"]
    a = np.ones((2, 64), np.float32)
    a[1, 40] = np.nan
    acc, exp, nan = fpgemm.mx_gemm(f.encode(a), f, f.encode(np.ones((3, 64), np.float32)), f)
    value = fpgemm.to_odd_float(acc, exp, nan)
    np.testing.assert_array_equal(value[0], [64.0, 64.0, 64.0])
    assert np.all(np.isnan(value[1]))


def test_requantise_to_mx_follows_the_block_rule() -> None:
    """The output quantised per block from the exact sums: scale from the block maximum, then
    each element rounded (nearest, saturating) at that scale."""
    rng = np.random.default_rng(9)
    f = MX["mxfp8_e4m3"]
    a, bt = mx_operand("", (2, 64), rng), mx_operand("", (32, 64), rng)
    acc, exp, nan = fpgemm.mx_gemm(f.encode(a), f, f.encode(bt), f)
    elements, scales = fpgemm.requantize(fpgemm.to_odd_float(acc, exp, nan), f)
    want = exact_product(f.quantize(a).astype(np.float64), f.quantize(bt).astype(np.float64).T)
    for i in range(2):
        peak = max(abs(w) for w in want[i])
        x = math.floor(math.log2(peak))
        while Fraction(2) ** x > peak:
            x -= 1
        while Fraction(2) ** (x + 1) <= peak:
            x += 1
        x -= 8
        assert scales[i, 0] == x + 127
        for j in range(32):
            _, code = round_nearest(want[i][j] / Fraction(2) ** x, "e4m3")
            assert elements[i, j] & 0x7F == code, (i, j)


def test_bad_operands_name_the_fault() -> None:
    e4m3 = MF["e4m3"]
    with pytest.raises(InputError, match="operand A holds e4m3 inf or NaN"):
        fpgemm.minifloat_gemm(np.array([[0x7F]], np.uint8), e4m3, np.zeros((1, 1), np.uint8), e4m3)
    mx = MX["mxfp8_e4m3"]
    ok = mx.encode(np.ones((1, 32), np.float32))
    bad = (np.full((1, 32), 0x7F, np.uint8), ok[1])
    with pytest.raises(InputError, match="operand B holds e4m3 inf or NaN"):
        fpgemm.mx_gemm(ok, mx, bad, mx)
    with pytest.raises(InputError, match="same K"):
        fpgemm.mx_gemm(ok, mx, mx.encode(np.ones((1, 64), np.float32)), mx)
    with pytest.raises(InputError, match="do not agree"):
        fpgemm.minifloat_gemm(np.zeros((1, 2), np.uint8), e4m3, np.zeros((3, 1), np.uint8), e4m3)
    with pytest.raises(InputError, match="operand B must hold e2m1 codes"):
        fpgemm.minifloat_gemm(
            np.zeros((1, 1), np.uint8), e4m3, np.full((1, 1), 16, np.uint8), MF["e2m1"]
        )


def test_fixed_stochastic_counts_over_all_words() -> None:
    """Over all 2**SR_BITS low words, ``3 + f`` rounds up floor(f * 2**SR_BITS) times and
    ``-3 - g`` (two's complement: toward -3) 2**SR_BITS - ceil(g * 2**SR_BITS) times."""
    fx = FixedFormat(8, 0, 32)
    words = np.arange(1 << SR_BITS, dtype=np.uint32) | np.uint32(0x5A5A0000)
    f = (19661 + 0.7) / 2**SR_BITS
    up = fpgemm.requantize(np.full(words.shape, 3 + f), fx, Rounding.STOCHASTIC, words=words)
    assert set(up) == {3, 4} and np.count_nonzero(up == 4) == 19661
    down = fpgemm.requantize(np.full(words.shape, -3 - f), fx, Rounding.STOCHASTIC, words=words)
    assert set(down) == {-3, -4} and np.count_nonzero(down == -3) == 2**SR_BITS - 19662
