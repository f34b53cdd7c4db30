"""The minifloat PE in the Amaranth simulator: every finite code decodes to its exact units,
and a dot product of random and extreme codes accumulates the model's exact sum."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw.fpgemm import minifloat_gemm
from barista_hw.fppe import MinifloatArith, MinifloatDecoder, MinifloatPE
from barista_hw.minifloat import PRESETS, MinifloatFormat
from sim.pysim import run_testbench


def finite_codes(fmt: MinifloatFormat) -> np.ndarray:
    return np.flatnonzero(np.isfinite(fmt.table))


@pytest.mark.parametrize("name", ["e4m3", "e5m2", "e3m2", "e2m3", "e2m1"])
def test_decoder_gives_every_finite_codes_units(name: str) -> None:
    fmt = PRESETS[name]
    dec = MinifloatDecoder(fmt)
    codes = finite_codes(fmt)
    got: list[int] = []

    async def tb(ctx) -> None:  # noqa: ANN001
        for code in codes.tolist():
            ctx.set(dec.code, code)
            sig, shift, sign = ctx.get(dec.sig), ctx.get(dec.shift), ctx.get(dec.sign)
            got.append((-1 if sign else 1) * (sig << shift))

    sim = Simulator(dec)
    sim.add_testbench(tb)
    sim.run()
    assert len(codes) == (256 if name == "e5m2" else 1 << fmt.bits) - (
        8 if name == "e5m2" else 2 if name == "e4m3" else 0
    )
    np.testing.assert_array_equal(np.array(got), fmt.to_units(codes))


def _dot(arith: MinifloatArith, a: np.ndarray, b: np.ndarray, dsp: bool) -> int:
    """Feed the terms with a bubble after each, the last one flagged; the captured bank."""
    pe = MinifloatPE(arith, dsp_product=dsp)
    seen: list[int] = []

    async def tb(ctx) -> None:  # noqa: ANN001
        pairs = enumerate(zip(a.tolist(), b.tolist(), strict=True))
        terms = [(x, y, 1, int(i == len(a) - 1)) for i, (x, y) in pairs]
        for x, y, valid, last in [t for term in terms for t in (term, (255, 255, 0, 0))]:
            ctx.set(pe.a, x)
            ctx.set(pe.b, y)
            ctx.set(pe.valid, valid)
            ctx.set(pe.last, last)
            await ctx.tick()
        await ctx.tick().repeat(2)
        seen.append(ctx.get(pe.bank))

    run_testbench(pe, tb)
    return seen[0]


def _extremes(fmt: MinifloatFormat, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """All maxima of each sign (the accumulator's full range), then random codes with the
    smallest subnormals of both signs and zero among them."""
    sign = 1 << (fmt.bits - 1)
    mixed = rng.choice(finite_codes(fmt), n)
    mixed[:3] = [1, 1 | sign, 0]
    return [np.full(n, fmt.max_code), np.full(n, fmt.max_code | sign), mixed]


@pytest.mark.parametrize("dsp", [False, True], ids=["lut-product", "dsp-product"])
@pytest.mark.parametrize(
    "fa,fb", [("e4m3", "e4m3"), ("e5m2", "e5m2"), ("e4m3", "e5m2"), ("e2m3", "e3m2")]
)
def test_pe_dot_product_is_exact(fa: str, fb: str, dsp: bool) -> None:
    a_fmt, b_fmt = PRESETS[fa], PRESETS[fb]
    rng = np.random.default_rng(3)
    for a, b in zip(_extremes(a_fmt, rng, 12), _extremes(b_fmt, rng, 12), strict=True):
        b[::2] = rng.choice(finite_codes(b_fmt), 6)  # mixed signs and sizes
        want, _ = minifloat_gemm(a[None, :], a_fmt, b[:, None], b_fmt)
        assert _dot(MinifloatArith(a_fmt, b_fmt, 12), a, b, dsp) == int(want[0, 0])


def test_arith_refuses_unsigned_formats() -> None:
    with pytest.raises(InputError, match="e8m0"):
        MinifloatArith(PRESETS["e8m0"], PRESETS["e4m3"], 4)
