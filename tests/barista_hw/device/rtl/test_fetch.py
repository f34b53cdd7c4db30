"""The program in DRAM: the host's image and the :class:`ProgramFetcher` on Icarus and
Verilator (``--sim``).

The fetcher reads runs of beats (75 bits: five 16-bit words; opcodes 1, 2 and 3 take 1,
3 and 5 words, opcode 4 none listed: all 5) from an image of random beats, in bursts of
4 words (so bursts cross beats), runs back to back, the last flag on some; one case
stall-free, one with random stalls on every stream of the memory port, on ``start`` and
on ``beats``, a slower memory. Every beat (its bits and ``last``) is compared with the
image's; the fetcher never writes and reads each word of a run once.

The time model's charge for the fetch (:func:`~barista_hw.device.timing.schedule` with
:func:`~barista_hw.device.rtl.device.fetch_model`) against the device top's measured cycles.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.device.emit import UNIT
from barista_hw.device.memory import LinkConfig
from barista_hw.device.rtl.decode import FETCH_ADDR, FETCH_RUN
from barista_hw.device.rtl.device import fetch_model
from barista_hw.device.rtl.fetch import ProgramFetcher, image, program_base, start_writes
from barista_hw.device.timing import Fetch, schedule
from barista_hw.device.traffic import program_counts
from sim.device_cases import CONFIG, program
from sim.fetch_run import FetchCase

BEAT_BITS, BURST = 75, 4
LENGTHS = {1: 1, 2: 3, 3: 5}


def test_image_packs_beats_in_the_words_their_opcode_takes() -> None:
    beats = [(1 << 74) | 0x1203, 0xABCD << 16 | 2, 0x0401]
    words, offsets = image(beats, BEAT_BITS, LENGTHS)
    assert offsets == [0, 5, 8, 9]
    assert list(words) == [0x1203, 0, 0, 0, 1 << 10, 2, 0xABCD, 0, 0x0401]
    with pytest.raises(InputError, match="beat 0 .opcode 1. has bits past its 1 bus words"):
        image([1 << 16 | 1], BEAT_BITS, LENGTHS)
    with pytest.raises(InputError, match="beat lengths"):
        ProgramFetcher(BEAT_BITS, lengths={1: 6})


def test_program_base_and_start_writes() -> None:
    assert program_base(0) == 0 and program_base(1) == 16 and program_base(32) == 32
    assert start_writes(79, 10, last=True) == [(FETCH_ADDR, 79), (FETCH_RUN, 10 | 1 << 31)]
    with pytest.raises(InputError, match="a fetch run of 0 words"):
        start_writes(64, 0)


def _beats(rng: np.random.Generator, n: int) -> list[int]:
    """``n`` random beats, each with random bits up to its opcode's length."""
    out = []
    for _ in range(n):
        op = int(rng.integers(1, 5))
        bits = min(BEAT_BITS, 16 * LENGTHS.get(op, 5))
        high = int(rng.integers(0, 1 << 62)) << 62 | int(rng.integers(0, 1 << 62))
        out.append((high << 8 | op) & ((1 << bits) - 1))
    return out


def _cases() -> tuple[list[FetchCase], list[list[int]]]:
    rng = np.random.default_rng(11)
    beats = _beats(rng, 60)
    words, offsets = image(beats, BEAT_BITS, LENGTHS)
    base = 21  # not aligned: the fetcher takes any address
    memory = rng.integers(0, 1 << 16, base + words.size + 9)
    memory[base : base + words.size] = words
    cases, want = [], []
    for stall, latency in ((0.0, 2), (0.3, 5)):
        spans = [(0, 1, False), (1, 8, False), (9, 11, True), (11, 60, True)]
        runs, expect = [], []
        for first, end, last in spans:
            at = base + offsets[first]
            runs.append((at, offsets[end] - offsets[first], last))
            expect += beats[first:end]
            expect[-1] |= int(last) << BEAT_BITS
        cases.append(FetchCase(memory, runs, len(expect), stall, latency))
        want.append(expect)
    return cases, want


@pytest.mark.slow
def test_fetcher_reads_runs_of_beats_from_memory(sim: str) -> None:
    from sim.fetch_run import build, run

    cases, want = _cases()
    got = run(build(sim, BEAT_BITS, LENGTHS, BURST), cases, seed=3)
    for c, g, w in zip(cases, got, want, strict=True):
        assert g.writes == 0
        assert len(g.beats) == len(w)
        bad = [i for i, (a, b) in enumerate(zip(g.beats, w, strict=True)) if a != b]
        assert not bad, f"stall {c.stall}: beats {bad[:5]} differ of {len(w)}"
        assert max(g.lengths) <= BURST
        assert sum(g.lengths) == sum(r[1] for r in c.runs)


# The device tests' net on the Verilated top (``bench/bench_device_rtl.py``, its memory:
# latency 2, a word a cycle; 2026-12-07, with the im2col stage buffer and ``prog`` of
# register writes): each iteration's cycles with the records fetched, and the units' port
# words an iteration: the memory's 58,114 words read in the two iterations less the
# fetched image (25,219 words an iteration), plus its 3,244 written.
MEASURED_FETCHED = (31_114, 31_214)
MEASURED_UNIT_WORDS = (58_114 - 2 * 25_219 + 3_244) // 2


def _fast_timing(fetch: Fetch | None):  # noqa: ANN202 - a Timing
    prog = program()
    fast = dataclasses.replace(CONFIG, link=LinkConfig(baud=300_000_000))  # no UART in RTL
    return schedule(prog, program_counts(prog, fast), CONFIG.accelerator.clock_mhz, fetch)


def test_time_model_charges_the_fetch_as_the_top_does() -> None:
    """The test net's iteration with its records fetched (:func:`fetch_model`) is within
    5% of the top's measured cycles; not charging the fetch is 3x off. The port words the
    model gives the units are the memory's count."""
    prog = program()
    fetched, plain = _fast_timing(fetch_model(prog, CONFIG)), _fast_timing(None)
    for measured in MEASURED_FETCHED:
        assert abs(measured / fetched.cycles - 1) <= 0.05, (measured, fetched.cycles)
        assert measured / plain.cycles > 3
    words = sum(c.port_words for c in program_counts(prog, CONFIG).per_instruction)
    assert abs(words / MEASURED_UNIT_WORDS - 1) < 1e-3
    assert fetched.busy == plain.busy  # the fetch delays the units; it adds them no work


def test_a_fetched_record_waits_for_its_beat_and_its_units_room() -> None:
    """Beats of one word and unbounded intakes cost a few cycles an instruction; long
    beats bound the iteration below by their words; a unit whose intake holds a record
    until it is done holds the fetch behind it."""
    prog = program()
    n, plain = len(prog.instructions), _fast_timing(None).cycles
    quick = Fetch(words=[1] * n, queue={}, decode=0, issue=0, latency=0)
    assert plain <= _fast_timing(quick).cycles <= plain + 3 * n
    long = dataclasses.replace(quick, words=[100] * n)
    assert _fast_timing(long).cycles >= 100 * n
    held = dataclasses.replace(quick, held=frozenset(UNIT.values()))
    assert _fast_timing(held).cycles > _fast_timing(quick).cycles
    with pytest.raises(ValueError, match="1 beats for"):
        _fast_timing(dataclasses.replace(quick, words=[1]))
