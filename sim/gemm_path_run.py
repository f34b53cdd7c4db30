"""The GEMM path's simulation: its build, the DRAM image of a program, and runs of cases.

* :func:`build` elaborates :class:`~barista_hw.device.rtl.gemm_path.GemmPath` for a device
  configuration (memories read ``x`` on a collision, as :func:`sim.runner.engine_verilog`)
  and compiles it for Icarus or Verilator, cached like the other units' builds;
* :func:`dram_image` / :func:`image_tensor`: a program's tensors packed into DRAM bus
  words at their width from their byte address (:func:`~barista_hw.device.memory.pack_stream`),
  and one read back;
* :func:`random_machine` is a device model on random DRAM; :func:`section_runs` makes the
  case of each of a program's sections (its LOADs, GEMMs and STOREs), running them on
  the model for the DRAM they must leave;
* :func:`run_cases` runs :class:`PathCase` s (a DRAM image and the commands of a run of
  instructions) back to back in one simulation of :mod:`sim.gemm_path_test`, the memory
  played by :class:`sim.port_model.PortMemory`.

Nothing is compared here: the tests compare with the device model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from barista_hw.device.isa import Instruction, Op, Program
from barista_hw.device.machine import Machine
from barista_hw.device.memory import DeviceConfig, PortConfig, pack_stream, unpack_stream
from barista_hw.device.rtl import gemm_path
from barista_hw.device.rtl.gemm_path import GemmPath
from barista_hw.device.rtl.port import ADDR_BITS, LEN_BITS
from barista_hw.device.traffic import section_names

from .runner import UnitBuild, component_build, run_json_module

TEST_MODULE = "sim.gemm_path_test"
CASES_ENV = "BARISTA_GEMM_PATH_CASES"  # read by sim.gemm_path_test
RESULTS_ENV = "BARISTA_GEMM_PATH_RESULTS"
BUS_BITS = PortConfig.bits  # the memory port's word


def build(sim: str, config: DeviceConfig, *, max_burst: int = 16) -> UnitBuild:
    """Elaborate and compile the GEMM path of ``config`` for ``sim`` (cached; race-safe)."""
    e = config.accelerator.engine
    top = f"gemm_path_{e.rows}x{e.cols}_b{max_burst}"
    make = lambda: GemmPath(config, bus_bits=BUS_BITS, max_burst=max_burst)  # noqa: E731
    return component_build(make, top, f"{config!r} burst {max_burst}", sim)


def dram_image(program: Program, dram: np.ndarray) -> np.ndarray:
    """The bus words of DRAM holding every tensor of ``program`` with the values the model's
    slots ``dram`` give it; tensors must not overlap (compile with ``share=False``)."""
    ends = [8 * t["addr"] + math.prod(t["shape"]) * t["bits"] for t in program.tensors]
    image = np.zeros(-(-max(ends) // BUS_BITS), dtype=np.int64)
    for t in program.tensors:
        n, first = math.prod(t["shape"]), 8 * t["addr"]
        values = dram[t["dram"] : t["dram"] + n]
        words = pack_stream(values, t["bits"], BUS_BITS, first).astype(np.int64)
        w0 = first // BUS_BITS
        image[w0 : w0 + words.size] |= words  # the tensors' bits are disjoint
    return image


def image_tensor(program: Program, image: np.ndarray, t: dict) -> np.ndarray:
    """Tensor ``t``'s elements (signed) read from the bus words ``image``."""
    return unpack_stream(image, t["bits"], math.prod(t["shape"]), BUS_BITS, 8 * t["addr"])


@dataclass
class PathCase:
    """Commands (packed :func:`~barista_hw.device.rtl.gemm_path.command` s) run in order on
    the DRAM ``image``; ``stall``: the probability of a gap on every stream of the
    memory port and before each command; ``latency``: the memory's read latency."""

    name: str
    commands: list[int]
    image: np.ndarray
    stall: float = 0.0
    latency: int = 3


@dataclass
class PathResult:
    """What a case left: DRAM afterwards, each command's cycles (offer to idle) and the
    memory port's work in them (commands, words read, words written)."""

    case: PathCase
    image: np.ndarray
    cycles: list[int]
    port: list[list[int]]


@dataclass
class SectionRun:
    """One section's case, the DRAM the model leaves, and its instructions (case order)."""

    case: PathCase
    expected: np.ndarray
    instructions: list[Instruction]


def random_machine(program: Program, config: DeviceConfig, seed: int = 0) -> Machine:
    """The device model of ``program`` with random integers in every DRAM tensor (an eighth
    of each width's range, so sums have room and some GEMM results still saturate) and the
    16-bit ones at exponent 10 (a GEMM of two shifts by 12 to the default 8)."""
    m = Machine(program, config)
    rng = np.random.default_rng(seed)
    for t in program.tensors:
        lim = 1 << (t["bits"] - 3)
        m.write(t["name"], rng.integers(-lim, lim, t["shape"]), 10 if t["bits"] == 16 else 0)
    return m


def section_runs(machine: Machine, sections: Sequence[tuple[str, float]]) -> list[SectionRun]:
    """For each ``(section, stall)`` in turn, the LOAD, GEMM and STORE instructions of that
    section of ``machine``'s program: their commands (a GEMM's from the model's state when it
    runs), DRAM before them, and DRAM after the model ran them (it runs nothing else)."""
    program, config = machine.program, machine.config
    names = section_names(program)
    out = []
    for section, stall in sections:
        insts = [
            i
            for s, i in zip(names, program.instructions, strict=True)
            if s == section and i.op in (Op.LOAD, Op.GEMM, Op.STORE)
        ]
        before = dram_image(program, machine.dram)
        commands = []
        for inst in insts:
            gemm = machine.gemm_command(inst) if inst.op is Op.GEMM else None
            fields = gemm_path.command(inst, program, config, gemm)
            commands.append(gemm_path.pack_command(fields, config))
            machine.execute(inst)
        name = f"{section}{'-stalled' if stall else ''}"
        case = PathCase(name, commands, before, stall)
        out.append(SectionRun(case, dram_image(program, machine.dram), insts))
    return out


def run_cases(unit: UnitBuild, cases: Sequence[PathCase], *, seed: int = 0) -> list[PathResult]:
    """Run ``cases`` back to back in one simulation; results in case order."""
    header = {
        "addr_bits": ADDR_BITS,
        "len_bits": LEN_BITS,
        "seed": seed,
        "cases": [
            {
                "commands": [str(c) for c in case.commands],
                "memory": [int(w) & ((1 << BUS_BITS) - 1) for w in case.image],
                "stall": case.stall,
                "latency": case.latency,
                # a command's words, each waiting the latency and its stalls: generous
                "max_cycles": int(20000 * (case.latency + 2) * (1 + 10 * case.stall)),
            }
            for case in cases
        ],
    }
    out = run_json_module(unit, TEST_MODULE, header, (CASES_ENV, RESULTS_ENV))
    return [
        PathResult(c, np.array(r["memory"], dtype=np.int64), r["cycles"], r["port"])
        for c, r in zip(cases, out["cases"], strict=True)
    ]
