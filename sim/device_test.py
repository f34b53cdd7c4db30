"""The cocotb module run inside the simulator: one training iteration through
:class:`~barista_hw.device.rtl.device.Device`, the test bench playing the host and the
memory (:class:`sim.port_model.PortMemory`).

Input: the JSON named by ``BARISTA_DEVICE_CASES`` (:func:`sim.device_run.run`): the
``prog`` beats (register writes, the fetches' starts among them), DRAM's bus words
(the program's image among them), each HOST_IN's words with the count of HOST_OUT words
to receive first, stall probability and memory latency. Output:
the JSON named by ``BARISTA_DEVICE_RESULTS``: DRAM afterwards, the words sent to the
host, the SCALE records taken, the sequencer's counters, the memory's command count, and
at each SCALE the DRAM, the count of words sent to the host so far and the cycle count.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from sim.device_run import CASES_ENV, RESULTS_ENV
from sim.port_model import PortMemory
from sim.tb import StreamSink, StreamSource, write_results


@cocotb.test()
async def run_iteration(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """The iteration: register writes in, host streams answered, until the program is
    done."""
    with open(os.environ[CASES_ENV]) as f:
        header = json.load(f)
    case, master = header["case"], random.Random(header["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    prog = StreamSource(dut, "prog", random.Random(master.getrandbits(32)))
    host_in = StreamSource(dut, "host_in", random.Random(master.getrandbits(32)))
    host_out = StreamSink(dut, "host_out", random.Random(master.getrandbits(32)))
    scale = StreamSink(dut, "scale", random.Random(master.getrandbits(32)))
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    mem = PortMemory.for_case(dut, header, case, master)
    stall = case["stall"]
    prog.extend([int(r) for r in case["writes"]], stall)
    pending = [(after, words) for after, words in case["host_in"]]
    cycles, started, scales = 0, False, 0
    snapshots, outs, at = [], [], []
    while True:
        await RisingEdge(dut.clk)
        cycles += 1
        if cycles > case["max_cycles"]:
            raise TimeoutError(
                f"the iteration did not finish in {case['max_cycles']} cycles: "
                f"{len(case['writes']) - len(prog.queue)} prog writes taken, "
                f"{len(host_out.words)} words to the host, {mem.stats.commands} memory commands"
            )
        # A HOST_IN's words once the host has what it answers (the HOST_OUTs before it).
        while pending and len(host_out.words) >= pending[0][0]:
            host_in.extend(pending.pop(0)[1], stall)
        prog.drive()
        host_in.drive()
        host_out.drive(stall)
        scale.drive(stall)
        mem.drive()
        await ReadOnly()
        prog.sample()
        host_in.sample()
        host_out.sample()
        if scale.sample() is not None:  # the iteration's end: every write is in memory
            scales += 1
            snapshots.append([int(w) for w in mem.words])
            outs.append(len(host_out.words))
            at.append(int(dut.cycles.value))
        mem.sample()
        running = int(dut.running.value)
        started |= bool(running)
        if started and not running and not prog.queue:
            break
    if not mem.idle:
        raise AssertionError("the device finished with memory commands outstanding")
    counters = {"cycles": int(dut.cycles.value)}
    counters.update({u: int(getattr(dut, f"busy_{u}").value) for u in header["units"]})
    counters["lost"] = int(dut.lost.value)  # the decoder's lost reports: the host raises
    out = {
        "memory": [int(w) for w in mem.words],
        "host_out": host_out.words,
        "scales": scales,
        "counters": counters,
        "commands": mem.stats.commands,
        "snapshots": snapshots,
        "outs": outs,
        "scale_cycles": at,
    }
    write_results(RESULTS_ENV, out)
