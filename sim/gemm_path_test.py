"""The cocotb module run inside the simulator: cases through
:class:`~barista_hw.device.rtl.gemm_path.GemmPath`.

Input: the JSON named by ``BARISTA_GEMM_PATH_CASES`` (written by
:func:`sim.gemm_path_run.run_cases`); per case the packed commands, the DRAM bus words,
the stall probability and the memory's latency. Output: the JSON named by
``BARISTA_GEMM_PATH_RESULTS``: per case the DRAM words afterwards and each command's
cycles, from the cycle it is taken to the path's idle, and the memory port's work in that
span (commands, words read, words written).
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sim.gemm_path_run import CASES_ENV, RESULTS_ENV
from sim.port_model import PortMemory
from sim.tb import StreamSource, start_cases, write_results


async def _run_case(dut, case: dict, header: dict, master: random.Random) -> dict:  # noqa: ANN001
    mem = PortMemory.for_case(dut, header, case, master)
    cmd = StreamSource(dut, "cmd", random.Random(master.getrandbits(32)))
    cmd.extend([int(c) for c in case["commands"]], case["stall"])
    cycles: list[int] = []
    port: list[list[int]] = []
    running, start, now = False, 0, 0
    at_start = [0, 0, 0]
    while running or cmd.queue:
        await RisingEdge(dut.clk)
        now += 1
        if now - start > case["max_cycles"]:
            raise TimeoutError(
                f"command {len(cycles)} did not finish in {case['max_cycles']} cycles: "
                f"{mem.stats.commands} memory commands"
            )
        cmd.drive()
        mem.drive()
        await ReadOnly()
        if running and not int(dut.busy.value):
            cycles.append(now - start)
            port.append([a - b for a, b in zip(_work(mem), at_start, strict=True)])
            running = False
        if cmd.sample():
            running, start, at_start = True, now, _work(mem)
        mem.sample()
    if not mem.idle:
        raise AssertionError("the GEMM path went idle with memory commands outstanding")
    await RisingEdge(dut.clk)  # out of the read-only phase: the next case drives signals
    return {"memory": [int(w) for w in mem.words], "cycles": cycles, "port": port}


def _work(mem: PortMemory) -> list[int]:
    return [mem.stats.commands, mem.stats.read_words, mem.stats.write_words]


@cocotb.test()
async def run_cases(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """All cases of the file, one after another in one simulation."""
    header, master = await start_cases(dut, CASES_ENV, ["cmd__valid"])
    results = [await _run_case(dut, case, header, master) for case in header["cases"]]
    write_results(RESULTS_ENV, {"cases": results})
