"""barista_hw.mxformat and the MX engine's model (fpgemm.mx_engine_sum, engine_gemm on MX words):
names, the accumulator's bound, exactness against Fractions, refusals, and equality with the
golden backend's MX arithmetic."""

from fractions import Fraction

import numpy as np
import pytest

from barista.backends.formats import FormatBackend
from barista_base.errors import InputError
from barista_hw.command import GemmCommand
from barista_hw.config import EngineConfig, parse_engine_format
from barista_hw.fpgemm import engine_gemm, mx_engine_sum
from barista_hw.minifloat import FP32
from barista_hw.mx import PRESETS as MX
from barista_hw.mxformat import MXGemmFormat
from barista_hw.numfmt import Rounding


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("mxfp8_e4m3", "mxfp8_e4m3"),
        ("MXFP8", "mxfp8_e4m3"),
        ("mxfp4", "mxfp4_e2m1"),
        ("mxint8", "mxint8"),
        ("mxfp6_e3m2_fp32k64_wm40_8_nosat", "mxfp6_e3m2_fp32k64_wm40_8_nosat"),
        ("mxfp8_e4m3xmxfp8_e5m2_e5m2", "mxfp8_e4m3xmxfp8_e5m2_e5m2"),
    ],
)
def test_names_round_trip(name: str, canonical: str) -> None:
    fmt = parse_engine_format(name)
    assert isinstance(fmt, MXGemmFormat) and fmt.name == canonical
    assert MXGemmFormat.parse(fmt.name) == fmt


