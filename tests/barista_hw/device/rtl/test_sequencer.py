"""The RTL sequencer runs a real compiled program on Icarus and Verilator (``--sim``), its
units played by mocks (:mod:`sim.seq_test`): every instruction reaches its unit exactly
once, in program order per unit, never before the instructions it waits for are done;
with the time model's cycles as the units' latencies (and the model's one DRAM bus), the
total is the model's within 5%, and the busy counters are the mocks' to the cycle.

Two runs per simulator: the model's cycles; random latencies with random stalls on the
program renumbered so that its tokens wrap (2**16 - 1 to 1) in the middle.
"""

from __future__ import annotations

import dataclasses
import math
import random
from functools import cache

import pytest

from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.compiler import compile_net
from barista_hw.device.emit import UNIT
from barista_hw.device.geometry import ConvGeometry, PoolGeometry
from barista_hw.device.isa import PREFETCH, Instruction, Op, Program
from barista_hw.device.layers import Conv, Pool, Relu
from barista_hw.device.memory import DeviceConfig, LinkConfig
from barista_hw.device.rtl.device import SEQ_KEEP
from barista_hw.device.rtl.sequencer import RECORD_BITS, TOKEN_MOD, UNITS, Sequencer
from barista_hw.device.timing import schedule, uses_dram_bus
from barista_hw.device.traffic import program_counts

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=64, acc_depth=16)
# A link fast enough that the iteration, not the link, sets the model's time (at 3 Mbaud
# the batch's 288 bytes alone take 48000 cycles; the sequencer would only wait).
CONFIG = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f", link=LinkConfig(baud=300_000_000))
IMAGE = (2, 6, 6)
STALL = 0.3
TOLERANCE = 0.05
# A small window and queues: the program's 160 instructions reuse every slot ten times and
# waits reach past the window (up to 140 instructions back): both scoreboard paths run.
WINDOW, DEPTH = 16, 4


@cache
def program() -> Program:
    """A tiny net's training iteration: conv (padded) -> ReLU -> max pool -> ip."""
    geom = ConvGeometry(*IMAGE, (3, 3), (1, 1), (1, 1))
    conv = Conv("conv", "data", "c", 4, geom=geom)
    relu = Relu("relu", "c", "c", conv.out_shape)
    pool = Pool("pool", "c", "p", PoolGeometry(4, 6, 6, (2, 2), (2, 2)))
    ip = Conv("ip", "p", "out", 3, inputs=math.prod(pool.out_shape))
    layers = [conv, relu, pool, ip]
    return compile_net(layers, CONFIG, batch=2, inputs={"data": IMAGE}, output="out").program


def model_latencies() -> tuple[list[int], list[bool]]:
    """Each instruction's cycles and DRAM-bus use in the time model. A PREFETCH ``HOST_IN``
    takes 1 cycle: the model runs it during the previous iteration, on the link alone."""
    prog = program()
    counts = program_counts(prog, CONFIG).per_instruction
    lat = [
        1 if i.op is Op.HOST_IN and i.sub & PREFETCH else c.cycles
        for i, c in zip(prog.instructions, counts, strict=True)
    ]
    return lat, [uses_dram_bus(i, c) for i, c in zip(prog.instructions, counts, strict=True)]


def random_latencies() -> tuple[list[int], list[bool]]:
    rng = random.Random(21)
    n = len(program().instructions)
    return [rng.randint(1, 40) for _ in range(n)], [rng.random() < 0.5 for _ in range(n)]


def renumbered(prog: Program, first: int) -> Program:
    """``prog`` with tokens counted from ``first`` (modulo 2**16 - 1, from 1), as the
    instructions of a long program's end are: its tokens wrap mid-way."""

    def tok(t: int) -> int:
        return (t - 1 + first - 1) % TOKEN_MOD + 1

    insts = [
        Instruction(i.op, i.sub, tok(i.token), tuple(tok(w) for w in i.waits), i.fields)
        for i in prog.instructions
    ]
    return dataclasses.replace(prog, instructions=insts)


WRAP_FIRST = TOKEN_MOD - 80  # the 81st instruction has token 0xFFFF, the 82nd token 1
# Per run: the program, its latencies, the stall probability, the record bits a unit's
# queue keeps (the wrapped run's: the device top's).
MODES = {
    "model": (program, model_latencies, 0.0, RECORD_BITS),
    "wrapped": (lambda: renumbered(program(), WRAP_FIRST), random_latencies, STALL, SEQ_KEEP),
}


def run(cache_: dict, sim: str, mode: str):  # noqa: ANN201 - a sim.seq_run.SeqRun
    from sim.seq_run import build, run_program

    key = ("sequencer", sim, mode)
    if key not in cache_:
        try:
            prog, latencies, stall, keep = MODES[mode]
            lat, bus = latencies()
            unit = build(sim, window=WINDOW, depth=DEPTH, keep=keep)
            cache_[key] = run_program(unit, prog(), lat, bus, stall=stall, tb_seed=3)
        except Exception as exc:  # reported by every test, built once
            cache_[key] = exc
    if isinstance(cache_[key], Exception):
        raise cache_[key]
    return cache_[key]


