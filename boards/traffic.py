"""What a training iteration costs on the UART host link, counted from the schedule.

:class:`~boards.host.BoardLink` runs every GEMM as the serial host program of
:mod:`barista_hw.host`: per chunk, WRITE frames of at most
:data:`~boards.protocol.MAX_WORDS` buffer words, one RUN, READ frames for the result
beats of a chunk that ends a block, and STATUS until the accelerator is idle. This
module counts those frames' bytes for a GEMM or a whole planned iteration without
running anything (one STATUS per chunk, the fewest there can be), so the end-to-end
time of a host-driven accelerator can be printed beside the array's own: on a
1 Mbaud line the link, not the array, sets the pace. The count is in closed form from
the schedule's tiling, not chunk by chunk: a big net's GEMM has millions of chunks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from barista_hw.config import AcceleratorConfig
from barista_hw.plan import NetPlan
from barista_hw.schedule import (
    DEFAULT_OPTIONS,
    ScheduleOptions,
    chunk_limit,
    reduction_pattern,
    tiling,
)
from barista_hw.targets import LINK_RESULT_DEPTH

from . import protocol as P


@dataclass(frozen=True)
class Traffic:
    """Bytes on the line in each direction and requests made (retries not counted)."""

    to_board: int = 0
    from_board: int = 0
    requests: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.to_board + other.to_board,
            self.from_board + other.from_board,
            self.requests + other.requests,
        )

    def __mul__(self, times: int) -> Traffic:
        return Traffic(self.to_board * times, self.from_board * times, self.requests * times)

    @property
    def bytes(self) -> int:
        return self.to_board + self.from_board

    def seconds(self, baud: int) -> float:
        """Time on a line of ``baud`` that carries one direction at a time, as the host's
        request-then-answer exchange does."""
        return self.bytes * P.BITS_PER_BYTE / baud


def _exchange(request_payload: int, response_payload: int) -> Traffic:
    """One request and its answer."""
    return Traffic(P.request_bytes(request_payload), P.response_bytes(response_payload), 1)


def _framed(units: int, per_frame: int, unit_bytes: int, *, read: bool) -> Traffic:
    """``units`` words written (or result beats read, ``read``) in frames of at most
    ``per_frame``: full frames, then the rest."""
    full, rest = divmod(units, per_frame)

    def frame(count: int) -> Traffic:
        payload = count * unit_bytes
        return _exchange(0, payload) if read else _exchange(payload, 0)

    return frame(per_frame) * full + (frame(rest) if rest else Traffic())


def _edges(size: int, block: int, blocks: int) -> list[tuple[int, int]]:
    """(how many, extent) of the blocks of ``block`` that cut ``size``: the full ones,
    then the ragged last one."""
    last = size - (blocks - 1) * block
    return [(blocks - 1, block), (1, last)] if last != block else [(blocks, block)]


def gemm_traffic(
    cfg: AcceleratorConfig,
    m: int,
    k: int,
    n: int,
    images: int = 1,
    *,
    result_depth: int = LINK_RESULT_DEPTH,
    max_words: int = P.MAX_WORDS,
    options: ScheduleOptions = DEFAULT_OPTIONS,
) -> Traffic:
    """The frames :meth:`boards.host.BoardLink.gemm` exchanges for ``A (m x images*k) @ B``
    (which runs the default ``options``), per chunk of
    :func:`~barista_hw.schedule.schedule_gemm`, counted from its tiling.

    Blocks differ only at the ragged M and N edges, and reduction pieces only in length,
    so each (block class, piece length) is counted once and multiplied by how many share
    it; every piece of an operand is loaded ``reads_a`` / ``reads_b`` times
    (:class:`~barista_hw.schedule.Tiling`). Raises what :func:`tiling` raises.
    """
    geo = P.LinkGeometry.from_config(cfg, result_depth)
    t = tiling(cfg, m, k, n, images, options=options)
    period, reps = reduction_pattern(k * images, k, images, chunk_limit(cfg, options.limit))
    pieces = Counter(period)  # piece length -> how many in one period
    rows_m = _edges(m, t.block_m, t.blocks_m)
    cols_n = _edges(n, t.block_n, t.blocks_n)
    total = (_exchange(geo.run_bytes, 0) + _exchange(0, P.STATUS_LEN)) * t.chunks
    for edges, lanes, word_bytes, loads in (
        (rows_m, cfg.engine.rows, geo.a_word_bytes, t.reads_a),
        (cols_n, cfg.engine.cols, geo.b_word_bytes, t.reads_b),
    ):
        for blocks, extent in edges:
            tiles = -(-extent // lanes)
            for kt, count in pieces.items():
                one = _framed(tiles * kt, max_words, word_bytes, read=False)
                total = total + one * (blocks * count * reps * loads)
    step, cols = geo.read_step(max_words), cfg.engine.cols
    for blocks_m, rows in rows_m:
        for blocks_n, width in cols_n:
            beats = rows * -(-width // cols)
            total = total + _framed(beats, step, geo.beat_bytes, read=True) * (blocks_m * blocks_n)
    return total


def iteration_traffic(plan: NetPlan, *, result_depth: int = LINK_RESULT_DEPTH) -> Traffic:
    """The link traffic of every pass of a planned training iteration."""
    total = Traffic()
    for p in plan.passes:
        w = p.workload
        one = gemm_traffic(plan.config, w.m, w.k, w.n, w.images, result_depth=result_depth)
        total = total + one * w.groups
    return total


def describe(plan: NetPlan, baud: int = P.DEFAULT_BAUD, mhz: float | None = None) -> str:
    """Two labelled lines: one iteration on the array alone (one buffer word per cycle) and
    end to end through the UART host link at ``baud`` (the array at ``mhz``)."""
    mhz = plan.config.clock_mhz if mhz is None else mhz
    array = plan.cycles / (mhz * 1e6)
    traffic = iteration_traffic(plan)
    total = array + traffic.seconds(baud)
    return (
        f"array alone (one buffer word per cycle): {array * 1e3:.3f} ms per iteration, "
        f"{plan.batch / array:.1f} images/s\n"
        f"end to end over the UART host link at {baud:,} baud: {total:.1f} s per iteration, "
        f"{plan.batch / total:.3g} images/s ({traffic.to_board / 1e6:.1f} MB to the board, "
        f"{traffic.from_board / 1e6:.1f} MB back)"
    )