def test_defaults_and_widths() -> None:
    f = MXGemmFormat.parse("mxfp8_e4m3")
    assert (f.out.name, f.lo, f.hi, f.width) == ("e4m3", -254, 254, 16)
    assert (f.arith.partial_width, f.acc_width, f.acc_exp) == (42, 561, -254 - 18)
    assert MXGemmFormat.parse("mxint8").out is FP32
    d = f.to_dict()
    assert d["kind"] == "mx" and d["scale_sum_window"] == [-254, 254] and d["block"] == 32


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mxfp9", "MX engine format"),
        ("mxfp8_e4m3_w10_m10", r"window \[10, -10\]"),
        ("mxfp8_e4m3_w0_300", r"window \[0, 300\]"),
        ("mxfp8_e4m3_e8m0", "need a sign"),
        ("mxfp8_e4m3k0", "k=0"),
    ],
)
def test_bad_names(name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        MXGemmFormat.parse(name)


def _words(rng, fmt: MXGemmFormat, rows: int, k: int, x_range=(-3, 3)) -> np.ndarray:
    """Random finite words, blocks along the last axis with random scales."""
    arith, el = fmt.arith, fmt.a.element
    finite = np.flatnonzero(np.isfinite(el.table))
    codes = rng.choice(finite, size=(rows, k))
    x = rng.integers(x_range[0], x_range[1] + 1, size=(rows, -(-k // arith.block)))
    return arith.pack(codes, np.repeat(x + 127, arith.block, axis=1)[:, :k])


def _exact(a_words, bt_words, fmt: MXGemmFormat) -> list[list[Fraction]]:
    """The dot products of decoded elements times their scales, as Fractions."""
    arith, el = fmt.arith, fmt.a.element

    def value(w: int) -> Fraction:
        code, scale = int(w) & ((1 << arith.element_bits) - 1), int(w) >> arith.element_bits
        return Fraction(float(el.table[code])) * Fraction(2) ** (scale - 127)

    return [
        [
            sum((value(x) * value(y) for x, y in zip(ra, rb, strict=True)), Fraction(0))
            for rb in bt_words
        ]
        for ra in a_words
    ]


@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp6_e2m3k128_wm12_12", "mxfp4"])
def test_sum_is_exact(name: str) -> None:
    """Ragged K over several blocks: every accumulator equals the exact dot product."""
    fmt = MXGemmFormat.parse(name)
    rng = np.random.default_rng(3)
    for k in (1, 31, 32, 70):
        a, bt = _words(rng, fmt, 3, k), _words(rng, fmt, 4, k)
        acc, exp = mx_engine_sum(a, bt.T, fmt)
        got = [[Fraction(int(v)) * Fraction(2) ** exp for v in row] for row in acc]
        assert got == _exact(a, bt, fmt)
        assert max(abs(int(v)) for v in acc.ravel()).bit_length() < fmt.acc_width


def test_accumulator_holds_the_largest_sums() -> None:
    """k largest elements at the window's top scale fill but do not overflow acc_width."""
    fmt = MXGemmFormat.parse("mxfp4k64_wm3_9")
    arith = fmt.arith
    top = MX["mxfp4"].element.max_code
    a = arith.pack(np.full((1, 64), top), np.full((1, 64), 127 + 4))
    b = arith.pack(np.full((64, 1), top), np.full((64, 1), 127 + 5))
    acc, _ = mx_engine_sum(a, b, fmt)
    assert int(acc[0, 0]).bit_length() == fmt.acc_width - 1


def test_refusals() -> None:
    fmt = MXGemmFormat.parse("mxfp8_e4m3k64_wm8_8")
    arith = fmt.arith
    one = MX["mxfp8"].element.encode(np.array([1.0]))[0]
    ok = arith.pack(np.full((1, 40), one), np.full((1, 40), 127))
    mixed = ok.copy()
    mixed[0, 5] = arith.pack(one, 128)
    with pytest.raises(InputError, match="carry different scales"):
        mx_engine_sum(mixed, ok.T, fmt)
    high = arith.pack(np.full((1, 40), one), np.full((1, 40), 127 + 5))
    with pytest.raises(InputError, match=r"outside the accumulator's window \[-8, 8\]"):
        mx_engine_sum(high, high.T, fmt)
    zero_high = arith.pack(np.zeros((1, 40), dtype=np.int64), np.full((1, 40), 127 + 5))
    mx_engine_sum(zero_high, high.T, fmt)  # a zero partial may have any scale
    nan = arith.pack(np.full((1, 40), one), np.full((1, 40), 255))
    with pytest.raises(InputError, match="NaN scales"):
        mx_engine_sum(nan, ok.T, fmt)
    cfg = EngineConfig(2, 2, fmt)
    with pytest.raises(InputError, match="exceeds the 64"):
        engine_gemm(
            np.zeros((1, 65), dtype=np.int64),
            np.zeros((65, 1), dtype=np.int64),
            cfg,
            GemmCommand(0),
        )


@pytest.mark.parametrize("mx", ["mxfp8_e4m3", "mxfp6_e3m2", "mxfp4_e2m1", "mxint8"])
def test_engine_model_equals_golden_mx(mx: str) -> None:
    """The golden backend's MX GEMM (operands quantised per block along K, float64 sum to
    float32) equals the engine's model with float32 results on the same operands, bit for
    bit, for sums float64 holds exactly (the golden backend's stated exactness)."""
    rng = np.random.default_rng(11)
    golden = FormatBackend(mx)
    fmt = MXGemmFormat(MX[mx], MX[mx], FP32, k=4096, saturate=False)
    cfg = EngineConfig(2, 3, fmt)
    for m, k, n in ((3, 70, 5), (4, 32, 2), (2, 5, 3)):
        a = (rng.standard_normal((m, k)) * 2.0 ** rng.integers(-6, 6, size=(m, 1))).astype(
            np.float32
        )
        bt = (rng.standard_normal((n, k)) * 2.0 ** rng.integers(-6, 6, size=(n, 1))).astype(
            np.float32
        )
        want = golden.forward(a, bt.T[None])[0]  # one image: A @ Bt.T
        words = [_encode(MX[mx], fmt, x) for x in (a, bt)]
        codes = engine_gemm(words[0], words[1].T, cfg, GemmCommand(0, Rounding.NEAREST_EVEN))
        got = codes.astype(np.uint32).view(np.float32)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def _encode(mx, fmt: MXGemmFormat, x: np.ndarray) -> np.ndarray:
    """float32 rows -> engine words, quantised as the golden backend does (zero padded)."""
    pad = -x.shape[1] % mx.block
    elements, scales = mx.encode(np.pad(x, ((0, 0), (0, pad))))
    per_element = np.repeat(scales, mx.block, axis=1)
    return fmt.arith.pack(elements, per_element)[:, : x.shape[1]]
