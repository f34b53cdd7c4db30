"""Amaranth-simulator drivers for the engines: fast unit-level checks without an HDL simulator.

:func:`run_gemm` streams one GEMM through an engine (with optional random
stalls) and returns its result matrix and cycle count.
"""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

from barista_hw.engine import GemmEngine

from .beats import assemble, tile_beats


def run_gemm(
    engine: GemmEngine,
    a: np.ndarray,
    b: np.ndarray,
    *,
    shift: int,
    rounding: int,
    seed: int = 0,
    images: int = 1,
    stall: float = 0.0,
    stall_seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Run ``a @ b`` on ``engine`` in pysim; returns (result, cycles)."""
    cfg = engine.cfg
    m, kt = a.shape
    n = b.shape[1]
    beats = list(tile_beats(a, b, cfg.rows, cfg.cols))
    rnd = random.Random(stall_seed)
    got: list[list[int]] = []
    cycles: list[int] = []
    command = {
        "m": m,
        "k": kt // images,
        "n": n,
        "shift": shift,
        "rounding": rounding,
        "seed": seed,
    }
    if engine.BATCHED:
        command["images"] = images

    async def testbench(ctx) -> None:  # noqa: ANN001 - amaranth's context
        ctx.set(engine.cmd.payload, command)
        ctx.set(engine.cmd.valid, 1)
        await ctx.tick().until(engine.cmd.ready)
        ctx.set(engine.cmd.valid, 0)
        i = 0
        while True:
            offer = i < len(beats) and rnd.random() >= stall
            if offer:
                ctx.set(engine.a.payload, beats[i][0])
                ctx.set(engine.b.payload, beats[i][1])
            ctx.set(engine.a.valid, offer)
            ctx.set(engine.b.valid, offer)
            ctx.set(engine.o.ready, rnd.random() >= stall)
            await ctx.delay(1e-10)  # let ready settle after valid (it may depend on it)
            took = offer and ctx.get(engine.a.ready)
            done = False
            if ctx.get(engine.o.valid) and ctx.get(engine.o.ready):
                payload = ctx.get(engine.o.payload)
                got.append([int(x) for x in payload.data])
                done = bool(payload.last)
            await ctx.tick()
            i += took
            if done:
                break
        cycles.append(ctx.get(engine.cycles))

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return assemble(got, m, n, cfg.rows, cfg.cols), cycles[0]
