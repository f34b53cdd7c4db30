"""Number formats: parsing, ranges, shapes and the float <-> fixed conversions."""

import contextlib

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import native
from barista_hw.numfmt import DEFAULT_FORMAT, PRESETS, FixedFormat, Rounding
from barista_hw.scaling import max_abs


def test_parse_roundtrip_and_defaults() -> None:
    fmt = FixedFormat.parse("fx12")
    assert (fmt.width, fmt.frac, fmt.acc_width) == (12, 6, 40)
    assert FixedFormat.parse(fmt.name) == fmt
    assert FixedFormat.parse("FX8.3a20") == FixedFormat(8, 3, 20)
    for name, preset in PRESETS.items():
        assert FixedFormat.parse(name) == preset
        assert FixedFormat.parse(preset.name) == preset


@pytest.mark.parametrize(
    "spec, words",
    [
        ("fx19", "width 19"),
        ("fx1", "width 1"),
        ("fx8.8", "fraction bits 8"),
        ("fx8.4a15", "accumulator width 15"),
        ("float16", "unknown number format"),
    ],
)
def test_bad_formats_name_the_fault(spec: str, words: str) -> None:
    with pytest.raises(InputError, match=words):
        FixedFormat.parse(spec)


def test_shapes_follow_the_format() -> None:
    fmt = FixedFormat(10, 5, 30)
    assert fmt.operand_shape.width == 10 and fmt.operand_shape.signed
    assert fmt.product_shape.width == 20
    assert fmt.acc_shape.width == 30
    assert (fmt.min_int, fmt.max_int) == (-512, 511)


def test_quantize_rounds_half_to_even_and_saturates() -> None:
    fmt = FixedFormat(8, 2, 24)
    x = np.array([0.125, 0.375, -0.125, -0.375, 100.0, -100.0, 1.1])
    assert fmt.quantize(x).tolist() == [0, 2, 0, -2, 127, -128, 4]
    assert fmt.quantize(x, rounding=Rounding.FLOOR).tolist() == [0, 1, -1, -2, 127, -128, 4]
    q = fmt.quantize(np.linspace(-3, 3, 25))
    np.testing.assert_array_equal(fmt.quantize(fmt.dequantize(q)), q)


def test_default_format_is_fx16() -> None:
    assert DEFAULT_FORMAT == FixedFormat() == PRESETS["fx16"] == FixedFormat(16, 8, 48)
    assert FixedFormat.parse(DEFAULT_FORMAT.name) == DEFAULT_FORMAT


def _float64_quantize(fmt: FixedFormat, x: np.ndarray, frac: int, floor: bool) -> np.ndarray:
    """The arithmetic stated in float64: scale, round, saturate."""
    scaled = np.asarray(x, dtype=np.float64) * 2.0**frac
    q = np.floor(scaled) if floor else np.rint(scaled)
    return np.clip(q, fmt.min_int, fmt.max_int).astype(np.int64)


def test_float32_and_float64_input_give_the_same_integers() -> None:
    """Float32 input takes a float32 path; its integers are those of the float64 arithmetic
    (ties, saturation, values that overflow or underflow in float32), in either dtype."""
    fmt = FixedFormat(16, 8, 48)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((7, 9)) * 10.0 ** rng.integers(-30, 30, (7, 9))).astype(np.float32)
    x.flat[:8] = [0.5, -0.5, 1.5, -2.5, 3e38, -3e38, 1e-38, -1e-38]
    for frac in (-64, -3, 0, 8, 17, 64):
        for view in (x, x.T, x[::2, ::-1]):
            for rounding in (Rounding.NEAREST_EVEN, Rounding.FLOOR):
                want = _float64_quantize(fmt, view, frac, rounding is Rounding.FLOOR)
                np.testing.assert_array_equal(fmt.quantize(view, frac, rounding), want)
                np.testing.assert_array_equal(
                    fmt.quantize(view.astype(np.float64), frac, rounding), want
                )
            q = fmt.quantize(view, frac, dtype=np.float64)
            assert q.dtype == np.float64 and q.flags.c_contiguous
            np.testing.assert_array_equal(q, _float64_quantize(fmt, view, frac, False))
    assert fmt.quantize(np.float32(0.5), 1) == 1 and fmt.quantize(0.3).shape == ()


def test_stochastic_quantize_is_unbiased() -> None:
    fmt = FixedFormat(16, 0, 40)
    q = fmt.quantize(
        np.full(20000, 0.25), rounding=Rounding.STOCHASTIC, rng=np.random.default_rng(3)
    )
    assert set(np.unique(q)) == {0, 1}
    assert abs(q.mean() - 0.25) < 0.02


def test_rounding_names() -> None:
    assert Rounding.parse("nearest-even") is Rounding.NEAREST_EVEN
    assert Rounding.parse("truncate") is Rounding.FLOOR
    assert Rounding.parse("SR") is Rounding.STOCHASTIC
    with pytest.raises(InputError, match="rounding mode"):
        Rounding.parse("up")


def test_every_quantise_path_gives_the_float64_integers() -> None:
    """The compiled pass and the numpy passes, with and without the ``peak`` that lets the
    saturation be skipped, into new arrays and into ``out``: the float64 arithmetic's
    integers, for strided views and values that round up to the saturation edge."""
    fmt = FixedFormat(8, 4, 32)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 5, 7)) * 3).astype(np.float32)
    x.flat[:4] = [127.5 / 16, -128.5 / 16, 0.5 / 16, 127.49 / 16]  # ties at the range's ends
    views = (x, x.transpose(1, 0, 2), x.transpose(0, 2, 1), x[0].T, x[::2, :, ::-1])
    for view in (*views, x.astype(np.float64).transpose(0, 2, 1)):
        for frac in (-2, 0, 4, 6):
            for rounding in (Rounding.NEAREST_EVEN, Rounding.FLOOR):
                want = _float64_quantize(fmt, view, frac, rounding is Rounding.FLOOR)
                for fused in (True, False):
                    with contextlib.nullcontext() if fused else native.disabled():
                        for peak in (None, max_abs(view)):
                            q = fmt.quantize(view, frac, rounding, dtype=np.float64, peak=peak)
                            np.testing.assert_array_equal(q, want)
                            out = np.full(view.shape, np.nan)
                            fmt.quantize(view, frac, rounding, dtype=np.float64, out=out)
                            np.testing.assert_array_equal(out, want)


def test_dequantize_rounds_the_exact_value_once() -> None:
    fmt = FixedFormat(16, 8, 48)
    q = np.array([0, 1, -3, 32767, -32768])
    for frac in (-100, -8, 0, 8, 150, 170):
        want = (q.astype(np.float64) * 2.0**-frac).astype(np.float32)
        np.testing.assert_array_equal(fmt.dequantize(q, frac), want)
        np.testing.assert_array_equal(fmt.dequantize(q.astype(np.float64), frac), want)
