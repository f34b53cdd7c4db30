"""A cocotb test module run inside the simulator: GEMMs through :class:`sim.fp_tile.MinifloatTiles`.

Input: the JSON file named by ``BARISTA_SIM_CASES`` (written by :func:`sim.fppe_run.run_cases`):
``{"rows", "cols", "code_bits", "latency", "tiles": [{"acc_bits", "code_bits"}, ...], "cases":
[{"tile", "a" (M x K codes), "b" (K x N), "rounding", "seed"}, ...]}``. Per case: the LFSR lanes
are loaded with the seed, the K beats stream in (``last`` on the final one), and after the
tile's ``done`` each of the M result rows is read from ``row0`` (exact accumulators) while it
is requantised, its codes read from ``q`` ``latency`` cycles later; a drain pulse moves the
next row up and steps the LFSR lanes.
Output: the JSON file named by ``BARISTA_SIM_RESULTS``: per case the rows of accumulator words
(unsigned, as read) and of codes; nothing is compared here.
"""

from __future__ import annotations

import json
import os

import cocotb

from sim.tb import write_results

CASES_ENV = "BARISTA_SIM_CASES"
RESULTS_ENV = "BARISTA_SIM_RESULTS"
MAX_WAIT = 200  # cycles from the last beat to done: the array's skew and pipeline


def pack(values: list[int], bits: int) -> int:
    return sum((v & ((1 << bits) - 1)) << (bits * i) for i, v in enumerate(values))


def unpack(word: int, bits: int, lanes: int) -> list[int]:
    return [(word >> (bits * i)) & ((1 << bits) - 1) for i in range(lanes)]


@cocotb.test()
async def run_tiles(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """Every case of the file, one after the other in one simulation."""
    from cocotb.clock import Clock
    from cocotb.triggers import ReadOnly, RisingEdge

    with open(os.environ[CASES_ENV]) as f:
        spec = json.load(f)
    rows, cols, bits, latency = spec["rows"], spec["cols"], spec["code_bits"], spec["latency"]
    edge, settle = RisingEdge(dut.clk), ReadOnly()
    cycles = 0

    async def step(**inputs: int) -> None:
        """One clock: the inputs held from this edge to the next, outputs settled."""
        nonlocal cycles
        await edge
        cycles += 1
        for name in ("valid", "last", "drain", "load", "advance"):
            getattr(dut, name).value = inputs.get(name, 0)
        for name in ("a", "b", "seed", "rounding"):
            if name in inputs:
                getattr(dut, name).value = inputs[name]
        await settle

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in ("a", "b", "valid", "last", "drain", "seed", "load", "advance", "rounding"):
        getattr(dut, name).value = 0
    for _ in range(2):
        await edge
    dut.rst.value = 0
    results = []
    for case in spec["cases"]:
        t, a, b = case["tile"], case["a"], case["b"]
        row0, q, done = (getattr(dut, f"{n}_{t}") for n in ("row0", "q", "done"))
        acc_bits, code_bits = spec["tiles"][t]["acc_bits"], spec["tiles"][t]["code_bits"]
        m, k = len(a), len(b)
        await step(load=1, seed=case["seed"], rounding=case["rounding"])
        for i in range(k):
            col = [a[r][i] for r in range(m)] + [0] * (rows - m)
            row = list(b[i]) + [0] * (cols - len(b[i]))
            await step(a=pack(col, bits), b=pack(row, bits), valid=1, last=int(i == k - 1))
        waited = 0
        while not done.value:
            await step(a=0, b=0)
            waited += 1
            if waited > MAX_WAIT:
                raise TimeoutError(f"case {len(results)}: no done {MAX_WAIT} cycles after K")
        await step()  # the banks capture at this edge
        accs, codes = [], []
        for _ in range(m):
            await step(drain=1, advance=1)  # row0 holds this row until the drain's shift
            accs.append(unpack(row0.value.to_unsigned(), acc_bits, cols))
            for _ in range(latency):
                await step()
            codes.append(unpack(q.value.to_unsigned(), code_bits, cols))
        results.append({"acc": accs, "q": codes})
    write_results(RESULTS_ENV, {"cases": results, "sim_cycles": cycles})
