"""The host program of a GEMM: writes, commands, result beats, and the two host policies."""

from __future__ import annotations

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.accelerator import run_layout
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.host import HOSTS, NO_WAIT, GemmProgram, gemm_program
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.schedule import pack_a, pack_b, schedule_gemm

FMT = FixedFormat(8, 4, 24)
CFG = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=16, b_depth=16)
CMD = GemmCommand(shift=5, rounding=Rounding.STOCHASTIC, seed=17)
# (m, k, n, images): several output blocks; a reduction split inside an image; both.
CASES = [(5, 6, 9, 1), (2, 11, 3, 1), (7, 9, 8, 2)]


def _operands(m: int, k: int, n: int, images: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(m * 100 + n)
    return FMT.random_operands(rng, (m, k * images)), FMT.random_operands(rng, (k * images, n))


def _program(m: int, k: int, n: int, images: int, host: str = "overlap") -> GemmProgram:
    a, b = _operands(m, k, n, images)
    return gemm_program(CFG, a, b, GemmCommand(5, Rounding.STOCHASTIC, 17, images), host=host)


@pytest.mark.parametrize("m, k, n, images", CASES)
def test_each_chunk_writes_its_operands_then_runs_its_command(
    m: int, k: int, n: int, images: int
) -> None:
    a, b = _operands(m, k, n, images)
    cmd = GemmCommand(5, Rounding.STOCHASTIC, 17, images)
    prog = gemm_program(CFG, a, b, cmd)
    chunks = schedule_gemm(CFG, m, k, n, images)
    assert len(chunks) > 1 and [s.chunk for s in prog.steps] == chunks
    for s, c in zip(prog.steps, chunks, strict=True):
        want = []
        if c.write_a:
            want.append((0, c.a_base, pack_a(a[c.m0 : c.m1, c.kt0 : c.kt1], 2)))
        if c.write_b:
            want.append((1, c.b_base, pack_b(b[c.kt0 : c.kt1, c.n0 : c.n1], 3)))
        assert [(w.sel, w.base) for w in s.writes] == [(sel, base) for sel, base, _ in want]
        for w, (_, _, words) in zip(s.writes, want, strict=True):
            np.testing.assert_array_equal(w.words, words)
        assert s.command == cmd.chunk(c)
        assert s.fields == s.command.fields(run_layout(CFG))
        assert s.beats == (c.m * -(-c.n // 3) if c.acc_last else 0)
    assert prog.out_beats == m * -(-n // 3)
    assert prog.write_words == sum(s.write_words for s in prog.steps) > 0


def test_a_block_written_again_is_packed_once() -> None:
    prog = _program(7, 9, 8, 2)
    writes = [w for s in prog.steps for w in s.writes]
    keys = [(w.sel, w.words.tobytes()) for w in writes]
    repeated = [i for i in range(len(writes)) if keys[i] in keys[:i]]
    assert repeated, "the case should write some operand block twice"
    for i in repeated:
        assert writes[keys.index(keys[i])].words is writes[i].words


@pytest.mark.parametrize("m, k, n, images", CASES)
def test_overlap_writes_wait_for_the_last_reader_of_their_half(
    m: int, k: int, n: int, images: int
) -> None:
    prog = _program(m, k, n, images)
    assert prog.offer_with_last_write
    halves = (CFG.a_depth // 2, CFG.b_depth // 2)
    for i, s in enumerate(prog.steps):
        for w in s.writes:
            half = w.base >= halves[w.sel]
            bases = [(p.chunk.a_base, p.chunk.b_base)[w.sel] for p in prog.steps[:i]]
            readers = [j for j, base in enumerate(bases) if (base >= halves[w.sel]) == half]
            assert w.wait == (readers[-1] if readers else NO_WAIT)


def test_split_reductions_overlap_with_the_chunk_before() -> None:
    """Both operands are rewritten every chunk: a half's last reader is two chunks back."""
    prog = _program(2, 11, 3, 1)
    for i, s in enumerate(prog.steps):
        assert len(s.writes) == 2
        assert all(w.wait == (i - 2 if i >= 2 else NO_WAIT) for w in s.writes)


@pytest.mark.parametrize("m, k, n, images", CASES)
def test_serial_writes_wait_for_the_previous_chunk(m: int, k: int, n: int, images: int) -> None:
    prog = _program(m, k, n, images, host="serial")
    assert not prog.offer_with_last_write
    for i, s in enumerate(prog.steps):
        assert all(w.wait == i - 1 for w in s.writes)
    overlap = _program(m, k, n, images)
    assert [s.command for s in overlap.steps] == [s.command for s in prog.steps]


@pytest.mark.parametrize("m, k, n, images", CASES)
def test_placed_beats_give_the_result(m: int, k: int, n: int, images: int) -> None:
    """Beats in the engine's order (tiles row-major, the valid rows of each) of every block
    that ends a reduction, placed by the program, give the model's result."""
    a, b = _operands(m, k, n, images)
    cmd = GemmCommand(5, Rounding.STOCHASTIC, 17, images)
    prog = gemm_program(CFG, a, b, cmd)
    want = model.gemm_on_accelerator(a, b, CFG, cmd)
    result = prog.new_result()
    R, C = 2, 3
    for i, s in enumerate(prog.steps):
        c = s.chunk
        block = np.zeros((c.m, -(-c.n // C) * C), dtype=np.int64)
        block[:, : c.n] = want[c.m0 : c.m1, c.n0 : c.n1]
        beats = [
            block[r, tn * C : tn * C + C]
            for tm in range(0, c.m, R)
            for tn in range(-(-c.n // C))
            for r in range(tm, min(tm + R, c.m))
        ]
        prog.place(result, i, np.array(beats).reshape(-1, C)[: s.beats])
    np.testing.assert_array_equal(result, want)
    with pytest.raises(ValueError, match="result beats"):
        prog.place(result, len(prog.steps) - 1, np.zeros((prog.steps[-1].beats + 1, C)))


def test_bad_programs_are_input_errors() -> None:
    a, b = _operands(2, 3, 2, 1)
    assert HOSTS == ("overlap", "serial")
    with pytest.raises(InputError, match="conv1: unknown host protocol 'eager'"):
        gemm_program(CFG, a, b, CMD, host="eager", what="conv1")
    with pytest.raises(InputError, match="do not chain"):
        gemm_program(CFG, a, b[:2], CMD)
    with pytest.raises(InputError, match="do not chain"):
        gemm_program(CFG, a, b, GemmCommand(shift=1, images=2))
    with pytest.raises(InputError, match="ip1: field seed"):
        gemm_program(CFG, a, b, GemmCommand(shift=1, seed=1 << 40), what="ip1")
