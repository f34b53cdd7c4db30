"""The GEMM path in RTL (DMA + GEMM unit + scratchpad C) against the device model, on Icarus
and Verilator (``--sim``).

A small net (a padded 3 x 3 convolution, a strided 2 x 2 one whose input gradient goes
through col2im, an inner product; batch 2, stochastic rounding) is compiled for a 4 x 3
engine; every tensor of the model's DRAM gets random integers. A case is the LOAD, GEMM
and STORE instructions of one section of the program (a layer's forward or backward
pass), run by the :class:`~barista_hw.device.machine.Machine` and, pre-decoded, by the
RTL from the same DRAM image; every bus word of DRAM afterwards is compared. The
sections cover forward GEMMs with im2col LOADs, weight-gradient chains (ACC_FIRST ..
ACC_LAST, a transposed im2col), gradients over two images and a col2im STORE. Random
stalls hit every stream of the memory port and the commands.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.compiler import compile_net
from barista_hw.device.geometry import ConvGeometry, Space
from barista_hw.device.isa import ACC_FIRST, ACC_LAST, Op, Program, View
from barista_hw.device.layers import Conv
from barista_hw.device.machine import Machine
from barista_hw.device.memory import DeviceConfig
from barista_hw.device.rtl import gemm_path
from barista_hw.device.rtl.gemm_path import GemmPath, Unit
from barista_hw.device.traffic import instruction_counts
from barista_hw.numfmt import Rounding
from barista_hw.rtl import to_verilog
from sim.gemm_path_run import (
    BUS_BITS,
    PathResult,
    SectionRun,
    build,
    image_tensor,
    random_machine,
    run_cases,
    section_runs,
)
from sim.lint import lint

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=32, acc_depth=16)
CONFIG = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f", c_depth=64, v_depth=64)
STALL = 0.3
# (section, stalled): the first layer's forward pass, then the backward passes.
DEFAULT = [("conv/forward", True), ("conv2/backward", True), ("conv/backward", True)]
SLOW = [("conv/forward", False), ("conv2/forward", True), ("ip/forward", True)]
SLOW += [("ip/backward", True), ("conv2/backward", False)]


def _net() -> list:
    conv = Conv(
        "conv",
        "data",
        "c",
        4,
        geom=ConvGeometry(2, 4, 4, (3, 3), (1, 1), (1, 1)),
        bias=False,
        backward_data=False,
    )
    conv2 = Conv("conv2", "c", "c2", 3, geom=ConvGeometry(4, 4, 4, (2, 2), (2, 2)), bias=False)
    ip = Conv("ip", "c2", "out", 3, inputs=3 * 4, bias=False)
    return [conv, conv2, ip]


@functools.cache
def run_program() -> Program:
    """The compiled net (its sections are the cases)."""
    return compile_net(
        _net(),
        CONFIG,
        batch=2,
        inputs={"data": (2, 4, 4)},
        output="out",
        rounding=Rounding.STOCHASTIC,
        share=False,  # no tensor overlays another: DRAM holds every tensor's values
    ).program


def machine(seed: int = 5) -> Machine:
    """The model of the compiled net on random DRAM, in iteration 7 (the seeds mix it in)."""
    m = random_machine(run_program(), CONFIG, seed)
    m.iteration = 7
    return m


def _sections(spec: list[tuple[str, bool]]) -> list[tuple[str, float]]:
    return [(s, STALL if stalled else 0.0) for s, stalled in spec]


def _results(cache: dict, sim: str, key: str, spec: list) -> list[tuple[SectionRun, PathResult]]:
    if (key, sim) not in cache:
        try:
            runs = section_runs(machine(), _sections(spec))
            results = run_cases(build(sim, CONFIG), [r.case for r in runs], seed=3)
            cache[(key, sim)] = list(zip(runs, results, strict=True))
        except Exception as exc:  # reported by every test, built once
            cache[(key, sim)] = exc
    if isinstance(cache[(key, sim)], Exception):
        raise cache[(key, sim)]
    return cache[(key, sim)]


def _tensor_at(program: Program, word: int) -> dict | None:
    """The tensor whose bits bus word ``word`` holds (the first, at a shared word)."""
    for t in program.tensors:
        first = 8 * t["addr"]
        if first // BUS_BITS <= word <= (first + t["bits"] * math.prod(t["shape"]) - 1) // BUS_BITS:
            return t
    return None


def _check(run: SectionRun, res: PathResult, program: Program) -> None:
    assert not np.array_equal(run.case.image, run.expected), "the case changes no bit"
    assert len(res.cycles) == len(run.case.commands), "not every command ran"
    differ = np.flatnonzero(res.image != run.expected)
    if differ.size:
        t = _tensor_at(program, int(differ[0]))
        where = "no tensor"
        if t is not None:
            got, want = (image_tensor(program, x, t) for x in (res.image, run.expected))
            where = f"{t['name']!r}: elements {np.flatnonzero(got != want)[:8]}"
        pytest.fail(f"{run.case.name}: {differ.size} DRAM words differ, the first in {where}")


@pytest.mark.cocotb
@pytest.mark.parametrize("index", range(len(DEFAULT)), ids=[s for s, _ in DEFAULT])
def test_gemm_path_bit_exact(sim: str, index: int, sim_run_cache: dict) -> None:
    """A section's LOADs, GEMMs and STOREs leave DRAM as the model does, every bit."""
    run, res = _results(sim_run_cache, sim, "gemm_path", DEFAULT)[index]
    _check(run, res, run_program())


