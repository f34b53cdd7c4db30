"""A GEMM program as the C++ host of the Verilated accelerator takes it: flat arrays, one call.

:func:`flatten` turns a :class:`barista_hw.host.GemmProgram` into a :class:`Program`
of C-contiguous arrays (the commands' field values, the write segments with the
chunk each waits for, the operand words, the beats and cycle budget of each
chunk); :class:`CProgram` is the C struct ``BsProgram`` of ``sim/driver/driver.cpp``
that points at them and at the arrays the driver fills. The program is handed
over whole, so there is one call per pass and no Python per cycle.
"""

from __future__ import annotations

import ctypes
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig
from barista_hw.host import HOSTS, GemmProgram, gemm_program
from barista_hw.plan import command_cycles
from barista_hw.schedule import Chunk


@dataclass
class Program:
    """One GEMM pass as the C++ host runs it (arrays are C-contiguous int64 unless noted)."""

    gemm: GemmProgram
    cmd: np.ndarray  # (chunks, fields) in run_layout order
    chunk_seg: np.ndarray  # (chunks, 2): [first, end) segment of each chunk
    expect: np.ndarray  # (chunks,) o beats each chunk emits
    budget: np.ndarray  # (chunks,) cycles from acceptance to busy low
    segs: np.ndarray  # (segments, 5): sel, base, first word, count, wait chunk
    words: np.ndarray  # (words, lanes) int32 operand words, each block once

    @property
    def chunks(self) -> list[Chunk]:
        return [s.chunk for s in self.gemm.steps]

    @property
    def serial(self) -> bool:
        """The C++ host offers a command only the cycle after its last write."""
        return not self.gemm.offer_with_last_write

    @property
    def write_beats(self) -> int:
        return int(self.segs[:, 3].sum()) if len(self.segs) else 0


def flatten(gemm: GemmProgram, margin: float = 4.0) -> Program:
    """The arrays of ``gemm``; each chunk's cycle budget is the stall-free cycle model
    (:func:`barista_hw.plan.command_cycles`) times ``margin``."""
    cfg = gemm.cfg
    lanes = max(cfg.engine.rows, cfg.engine.cols)  # the write port's data lanes
    steps = gemm.steps
    cmd = np.array([list(s.fields.values()) for s in steps], dtype=np.int64)
    chunk_seg = np.zeros((len(steps), 2), dtype=np.int64)
    segs: list[tuple[int, int, int, int, int]] = []
    blocks: list[np.ndarray] = []
    first: dict[int, int] = {}  # id of a block's words -> its first word (stored once)
    n_words = 0
    for i, s in enumerate(steps):
        chunk_seg[i] = (len(segs), len(segs) + len(s.writes))
        for w in s.writes:
            if id(w.words) not in first:
                first[id(w.words)] = n_words
                block = np.zeros((len(w.words), lanes), dtype=np.int32)
                block[:, : w.words.shape[1]] = w.words
                blocks.append(block)
                n_words += len(block)
            segs.append((w.sel, w.base, first[id(w.words)], len(w.words), w.wait))
    budget = [int(_cycles(cfg, s.chunk, s.command.raw) * margin) for s in steps]
    words = np.concatenate(blocks) if blocks else np.zeros((0, lanes), dtype=np.int32)
    return Program(
        gemm=gemm,
        cmd=cmd,
        chunk_seg=chunk_seg,
        expect=np.array([s.beats for s in steps], dtype=np.int64),
        budget=np.array(budget, dtype=np.int64),
        segs=np.array(segs, dtype=np.int64).reshape(-1, 5),
        words=np.ascontiguousarray(words, dtype=np.int32),
    )


def _cycles(cfg: AcceleratorConfig, c: Chunk, raw: bool = False) -> int:
    return command_cycles(cfg.engine, c.m, c.n, c.kt, acc_last=c.acc_last, raw=raw)


def make_program(
    cfg: AcceleratorConfig,
    a: np.ndarray,
    b: np.ndarray,
    cmd: GemmCommand,
    *,
    host: str = HOSTS[0],
    margin: float = 4.0,
    what: str = "GEMM",
    blocks: Collection[int] | None = None,
) -> Program:
    """The program of ``a @ b`` on ``cfg`` (:func:`barista_hw.host.gemm_program`; with
    ``blocks``, of those output blocks only), flattened."""
    return flatten(gemm_program(cfg, a, b, cmd, host=host, what=what, blocks=blocks), margin)


