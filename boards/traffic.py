"""What a training iteration costs on the UART host link, counted from the schedule.

:class:`~boards.host.BoardLink` runs every GEMM as the serial host program of
:mod:`barista_hw.host`: per chunk, WRITE frames of at most
:data:`~boards.protocol.MAX_WORDS` buffer words, one RUN, READ frames for the result
beats of a chunk that ends a block, and STATUS until the accelerator is idle. This
module counts those frames' bytes for a GEMM or a whole planned iteration without
running anything (one STATUS per chunk, the fewest there can be), so the end-to-end
time of a host-driven accelerator can be printed beside the array's own: on a
1 Mbaud line the link, not the array, sets the pace.
"""

from __future__ import annotations

from dataclasses import dataclass

from barista_hw.config import AcceleratorConfig
from barista_hw.plan import NetPlan
from barista_hw.schedule import schedule_gemm
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


def _frames(count: int, per_frame: int) -> list[int]:
    return [min(per_frame, count - i) for i in range(0, count, per_frame)]


def gemm_traffic(
    cfg: AcceleratorConfig,
    m: int,
    k: int,
    n: int,
    images: int = 1,
    *,
    result_depth: int = LINK_RESULT_DEPTH,
    max_words: int = P.MAX_WORDS,
) -> Traffic:
    """The frames :meth:`boards.host.BoardLink.gemm` exchanges for ``A (m x images*k) @ B``."""
    geo = P.LinkGeometry.from_config(cfg, result_depth)
    rows, cols = cfg.engine.rows, cfg.engine.cols
    to_board = from_board = requests = 0

    def exchange(request_payload: int, response_payload: int) -> None:
        nonlocal to_board, from_board, requests
        to_board += P.request_bytes(request_payload)
        from_board += P.response_bytes(response_payload)
        requests += 1

    for c in schedule_gemm(cfg, m, k, n, images):
        kt = c.kt1 - c.kt0
        for write, words, word_bytes in (
            (c.write_a, -(-(c.m1 - c.m0) // rows) * kt, geo.a_word_bytes),
            (c.write_b, -(-(c.n1 - c.n0) // cols) * kt, geo.b_word_bytes),
        ):
            for count in _frames(words, max_words) if write else ():
                exchange(count * word_bytes, 0)
        exchange(geo.run_bytes, 0)
        if c.acc_last:
            for count in _frames(c.m * -(-c.n // cols), geo.read_step(max_words)):
                exchange(0, count * geo.beat_bytes)
        exchange(0, P.STATUS_LEN)
    return Traffic(to_board, from_board, requests)


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
