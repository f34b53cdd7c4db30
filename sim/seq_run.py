"""The sequencer's simulation: its build and a run of one device program (the pytest side
of :mod:`sim.seq_test`). Nothing is compared here: the tests compare with the program
and the time model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from barista_hw.device.isa import Op, Program
from barista_hw.device.rtl.sequencer import RECORD_BITS, UNITS, Sequencer

from .runner import UnitBuild, component_build, run_json_module

TEST_MODULE = "sim.seq_test"
CASES_ENV = "BARISTA_SEQ_CASES"  # read by sim.seq_test
RESULTS_ENV = "BARISTA_SEQ_RESULTS"


def build(sim: str, *, window: int = 64, depth: int = 8, keep: int = RECORD_BITS) -> UnitBuild:
    """Elaborate and compile the sequencer for ``sim`` (cached; race-safe)."""
    top = f"sequencer_w{window}_d{depth}_k{keep}"
    make = lambda: Sequencer(window=window, depth=depth, keep=keep)  # noqa: E731
    return component_build(make, top, f"window={window},depth={depth},keep={keep}", sim)


@dataclass
class SeqRun:
    """What a run left: per unit ``(token, take cycle, done cycle)`` in the order the unit
    took them and the records as it took them, the ``SCALE`` s taken ``(token, cycle)``,
    the sequencer's counters (``cycles`` and each unit's busy cycles) and the simulated
    cycles."""

    units: dict[str, list[tuple[int, int, int]]]
    records: dict[str, list[int]]
    scales: list[tuple[int, int]]
    counters: dict[str, int]
    sim_cycles: int


def run_program(
    unit: UnitBuild,
    program: Program,
    latency: Sequence[int],
    bus: Sequence[bool],
    *,
    stall: float = 0.0,
    tb_seed: int = 0,
) -> SeqRun:
    """Run ``program`` once, instruction ``i`` taking ``latency[i]`` cycles of its unit
    (and of the DRAM bus if ``bus[i]``); ``stall``: gaps before records and in the
    units' ``ready``."""
    n = len(program.instructions)
    if not n or len(latency) != n or len(bus) != n:
        raise ValueError(f"{n} instructions, {len(latency)} latencies, {len(bus)} bus flags")
    spec = {
        "records": [str(int.from_bytes(i.encode(), "little")) for i in program.instructions],
        "latency": [int(x) for x in latency],
        "bus": [bool(b) for b in bus],
        "units": list(UNITS),
        "own_ops": [int(Op.SYNC), int(Op.SCALE)],
        "stall": stall,
        "tb_seed": tb_seed,
        # Everything in a row, each waiting for the bus, stalled: generous.
        "max_cycles": int((sum(max(1, x) for x in latency) + 16 * n) / (1 - stall)) + 1000,
    }
    out = run_json_module(unit, TEST_MODULE, spec, (CASES_ENV, RESULTS_ENV))
    units = {u: [tuple(e) for e in log] for u, log in out["units"].items()}
    scales = [tuple(s) for s in out["scales"]]
    records = {u: [int(r) for r in rs] for u, rs in out["records"].items()}
    return SeqRun(units, records, scales, out["counters"], out["sim_cycles"])