@pytest.mark.slow
@pytest.mark.cocotb
@pytest.mark.parametrize("index", range(len(SLOW)), ids=[f"{s}-{st}" for s, st in SLOW])
def test_gemm_path_bit_exact_more(sim: str, index: int, sim_run_cache: dict) -> None:
    """The other sections, and stall-free twins."""
    run, res = _results(sim_run_cache, sim, "gemm_path_slow", SLOW)[index]
    _check(run, res, run_program())


@pytest.mark.slow
@pytest.mark.cocotb
def test_gemm_cycles_meet_the_time_model(sim: str, sim_run_cache: dict) -> None:
    """Without stalls each GEMM takes the time model's cycles (its engine command), plus
    the cycle the path takes to hand the command over."""
    runs = _results(sim_run_cache, sim, "gemm_path_slow", SLOW)
    seen = 0
    for run, res in runs:
        if run.case.stall:
            continue
        for inst, cycles in zip(run.instructions, res.cycles, strict=True):
            if inst.op is Op.GEMM:
                seen += 1
                model = instruction_counts(inst, run_program(), CONFIG).cycles
                assert cycles <= model + 1, (inst.text(), cycles, model)
    assert seen


def test_cases_cover_chains_images_and_col2im() -> None:
    """The default cases hold what they claim: a GEMM chain, a GEMM over two images, a
    col2im STORE, a transposed im2col LOAD; each changes DRAM."""
    runs = section_runs(machine(), _sections(DEFAULT))
    insts = [i for r in runs for i in r.instructions]
    gemms = [i for i in insts if i.op is Op.GEMM]
    assert any(not i["mode"] & ACC_LAST for i in gemms)
    assert any(not i["mode"] & ACC_FIRST for i in gemms)
    assert any(i["images"] > 1 for i in gemms)
    assert any(i.op is Op.STORE and i.sub == View.IM2COL for i in insts)
    assert any(i.op is Op.LOAD and i.sub == View.IM2COL and i["flags"] & 1 for i in insts)
    assert all(not np.array_equal(r.case.image, r.expected) for r in runs)


def test_commands_go_to_their_units() -> None:
    """LOADs into A and B, STOREs from C and GEMMs each reach their unit; a GEMM needs its
    engine command and other instructions are refused."""
    program = run_program()
    want = {(Op.LOAD, Space.A): Unit.LOAD_A, (Op.LOAD, Space.B): Unit.LOAD_B}
    want[(Op.STORE, Space.C)] = Unit.STORE_C
    seen = set()
    for inst in program.instructions:
        if inst.op in (Op.LOAD, Op.STORE):
            unit = want[(inst.op, Space(inst["space"]))]
            assert gemm_path.command(inst, program, CONFIG)["unit"] == unit
            seen.add(unit)
    assert seen == set(want.values())
    gemm = next(i for i in program.instructions if i.op is Op.GEMM)
    with pytest.raises(InputError, match="needs its engine command"):
        gemm_path.command(gemm, program, CONFIG)
    vec = next(i for i in program.instructions if i.op is Op.VEC)
    with pytest.raises(InputError, match="runs LOAD, GEMM and STORE"):
        gemm_path.command(vec, program, CONFIG)


def test_gemm_path_verilog_is_lint_clean(tmp_path: Path) -> None:
    """``verilator --lint-only -Wall`` with the project's waivers."""
    path = tmp_path / "gemm_path.v"
    path.write_text(to_verilog(GemmPath(CONFIG), "gemm_path"))
    assert lint(path, "gemm_path") == []
