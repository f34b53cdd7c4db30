"""The host's program of one GEMM on an :class:`~barista_hw.accelerator.Accelerator`.

Every host of the accelerator's streams runs the same :class:`GemmProgram`, made
by :func:`gemm_program`: the Amaranth simulator (:func:`sim.pysim.run_accelerator`),
the C++ host of the Verilated library (:mod:`sim.verilator_driver`) and the board's
UART link (:meth:`boards.host.BoardLink.gemm`). For each chunk of
:func:`~barista_hw.schedule.schedule_gemm`, in order, a :class:`Step` says

* the buffer writes it needs (:class:`Write`: buffer, base address, operand words
  packed by :func:`~barista_hw.schedule.pack_a` / ``pack_b``) and which earlier
  chunk each must wait for;
* its command (:class:`~barista_hw.command.EngineCommand`, and its checked
  ``run_layout`` field values);
* how many result beats it emits; :meth:`GemmProgram.place` puts them into the
  ``(m, n)`` result (for a ``raw`` command, the accumulators it read out).

Host policies (``host=``), which decide the waits. Every host writes at most one
word per cycle, in program order, holds a command valid until it is accepted (the
accelerator takes one only while idle) and keeps ``o`` ready unless it stalls.

* ``"overlap"`` (double buffering, the default): a write into a buffer half waits
  for the last chunk that reads that half to finish (``busy`` fell), so the next
  chunk's operands stream in while a chunk runs; a command is offered in the cycle
  of its last write. This is the host of the cycle model in :mod:`barista_hw.plan`.
  It may run a write ahead of an earlier command still waiting to be accepted when
  the write's half is free, and is just as safe: a half is only overwritten after
  every chunk that reads it has finished.
* ``"serial"``: a chunk's writes wait for the previous chunk to finish, and its
  command is offered the cycle after its last write. Simple, and safe by
  construction; a host without cycle control (the board link) runs this one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from barista_base.errors import InputError

from .accelerator import run_layout
from .command import EngineCommand, GemmCommand
from .config import AcceleratorConfig
from .intmath import join_raw, output_beats
from .schedule import Chunk, pack_a, pack_b, schedule_gemm

#: The host policies (module docstring); the first is the default.
HOSTS = ("overlap", "serial")
NO_WAIT = -1  # a write that waits for no chunk


@dataclass(frozen=True)
class Write:
    """Operand words into one buffer: ``words[i]`` goes to address ``base + i``.

    ``sel`` is the ``sel`` of the write stream (0: buffer A, ``rows`` lanes; 1: buffer
    B, ``cols`` lanes). The first word may go in only once chunk ``wait`` has
    finished (:data:`NO_WAIT`: at once). A block written again is the same array.
    """

    sel: int
    base: int
    words: np.ndarray  # (count, lanes) integers
    wait: int


@dataclass(frozen=True)
class Step:
    """One chunk as the host runs it: writes, then the command; ``beats`` results come back."""

    chunk: Chunk
    writes: tuple[Write, ...]
    command: EngineCommand
    fields: dict[str, int]  # the command's values of run_layout (checked to fit)
    beats: int  # result beats the command emits (0: it only accumulates)

    @property
    def write_words(self) -> int:
        return sum(len(w.words) for w in self.writes)


@dataclass(frozen=True)
class GemmProgram:
    """The whole GEMM ``(m x kt) @ (kt x n)`` on ``cfg`` under a host policy (``host``)."""

    cfg: AcceleratorConfig
    m: int
    n: int
    host: str
    steps: tuple[Step, ...]

    @property
    def offer_with_last_write(self) -> bool:
        """Whether a command is offered in the cycle of its last write (else the one after)."""
        return self.host == "overlap"

    @property
    def write_words(self) -> int:
        return sum(s.write_words for s in self.steps)

    @property
    def out_beats(self) -> int:
        return sum(s.beats for s in self.steps)

    def new_result(self) -> np.ndarray:
        return np.zeros((self.m, self.n), dtype=np.int64)

    def place(self, result: np.ndarray, i: int, beats: np.ndarray) -> None:
        """Put step ``i``'s result beats (``(beats, >= cols)`` in the order the engine emits
        them) into ``result`` at the chunk's output block."""
        step = self.steps[i]
        if len(beats) != step.beats:
            raise ValueError(
                f"chunk {i}: {len(beats)} result beats, the program expects {step.beats}"
            )
        if not step.beats:
            return
        c = step.chunk
        e = self.cfg.engine
        beats = np.asarray(beats)
        if step.command.raw:  # each row's accumulators came as raw_beats beats
            beats = join_raw(beats[:, : e.cols], e.raw_beats, e.fmt.width, e.fmt.acc_width)
        idx = output_beats(c.m, c.n, e.rows, e.cols)
        result[c.m0 : c.m1, c.n0 : c.n1] = beats[idx, np.arange(c.n)[None, :] % e.cols]


def gemm_program(
    cfg: AcceleratorConfig,
    a: np.ndarray,
    b: np.ndarray,
    cmd: GemmCommand,
    *,
    host: str = HOSTS[0],
    what: str = "GEMM",
    blocks: Collection[int] | None = None,
) -> GemmProgram:
    """The program of ``a @ b`` (``a``: M x images*k, ``b``: images*k x N integers) on ``cfg``;
    with ``blocks``, of those output blocks only (:func:`~barista_hw.schedule.share_blocks`).

    Errors (unknown host, operands that do not chain, a GEMM the configuration
    cannot run, a command field that does not fit) are :class:`InputError` s naming
    ``what``.
    """
    if host not in HOSTS:
        raise InputError(f"{what}: unknown host protocol {host!r} (use {' or '.join(HOSTS)})")
    m, kt = a.shape
    n = b.shape[1]
    if b.shape[0] != kt or kt % cmd.images:
        raise InputError(f"{what}: operand shapes {a.shape} and {b.shape} do not chain")
    chunks = schedule_gemm(cfg, m, kt // cmd.images, n, cmd.images, what=what, blocks=blocks)
    R, C = cfg.engine.rows, cfg.engine.cols
    layout = run_layout(cfg)
    halves = (cfg.a_depth // 2, cfg.b_depth // 2)
    packed: dict[tuple, np.ndarray] = {}  # operand block -> its words (packed once)
    last_reader = [[NO_WAIT, NO_WAIT], [NO_WAIT, NO_WAIT]]  # [buffer][half] -> chunk
    steps = []
    for i, c in enumerate(chunks):
        writes = []
        for sel, write, base, key in (
            (0, c.write_a, c.a_base, (0, c.m0, c.m1, c.kt0, c.kt1)),
            (1, c.write_b, c.b_base, (1, c.n0, c.n1, c.kt0, c.kt1)),
        ):
            if not write:
                continue
            if key not in packed:
                if sel == 0:
                    packed[key] = pack_a(a[c.m0 : c.m1, c.kt0 : c.kt1], R)
                else:
                    packed[key] = pack_b(b[c.kt0 : c.kt1, c.n0 : c.n1], C)
            wait = i - 1 if host == "serial" else last_reader[sel][int(base >= halves[sel])]
            writes.append(Write(sel, base, packed[key], wait))
        last_reader[0][int(c.a_base >= halves[0])] = i
        last_reader[1][int(c.b_base >= halves[1])] = i
        command = cmd.chunk(c)
        beats = c.m * -(-c.n // C) * (cfg.engine.raw_beats if cmd.raw else 1) if c.acc_last else 0
        steps.append(Step(c, tuple(writes), command, command.fields(layout, what), beats))
    return GemmProgram(cfg, m, n, host, tuple(steps))
