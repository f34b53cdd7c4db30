"""OperandBuffer: banks, read latency, and reads against writes, against a Python model (pysim)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from barista_hw.buffer import BANK_DEPTH, GROUP_BITS, READ_LATENCY, OperandBuffer, bank_depths


def test_bank_depths() -> None:
    assert bank_depths(8192) == [BANK_DEPTH] * 4
    assert bank_depths(1000) == [1000]
    assert bank_depths(2 * BANK_DEPTH + 5) == [BANK_DEPTH, BANK_DEPTH, 5]


@pytest.mark.parametrize(
    "width, depth", [(16, 300), (16, 2 * BANK_DEPTH + 100), (GROUP_BITS + 16, BANK_DEPTH + 8)]
)
def test_reads_return_the_words_written(width: int, depth: int) -> None:
    """Every read returns, READ_LATENCY cycles later, the last word written before its cycle
    (words wider than a group, too: each group of bits is a memory of its own)."""
    dut = OperandBuffer(width, depth)
    rng = np.random.default_rng(depth)
    # Addresses near the bank edges, and some repeated so reads hit fresh writes.
    edges = [a for b in range(0, depth, BANK_DEPTH) for a in (b, b + 1, b - 1) if 0 <= a < depth]
    pool = np.array(edges + list(rng.integers(0, depth, 40)))
    steps = [
        (
            bool(rng.random() < 0.5),
            int(rng.choice(pool)),
            int.from_bytes(rng.bytes(-(-width // 8))) % (1 << width),
            int(rng.choice(pool)),
        )
        for _ in range(600)
    ]
    mem: dict[int, int] = {}
    expected: list[int | None] = []
    for w_en, w_addr, w_data, r_addr in steps:
        expected.append(mem.get(r_addr))  # the old word, also when written in this cycle
        if w_en:
            mem[w_addr] = w_data
    got: list[int] = []

    async def bench(ctx) -> None:  # noqa: ANN001
        for w_en, w_addr, w_data, r_addr in steps + [(False, 0, 0, 0)] * READ_LATENCY:
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_addr, w_addr)
            ctx.set(dut.w_data, w_data)
            ctx.set(dut.r_addr, r_addr)
            await ctx.tick()
            got.append(ctx.get(dut.r_data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # The word read in cycle i is out after READ_LATENCY clock edges.
    out = got[READ_LATENCY - 1 : READ_LATENCY - 1 + len(steps)]
    checked = 0
    for i, (want, have) in enumerate(zip(expected, out, strict=True)):
        if want is not None:  # never-written words are undefined
            assert have == want, f"read {i} of address {steps[i][3]}: {have} != {want}"
            checked += 1
    assert checked > 300
