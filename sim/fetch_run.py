"""The program fetcher (:class:`~barista_hw.device.rtl.fetch.ProgramFetcher`) in
simulation: its build and its runs.

A case is a memory of bus words and a list of runs (``addr``, ``count``, ``last``); the
bench (:mod:`sim.fetch_test`) starts each run once the fetcher is idle, plays the memory
with :class:`sim.port_model.PortMemory` and takes the beats with random gaps. Nothing is
compared here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from barista_hw.device.rtl.fetch import ProgramFetcher, start_layout
from barista_hw.device.rtl.port import ADDR_BITS, LEN_BITS

from .runner import UnitBuild, component_build, run_json_module

__all__ = ["FetchCase", "FetchResult", "build", "run"]

TEST_MODULE = "sim.fetch_test"
CASES_ENV = "BARISTA_FETCH_CASES"  # read by sim.fetch_test
RESULTS_ENV = "BARISTA_FETCH_RESULTS"
BUS_BITS = 16


def build(sim: str, beat_bits: int, lengths: dict[int, int], burst: int) -> UnitBuild:
    """The fetcher of ``beat_bits`` beats, ``lengths`` (opcode -> words) and
    ``burst``-word bursts for ``sim`` (cached)."""
    top = f"fetch_{beat_bits}_b{burst}"
    make = lambda: ProgramFetcher(beat_bits, BUS_BITS, lengths=lengths, burst=burst)  # noqa: E731
    return component_build(make, top, f"{beat_bits} {lengths} {burst}", sim)


@dataclass
class FetchCase:
    """Runs of beats read from ``memory``; ``stall``: gaps on every stream, both sides
    of the port and the beats; ``latency``: the memory's."""

    memory: np.ndarray
    runs: list[tuple[int, int, bool]]  # (word address, words, last)
    beats: int  # in all the runs
    stall: float = 0.0
    latency: int = 2


@dataclass
class FetchResult:
    """The beats taken (payload: beat and last), the memory's read commands' lengths, and
    whether any write command came."""

    beats: list[int]
    lengths: list[int]
    writes: int
    cycles: int


def _start(addr: int, words: int, last: bool) -> int:
    fields = {"addr": addr, "words": words, "last": int(last)}
    return start_layout().const(fields).as_value().value


def run(unit: UnitBuild, cases: list[FetchCase], *, seed: int = 0) -> list:
    """Run ``cases`` one after another in one simulation; a :class:`FetchResult` each."""
    spec = {
        "addr_bits": ADDR_BITS,
        "len_bits": LEN_BITS,
        "seed": seed,
        "cases": [
            {
                "memory": [int(w) for w in c.memory],
                "starts": [str(_start(*r)) for r in c.runs],
                "beats": c.beats,
                "stall": c.stall,
                "latency": c.latency,
                "max_cycles": int(
                    (200 + 4 * sum(r[1] for r in c.runs) * (c.latency + 2)) * (1 + 10 * c.stall)
                ),
            }
            for c in cases
        ],
    }
    out = run_json_module(unit, TEST_MODULE, spec, (CASES_ENV, RESULTS_ENV))
    return [
        FetchResult([int(b) for b in r["beats"]], r["lengths"], r["writes"], r["cycles"])
        for r in out["cases"]
    ]