def _done_cycles(got) -> dict[int, int]:  # noqa: ANN001
    """Token -> the cycle its unit reported it done."""
    return {tok: done for log in got.units.values() for tok, _, done in log}


@pytest.mark.cocotb
@pytest.mark.parametrize("mode", MODES)
def test_every_instruction_issued_once_in_program_order_per_unit(
    sim: str, mode: str, sim_run_cache: dict
) -> None:
    got = run(sim_run_cache, sim, mode)
    prog = MODES[mode][0]()
    for u in UNITS:
        want = [i.token for i in prog.instructions if UNIT[i.op] == u]
        assert [tok for tok, _, _ in got.units[u]] == want, u
    assert [tok for tok, _ in got.scales] == [
        i.token for i in prog.instructions if i.op is Op.SCALE
    ]


@pytest.mark.cocotb
@pytest.mark.parametrize("mode", MODES)
def test_each_unit_takes_its_records_first_keep_bits(
    sim: str, mode: str, sim_run_cache: dict
) -> None:
    """Every bit a unit's stream carries: the record's first ``keep`` bits, zero above."""
    got = run(sim_run_cache, sim, mode)
    prog, keep = MODES[mode][0](), MODES[mode][3]
    for u in UNITS:
        want = [
            int.from_bytes(i.encode(), "little") & ((1 << keep) - 1)
            for i in prog.instructions
            if UNIT[i.op] == u
        ]
        assert got.records[u] == want, u


@pytest.mark.cocotb
@pytest.mark.parametrize("mode", MODES)
def test_no_instruction_issued_before_its_waits_are_done(
    sim: str, mode: str, sim_run_cache: dict
) -> None:
    got = run(sim_run_cache, sim, mode)
    done = _done_cycles(got)
    taken = {tok: take for log in got.units.values() for tok, take, _ in log}
    taken.update(dict(got.scales))
    prog = MODES[mode][0]()
    for inst in prog.instructions:  # a SYNC is done once its waits are
        if inst.op is Op.SYNC:
            done[inst.token] = max(done[w] for w in inst.waits)
    checked = 0
    for n, inst in enumerate(prog.instructions):
        if inst.op is Op.SYNC:
            continue
        before = list(inst.waits)
        if inst.op is Op.SCALE:  # after everything before it
            before = [i.token for i in prog.instructions[:n]]
        for w in before:
            assert taken[inst.token] > done[w], f"{inst.text()} taken before {w} was done"
            checked += 1
    assert checked > len(prog.instructions) / 2


@pytest.mark.cocotb
@pytest.mark.parametrize("mode", MODES)
def test_busy_counters_count_the_units_cycles(sim: str, mode: str, sim_run_cache: dict) -> None:
    got = run(sim_run_cache, sim, mode)
    for u in UNITS:
        held = sum(done - take for _, take, done in got.units[u])
        assert got.counters[u] == held, u
    first = min(take for log in got.units.values() for _, take, _ in log)
    last = max(done for log in got.units.values() for _, _, done in log)
    assert last - first <= got.counters["cycles"] <= last - first + 8


@pytest.mark.cocotb
def test_total_cycles_within_five_percent_of_the_time_model(sim: str, sim_run_cache: dict) -> None:
    got = run(sim_run_cache, sim, "model")
    prog = program()
    timing = schedule(prog, program_counts(prog, CONFIG), CONFIG.accelerator.clock_mhz)
    lat, _ = model_latencies()
    # The link is not the bound here, so the model's time is its schedule's end.
    assert timing.busy["link"] < timing.cycles
    rtl = got.counters["cycles"]
    error = rtl / timing.cycles - 1
    print(f"sequencer: {rtl} cycles, model {timing.cycles} ({error:+.2%})")
    assert abs(error) <= TOLERANCE
    for u in UNITS:  # each unit's busy cycles: its instructions' latencies
        want = sum(x for i, x in zip(prog.instructions, lat, strict=True) if UNIT[i.op] == u)
        assert got.counters[u] >= want, u


def test_programs_are_small_cover_every_unit_and_one_wraps_its_tokens() -> None:
    prog = program()
    assert 100 <= len(prog.instructions) <= 400
    ops = {i.op for i in prog.instructions}
    assert {Op.LOAD, Op.STORE, Op.GEMM, Op.VEC, Op.HOST_IN, Op.HOST_OUT, Op.SCALE} <= ops
    assert all(i.token == n + 1 for n, i in enumerate(prog.instructions))
    wrapped = [i.token for i in MODES["wrapped"][0]().instructions]
    assert wrapped[80:82] == [TOKEN_MOD, 1] and len(set(wrapped)) == len(wrapped)
    assert any(w > i.token for i in MODES["wrapped"][0]().instructions for w in i.waits)


def test_sequencer_verilog_is_lint_clean() -> None:
    from sim.lint import lint
    from sim.runner import component_verilog

    top = "sequencer_lint"
    assert lint(component_verilog(lambda: Sequencer(window=16, depth=4), top, "16,4"), top) == []


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="power of two"):
        Sequencer(window=48)
    with pytest.raises(ValueError, match="depth"):
        Sequencer(depth=0)
    with pytest.raises(ValueError, match="keep 16"):
        Sequencer(keep=16)  # the token would be cut
