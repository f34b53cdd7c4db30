"""A GEMM program flattened for the C++ host: segments, shared words, commands, budgets."""

from __future__ import annotations

import numpy as np
import pytest

from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.host import gemm_program
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.plan import command_cycles
from sim.verilator_program import flatten, make_program

FMT = FixedFormat(8, 4, 24)
CFG = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=16, b_depth=16)


def _operands(m: int, kt: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(m + kt + n)
    return FMT.random_operands(rng, (m, kt)), FMT.random_operands(rng, (kt, n))


@pytest.mark.parametrize("host", ["overlap", "serial"])
def test_arrays_hold_the_program(host: str) -> None:
    a, b = _operands(7, 18, 8)
    cmd = GemmCommand(shift=4, rounding=Rounding.STOCHASTIC, seed=3, images=2)
    gemm = gemm_program(CFG, a, b, cmd, host=host)
    prog = flatten(gemm, margin=2.0)
    assert prog.serial == (host == "serial") and prog.chunks == [s.chunk for s in gemm.steps]
    assert prog.cmd.tolist() == [list(s.fields.values()) for s in gemm.steps]
    assert prog.expect.tolist() == [s.beats for s in gemm.steps]
    for i, s in enumerate(gemm.steps):
        first, end = prog.chunk_seg[i]
        assert end - first == len(s.writes)
        c = s.chunk
        cycles = command_cycles(CFG.engine, c.m, c.n, c.kt, acc_last=c.acc_last)
        assert prog.budget[i] == int(2.0 * cycles)
        for row, w in zip(prog.segs[first:end], s.writes, strict=True):
            sel, base, word, count, wait = row.tolist()
            assert (sel, base, count, wait) == (w.sel, w.base, len(w.words), w.wait)
            lanes = w.words.shape[1]
            np.testing.assert_array_equal(prog.words[word : word + count, :lanes], w.words)
            assert not prog.words[word : word + count, lanes:].any()  # unused lanes zero
    # A block written twice is stored once: fewer words than written.
    assert len(prog.words) < prog.write_beats == gemm.write_words
    assert prog.words.shape[1] == 3 and prog.words.dtype == np.int32
    for arr in (prog.cmd, prog.chunk_seg, prog.expect, prog.budget, prog.segs, prog.words):
        assert arr.flags.c_contiguous


def test_make_program_is_the_flattened_host_program() -> None:
    a, b = _operands(5, 6, 9)
    cmd = GemmCommand(shift=2)
    prog = make_program(CFG, a, b, cmd, host="serial", margin=3.0)
    again = flatten(gemm_program(CFG, a, b, cmd, host="serial"), margin=3.0)
    for name in ("cmd", "chunk_seg", "expect", "budget", "segs", "words"):
        np.testing.assert_array_equal(getattr(prog, name), getattr(again, name))
