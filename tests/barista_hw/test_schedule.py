"""The accelerator's GEMM schedule: loop orders and operand residency (``schedule_gemm``)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.command import GemmCommand
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.numfmt import Rounding
from barista_hw.schedule import (
    Chunk,
    ScheduleOptions,
    block_rects,
    schedule_gemm,
    share_blocks,
    tiling,
)

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=64, acc_depth=16)
SHAPES = [(7, 9, 8, 2), (30, 20, 5, 1), (5, 3, 40, 4), (13, 40, 13, 1), (9, 5, 37, 3)]
OPTIONS = [
    ScheduleOptions(lim, tm, tn, s, r)
    for s, r, lim, tm, tn in itertools.product("ab", (False, True), (None, 8), (None, 1), (None, 2))
]


def _check_buffers(chunks: list[Chunk], rows: int, cols: int) -> None:
    """Replay the buffers: every GEMM finds its own pieces where it reads them, and no load
    overwrites words the chunk before it reads (the engine may still be running it)."""
    for side, lanes in (("a", rows), ("b", cols)):
        words: dict[int, tuple[int, int, int]] = {}
        before: set[int] = set()
        for c in chunks:
            lo, hi = (c.m0, c.m1) if side == "a" else (c.n0, c.n1)
            base = c.a_base if side == "a" else c.b_base
            span = range(base, base + -(-(hi - lo) // lanes) * c.kt)
            if c.write_a if side == "a" else c.write_b:
                assert not before & set(span), (side, c)
                words.update({w: (lo, c.kt0, c.kt1) for w in span})
            assert all(words.get(w) == (lo, c.kt0, c.kt1) for w in span), (side, c)
            before = set(span)


@pytest.mark.parametrize("shape", SHAPES)
def test_loads_counted_by_the_tiling_and_buffers_hold_what_each_gemm_reads(shape) -> None:
    m, k, n, images = shape
    kt = k * images
    for opts in OPTIONS:
        t = tiling(ACC, m, k, n, images, options=opts)
        chunks = schedule_gemm(ACC, m, k, n, images, options=opts)
        loaded_a = sum((c.m1 - c.m0) * c.kt for c in chunks if c.write_a)
        loaded_b = sum((c.n1 - c.n0) * c.kt for c in chunks if c.write_b)
        assert (loaded_a, loaded_b) == (t.reads_a * m * kt, t.reads_b * n * kt), opts
        _check_buffers(chunks, ACC.engine.rows, ACC.engine.cols)
        # every output element is in exactly one block, whose chunks cover the reduction
        cover = np.zeros((m, n), dtype=int)
        for c in chunks:
            cover[c.m0 : c.m1, c.n0 : c.n1] += c.kt
        assert (cover == kt).all()


def test_reuse_loads_a_split_stationary_operand_once() -> None:
    """A block of one tile keeps its whole reduction (24 words) in half of A (32 words):
    with ``reuse`` it is loaded once, not once for each of the row's three blocks."""
    m, k, n = 8, 24, 9  # Kt 24 > limit 8: three chunks
    plain = tiling(ACC, m, k, n, options=ScheduleOptions(8, 1, 1))
    kept = tiling(ACC, m, k, n, options=ScheduleOptions(8, 1, 1, reuse=True))
    assert plain.k_chunks == 3 and plain.blocks_n > 1
    assert (plain.reads_a, kept.reads_a) == (plain.blocks_n, 1)


def test_column_order_keeps_b_and_pins_two_blocks_of_a() -> None:
    m, k, n = 16, 8, 30  # A: 2 blocks of 2 tiles x 8 words; B: 5 blocks
    row_order = tiling(ACC, m, k, n, options=ScheduleOptions(tiles_m=2, reuse=True))
    col_order = tiling(ACC, m, k, n, options=ScheduleOptions(tiles_m=2, stationary="b", reuse=True))
    assert (row_order.reads_a, row_order.reads_b) == (1, 2)
    assert (col_order.reads_a, col_order.reads_b) == (1, 1)


