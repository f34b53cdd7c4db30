"""The cocotb module run inside the simulator: program fetcher cases (:mod:`sim.fetch_run`).

Input: the JSON named by ``BARISTA_FETCH_CASES``; per case the memory's bus words, the
packed ``start`` payloads, the beats expected in all, stall and latency. Output (the JSON
named by ``BARISTA_FETCH_RESULTS``): per case the beats taken (decimal strings), the
lengths of the read commands, the count of write commands, the cycles.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sim.fetch_run import CASES_ENV, RESULTS_ENV
from sim.port_model import PortMemory
from sim.tb import StreamSink, StreamSource, start_cases, write_results


@cocotb.test()
async def run_cases(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """All cases of the file, one after another in one simulation."""
    header, master = await start_cases(dut, CASES_ENV, ["start__valid", "beats__ready"])
    results = []
    for case in header["cases"]:
        mem = PortMemory.for_case(dut, header, case, master)
        start = StreamSource(dut, "start", random.Random(master.getrandbits(32)))
        sink = StreamSink(dut, "beats", random.Random(master.getrandbits(32)))
        start.extend([int(s) for s in case["starts"]], case["stall"])  # taken while idle
        cycles = 0
        while len(sink.words) < case["beats"] or int(dut.busy.value) or not mem.idle:
            await RisingEdge(dut.clk)
            cycles += 1
            if cycles > case["max_cycles"]:
                raise TimeoutError(
                    f"fetch case {len(results)}: {len(sink.words)} of {case['beats']} "
                    f"beats in {case['max_cycles']} cycles"
                )
            start.drive()
            sink.drive(case["stall"])
            mem.drive()
            await ReadOnly()
            start.sample()
            sink.sample()
            mem.sample()
        results.append(
            {
                "beats": [str(w) for w in sink.words],
                "lengths": mem.stats.lengths,
                "writes": mem.stats.write_words,
                "cycles": cycles,
            }
        )
        await RisingEdge(dut.clk)
    write_results(RESULTS_ENV, {"cases": results})
