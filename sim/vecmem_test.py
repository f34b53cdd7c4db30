"""The cocotb module run inside the simulator: VEC instructions through
:class:`~barista_hw.device.rtl.vecmem.VecMem` on a memory model.

Input: the JSON named by ``BARISTA_VECMEM_CASES`` (written by :func:`sim.vecmem_run.
run_cases`): per case the packed command, the memory's bus words, the stall probability
and the memory's read latency. Output: the JSON named by ``BARISTA_VECMEM_RESULTS``: per
case the memory afterwards, the stats word, the cycles from the command's offer to the
stats' transfer and the port's command count.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from sim.port_model import PortMemory
from sim.tb import StreamSink, StreamSource, start_cases, write_results
from sim.vecmem_run import CASES_ENV, RESULTS_ENV


@cocotb.test()
async def run_cases(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """All cases of the file, one after another in one simulation."""
    header, master = await start_cases(dut, CASES_ENV, ["cmd__valid", "stats__ready"])
    results = []
    for case in header["cases"]:
        mem = PortMemory.for_case(dut, header, case, master, np.uint64)
        cmd = StreamSource(dut, "cmd", random.Random(master.getrandbits(32)))
        stats = StreamSink(dut, "stats", random.Random(master.getrandbits(32)))
        cmd.extend([int(case["command"])], case["stall"])
        cycles, word = 0, None
        while word is None:
            await RisingEdge(dut.clk)
            cycles += 1
            if cycles > case["max_cycles"]:
                raise TimeoutError(
                    f"VEC case did not finish in {case['max_cycles']} cycles: "
                    f"{mem.stats.commands} commands, {mem.stats.read_words} words read, "
                    f"{mem.stats.write_words} written"
                )
            cmd.drive()
            stats.drive(case["stall"])
            mem.drive()
            await ReadOnly()
            cmd.sample()
            word = stats.sample()
            mem.sample()
        await RisingEdge(dut.clk)
        dut.stats__ready.value = 0
        if not mem.idle:
            raise AssertionError("the unit finished with memory commands outstanding")
        results.append(
            {
                "memory": [int(w) for w in mem.words],
                "stats": word,
                "cycles": cycles,
                "commands": mem.stats.commands,
            }
        )
    write_results(RESULTS_ENV, {"cases": results})