class CProgram(ctypes.Structure):
    """``BsProgram`` of ``driver.cpp``: the program, the run's options, the output arrays."""

    _fields_ = [
        ("n_chunks", ctypes.c_int64),
        ("cmd", ctypes.c_void_p),
        ("chunk_seg", ctypes.c_void_p),
        ("expect", ctypes.c_void_p),
        ("budget", ctypes.c_void_p),
        ("n_segs", ctypes.c_int64),
        ("segs", ctypes.c_void_p),
        ("n_words", ctypes.c_int64),
        ("words", ctypes.c_void_p),
        ("serial", ctypes.c_int64),
        ("o_stall", ctypes.c_double),
        ("wr_gap", ctypes.c_double),
        ("stall_seed", ctypes.c_int64),
        ("max_cycles", ctypes.c_int64),
        ("accept_budget", ctypes.c_int64),
        ("trace_path", ctypes.c_char_p),
        ("fatal_at", ctypes.c_int64),
        ("out_cap", ctypes.c_int64),
        ("out_data", ctypes.c_void_p),
        ("out_last", ctypes.c_void_p),
        ("chunk_accept", ctypes.c_void_p),
        ("chunk_done", ctypes.c_void_p),
        ("chunk_beats", ctypes.c_void_p),
        ("result", ctypes.c_void_p),
        ("message", ctypes.c_char_p),
        ("message_len", ctypes.c_int64),
    ]


@dataclass
class Outputs:
    """The arrays the C++ host fills during one run of a program."""

    data: np.ndarray  # (beats, o lanes) int32: the ``o`` data, in arrival order
    last: np.ndarray  # (beats,) uint8: ``o.last`` of each beat
    accept: np.ndarray  # (chunks,) edge that accepted each command
    done: np.ndarray  # (chunks,) edge after which each command's ``busy`` was low
    beats: np.ndarray  # (chunks,) ``o`` beats seen while each chunk ran
    result: np.ndarray  # edges, beats, failing chunk, write beats, ``cycles`` port
    message: ctypes.Array  # the error text

    @classmethod
    def for_program(cls, prog: Program, lanes: int) -> Outputs:
        cap = max(int(prog.expect.sum()), 1)
        n = len(prog.expect)
        return cls(
            data=np.zeros((cap, lanes), dtype=np.int32),
            last=np.zeros(cap, dtype=np.uint8),
            accept=np.zeros(n, dtype=np.int64),
            done=np.zeros(n, dtype=np.int64),
            beats=np.zeros(n, dtype=np.int64),
            result=np.zeros(8, dtype=np.int64),
            message=ctypes.create_string_buffer(1024),
        )


def c_program(
    prog: Program,
    out: Outputs,
    budget: np.ndarray,
    *,
    max_cycles: int,
    o_stall: float,
    wr_gap: float,
    stall_seed: int,
    trace: bytes | None,
    fatal_at: int,
) -> CProgram:
    """The struct of one run: ``prog`` with the cycle ``budget`` of each chunk, the run's
    options and ``out`` (every array must stay alive until the call returns)."""
    for arr in (prog.cmd, prog.chunk_seg, prog.expect, prog.segs, prog.words, budget):
        assert arr.flags.c_contiguous
    return CProgram(
        n_chunks=len(prog.expect),
        cmd=prog.cmd.ctypes.data,
        chunk_seg=prog.chunk_seg.ctypes.data,
        expect=prog.expect.ctypes.data,
        budget=budget.ctypes.data,
        n_segs=len(prog.segs),
        segs=prog.segs.ctypes.data,
        n_words=len(prog.words),
        words=prog.words.ctypes.data,
        serial=int(prog.serial),
        o_stall=o_stall,
        wr_gap=wr_gap,
        stall_seed=stall_seed,
        max_cycles=max_cycles,
        accept_budget=int(budget.max(initial=0)) + 16,
        trace_path=trace,
        fatal_at=fatal_at,
        out_cap=int(prog.expect.sum()),
        out_data=out.data.ctypes.data,
        out_last=out.last.ctypes.data,
        chunk_accept=out.accept.ctypes.data,
        chunk_done=out.done.ctypes.data,
        chunk_beats=out.beats.ctypes.data,
        result=out.result.ctypes.data,
        message=ctypes.cast(out.message, ctypes.c_char_p),
        message_len=len(out.message),
    )
