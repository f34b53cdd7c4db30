"""Measured cycles per DMA and VEC instruction of the RTL against the time model.

Runs, stall-free on a light memory (one word a cycle, read latency ``--latency``), the
first and last LOAD and STORE of every kind of compiled programs on the RTL DMA
(``tests/barista_hw/device/rtl/test_dma.py``: its fixed net and ``--nets`` nets of random
convolution geometries in fx16, the fixed net and sub-tiles in fx12) and the VEC
instructions of a compiled net on VecMem (``test_vecmem.py``'s, 3 lanes, the RTL's
staging rings), and prints per instruction the RTL's cycles, the time model's
(:func:`~barista_hw.device.traffic.dma_port` for a DMA instruction: the port's
side, as the bench's memory has no SDRAM; ``instruction_counts`` for a VEC) and their
ratio, then per kind the totals and the worst instruction. The device's own figure (the
model with its SDRAM term, ``instruction_counts``) is printed beside the DMA's.

    python bench/bench_unit_cycles.py [--sim icarus] [--nets 3] [--latency 3] [--no-vec]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from barista_base.errors import InputError  # noqa: E402
from barista_hw.device import traffic  # noqa: E402
from barista_hw.device.geometry import Space  # noqa: E402
from barista_hw.device.isa import Op, View  # noqa: E402
from barista_hw.device.vector import VecOp  # noqa: E402

Row = tuple[str, str, int, int, str]  # kind, name, RTL, model, device figure


def dma_kind(inst) -> str:  # noqa: ANN001 - an Instruction
    """Opcode, view, space, transposed."""
    view = "col2im" if inst.op is Op.STORE and inst.sub == View.IM2COL else View(inst.sub).name
    t = ".T" if inst["flags"] & 1 else ""
    return f"{inst.op.name}.{view.lower()}.{Space(inst['space']).name}{t}"


def dma_rows(sim: str, nets: int, latency: int) -> list[Row]:
    from sim.dma_run import build, run_cases
    from tests.barista_hw.device.rtl import test_dma as t

    rng = np.random.default_rng(2026)
    fx16 = t.program_specs()
    for i in range(nets):
        try:
            specs = t.program_specs(net=t.random_net(rng))
        except InputError as exc:  # a tile past the bench's scratchpads
            print(f"  (random net {i} skipped: {exc})")
            continue
        for s in specs:
            s.name = f"net{i}-{s.name}"
        fx16 += specs
    groups = [
        ("fx16", t.GEOM, t.ACC_DEPTH, t.CONFIG, fx16),
        ("fx12", t.GEOM12, 0, t.CONFIG12, t.SPECS12),
    ]
    rows = []
    for fmt, geom, acc, config, specs in groups:
        cases = [s.case(0.0, latency) for s in specs]
        design = build(sim, geom, acc_depth=acc, stage_depth=t.STAGE)
        results = run_cases(design, cases, seed=1)
        for s, r in zip(specs, results, strict=True):
            model = t.port_model_cycles(s, config, latency)
            device = traffic.instruction_counts(s.inst, s.program, config).cycles
            rows.append((f"{fmt} {dma_kind(s.inst)}", s.name, r.cycles, model, str(device)))
    return rows


def vec_rows(sim: str, latency: int) -> list[Row]:
    from barista_hw.device.rtl.vecmem import command
    from sim.vecmem_run import VecCase, build, run_cases
    from tests.barista_hw.device.rtl.test_vecmem import CONFIG, LANES, SPECS, WIDTH

    specs = [s for s in SPECS if s.name.startswith("program")]
    cases = []
    for s in specs:
        m = s.machine()
        fields = command(s.inst, s.program, m.scales, rnd=s.rounder(), width=WIDTH,
                         scalars=s.scalars)  # fmt: skip
        cases.append(VecCase(s.name, fields, s.image(m, s.background()), latency=latency))
    rows = []
    for s, r in zip(specs, run_cases(build(sim, LANES), LANES, cases), strict=True):
        device = traffic.instruction_counts(s.inst, s.program, CONFIG).cycles
        model = device + latency - CONFIG.read_latency  # the bench's read latency
        rows.append((f"VEC.{VecOp(s.inst.sub).name}", s.name, r.cycles, model, str(device)))
    return rows


def report(rows: list[Row]) -> None:
    print("| instruction | kind | RTL | model | RTL/model | device model |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, name, rtl, model, device in rows:
        print(f"| {name} | {kind} | {rtl} | {model} | {rtl / model:.3f} | {device} |")
    kinds: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        kinds[row[0]].append(row)
    print("\n| kind | instructions | RTL | model | RTL/model | worst | within 5% |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for kind, rs in sorted(kinds.items()):
        rtl, model = sum(r[2] for r in rs), sum(r[3] for r in rs)
        worst = max((r[2] / r[3] for r in rs), key=lambda x: abs(x - 1))
        ok = "yes" if all(abs(r[2] / r[3] - 1) <= 0.05 for r in rs) else "no"
        print(f"| {kind} | {len(rs)} | {rtl} | {model} | {rtl / model:.3f} | {worst:.3f} | {ok} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim", default="icarus", choices=["icarus", "verilator"])
    parser.add_argument("--nets", type=int, default=3, help="random fx16 nets (default 3)")
    parser.add_argument("--latency", type=int, default=3, help="memory read latency")
    parser.add_argument("--no-vec", action="store_true", help="DMA instructions only")
    args = parser.parse_args()
    rows = dma_rows(args.sim, args.nets, args.latency)
    if not args.no_vec:
        rows += vec_rows(args.sim, args.latency)
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
