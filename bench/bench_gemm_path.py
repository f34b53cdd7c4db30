"""Measured cycles of the RTL GEMM path (DMA + GEMM unit) against the time model.

Compiles a small net (a first convolution, a second whose input gradient goes through
col2im, an inner product; batch 2) for a 4 x 3 fx16 engine, runs the LOAD, GEMM and
STORE instructions of the chosen sections on the cocotb-simulated
:class:`~barista_hw.device.rtl.gemm_path.GemmPath` without stalls (memory read latency
``--latency``) and prints, per instruction, the cycles from its command being taken to
the path's idle, the cycles the time model gives it
(:func:`~barista_hw.device.traffic.instruction_counts`; a GEMM's is
:func:`~barista_hw.device.traffic.command_cycles`) and the memory port's work in that span
(commands, words read and written), then totals per opcode and per DMA command kind, with
the bus words the model counts (:func:`~barista_hw.device.traffic.packed_transfer`): on a
16-bit port at one word a cycle those words are a floor the RTL cannot beat, while the
model moves two a cycle (its SDRAM runs at twice the accelerator's clock). The DRAM left
is checked against the device model (a mismatch stops the script).

    python bench/bench_gemm_path.py [--sim verilator] [--sections conv/forward,...] [--all]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from barista_hw.config import DEFAULT_ACCELERATOR  # noqa: E402
from barista_hw.device.compiler import compile_net  # noqa: E402
from barista_hw.device.geometry import ConvGeometry  # noqa: E402
from barista_hw.device.isa import Instruction, Op, Program, View  # noqa: E402
from barista_hw.device.layers import Conv  # noqa: E402
from barista_hw.device.memory import DeviceConfig  # noqa: E402
from barista_hw.device.traffic import (  # noqa: E402
    dram_tensor,
    instruction_counts,
    packed_transfer,
    tile_index,
)
from sim.gemm_path_run import build, random_machine, run_cases, section_runs  # noqa: E402

SECTIONS = ["conv/forward", "conv2/forward", "ip/forward", "ip/backward", "conv2/backward"]
SECTIONS += ["conv/backward"]


def kind(inst: Instruction) -> str:
    """A DMA instruction's kind: opcode, view, transposed."""
    return f"{inst.op.name}.{View(inst.sub).name.lower()}{'.T' if inst['flags'] & 1 else ''}"


def model_words(inst: Instruction, program: Program, config: DeviceConfig) -> int:
    """The bus words the time model moves for a LOAD or STORE (a col2im STORE reads and
    writes its words; a STORE also reads its part-covered ones)."""
    t = dram_tensor(inst, program)
    col2im = inst.op is Op.STORE and inst.sub == View.IM2COL
    store = inst.op is Op.STORE and not col2im
    index = tile_index(inst, program)
    tr = packed_transfer(t, index, inst["dram"] - t["dram"], config, store=store)
    return tr.words * (2 if col2im else 1) + tr.merged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--latency", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="print every instruction, not only GEMMs")
    args = ap.parse_args()
    acc = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=32, acc_depth=16)
    config = DeviceConfig.for_accelerator(acc, target="ulx3s-85f", c_depth=64, v_depth=64)
    g = ConvGeometry(2, 4, 4, (3, 3), (1, 1), (1, 1))
    conv = Conv("conv", "data", "c", 4, geom=g, bias=False, backward_data=False)
    conv2 = Conv("conv2", "c", "c2", 3, geom=ConvGeometry(4, 4, 4, (2, 2), (2, 2)), bias=False)
    ip = Conv("ip", "c2", "out", 3, inputs=12, bias=False)
    program = compile_net(
        [conv, conv2, ip], config, batch=2, inputs={"data": (2, 4, 4)}, output="out", share=False
    ).program
    sections = [(s, 0.0) for s in args.sections.split(",")]
    runs = section_runs(random_machine(program, config), sections)
    for r in runs:
        r.case.latency = args.latency
    results = run_cases(build(args.sim, config), [r.case for r in runs])
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    print(f"{args.sim}, memory latency {args.latency}, no stalls; cycles: RTL vs time model")
    print("(port: memory commands / words read / words written in the instruction's span)")
    for run, res in zip(runs, results, strict=True):
        if not np.array_equal(res.image, run.expected):
            raise SystemExit(f"{run.case.name}: DRAM differs from the device model")
        print(f"-- {run.case.name}")
        for inst, rtl, port in zip(run.instructions, res.cycles, res.port, strict=True):
            model = instruction_counts(inst, program, config).cycles
            t = totals[inst.op.name]
            t[0], t[1], t[2] = t[0] + 1, t[1] + rtl, t[2] + model
            note = ""
            if inst.op is not Op.GEMM:
                words = model_words(inst, program, config)
                k = kinds[kind(inst)]
                for i, v in enumerate((1, rtl, model, words, port[1] + port[2])):
                    k[i] += v
                note = f"  port {port[0]:3d}/{port[1]:3d}/{port[2]:3d}  model words {words:3d}"
            if args.all or inst.op is Op.GEMM:
                text = f"{inst.text():<90.90}"
                print(f"{text} rtl {rtl:5d}  model {model:5d}  {rtl / model:5.2f}x{note}")
    for op, (n, rtl, model) in totals.items():
        print(f"{op:<6} {n:4d} instructions: rtl {rtl:7d} model {model:7d} ({rtl / model:.2f}x)")
    print("per DMA kind: instructions, RTL cycles, model cycles, model words, port words")
    for k, (n, rtl, model, words, moved) in sorted(kinds.items()):
        print(
            f"{k:<16} {n:3d}  rtl {rtl:6d}  model {model:6d} ({rtl / model:.2f}x)"
            f"  model words {words:5d}  port words {moved:5d}"
        )


if __name__ == "__main__":
    main()
