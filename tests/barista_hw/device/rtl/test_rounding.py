"""The vector unit's shared rounder (``rtl/rounding.py``) against the model's arithmetic,
element by element in pysim: every rounding mode, right shifts past 32 and 63, left
shifts that overflow 64 bits, saturation and the bit length it reports."""

from __future__ import annotations

import random

import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from barista_hw.device.rtl.rounding import saturate, shift_round
from barista_hw.numfmt import Rounding

LIMIT = 1 << 62  # |v| < 2**62 (the model's bound)


def reference(v: int, shift: int, mode: Rounding, word: int, bits: int) -> tuple[int, int, int]:
    """(q, clipped, bit length of |raw|) as ``vector.shift_round`` forms them (exact)."""
    if shift <= 0:
        raw = v << -shift
    else:
        s = min(shift, 63)
        if mode is Rounding.NEAREST_EVEN:
            raw = 0 if shift >= 63 else (v + (1 << (s - 1)) - 1 + ((v >> s) & 1)) >> s
        elif mode is Rounding.FLOOR:
            raw = v >> s
        elif shift <= 32:
            raw = (v + (word & ((1 << shift) - 1))) >> s
        else:
            raw = ((v >> min(shift - 32, 63)) + word) >> 32
    hi = (1 << (bits - 1)) - 1
    q = max(-hi - 1, min(hi, raw))
    return q, int(q != raw), abs(raw).bit_length()


def cases(n: int, seed: int = 7) -> list[tuple[int, int, Rounding, int, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        mag = rng.choice([rng.randrange(1 << rng.randrange(1, 62)), 0, 1, LIMIT - 1])
        v = -mag if rng.random() < 0.5 else mag
        shift = rng.choice([rng.randrange(-80, 100), rng.randrange(-3, 4), 32, 33, 62, 63, 64])
        out.append((v, shift, list(Rounding)[i % 3], rng.getrandbits(32), rng.randrange(2, 63)))
    return out


@pytest.mark.parametrize("late", [False, True], ids=["comb", "late"])
def test_shift_round_and_saturate_match_the_model(late: bool) -> None:
    """``late``: the shift, mode and width's quantities registered, the results read a
    cycle after they are set (the value and the word in the same cycle as ever)."""
    m = Module()
    v, shift = Signal(signed(64)), Signal(signed(10))
    mode, word, bits = Signal(2), Signal(32), Signal(unsigned(6))
    when, other = Signal(), Signal(signed(64))  # raw_bits of another value
    raw, raw_bits = shift_round(
        m, v, shift, mode, word, "t", want_bits=True, bits_of=(when, other), late=late
    )
    q, clipped = saturate(m, raw, bits, "t", 64, late=late)
    sim = Simulator(m)
    if late:
        sim.add_clock(1e-6)
    todo = cases(600)
    bad = []

    async def bench(ctx) -> None:  # noqa: ANN001
        for c in todo:
            ctx.set(shift, c[1]), ctx.set(mode, int(c[2])), ctx.set(bits, c[4])
            if late:  # a wrong value meanwhile: only the registered quantities count
                ctx.set(v, -c[0] - 1), ctx.set(word, ~c[3] & 0xFFFFFFFF)
                await ctx.tick()
            ctx.set(v, c[0]), ctx.set(word, c[3])
            ctx.set(when, 0)
            got = (ctx.get(q), ctx.get(clipped), ctx.get(raw_bits))
            if got != reference(*c):
                bad.append((c, got, reference(*c)))
            x = -(c[0] >> 1)
            ctx.set(when, 1), ctx.set(other, x)
            if ctx.get(raw_bits) != abs(x).bit_length():
                bad.append((c, "bits_of", ctx.get(raw_bits)))

    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"{len(bad)} of {len(todo)} differ, first: {bad[0]}"
