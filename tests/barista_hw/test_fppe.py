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

    sim = Simulator(pe)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return seen[0]


@pytest.mark.parametrize("dsp", [False, True], ids=["lut-product", "dsp-product"])
@pytest.mark.parametrize("name", ["e4m3", "e5m2"])
def test_pe_dot_product_is_exact(name: str, dsp: bool) -> None:
    fmt = PRESETS[name]
    rng = np.random.default_rng(3)
    codes = finite_codes(fmt)
    top = fmt.max_code
    # all maxima of one sign (the accumulator's full range), then random with extremes
    cases = [np.full(12, top), np.full(12, top | 0x80), rng.choice(codes, 12)]
    cases[2][:3] = [1, 0x81, 0]  # the smallest subnormals and zero
    for a in cases:
        b = np.where(np.arange(12) % 2, a, rng.choice(codes, 12))
        want, _ = minifloat_gemm(a[None, :], fmt, b[:, None], fmt)
        assert _dot(MinifloatArith(fmt, fmt, 12), a, b, dsp) == int(want[0, 0])


def test_arith_refuses_unsigned_formats() -> None:
    with pytest.raises(InputError, match="e8m0"):
        MinifloatArith(PRESETS["e8m0"], PRESETS["e4m3"], 4)
