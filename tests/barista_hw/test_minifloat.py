"""Minifloat formats, bit for bit against ml_dtypes: every code, random floats, ties,
subnormals, overflow and NaN, in both overflow policies; stochastic rounding's exact rule."""

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import lfsr
from barista_hw.minifloat import PRESETS, SR_BITS, MinifloatFormat, Special, random_words
from barista_hw.numfmt import Rounding

ORACLE = {
    "e4m3": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
    "e3m2": ml_dtypes.float6_e3m2fn,
    "e2m3": ml_dtypes.float6_e2m3fn,
    "e2m1": ml_dtypes.float4_e2m1fn,
    "e8m0": ml_dtypes.float8_e8m0fnu,
}
NAMES = list(ORACLE)


def oracle_codes(name: str, x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(ORACLE[name]).view(np.uint8)


def all_codes(fmt: MinifloatFormat) -> np.ndarray:
    return np.arange(1 << fmt.bits, dtype=np.uint8)


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Every float32 bit pattern equally likely (all exponents, NaN payloads, infinities)."""
    return rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)


def e8m0_comparable(x: np.ndarray) -> np.ndarray:
    # ml_dtypes rounds float32 subnormals in (2**-127, 2**-126) up to 2**-126 whatever their
    # distance; our rule (nearest) is tested separately below.
    a = np.abs(x)
    return x[~((a > 2.0**-127) & (a < 2.0**-126))]


@pytest.mark.parametrize("name", NAMES)
def test_every_code_decodes_as_ml_dtypes(name: str) -> None:
    fmt = PRESETS[name]
    codes = all_codes(fmt)
    expected = codes.view(ORACLE[name]).astype(np.float32)
    np.testing.assert_array_equal(fmt.decode(codes), expected)  # NaN where NaN, -0 where -0
    assert np.array_equal(np.signbit(fmt.decode(codes)), np.signbit(expected))


@pytest.mark.parametrize("name", NAMES)
def test_every_value_round_trips(name: str) -> None:
    fmt = PRESETS[name]
    codes = all_codes(fmt)
    values = fmt.decode(codes)
    for saturate in (False, True):
        back = fmt.encode(values, saturate=saturate)
        finite = np.isfinite(values)
        np.testing.assert_array_equal(back[finite], codes[finite])
    np.testing.assert_array_equal(fmt.encode(values), oracle_codes(name, values))  # NaN codes
    assert fmt.max_value == float(ml_dtypes.finfo(ORACLE[name]).max)


@pytest.mark.parametrize("name", NAMES)
def test_random_floats_match_ml_dtypes(name: str) -> None:
    """Non-saturating nearest-even is ml_dtypes' conversion, on any float32 bit pattern and on
    values spread around the format's range (normals, subnormals, overflow)."""
    fmt = PRESETS[name]
    rng = np.random.default_rng(23)
    spread = np.ldexp(
        rng.uniform(-2, 2, 50_000), rng.integers(fmt.emin - fmt.mant - 3, fmt.emax + 3, 50_000)
    )
    spread = spread[np.abs(spread) < 2.0**127].astype(np.float32)
    x = np.concatenate([random_floats(rng, 50_000), spread])
    if name == "e8m0":
        x = e8m0_comparable(x)
    np.testing.assert_array_equal(fmt.encode(x), oracle_codes(name, x))


@pytest.mark.parametrize("name", NAMES)
def test_ties_go_to_even(name: str) -> None:
    fmt = PRESETS[name]
    values = np.unique(fmt.table[np.isfinite(fmt.table)])
    mids = ((values[1:] + values[:-1]) / 2).astype(np.float32)  # exact in float32
    assert np.array_equal(mids.astype(np.float64), (values[1:] + values[:-1]) / 2)
    if name == "e8m0":
        mids = e8m0_comparable(mids)
    codes = fmt.encode(mids)
    np.testing.assert_array_equal(codes, oracle_codes(name, mids))
    if fmt.mant:  # the even code: its mantissa LSB is 0
        assert not np.any(codes & 1)


def test_e8m0_below_its_smallest_value() -> None:
    e8m0 = PRESETS["e8m0"]
    x = np.float32([2.0**-127 * 1.49, 2.0**-127 * 1.5, 2.0**-130, 1e-45])
    np.testing.assert_array_equal(e8m0.encode(x), [0, 1, 0, 0])  # nearest; nothing below 0
    np.testing.assert_array_equal(e8m0.encode(np.float32([0, -0.0, -1])), [255, 255, 255])


@pytest.mark.parametrize("name", NAMES)
def test_subnormals(name: str) -> None:
    fmt = PRESETS[name]
    if not fmt.subnormals:
        return
    step = fmt.unit
    x = np.float32([step, 0.5 * step, 0.51 * step, 1.5 * step, -step, 0.49 * step, 1e-45])
    np.testing.assert_array_equal(fmt.encode(x), oracle_codes(name, x))
    assert fmt.encode(np.float32([step]))[0] == 1 and fmt.encode(np.float32([0.5 * step]))[0] == 0


@pytest.mark.parametrize("name", NAMES)
def test_overflow_policies(name: str) -> None:
    """Without saturation, ml_dtypes' behaviour (E4M3: NaN, E5M2: inf, FINITE formats: the
    largest value); with it, the largest finite value (and NaN stays NaN)."""
    fmt = PRESETS[name]
    big = np.float32([fmt.max_value * 1.5, -fmt.max_value * 1.5, np.inf, -np.inf, 3e38, np.nan])
    if not fmt.signed:
        big = big[[0, 2, 4, 5]]
    np.testing.assert_array_equal(fmt.encode(big), oracle_codes(name, big))
    sat = fmt.decode(fmt.encode(big, saturate=True))
    limit = np.clip(big, -fmt.max_value, fmt.max_value)
    if fmt.nan_code is None:  # no NaN to keep: NaN gives -0 (ml_dtypes' choice)
        limit[-1] = -0.0
    np.testing.assert_array_equal(sat, limit)
    assert np.array_equal(np.signbit(sat), np.signbit(limit))
    expected = {"e4m3": 0x7F, "e5m2": 0x7C, "e3m2": 0x1F, "e2m3": 0x1F, "e2m1": 0x7, "e8m0": 0xFF}
    assert fmt.encode(np.float32([fmt.max_value * 1.5]))[0] == expected[name]


def test_e4m3_overflow_boundary_is_the_tie() -> None:
    e4m3 = PRESETS["e4m3"]
    x = np.float32([464.0, np.nextafter(np.float32(464), np.float32(500))])
    np.testing.assert_array_equal(e4m3.encode(x), [0x7E, 0x7F])  # 448, NaN
    np.testing.assert_array_equal(e4m3.encode(x, saturate=True), [0x7E, 0x7E])


def stochastic_reference(x: float, fmt: MinifloatFormat, r: int) -> float:
    """The documented rule with exact rationals: the kept significand plus the truncated
    ``SR_BITS`` fraction bits below it plus ``r``, shifted back."""
    v = Fraction(abs(x))
    e = max(v.numerator.bit_length() - v.denominator.bit_length(), fmt.emin)
    while Fraction(2) ** e > v:
        e -= 1
    while Fraction(2) ** (e + 1) <= v:
        e += 1
    e = max(e, fmt.emin)
    s = v / Fraction(2) ** (e - fmt.mant)
    n = (int(s * 2**SR_BITS) + r) >> SR_BITS
    return float(np.copysign(float(n * Fraction(2) ** (e - fmt.mant)), x))


@pytest.mark.parametrize("name", ["e4m3", "e5m2", "e2m1"])
def test_stochastic_rounding_rule(name: str) -> None:
    fmt = PRESETS[name]
    rng = np.random.default_rng(5)
    x = (rng.normal(size=300) * fmt.max_value / 8).astype(np.float32)
    words = rng.integers(0, 1 << 32, x.shape, dtype=np.uint64).astype(np.uint32)
    got = fmt.quantize(x, Rounding.STOCHASTIC, words=words)
    for xi, wi, gi in zip(x, words, got, strict=True):
        want = stochastic_reference(float(xi), fmt, int(wi) & ((1 << SR_BITS) - 1))
        assert gi == min(max(want, -fmt.max_value), fmt.max_value), (xi, wi)


def test_stochastic_rounds_up_with_the_exact_probability() -> None:
    """Over all 2**SR_BITS low words, a value a fraction f of a step above a code rounds up
    exactly floor(f * 2**SR_BITS) times (bits of f further down are truncated first);
    representable values never move."""
    e4m3 = PRESETS["e4m3"]
    words = np.arange(1 << SR_BITS, dtype=np.uint32) | np.uint32(0xABCD0000)
    for f in (0.3, (19661 + 0.7) / 2**16, 0.5, 2.0**-20, 0.0):  # odd counts catch a lost bit
        x = np.full(words.shape, -(1.0 + 0.125 * f), dtype=np.float32)
        step_fraction = (abs(Fraction(float(x[0]))) - 1) * 8
        codes = e4m3.encode(x, Rounding.STOCHASTIC, words=words)
        ups = np.count_nonzero(codes != e4m3.encode(np.float32([-1.0]))[0])
        assert ups == int(step_fraction * 2**SR_BITS)
        assert set(e4m3.decode(codes)) <= {-1.0, -1.125}


def test_random_words_are_the_lfsr_lanes() -> None:
    words = random_words(7, (3, 4, 5))
    np.testing.assert_array_equal(words.reshape(12, 5), lfsr.lane_words(7, 5, 12))


def test_stochastic_needs_words() -> None:
    with pytest.raises(ValueError, match="random word"):
        PRESETS["e4m3"].encode(np.float32([1.1]), Rounding.STOCHASTIC)


def test_fields_and_accumulator_width() -> None:
    e4m3, e5m2 = PRESETS["e4m3"], PRESETS["e5m2"]
    assert e4m3.fields() == (1, 4, 3) and e4m3.bits == 8 and e4m3.code_shape.width == 8
    assert PRESETS["e8m0"].fields() == (0, 8, 0)
    assert e4m3.max_units == 448 * 2**9 and e4m3.unit == 2.0**-9
    for k in (1, 32, 1000):
        w = e4m3.acc_width(k)
        assert (e4m3.max_units**2 * k) < 2 ** (w - 1) <= 2 * e4m3.max_units**2 * k
    assert e4m3.acc_width(32, e5m2) == (448 * 2**9 * 57344 * 2**16 * 32).bit_length() + 1


def test_parse_and_errors() -> None:
    assert MinifloatFormat.parse("E4M3") is PRESETS["e4m3"]
    assert MinifloatFormat.parse("fp8_e5m2") is PRESETS["e5m2"]
    assert PRESETS["e5m2"].special is Special.IEEE
    with pytest.raises(InputError, match="unknown minifloat format 'e9m9'"):
        MinifloatFormat.parse("e9m9")
    with pytest.raises(InputError, match="exponent bits"):
        MinifloatFormat(0, 3, 1, Special.FINITE)
    with pytest.raises(InputError, match="float values"):
        PRESETS["e4m3"].encode(np.array([1, 2]))
