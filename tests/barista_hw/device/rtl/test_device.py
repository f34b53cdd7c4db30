"""The device top in RTL runs training iterations on its own, bit-exactly as the model,
on Icarus and Verilator (``--sim``).

A tiny net (a padded 3 x 3 convolution, 2 x 2 max pooling, ReLU, an inner product; batch
2, stochastic rounding) is compiled for a 4 x 3 fx16 engine with 3 vector lanes; every
DRAM tensor gets random integers. The model runs two iterations (forward, the logits to
the host, their gradient back, backward, SGD, SCALE; Icarus runs the first only but in the
full form, :func:`~sim.device_cases.bench_iterations`); the RTL top gets the exponent
file once, each iteration's register writes and the start of a fetch of the records with
their static commands from the program's image in DRAM (laid out once beside the
tensors) and decodes every command itself; the test bench answers the link
with exactly what the model's host sent. The DRAM at each SCALE, every DRAM bus word at
the end and every word sent to the host are compared; the full form adds a run with
random stalls on every stream of the memory port and the host's streams.

The decoder alone (pysim) is compared with the model's :func:`command` for every
instruction of both iterations.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw.device.isa import Op
from barista_hw.device.memory import LinkConfig
from barista_hw.device.rtl.decode import (
    READ,
    STATUS,
    RegisterMap,
    check_fits,
    command_layout,
    decode_fields,
    decode_layout,
    decoder_sizes,
    exponent_entry,
    exponent_writes,
    read_entry,
    static_command,
)
from barista_hw.device.rtl.decoder import QUEUE, REPORT_NAMES, REPORTS, Decoder
from barista_hw.device.rtl.device import Device, command, fetch_model
from barista_hw.device.timing import schedule
from barista_hw.device.traffic import program_counts
from sim.device_cases import (
    CONFIG,
    ITERATION,
    ITERATIONS,
    MODES,
    bench_iterations,
    iteration,
    program,
    setup,
)
from sim.gemm_path_run import image_tensor

FULL = os.environ.get("BARISTA_FULL") == "1"
# One worker runs the top per simulator for this module and tests/sim/test_device_verilator.py,
# which compares its cycles with this run (conftest.py).
SIM_RUN_GROUP = "device-top"
# Slow (minutes a simulator): the stalled run only in the full form.
RTL_MODES = MODES if FULL else {"plain": MODES["plain"]}


def run(cache: dict, sim: str, mode: str):  # noqa: ANN201 - a sim.device_run.DeviceResult
    from sim.device_run import build
    from sim.device_run import run as run_device

    key = ("device", sim, mode)
    if key not in cache:
        try:
            unit = build(sim, CONFIG, **decoder_sizes(program()))
            cases = iteration(MODES[mode], bench_iterations(sim, FULL))
            cache[key] = run_device(unit, cases, seed=5)
        except Exception as exc:  # reported by every test, built once
            cache[key] = exc
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


def _where(words: np.ndarray, want: np.ndarray) -> str:
    """The tensor and elements of the first differing word."""
    prog = program()
    w = int(np.flatnonzero(words != want)[0])
    for t in prog.tensors:
        first = 8 * t["addr"] // 16
        last = (8 * t["addr"] + t["bits"] * math.prod(t["shape"]) - 1) // 16
        if first <= w <= last:
            got, exp = image_tensor(prog, words, t), image_tensor(prog, want, t)
            return f"{t['name']!r} elements {np.flatnonzero(got != exp)[:8]}"
    return f"word {w}, no tensor"


@pytest.mark.slow
@pytest.mark.cocotb
@pytest.mark.parametrize("mode", RTL_MODES)
def test_iteration_leaves_dram_as_the_model(sim: str, mode: str, sim_run_cache: dict) -> None:
    got = run(sim_run_cache, sim, mode)
    case = got.case
    assert got.scales == bench_iterations(sim, FULL) == len(got.snapshots) == len(case.afters)
    previous = case.before
    for i, (words, want) in enumerate(zip(got.snapshots, case.afters, strict=True)):
        assert not np.array_equal(previous, want)
        differ = np.flatnonzero(words != want)
        assert not differ.size, (
            f"iteration {i}: {differ.size} DRAM words differ, first in {_where(words, want)}"
        )
        previous = want
    assert np.array_equal(got.memory, case.after)


@pytest.mark.slow
@pytest.mark.cocotb
@pytest.mark.parametrize("mode", RTL_MODES)
def test_iteration_sends_the_host_the_models_words(
    sim: str, mode: str, sim_run_cache: dict
) -> None:
    got = run(sim_run_cache, sim, mode)
    assert got.host_out == got.case.host_out and got.host_out
    assert got.outs == got.case.outs and len(set(got.outs)) == bench_iterations(sim, FULL)


@pytest.mark.slow
@pytest.mark.cocotb
def test_cycles_and_busy_counters(sim: str, sim_run_cache: dict) -> None:
    got = run(sim_run_cache, sim, "plain")
    c = got.counters
    prog = program()
    timing = schedule(prog, program_counts(prog, CONFIG), CONFIG.accelerator.clock_mhz)
    print(f"device top: {c['cycles']} cycles; busy " + ", ".join(f"{u} {c[u]}" for u in c))
    print(f"device top: cycles at each SCALE {got.scale_cycles}")
    print(f"time model: {timing.cycles} cycles; busy {timing.busy}")
    fast = dataclasses.replace(CONFIG, link=LinkConfig(baud=300_000_000))  # the RTL has no UART
    fetch = fetch_model(prog, CONFIG)
    timing = schedule(prog, program_counts(prog, fast), CONFIG.accelerator.clock_mhz, fetch)
    print(f"time model, 300 Mbaud link, fetched: {timing.cycles} cycles; busy {timing.busy}")
    assert all(0 < c[u] <= c["cycles"] for u in c if u != "cycles")
    at = [0, *got.scale_cycles]
    for i in range(bench_iterations(sim, FULL)):  # the test's memory: read latency 3, the model's 2
        assert abs((at[i + 1] - at[i]) / timing.cycles - 1) <= 0.05, (i, at, timing.cycles)


async def _until(ctx, signal) -> None:  # noqa: ANN001
    """Wait for ``signal``, then let the clock take what is offered."""
    while not ctx.get(signal):
        await ctx.tick()
    await ctx.tick()


async def _write(ctx, dut: Decoder, values: dict[int, int]) -> None:  # noqa: ANN001
    for addr, value in values.items():
        ctx.set(dut.reg_write, 1)
        ctx.set(dut.reg_addr, addr)
        ctx.set(dut.reg_data, value)
        await _until(ctx, dut.reg_ready)
    ctx.set(dut.reg_write, 0)


async def _read(ctx, dut: Decoder, addr: int) -> int:  # noqa: ANN001
    """An entry word read back: the word arrives the cycle after the read is taken."""
    ctx.set(dut.reg_read, 1)
    ctx.set(dut.reg_addr, addr | READ)
    await _until(ctx, dut.reg_ready)
    ctx.set(dut.reg_read, 0)
    return ctx.get(dut.reg_value)


def _report(ctx, dut: Decoder, reports: list) -> None:  # noqa: ANN001
    """``reports`` ((tensor index, stats)) on ports 0, 1, ... in this cycle."""
    for k in range(len(dut.reports)):
        ctx.set(dut.reports[k].valid, 0)
    for k, (t, st) in enumerate(reports):
        ctx.set(dut.reports[k], {"valid": 1, "tensor": t, "peak": st.peak,
                "saturated": st.saturated, "overflow": st.overflow})  # fmt: skip


def test_decoder_builds_the_models_commands_across_iterations() -> None:
    """The decoder (pysim) against :func:`command` for every instruction of the net in
    two iterations: the model's statistics reported on several ports in one cycle (two
    instructions' together) as a later record is taken, SCALE between (it waits for
    them). After every instruction the read-back (``reg_value``) of
    every exponent-entry word is the model's :class:`ScaleTable` as
    :func:`exponent_writes` encodes it."""
    m, hosts, scalars = setup(program(), CONFIG, ITERATIONS)
    prog = program()
    regs = RegisterMap.of(prog)
    dut = Decoder(CONFIG, tensors=len(prog.tensors), registers=regs.size)
    index = {t["name"]: i for i, t in enumerate(prog.tensors)}
    recorded: list = []
    record = m.scales.record
    m.scales.record = lambda name, stats: (recorded.append((name, stats)), record(name, stats))
    m.scalars = scalars
    bits = lambda layout, fields: layout.const(fields).as_value().value  # noqa: E731
    beats = [
        (
            i,
            bits(command_layout(CONFIG), static_command(i, prog, CONFIG)),
            bits(decode_layout(), decode_fields(i, prog, regs)),
        )
        for i in prog.instructions
    ]
    checked, reads, together = [], [], []

    async def read_back(ctx) -> None:  # noqa: ANN001
        for addr, want in exponent_writes(m.scales, prog).items():
            got = await _read(ctx, dut, addr)
            assert got == want, f"entry word {addr:#x} after {checked[-1:]}"
            reads.append(addr)

    async def bench(ctx) -> None:  # noqa: ANN001
        await _write(ctx, dut, exponent_writes(m.scales, prog))
        for it, host in enumerate(hosts):
            m.host, m.iteration = host, ITERATION + it
            fracs = {t: host.inputs[prog.tensors[t]["name"]][1] for t in regs.fracs}
            await _write(ctx, dut, regs.values(m.iteration, scalars, fracs))
            waiting: list = []  # the last instruction's reports
            for inst, static, dec in beats:
                ctx.set(dut.record, int.from_bytes(inst.encode(), "little"))
                ctx.set(dut.static.as_value(), static)
                ctx.set(dut.decode.as_value(), dec)
                ctx.set(dut.valid, 1)
                while not ctx.get(dut.ready):
                    await ctx.tick()
                got = ctx.get(dut.command.as_value())
                want = command(inst, m)
                assert got == want, f"iteration {m.iteration}: {inst.text()}"
                checked.append(inst.op)
                ctx.set(dut.take, 1)
                ctx.set(dut.scale, inst.op is Op.SCALE)
                now = inst.op is Op.SCALE or len(waiting) >= 2  # two instructions' at once
                _report(ctx, dut, waiting if now else [])
                together.append(len(waiting) if now else 0)
                await ctx.tick()
                _report(ctx, dut, [])
                for s in (dut.take, dut.scale, dut.valid):
                    ctx.set(s, 0)
                recorded.clear()
                m.execute(inst)
                waiting = (waiting if not now else []) + [
                    (index[name], stats) for name, stats in recorded
                ]
                if inst.op is Op.SCALE:
                    await read_back(ctx)
            assert not waiting

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == ITERATIONS * len(prog.instructions)
    assert len(reads) == ITERATIONS * 4 * len(prog.tensors)
    assert max(together) > 1  # several in a cycle
    ops = set(checked)
    assert {Op.LOAD, Op.STORE, Op.GEMM, Op.VEC, Op.HOST_IN, Op.HOST_OUT, Op.SCALE} <= ops


def test_decoder_merges_every_port_at_once_then_scales() -> None:
    """Reports on all ports in one cycle, twice back to back (a tensor in both cycles,
    another on two ports of the second), SCALE in the next cycle: the read-back is the
    model's :class:`ScaleTable` after :meth:`~ScaleTable.record` of each and
    :meth:`~ScaleTable.advance`; before the SCALE, the merged statistics."""
    from barista_hw.device.vector import Stats

    prog = program()
    m, _, _ = setup(prog, CONFIG, 1)
    scales, names = m.scales, [t["name"] for t in prog.tensors]
    free = [i for i, n in enumerate(names) if not scales.entries[n].fixed]
    fixed = [i for i, n in enumerate(names) if scales.entries[n].fixed]
    dut = Decoder(CONFIG, tensors=len(names), registers=RegisterMap.of(prog).size)
    n = len(dut.reports)
    rng = np.random.default_rng(3)

    def stats() -> Stats:
        return Stats(
            int(rng.integers(1, 1 << 14)), int(rng.integers(0, 9)), int(rng.integers(0, 5))
        )

    first = [(t, stats()) for t in free[: n - 1] + fixed[:1]]
    second = [(free[0], stats()), (free[n], stats()), (free[n], stats())]
    second += [(t, stats()) for t in free[n + 1 : n + n - 2]]

    async def two_cycles(ctx) -> None:  # noqa: ANN001
        for cycle in (first, second):
            _report(ctx, dut, cycle)
            await ctx.tick()
            for t, st in cycle:
                if not scales.entries[names[t]].fixed:
                    scales.record(names[t], st)
        _report(ctx, dut, [])

    async def bench(ctx) -> None:  # noqa: ANN001
        await _write(ctx, dut, exponent_writes(scales, prog))
        await two_cycles(ctx)
        for addr, want in exponent_writes(scales, prog).items():
            assert await _read(ctx, dut, addr) == want, f"merged word {addr:#x}"
        await two_cycles(ctx)
        ctx.set(dut.scale, 1)
        await ctx.tick()
        ctx.set(dut.scale, 0)
        cycles = 0
        while not ctx.get(dut.scale_done):
            await ctx.tick()
            cycles += 1
        assert cycles > len(names)  # the queues drained first, then the walk
        await ctx.tick()
        scales.advance()
        for addr, want in exponent_writes(scales, prog).items():
            assert await _read(ctx, dut, addr) == want, f"scaled word {addr:#x}"
        assert ctx.get(dut.lost) == 0  # nothing lost: no false alarm

    assert len(first) == n == len(second) and fixed and len(free) > 2 * n
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_a_report_at_a_full_queue_sets_its_sticky_lost_bit() -> None:
    """The decoder alone (pysim): :data:`QUEUE` reports on the GEMM unit's port in
    successive cycles are kept; then twice as many in a row (a merge takes 2 cycles) fill
    its queue, and the report that finds it full sets that port's ``lost`` bit, alone;
    it stays set after the queue drained and a SCALE, and reads back at ``STATUS``."""
    prog = program()
    dut = Decoder(CONFIG, tensors=len(prog.tensors), registers=RegisterMap.of(prog).size)
    gemm = REPORTS - 2
    assert REPORT_NAMES[gemm] == "the GEMM unit"

    async def burst(ctx, count: int) -> None:  # noqa: ANN001
        for _ in range(count):
            for k in range(REPORTS):
                ctx.set(dut.reports[k].valid, 0)
            report = {"valid": 1, "tensor": 0, "peak": 1, "saturated": 0, "overflow": 0}
            ctx.set(dut.reports[gemm], report)
            await ctx.tick()
        ctx.set(dut.reports[gemm].valid, 0)
        for _ in range(4 * count):  # drained
            await ctx.tick()

    async def bench(ctx) -> None:  # noqa: ANN001
        await burst(ctx, QUEUE)
        assert ctx.get(dut.lost) == 0
        assert await _read(ctx, dut, STATUS | READ) == 0
        await burst(ctx, 2 * QUEUE + 2)
        assert ctx.get(dut.lost) == 1 << gemm
        ctx.set(dut.scale, 1)
        await ctx.tick()
        ctx.set(dut.scale, 0)
        while not ctx.get(dut.scale_done):
            await ctx.tick()
        await ctx.tick()
        assert ctx.get(dut.lost) == 1 << gemm  # sticky
        assert await _read(ctx, dut, STATUS | READ) == 1 << gemm

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_read_entry_decodes_the_first_entry_word() -> None:
    m, _, _ = setup(program(), CONFIG, 1)
    writes = exponent_writes(m.scales, program())
    assert any(e.written and e.peak for e in m.scales.entries.values())
    for i, t in enumerate(program().tensors):
        e = m.scales.entries[t["name"]]
        got = read_entry(writes[0x8000 + 4 * i])
        assert got == {"frac": e.frac, "stored": e.stored, "fixed": int(e.fixed), "width": e.width}
        words = [writes[0x8000 + 4 * i + w] for w in range(4)]
        assert exponent_entry(words) == vars(e)  # all four words: the whole entry back


def test_a_program_must_fit_the_decoder() -> None:
    with pytest.raises(InputError, match="18 tensors and 40 host registers"):
        check_fits(program(), 16, 64)
    assert decoder_sizes(program()) == {"tensors": 18, "registers": 40}
    check_fits(program(), **decoder_sizes(program()))


@pytest.mark.slow  # the top's elaboration: about 40 s
def test_device_verilog_is_lint_clean() -> None:
    from sim.lint import lint
    from sim.runner import component_verilog

    top = "device_lint"
    path = component_verilog(lambda: Device(CONFIG), top, f"{CONFIG!r}")
    assert lint(path, top) == []
