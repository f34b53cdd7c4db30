"""The cocotb module run inside the simulator: DMA cases through :class:`sim.dma_run.DmaHarness`.

Input: the JSON named by ``BARISTA_DMA_CASES`` (written by :func:`sim.dma_run.run_cases`);
per case the packed command, the memory's bus words, the scratchpad words to preload,
the words to read back, the stall probability and the memory's latency. Output: the
JSON named by ``BARISTA_DMA_RESULTS``: per case the scratchpad words read back, the
memory afterwards, the cycles from the command's offer to the DMA's idle, and the
lengths of the burst commands.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sim.dma_run import CASES_ENV, RESULTS_ENV
from sim.port_model import PortMemory
from sim.tb import StreamSource, start_cases, write_results


async def _preload(dut, spad: int, words: list[int]) -> None:  # noqa: ANN001
    for i, w in enumerate(words):
        dut.x_w_addr.value = spad + i
        dut.x_w_data.value = w
        dut.x_w_en.value = 1
        await RisingEdge(dut.clk)
    dut.x_w_en.value = 0


async def _read_back(dut, spad: int, n: int) -> list[int]:  # noqa: ANN001
    """Words ``[spad, spad + n)``: each read is registered one edge after its address."""
    out: list[int] = []
    for a in range(n + 1):
        await RisingEdge(dut.clk)
        if a < n:
            dut.x_r_addr.value = spad + a
        await ReadOnly()
        if a > 0:
            out.append(dut.x_r_data.value.to_unsigned())
    await RisingEdge(dut.clk)
    return out


@cocotb.test()
async def run_cases(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """All cases of the file, one after another in one simulation."""
    header, master = await start_cases(dut, CASES_ENV, ["x_w_en", "x_r_addr", "cmd__valid"])
    results = []
    for case in header["cases"]:
        await _preload(dut, case["spad"], case["preload"])
        mem = PortMemory.for_case(dut, header, case, master)
        cmd = StreamSource(dut, "cmd", random.Random(master.getrandbits(32)))
        cmd.extend([int(case["command"])], case["stall"])
        taken = False
        cycles = 0
        while True:
            await RisingEdge(dut.clk)
            cycles += 1
            if cycles > case["max_cycles"]:
                raise TimeoutError(
                    f"DMA case did not finish in {case['max_cycles']} cycles: "
                    f"{mem.stats.commands} commands, {mem.stats.read_words} words read, "
                    f"{mem.stats.write_words} written"
                )
            cmd.drive()
            mem.drive()
            await ReadOnly()
            busy = int(dut.busy.value)
            if taken and not busy:
                break
            taken |= cmd.sample()
            mem.sample()
        if not mem.idle:
            raise AssertionError(
                f"case {len(results)}: the DMA went idle with memory commands outstanding"
            )
        spad_words = await _read_back(dut, case["spad"], case["words"])
        results.append(
            {
                "spad_words": spad_words,
                "memory": [int(w) for w in mem.words],
                "cycles": cycles,
                "lengths": mem.stats.lengths,
            }
        )
    write_results(RESULTS_ENV, {"cases": results})
