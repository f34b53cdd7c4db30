"""MX block formats against the OCP MX v1.0 rule, computed independently per block with
ml_dtypes for the elements and E8M0 scale."""

import math

import ml_dtypes
import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.minifloat import PRESETS as MINIFLOATS
from barista_hw.minifloat import random_words
from barista_hw.mx import PRESETS, SCALE_NAN, MXFormat, parse_format
from barista_hw.numfmt import FixedFormat, Rounding

ELEMENT_ORACLE = {
    "mxfp8_e4m3": (ml_dtypes.float8_e4m3fn, 448.0, 8),
    "mxfp8_e5m2": (ml_dtypes.float8_e5m2, 57344.0, 15),
    "mxfp6_e3m2": (ml_dtypes.float6_e3m2fn, 28.0, 4),
    "mxfp6_e2m3": (ml_dtypes.float6_e2m3fn, 7.5, 2),
    "mxfp4_e2m1": (ml_dtypes.float4_e2m1fn, 6.0, 2),
    "mxint8": (None, 127 / 64, 0),
}


def reference_block(v: np.ndarray, name: str) -> tuple[int, np.ndarray]:
    """(scale code, decoded values) of one block by the spec's steps, one element at a time."""
    dtype, max_elem, emax_elem = ELEMENT_ORACLE[name]
    if not all(math.isfinite(float(t)) for t in v):
        return SCALE_NAN, np.full(v.shape, np.nan)
    amax = max(abs(float(t)) for t in v)
    x = -127 if amax == 0 else max(-127, min(127, math.floor(math.log2(amax)) - emax_elem))
    code = int(np.float32(2.0**x).astype(ml_dtypes.float8_e8m0fnu).view(np.uint8))
    scaled = np.clip(v.astype(np.float64) / 2.0**x, -max_elem, max_elem)
    if dtype is None:  # MXINT8: two's complement, 6 fraction bits, [-128, 127]
        q = np.clip(np.rint(v.astype(np.float64) / 2.0**x * 64), -128, 127) / 64
    else:
        q = scaled.astype(np.float32).astype(dtype).astype(np.float64)
    return code, q * 2.0**x


def test_scale_codes_are_e8m0() -> None:
    assert PRESETS["mxfp8_e4m3"].emax_elem == 8 and PRESETS["mxint8"].emax_elem == 0
    assert PRESETS["mxfp4"].emax_elem == 2 and PRESETS["mxfp6_e3m2"].emax_elem == 4


def blocks_under_test(rng: np.random.Generator) -> np.ndarray:
    """Rows of 2 blocks: normal, wide dynamic range, zero, one huge element, tiny, NaN, inf."""
    rows = [rng.normal(size=64), np.ldexp(rng.uniform(-1, 1, 64), rng.integers(-30, 30, 64))]
    rows.append(np.concatenate([np.zeros(32), rng.normal(size=32)]))
    huge = rng.normal(size=64) * 1e-3
    huge[7] = 3e30
    rows += [huge, rng.normal(size=64) * 1e-40, rng.normal(size=64) * 1e37]
    nan = rng.normal(size=64)
    nan[40] = np.nan
    inf = rng.normal(size=64)
    inf[3] = -np.inf
    rows += [nan, inf]
    return np.array(rows).astype(np.float32)


@pytest.mark.parametrize("name", list(ELEMENT_ORACLE))
def test_blocks_follow_the_spec(name: str) -> None:
    fmt = PRESETS[name]
    x = blocks_under_test(np.random.default_rng(3))
    elements, scales = fmt.encode(x)
    got = fmt.decode(elements, scales)
    for r in range(x.shape[0]):
        for b in range(2):
            code, want = reference_block(x[r, 32 * b : 32 * b + 32], name)
            assert scales[r, b] == code, (r, b)
            np.testing.assert_array_equal(got[r, 32 * b : 32 * b + 32], want.astype(np.float32))


def test_zero_and_non_finite_blocks() -> None:
    fmt = PRESETS["mxfp8_e4m3"]
    x = np.zeros((1, 96), np.float32)
    x[0, 40], x[0, 70] = np.nan, np.inf
    elements, scales = fmt.encode(x)
    np.testing.assert_array_equal(scales, [[0, SCALE_NAN, SCALE_NAN]])
    assert not elements.any()
    assert np.all(fmt.decode(elements, scales)[0, :32] == 0)
    assert np.all(np.isnan(fmt.decode(elements, scales)[0, 32:]))


def test_one_huge_element_flushes_the_rest() -> None:
    fmt = PRESETS["mxfp4"]
    x = np.full((1, 32), 1.0, np.float32)
    x[0, 0] = 2.0**20
    _, scales = fmt.encode(x)
    assert scales[0, 0] == 127 + 20 - 2
    q = fmt.quantize(x)
    assert q[0, 0] == 2.0**20 and not q[0, 1:].any()


def test_stochastic_elements_use_the_minifloat_rule() -> None:
    fmt = PRESETS["mxfp8_e4m3"]
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 64)).astype(np.float32)
    words = random_words(9, x.shape)
    elements, scales = fmt.encode(x, Rounding.STOCHASTIC, words=words)
    exps = np.repeat(scales.astype(np.int64) - 127, 32, axis=1)
    scaled = np.ldexp(x.astype(np.float64), -exps)
    expected = MINIFLOATS["e4m3"].encode(scaled, Rounding.STOCHASTIC, saturate=True, words=words)
    np.testing.assert_array_equal(elements, expected)
    assert not np.array_equal(elements, fmt.encode(x)[0])  # some elements rounded the other way


def test_int8_stochastic_bounds() -> None:
    fmt = PRESETS["mxint8"]
    x = np.random.default_rng(2).normal(size=(8, 32)).astype(np.float32)
    q = fmt.quantize(x, Rounding.STOCHASTIC, words=random_words(1, x.shape))
    step = np.ldexp(1.0, fmt.encode(x)[1].astype(np.int64) - 127 - 6)
    err = np.abs(q - x).reshape(8, 1, 32).max(axis=-1)
    assert np.all(err < step)


def test_bits_names_and_errors() -> None:
    assert PRESETS["mxfp8_e4m3"].bits_per_element() == 8.25
    assert PRESETS["mxfp4"].bits_per_element() == 4.25
    assert PRESETS["mxfp8_e4m3"].partial_width() == (229376**2 * 32).bit_length() + 1 == 42
    assert PRESETS["mxint8"].partial_width(PRESETS["mxfp4"]) == (128 * 12 * 32).bit_length() + 1
    assert parse_format("MXFP6-E2M3") is PRESETS["mxfp6_e2m3"]
    assert parse_format("e4m3") is MINIFLOATS["e4m3"]
    assert parse_format("fx8") == FixedFormat.parse("fx8")
    assert MXFormat.parse("mxint8").is_int
    with pytest.raises(InputError, match="unknown number format 'mxfp3'"):
        parse_format("mxfp3")
    with pytest.raises(InputError, match="multiple of the block size 32"):
        PRESETS["mxfp8"].encode(np.zeros((2, 48), np.float32))
