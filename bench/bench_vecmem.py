"""VecMem's cycles per VEC instruction of a compiled net against the time model.

Runs the compiled test net's VEC instructions (those of
``tests/barista_hw/device/rtl/test_vecmem.py``) through the Verilated unit (3 lanes,
16-bit port, read latency 3, no stalls, the default staging rings) and prints, per
instruction: the measured cycles, the time model's (``traffic.instruction_counts``: the
SDRAM at twice the unit's clock, two bus words a unit cycle) and the same model with the
unit at the SDRAM's clock (one bus word a cycle: what a 16-bit port at the unit's clock
can move). Usage: ``python bench/bench_vecmem.py`` from the repository.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from barista_hw.device import traffic  # noqa: E402
from barista_hw.device.rtl.vecmem import command  # noqa: E402
from sim.vecmem_run import VecCase, build, run_cases  # noqa: E402
from tests.barista_hw.device.rtl.test_vecmem import CONFIG, LANES, SPECS, WIDTH  # noqa: E402


def main() -> None:
    specs = [s for s in SPECS if s.name.startswith("program")]
    cases = []
    for s in specs:
        m = s.machine()
        fields = command(s.inst, s.program, m.scales, rnd=s.rounder(), width=WIDTH,
                         scalars=s.scalars)  # fmt: skip
        cases.append(VecCase(s.name, fields, s.image(m, s.background())))
    results = run_cases(build("verilator", LANES), LANES, cases)
    one_word = dataclasses.replace(
        CONFIG, accelerator=CONFIG.accelerator.derive(clock_mhz=CONFIG.dram.clock_mhz)
    )
    print("| instruction | measured | model | ratio | model, one word a cycle | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for s, r in zip(specs, results, strict=True):
        model = traffic.instruction_counts(s.inst, s.program, CONFIG).cycles
        slow = traffic.instruction_counts(s.inst, s.program, one_word).cycles
        print(f"| {s.name} | {r.cycles} | {model} | {r.cycles / model:.2f} | {slow} | "
              f"{r.cycles / slow:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
