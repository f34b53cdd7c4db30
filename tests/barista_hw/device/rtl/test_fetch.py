"""The program in DRAM: the host's image and the :class:`ProgramFetcher` on Icarus and
Verilator (``--sim``).

The fetcher reads runs of beats (75 bits: five 16-bit words, the last one part padding)
from a memory of random words, in bursts of 4 words (so bursts cross beats), with runs
back to back, the last flag on some; one case stall-free, one with random stalls on
every stream of the memory port, on ``start`` and on ``beats``, a slower memory. Every
beat (its bits and ``last``) is compared with the words in memory; the fetcher never
writes.
"""

from __future__ import annotations

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.device.rtl.decode import FETCH_ADDR, FETCH_RUN
from barista_hw.device.rtl.fetch import beat_words, image, program_base, start_writes
from sim.fetch_run import FetchCase

BEAT_BITS, BURST = 75, 4


def test_image_packs_beats_in_whole_bus_words() -> None:
    beats = [(1 << 74) | 0x1234, 0xABCD << 16]
    words = image(beats, BEAT_BITS)
    assert beat_words(BEAT_BITS) == 5 and words.size == 10
    assert list(words) == [0x1234, 0, 0, 0, 1 << 10, 0, 0xABCD, 0, 0, 0]
    with pytest.raises(InputError, match="beat 0 has bits past its 75"):
        image([1 << 75], BEAT_BITS)


def test_program_base_and_start_writes() -> None:
    assert program_base(0) == 0 and program_base(1) == 16 and program_base(32) == 32
    writes = start_writes(64, 3, 2, 5, last=True)
    assert writes == [(FETCH_ADDR, 64 + 15), (FETCH_RUN, 2 | 1 << 31)]
    with pytest.raises(InputError, match="a fetch run of 0 beats"):
        start_writes(64, 0, 0, 5)


def _cases() -> tuple[list[FetchCase], list[list[int]]]:
    rng = np.random.default_rng(11)
    memory = rng.integers(0, 1 << 16, 400)
    n = beat_words(BEAT_BITS)
    cases, want = [], []
    for stall, latency in ((0.0, 2), (0.3, 5)):
        runs = [(3, 1, False), (40, 7, False), (40 + 7 * n, 2, True), (200, 30, True)]
        expect = []
        for addr, count, last in runs:
            for k in range(count):
                w = memory[addr + k * n : addr + (k + 1) * n]
                beat = sum(int(x) << (16 * i) for i, x in enumerate(w)) & ((1 << BEAT_BITS) - 1)
                expect.append(beat | int(last and k == count - 1) << BEAT_BITS)
        cases.append(FetchCase(memory, runs, stall, latency))
        want.append(expect)
    return cases, want


@pytest.mark.slow
def test_fetcher_reads_runs_of_beats_from_memory(sim: str) -> None:
    from sim.fetch_run import build, run

    cases, want = _cases()
    got = run(build(sim, BEAT_BITS, BURST), BEAT_BITS, cases, seed=3)
    for c, g, w in zip(cases, got, want, strict=True):
        assert g.writes == 0
        assert len(g.beats) == len(w)
        bad = [i for i, (a, b) in enumerate(zip(g.beats, w, strict=True)) if a != b]
        assert not bad, f"stall {c.stall}: beats {bad[:5]} differ of {len(w)}"
        assert max(g.lengths) <= BURST
        assert sum(g.lengths) == beat_words(BEAT_BITS) * len(w)
