"""Amaranth-simulator drivers of the engines and the accelerator: unit-level checks without an HDL
simulator.

:func:`run_gemm` streams one GEMM through an engine (with optional random
stalls) and returns its result matrix and cycle count. :func:`run_accelerator`
runs the host program of :mod:`barista_hw.host` on an :class:`Accelerator`,
cycle by cycle as the C++ host of :mod:`sim.verilator_driver` does, under either
host policy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

import numpy as np
from amaranth.sim import Simulator

from barista_hw.accelerator import Accelerator
from barista_hw.command import GemmCommand
from barista_hw.engine import GemmEngine, command_layout
from barista_hw.host import HOSTS, GemmProgram, gemm_program
from barista_hw.intmath import join_raw

from .beats import assemble, tile_beats
from .gemm_run import GemmRun
from .tools import SimulationError


def run_testbench(dut: object, testbench: Callable[..., Awaitable[None]]) -> None:
    """Run one async ``testbench`` on ``dut`` with a clock (unit tests of small components)."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def run_gemm(
    engine: GemmEngine,
    a: np.ndarray,
    b: np.ndarray,
    cmd: GemmCommand,
    *,
    k_chunks: int = 1,
    stall: float = 0.0,
    stall_seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Run ``a @ b`` on ``engine`` in pysim; returns (result, cycles of all commands).

    ``k_chunks > 1`` splits the reduction dimension into that many commands that
    accumulate in the engine's accumulator memory (``acc_first``/``acc_last``). With
    ``cmd.raw`` the result is the accumulators the engine read out.
    """
    cfg = engine.cfg
    m, kt = a.shape
    n = b.shape[1]
    images = cmd.images
    if k_chunks > 1 and images != 1:
        raise ValueError("chunk the reduction of an images > 1 GEMM by images instead")
    layout = command_layout(cfg, engine.BATCHED)
    bounds = np.linspace(0, kt, k_chunks + 1).round().astype(int)
    commands = []
    for i in range(k_chunks):
        k0, k1 = bounds[i], bounds[i + 1]
        piece = cmd.engine(
            m, int(k1 - k0) // images, n, acc_first=i == 0, acc_last=i == k_chunks - 1
        )
        beats = list(tile_beats(a[:, k0:k1], b[k0:k1], cfg.rows, cfg.cols))
        commands.append((piece.fields(layout), beats))
    rnd = random.Random(stall_seed)
    got: list[list[int]] = []
    cycles: list[int] = []

    async def testbench(ctx) -> None:  # noqa: ANN001 - amaranth's context
        for command, beats in commands:
            ctx.set(engine.cmd.payload, command)
            ctx.set(engine.cmd.valid, 1)
            await ctx.tick().until(engine.cmd.ready)
            ctx.set(engine.cmd.valid, 0)
            i = 0
            while True:
                offer = i < len(beats) and rnd.random() >= stall
                if offer:
                    ctx.set(engine.a.payload, beats[i][0])
                    ctx.set(engine.b.payload, beats[i][1])
                ctx.set(engine.a.valid, offer)
                ctx.set(engine.b.valid, offer)
                ctx.set(engine.o.ready, rnd.random() >= stall)
                await ctx.delay(1e-10)  # let ready settle after valid (it may depend on it)
                took = offer and ctx.get(engine.a.ready)
                if ctx.get(engine.o.valid) and ctx.get(engine.o.ready):
                    payload = ctx.get(engine.o.payload)
                    got.append([int(x) for x in payload.data])
                await ctx.tick()
                i += took
                if not ctx.get(engine.busy):
                    break
            cycles.append(ctx.get(engine.cycles))

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    if cmd.raw:  # each row's accumulators came as raw_beats beats
        got = join_raw(np.array(got), cfg.raw_beats, cfg.fmt.width, cfg.fmt.acc_width).tolist()
    return assemble(got, m, n, cfg.rows, cfg.cols), sum(cycles)


def run_accelerator(
    acc: Accelerator,
    a: np.ndarray,
    b: np.ndarray,
    cmd: GemmCommand,
    *,
    host: str = HOSTS[0],
    stall: float = 0.0,
    stall_seed: int = 0,
) -> GemmRun:
    """Run ``a @ b`` through an :class:`Accelerator` as the host program of ``host`` says.

    ``stall``: the probability that ``o.ready`` is low in a cycle. Cycles are counted
    as :class:`~sim.gemm_run.GemmRun` documents them, so they compare with the
    Verilated accelerator's and with the cycle model of :mod:`barista_hw.plan`.
    """
    prog = gemm_program(acc.cfg, a, b, cmd, host=host)
    host_run = _PysimHost(acc, prog, random.Random(stall_seed), stall)
    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(host_run.testbench)
    t0 = time.perf_counter()
    sim.run()
    return host_run.finish(time.perf_counter() - t0)


class _PysimHost:
    """The host loop of :mod:`barista_hw.host` in pysim, cycle for cycle the C++ host's:
    one write per cycle when its wait is over, a command offered once its writes land
    (with the last one under the overlap policy) and held until accepted."""

    def __init__(
        self, acc: Accelerator, prog: GemmProgram, rnd: random.Random, stall: float
    ) -> None:
        self.acc, self.prog, self.rnd, self.stall = acc, prog, rnd, stall
        lanes = max(acc.cfg.engine.rows, acc.cfg.engine.cols)  # the write port's lanes
        # One entry per word: (chunk, payload, wait).
        self.writes = [
            (i, {"sel": w.sel, "addr": w.base + j, "data": row + [0] * (lanes - len(row))}, w.wait)
            for i, s in enumerate(prog.steps)
            for w in s.writes
            for j, row in enumerate(w.words.tolist())
        ]
        n = len(prog.steps)
        self.accept = np.full(n, -1, dtype=np.int64)
        self.done = np.full(n, -1, dtype=np.int64)
        self.beats: list[list[tuple[list[int], int]]] = [[] for _ in range(n)]
        self.edges = self.last_counter = 0

    async def testbench(self, ctx) -> None:  # noqa: ANN001 - amaranth's context
        acc, steps, writes = self.acc, self.prog.steps, self.writes
        written = [0] * len(steps)
        wi = accepted = finished = 0
        running = False
        while finished < len(steps):
            wv = wi < len(writes) and writes[wi][2] < finished
            if wv:
                ctx.set(acc.wr.payload, writes[wi][1])
            ctx.set(acc.wr.valid, wv)
            cv = accepted < len(steps)
            if cv:
                landing = wv and writes[wi][0] == accepted and self.prog.offer_with_last_write
                cv = written[accepted] + landing == steps[accepted].write_words
            if cv:
                ctx.set(acc.cmd.payload, steps[accepted].fields)
            ctx.set(acc.cmd.valid, cv)
            o_ready = not (self.stall and self.rnd.random() < self.stall)
            ctx.set(acc.o.ready, o_ready)
            await ctx.delay(1e-10)  # let ready settle after valid
            fired = cv and ctx.get(acc.cmd.ready)
            if o_ready and ctx.get(acc.o.valid):
                if not running:
                    raise SimulationError("an o beat arrived while no command was running")
                o = ctx.get(acc.o.payload)
                self.beats[accepted - 1].append(([int(x) for x in o.data], int(o.last)))
            await ctx.tick()
            self.edges += 1
            if wv:
                written[writes[wi][0]] += 1
                wi += 1
            if fired:
                self.accept[accepted] = self.edges
                accepted += 1
                running = True
            if running and not ctx.get(acc.busy):
                self.done[accepted - 1] = self.edges
                finished, running = accepted, False
        self.last_counter = ctx.get(acc.cycles)

    def finish(self, wall: float) -> GemmRun:
        """The run, its result placed by the program (beat counts and ``last`` flags checked)."""
        prog = self.prog
        result = prog.new_result()
        cols = self.acc.cfg.engine.cols
        for i, (step, got) in enumerate(zip(prog.steps, self.beats, strict=True)):
            flags = [last for _, last in got]
            if len(got) != step.beats or (got and flags != [0] * (len(got) - 1) + [1]):
                raise SimulationError(
                    f"chunk {i}: {len(got)} o beats with last flags {flags}, "
                    f"the program expects {step.beats} with last on the final one"
                )
            data = np.array([d for d, _ in got], dtype=np.int64).reshape(-1, cols)
            prog.place(result, i, data)
        return GemmRun(
            result=result,
            cycles=self.edges,
            engine_cycles=int((self.done - self.accept).sum()),
            chunk_accept=self.accept,
            chunk_done=self.done,
            write_beats=len(self.writes),
            out_beats=sum(len(b) for b in self.beats),
            wall_seconds=wall,
            last_counter=int(self.last_counter),
        )
