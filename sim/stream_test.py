"""A cocotb test module run inside the simulator: instructions through a unit with a ``cmd`` and
an ``x`` stream in and a ``y`` and a ``stats`` stream out (the device's vector unit).

Input: the JSON file named by ``BARISTA_SIM_CASES`` (written by the caller, e.g.
:func:`sim.stream_run.run_instructions`): ``{"tb_seed", "max_cycles", "instructions": [{"cmd":
word, "x": [words], "stall": p}, ...]}`` with the packed payloads as integers. Commands and
elements are queued at once (the unit takes them as it can); ``stall`` is the probability of
a random gap before each of the instruction's beats and of ``y``/``stats`` not being ready.
Output: the JSON file named by ``BARISTA_SIM_RESULTS``: per instruction its ``y`` words, its
``stats`` word and the cycle at which the stats were read; nothing is compared here.
"""

from __future__ import annotations

import json
import os
import random

import cocotb

from sim.tb import StreamSink, StreamSource, write_results

CASES_ENV = "BARISTA_SIM_CASES"
RESULTS_ENV = "BARISTA_SIM_RESULTS"


@cocotb.test()
async def run_instructions(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """All instructions of the file, back to back in one simulation."""
    from cocotb.clock import Clock
    from cocotb.triggers import ReadOnly, RisingEdge

    with open(os.environ[CASES_ENV]) as f:
        spec = json.load(f)
    master = random.Random(spec["tb_seed"])
    cmd, x = (StreamSource(dut, n, random.Random(master.getrandbits(64))) for n in ("cmd", "x"))
    y, stats = (StreamSink(dut, n, random.Random(master.getrandbits(64))) for n in ("y", "stats"))
    insts = spec["instructions"]
    for inst in insts:
        cmd.extend([inst["cmd"]], inst["stall"])
        x.extend(inst["x"], inst["stall"])

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    results: list[dict] = [{"y": []} for _ in insts]
    done, count = 0, 0
    edge, settle = RisingEdge(dut.clk), ReadOnly()
    while done < len(insts):
        await edge
        count += 1
        if count > spec["max_cycles"]:
            raise TimeoutError(
                f"{done}/{len(insts)} instructions done in {count} cycles; "
                f"{x.stats.transfers} elements taken, {y.stats.transfers} outputs seen"
            )
        stall = insts[done]["stall"]
        cmd.drive()
        x.drive()
        y.drive(stall)
        stats.drive(stall)
        await settle
        cmd.sample()
        x.sample()
        word = y.sample()
        if word is not None:
            results[done]["y"].append(word)
        word = stats.sample()
        if word is not None:
            results[done].update(stats=word, cycle=count)
            done += 1
    write_results(RESULTS_ENV, {"instructions": results, "sim_cycles": count})
