"""The minifloat requantiser in the Amaranth simulator against fpgemm's model: random and
extreme accumulators, every rounding mode, saturation and subnormal outputs."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw.fpgemm import requantize, to_odd_float
from barista_hw.fppe import MinifloatArith
from barista_hw.fprequant import MinifloatRequantizer, leading_one
from barista_hw.minifloat import PRESETS
from barista_hw.numfmt import Rounding


def extreme_accs(rng: np.random.Generator, width: int, n: int) -> list[int]:
    """``n`` accumulators of random magnitudes (every bit length) and signs, with zero, +-1
    and both ends of ``width`` bits among them."""
    lengths = rng.integers(1, width, n)
    accs = [int(rng.integers(1 << 62, dtype=np.int64)) >> max(0, 62 - int(k)) for k in lengths]
    accs = [a << max(0, int(k) - 62) for a, k in zip(accs, lengths, strict=True)]
    accs = [-a if rng.random() < 0.5 else a for a in accs]
    accs[:5] = [0, 1, -1, (1 << (width - 1)) - 1, -(1 << (width - 1))]
    return accs


def run(rq: MinifloatRequantizer, accs: list[int], words: np.ndarray, rnd: Rounding) -> list:
    """Stream one accumulator a cycle through lane 0; the codes, in order."""
    got: list[int] = []

    async def tb(ctx) -> None:  # noqa: ANN001
        ctx.set(rq.rounding, int(rnd))
        for i in range(len(accs) + rq.LATENCY):
            if i < len(accs):
                ctx.set(rq.acc[0], accs[i])
                ctx.set(rq.words[0], int(words[i]))
            await ctx.tick()
            if rq.LATENCY - 1 <= i < len(accs) + rq.LATENCY - 1:
                got.append(ctx.get(rq.q[0]))

    sim = Simulator(rq)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got


@pytest.mark.parametrize(
    "fa,fb,fout",
    [
        ("e4m3", "e4m3", "e4m3"),
        ("e5m2", "e5m2", "e5m2"),
        ("e4m3", "e5m2", "e5m2"),
        ("e2m3", "e2m3", "e2m1"),  # output unit coarser than the accumulator's LSB
        ("e2m1", "e2m1", "e4m3"),  # finer: the magnitude is shifted up first
        ("e2m3", "e2m1", "e3m2"),  # equal: results without rounding (shift 0)
    ],
)
def test_requantizer_matches_model(fa: str, fb: str, fout: str) -> None:
    arith, out = MinifloatArith(PRESETS[fa], PRESETS[fb], 16), PRESETS[fout]
    rq = MinifloatRequantizer(arith.acc_width, arith.acc_exp, out, 1)
    rng = np.random.default_rng(len(fa + fb + fout))
    accs = extreme_accs(rng, arith.acc_width, 120)
    words = rng.integers(0, 1 << 32, len(accs), dtype=np.uint64).astype(np.uint32)
    value = to_odd_float(np.array(accs, dtype=object), arith.acc_exp)
    for rnd in Rounding:
        want = requantize(value, out, rnd, words=words)
        got = np.array(run(rq, accs, words, rnd))
        bad = np.flatnonzero(got != want)
        assert not bad.size, f"{rnd.label}: acc {accs[bad[0]]}: rtl {got[bad[0]]}, {want[bad[0]]}"
    # saturation both ways and zero are among the results
    assert {out.max_code, out.max_code | (1 << (out.bits - 1)), 0} <= set(want.tolist())


def test_requantizer_unsaturated_gives_infinity() -> None:
    arith, out = MinifloatArith(PRESETS["e5m2"], PRESETS["e5m2"], 4), PRESETS["e5m2"]
    rq = MinifloatRequantizer(arith.acc_width, arith.acc_exp, out, 1, saturate=False)
    accs = [(1 << (arith.acc_width - 1)) - 1, -(1 << (arith.acc_width - 2)), 5]
    words = np.zeros(3, dtype=np.uint32)
    value = to_odd_float(np.array(accs, dtype=object), arith.acc_exp)
    want = requantize(value, out, Rounding.NEAREST_EVEN, saturate=False)
    assert run(rq, accs, words, Rounding.NEAREST_EVEN) == want.tolist() == [0x7C, 0xFC, 0]


def test_requantizer_refuses_unsigned_output() -> None:
    with pytest.raises(InputError, match="e8m0"):
        MinifloatRequantizer(40, -18, PRESETS["e8m0"], 1)


@pytest.mark.parametrize("width", [1, 2, 5, 8, 9])
def test_leading_one_of_every_value(width: int) -> None:
    v = Signal(width)
    lead = Signal(range(width + 1))
    m = Module()
    m.d.comb += lead.eq(leading_one(v))
    got: list[int] = []

    async def tb(ctx) -> None:  # noqa: ANN001
        for x in range(1 << width):
            ctx.set(v, x)
            got.append(ctx.get(lead))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert got == [max(x.bit_length() - 1, 0) for x in range(1 << width)]
