"""The MX PE in the Amaranth simulator: MXINT8 elements decode to their magnitudes, and dot
products over several blocks (back to back, with bubbles) accumulate the model's exact sums."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw.fpgemm import mx_engine_sum
from barista_hw.mx import PRESETS as MX
from barista_hw.mxformat import MXGemmFormat
from barista_hw.mxpe import MXPE, IntElementDecoder, MXArith
from sim.pysim import run_testbench


def test_int_decoder_gives_every_elements_magnitude() -> None:
    dec = IntElementDecoder()
    got: list[int] = []

    async def tb(ctx) -> None:  # noqa: ANN001
        for code in range(256):
            ctx.set(dec.code, code)
            got.append((-1 if ctx.get(dec.sign) else 1) * ctx.get(dec.sig) << ctx.get(dec.shift))

    sim = Simulator(dec)
    sim.add_testbench(tb)
    sim.run()
    assert got == [c - 256 if c >= 128 else c for c in range(256)]


def _banks(arith: MXArith, dots: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """Feed the dot products back to back, a bubble after every third term; the banks."""
    pe = MXPE(arith)
    seen: list[int] = []

    async def tb(ctx) -> None:  # noqa: ANN001
        for a, b in dots:
            for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
                ctx.set(pe.a, x)
                ctx.set(pe.b, y)
                ctx.set(pe.valid, 1)
                ctx.set(pe.last, int(i == len(a) - 1))
                await ctx.tick()
                if i % 3 == 2:
                    ctx.set(pe.valid, 0)
                    await ctx.tick()
            ctx.set(pe.valid, 0)
            await ctx.tick().repeat(2)
            seen.append(ctx.get(pe.bank))

    run_testbench(pe, tb)
    return seen


@pytest.mark.parametrize("name", ["mxint8k128_wm10_10", "mxfp4k128_wm10_10", "mxfp6_e3m2k128_w0_6"])
def test_pe_dot_products_are_exact(name: str) -> None:
    """K = 70 (three blocks, the last short), then K = 5 and K = 40: each bank the exact sum,
    with the largest elements, zero blocks and scales at the window's ends among them."""
    fmt = MXGemmFormat.parse(name)
    arith = fmt.arith
    rng = np.random.default_rng(5)
    el = fmt.a.element
    pool = np.arange(-128, 128) if fmt.a.is_int else np.flatnonzero(np.isfinite(el.table))
    dots = []
    for k in (70, 5, 40):
        codes = rng.choice(pool, size=(2, k))
        codes[:, :3] = (el.min_int, el.max_int, 0) if fmt.a.is_int else (el.max_code, 1, 0)
        codes[0, 32:64] = 0  # a zero block (its scales may lie outside the window)
        nb = -(-k // arith.block)
        x = rng.integers(arith.lo // 2, arith.hi // 2 + 1, size=(2, nb))
        x[:, 0] = (arith.lo // 2, -(-arith.lo // 2)) if k == 70 else (arith.hi // 2,) * 2
        if nb > 1:
            x[0, 1] = -127
        scales = np.repeat(x + 127, arith.block, axis=1)[:, :k]
        dots.append(arith.pack(codes, scales))
    got = _banks(arith, [(w[0], w[1]) for w in dots])
    want = [int(mx_engine_sum(w[:1], w[1:].T, fmt)[0][0, 0]) for w in dots]
    assert got == want and any(want)


def test_arith_refuses_mixed_blocks_and_bad_windows() -> None:
    from dataclasses import replace

    with pytest.raises(InputError, match="one block size"):
        MXArith(MX["mxfp8"], replace(MX["mxfp8"], block=16), 64)
    with pytest.raises(InputError, match=r"window \[5, 4\]"):
        MXArith(MX["mxfp8"], MX["mxfp8"], 64, 5, 4)