@pytest.mark.parametrize("rounding", [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC])
def test_order_and_residency_do_not_change_the_result(rounding: Rounding) -> None:
    """Blocks keep their numbers (seeds) in either order, and chunks sum at full width."""
    rng = np.random.default_rng(3)
    m, k, n, images = 13, 10, 11, 3
    a = rng.integers(-300, 300, (m, k * images))
    b = rng.integers(-300, 300, (k * images, n))
    cmd = GemmCommand(7, rounding, 77, images)  # sums of 30 products: no saturation
    blocks = ScheduleOptions(limit=8, tiles_m=1, tiles_n=2)  # 4 x 2 blocks
    want = model.gemm_on_accelerator(a, b, ACC, cmd, blocks)
    for s, r in itertools.product("ab", (False, True)):
        got = model.gemm_on_accelerator(a, b, ACC, cmd, replace(blocks, stationary=s, reuse=r))
        np.testing.assert_array_equal(got, want)
        split = model.gemm_on_accelerator(a, b, ACC, cmd, replace(blocks, limit=4, stationary=s))
        np.testing.assert_array_equal(split, want)  # the reduction split changes no bit


# -- shares of a data-parallel GEMM --------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("parts", [1, 2, 3, 5])
def test_shares_cover_every_block_once_in_runs_of_columns(shape, parts: int) -> None:
    t = tiling(ACC, *shape)
    shares = share_blocks(t, parts)
    assert len(shares) == parts
    flat = [b for share in shares for b in share]
    column_major = sorted(flat, key=lambda b: (b % t.blocks_n, b // t.blocks_n))
    assert flat == column_major and sorted(flat) == list(range(t.blocks_m * t.blocks_n))
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("shape", SHAPES)
def test_a_share_schedules_its_blocks_as_the_whole_gemm_does(shape) -> None:
    """Same block numbers (seeds), bounds and reduction chunks; buffers placed afresh."""
    whole = schedule_gemm(ACC, *shape)
    for share in share_blocks(tiling(ACC, *shape), 2):
        part = schedule_gemm(ACC, *shape, blocks=share)
        fields = ("block", "m0", "m1", "n0", "n1", "kt0", "kt1", "k", "images", "acc_last")
        key = [tuple(getattr(c, f) for f in fields) for c in part]
        assert key == [tuple(getattr(c, f) for f in fields) for c in whole if c.block in share]
        _check_buffers(part, ACC.engine.rows, ACC.engine.cols)
        rects = block_rects(ACC, *shape, share)
        assert rects == [(c.m0, c.m1, c.n0, c.n1) for c in part if c.acc_last]


@pytest.mark.parametrize("rounding", [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC])
def test_shares_of_the_model_put_together_are_the_whole_result(rounding: Rounding) -> None:
    rng = np.random.default_rng(5)
    m, k, n, images = 13, 10, 11, 3
    a = rng.integers(-300, 300, (m, k * images))
    b = rng.integers(-300, 300, (k * images, n))
    cmd = GemmCommand(7, rounding, 99, images)
    opts = ScheduleOptions(limit=8, tiles_m=1, tiles_n=2)  # 4 x 2 blocks, reduction split
    want = model.gemm_on_accelerator(a, b, ACC, cmd, opts)
    got = np.full_like(want, -1)
    for share in share_blocks(tiling(ACC, m, k, n, images, options=opts), 3):
        part = model.gemm_on_accelerator(a, b, ACC, cmd, opts, blocks=share)
        for block in share:
            i, j = divmod(block, 2)
            rows, cols = slice(i * 4, (i + 1) * 4), slice(j * 6, (j + 1) * 6)
            got[rows, cols] = part[rows, cols]
    np.testing.assert_array_equal(got, want)


def test_mx_reduction_chunks_align_to_blocks() -> None:
    """An MX engine's chunks start at multiples of its block, across images too; a limit
    below one block is refused."""
    from barista_hw.schedule import reduction_chunks

    assert reduction_chunks(100, 100, 1, 40, 32) == [
        (0, 32, 32, 1),
        (32, 64, 32, 1),
        (64, 96, 32, 1),
        (96, 100, 4, 1),
    ]
    assert reduction_chunks(150, 50, 3, 64, 32) == [
        (0, 64, 64, 1),
        (64, 128, 64, 1),
        (128, 150, 22, 1),
    ]
    assert reduction_chunks(60, 20, 3, 64, 32) == [(0, 60, 20, 3)]  # fits: one command
    with pytest.raises(InputError, match="multiples of the MX block"):
        reduction_chunks(100, 100, 1, 20, 32)
