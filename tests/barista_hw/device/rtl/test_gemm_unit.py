"""The GEMM unit's pre-decode, its checks and its Verilog (its bits are proven through the
GEMM path against the device model: ``test_gemm_path.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.geometry import Space
from barista_hw.device.isa import ACC_FIRST, ACC_LAST, Instruction, Op, Program
from barista_hw.device.machine import Machine
from barista_hw.device.memory import DeviceConfig
from barista_hw.device.rtl.gemm_unit import GemmUnit, command
from barista_hw.device.rtl.scratchpad import SpadGeometry, geometry
from barista_hw.numfmt import Rounding
from barista_hw.rtl import to_verilog
from barista_hw.schedule import block_seed
from sim.lint import lint

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=32, acc_depth=16)
CONFIG = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f", c_depth=64, v_depth=64)
C_GEOM = geometry(CONFIG, Space.C)


def _gemm(**over: int) -> Instruction:
    fields = dict(m=5, k=7, n=4, images=2, desc=0, mode=2 | ACC_LAST, seed=99, block=3)
    fields.update(a_base=16, b_base=8, c_base=32)
    fields.update(over)
    return Instruction(Op.GEMM, fields=fields)


def _machine() -> Machine:
    tensors = [
        {"name": n, "role": "activation", "shape": [4], "bits": 16, "dram": 4 * i, "addr": 8 * i}
        for i, n in enumerate(("a", "b", "y"))
    ]
    program = Program(tensors=tensors, descriptors=[{"a": "a", "b": "b", "out": "y"}])
    m = Machine(program, CONFIG)
    m.scales.set_frac("y", 5)
    m.iteration = 3
    return m


def test_command_carries_the_instruction_and_the_models_shift_and_seed() -> None:
    m = _machine()
    m.write("a", [1, 2, 3, 4], 9)
    m.write("b", [1, 2, 3, 4], 11)
    inst = _gemm()
    gemm = m.gemm_command(inst)
    assert gemm.shift == 9 + 11 - 5
    assert gemm.rounding is Rounding.STOCHASTIC
    assert gemm.seed != block_seed(99, 3)  # the iteration is mixed in
    fields = command(inst, gemm, ACC, C_GEOM)
    for name in ("m", "k", "n", "images", "a_base", "b_base", "c_base"):
        assert fields[name] == inst[name], name
    assert (fields["shift"], fields["seed"], fields["rounding"]) == (15, gemm.seed, 2)
    assert (fields["acc_first"], fields["acc_last"]) == (0, 1)
    first = command(_gemm(mode=ACC_FIRST), gemm, ACC, C_GEOM)
    assert (first["acc_first"], first["acc_last"]) == (1, 0)


def test_commands_the_unit_does_not_run_are_refused() -> None:
    gemm = _machine().gemm_command(_gemm())
    with pytest.raises(InputError, match="runs GEMM, not SYNC"):
        command(Instruction(Op.SYNC), gemm, ACC, C_GEOM)
    # 5 rows x 2 column tiles = 10 words from word 60 pass C's 64
    with pytest.raises(InputError, match="overflows scratchpad C's 64"):
        command(_gemm(c_base=60), gemm, ACC, C_GEOM)
    with pytest.raises(InputError, match="field a_base = 40 does not fit"):
        command(_gemm(a_base=40), gemm, ACC, C_GEOM)
    with pytest.raises(InputError, match="writes words of 3 lanes of 16 bits"):
        GemmUnit(ACC, SpadGeometry(4, 16, 64))


def test_gemm_unit_verilog_is_lint_clean(tmp_path: Path) -> None:
    """``verilator --lint-only -Wall`` with the project's waivers."""
    path = tmp_path / "gemm_unit.v"
    path.write_text(to_verilog(GemmUnit(ACC, C_GEOM), "gemm_unit"))
    assert lint(path, "gemm_unit") == []
