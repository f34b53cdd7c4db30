"""Amaranth-simulator drivers for the engines: fast unit-level checks without an HDL simulator.

:func:`run_gemm` streams one GEMM through an engine (with optional random
stalls) and returns its result matrix and cycle count.
"""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

from barista_hw.accelerator import Accelerator
from barista_hw.engine import GemmEngine
from barista_hw.schedule import block_seed, pack_a, pack_b, schedule_gemm

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
    k_chunks: int = 1,
    stall: float = 0.0,
    stall_seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Run ``a @ b`` on ``engine`` in pysim; returns (result, cycles of all commands).

    ``k_chunks > 1`` splits the reduction dimension into that many commands that
    accumulate in the engine's accumulator memory (``acc_first``/``acc_last``).
    """
    cfg = engine.cfg
    m, kt = a.shape
    n = b.shape[1]
    if k_chunks > 1 and images != 1:
        raise ValueError("chunk the reduction of an images > 1 GEMM by images instead")
    bounds = np.linspace(0, kt, k_chunks + 1).round().astype(int)
    commands = []
    for i in range(k_chunks):
        k0, k1 = bounds[i], bounds[i + 1]
        cmd = {
            "m": m,
            "k": (k1 - k0) // images,
            "n": n,
            "shift": shift,
            "rounding": rounding,
            "seed": seed,
        }
        if engine.BATCHED:
            cmd["images"] = images
        if cfg.acc_depth:
            cmd["acc_first"] = i == 0
            cmd["acc_last"] = i == k_chunks - 1
        commands.append((cmd, list(tile_beats(a[:, k0:k1], b[k0:k1], cfg.rows, cfg.cols))))
    rnd = random.Random(stall_seed)
    got: list[list[int]] = []
    cycles: list[int] = []

    async def testbench(ctx) -> None:  # noqa: ANN001 - amaranth's context
        for command, beats in commands:
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
                if ctx.get(engine.o.valid) and ctx.get(engine.o.ready):
                    payload = ctx.get(engine.o.payload)
                    got.append([int(x) for x in payload.data])
                await ctx.tick()
                i += took
                if not ctx.get(engine.busy):
                    break
            cycles.append(ctx.get(engine.cycles))

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return assemble(got, m, n, cfg.rows, cfg.cols), sum(cycles)


def run_accelerator(
    acc: Accelerator,
    a: np.ndarray,
    b: np.ndarray,
    *,
    images: int = 1,
    shift: int,
    rounding: int,
    seed: int = 0,
    stall: float = 0.0,
    stall_seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Run ``a @ b`` through an :class:`Accelerator` following its schedule; (result, cycles).

    Buffer writes for chunk ``i+1`` go in while chunk ``i`` runs, as a host
    would double-buffer; the cycle count is the total simulated cycles.
    """
    cfg = acc.cfg
    R, C = cfg.engine.rows, cfg.engine.cols
    m, kt = a.shape
    n = b.shape[1]
    chunks = schedule_gemm(cfg, m, kt // images, n, images)
    rnd = random.Random(stall_seed)
    result = np.zeros((m, n), dtype=np.int64)
    total = [0]

    async def write_words(ctx, sel: int, base: int, words: np.ndarray) -> None:  # noqa: ANN001
        for i, word in enumerate(words.tolist()):
            ctx.set(
                acc.wr.payload,
                {"sel": sel, "addr": base + i, "data": word + [0] * (max(R, C) - len(word))},
            )
            ctx.set(acc.wr.valid, 1)
            await ctx.tick()
        ctx.set(acc.wr.valid, 0)

    async def host(ctx) -> None:  # noqa: ANN001
        for c in chunks:
            if c.write_a:
                await write_words(ctx, 0, c.a_base, pack_a(a[c.m0 : c.m1, c.kt0 : c.kt1], R))
            if c.write_b:
                await write_words(ctx, 1, c.b_base, pack_b(b[c.kt0 : c.kt1, c.n0 : c.n1], C))
            ctx.set(
                acc.cmd.payload,
                {
                    "m": c.m,
                    "k": c.k,
                    "n": c.n,
                    "images": c.images,
                    "shift": shift,
                    "rounding": rounding,
                    "seed": block_seed(seed, c.block),
                    "acc_first": c.acc_first,
                    "acc_last": c.acc_last,
                    "a_base": c.a_base,
                    "b_base": c.b_base,
                },
            )
            ctx.set(acc.cmd.valid, 1)
            await ctx.tick().until(acc.cmd.ready)
            ctx.set(acc.cmd.valid, 0)
            # A simple host: wait for the chunk before writing the next one.
            beats: list[list[int]] = []
            while True:
                ctx.set(acc.o.ready, rnd.random() >= stall)
                await ctx.delay(1e-10)
                if ctx.get(acc.o.valid) and ctx.get(acc.o.ready):
                    beats.append([int(x) for x in ctx.get(acc.o.payload).data])
                await ctx.tick()
                total[0] += 1
                if not ctx.get(acc.busy):
                    break
            if c.acc_last:
                result[c.m0 : c.m1, c.n0 : c.n1] = assemble(beats, c.m, c.n, R, C)

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    return result, total[0]
