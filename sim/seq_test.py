"""The cocotb module run inside the simulator: a device program through the
:class:`~barista_hw.device.rtl.sequencer.Sequencer`, every unit played by a mock.

Input: the JSON named by ``BARISTA_SEQ_CASES`` (written by :func:`sim.seq_run.run_program`):
``records`` (each 32-byte record as an integer), per instruction its ``latency`` (cycles)
and ``bus`` (whether it holds the shared DRAM bus while it runs), ``units`` (the names of
the units with command streams), ``stall`` (the probability of a gap before a record and
of a unit's ``ready`` low in a cycle), ``tb_seed`` and ``max_cycles``.

A mock unit takes a command when it is idle (or finishing in that cycle), starts it when
the DRAM bus is free if the instruction uses it (one bus, as the time model has it), and
reports its token on ``<unit>_done`` ``latency`` cycles after the start. Output: the JSON
named by ``BARISTA_SEQ_RESULTS``: per unit the ``(token, take cycle, done cycle)`` of the
instructions in the order it took them and the records it took, the ``SCALE`` s taken
(token, cycle), and the sequencer's counters at the end. Nothing is compared here.
"""

from __future__ import annotations

import json
import os
import random

import cocotb

from sim.seq_run import CASES_ENV, RESULTS_ENV
from sim.tb import StreamSource, write_results

RECORD_BITS = 256
TOKEN_BITS = 16


class _Unit:
    """A mock unit: one instruction at a time, done ``latency`` cycles after it starts."""

    def __init__(self, dut, name: str, rng: random.Random) -> None:  # noqa: ANN001
        self.cmd_valid = getattr(dut, f"{name}__valid")
        self.cmd_ready = getattr(dut, f"{name}__ready")
        self.cmd_payload = getattr(dut, f"{name}__payload")
        self.done_valid = getattr(dut, f"{name}_done__valid")
        self.done_ready = getattr(dut, f"{name}_done__ready")
        self.done_payload = getattr(dut, f"{name}_done__payload")
        self.rng = rng
        self.current: list | None = None  # [token, take cycle, finish cycle]
        self.log: list[list[int]] = []
        self.records: list[str] = []  # the records taken, whole as the stream carried them
        self.cmd_ready.value = 0
        self.done_valid.value = 0

    def drive(self, now: int, stall: float) -> None:
        finishing = self.current is not None and self.current[2] <= now
        if finishing:
            self.done_payload.value = self.current[0]
        self.done_valid.value = int(finishing)
        idle = self.current is None or finishing
        self.cmd_ready.value = int(idle and not (stall and self.rng.random() < stall))

    def sample(self, now: int, insts: list[dict], index: dict[int, int], bus: list[int]) -> int:
        """Record a report and a command taken at this edge; the instructions finished."""
        finished = 0
        if self.current is not None and self.done_valid.value and self.done_ready.value:
            self.log.append([self.current[0], self.current[1], now])
            self.current = None
            finished = 1
        if self.cmd_valid.value and self.cmd_ready.value:
            record = self.cmd_payload.value.to_unsigned()
            self.records.append(str(record))
            token = (record >> 16) & ((1 << TOKEN_BITS) - 1)
            inst = insts[index[token]]
            start = now + 1
            if inst["bus"]:
                start = max(start, bus[0])
                bus[0] = start + inst["latency"]
            # Done is offered from the cycle ``start + latency - 1`` and taken at its end.
            self.current = [token, now, start + inst["latency"] - 1]
        return finished


@cocotb.test()
async def run_program(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """The whole program once; the counters read after ``running`` falls."""
    from cocotb.clock import Clock
    from cocotb.triggers import ReadOnly, RisingEdge

    with open(os.environ[CASES_ENV]) as f:
        spec = json.load(f)
    master = random.Random(spec["tb_seed"])
    stall = spec["stall"]
    records = [int(r) for r in spec["records"]]
    insts = [
        {"latency": max(1, lat), "bus": b}
        for lat, b in zip(spec["latency"], spec["bus"], strict=True)
    ]
    index = {(r >> 16) & 0xFFFF: i for i, r in enumerate(records)}  # token -> instruction
    prog = StreamSource(dut, "prog", random.Random(master.getrandbits(64)))
    for i, r in enumerate(records):
        prog.extend([r | (int(i == len(records) - 1) << RECORD_BITS)], stall)
    units = {u: _Unit(dut, u, random.Random(master.getrandbits(64))) for u in spec["units"]}
    dut.scale__ready.value = 1
    scales: list[list[int]] = []

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    edge, settle = RisingEdge(dut.clk), ReadOnly()
    now, finished, started, bus = 0, 0, False, [0]
    expected = sum(1 for r in records if (r & 0xFF) not in spec["own_ops"])
    while True:
        await edge
        now += 1
        if now > spec["max_cycles"]:
            raise TimeoutError(
                f"{finished}/{expected} unit instructions done in {now} cycles, "
                f"{prog.stats.transfers}/{len(records)} records taken"
            )
        prog.drive()
        for u in units.values():
            u.drive(now, stall)
        await settle
        prog.sample()
        for u in units.values():
            finished += u.sample(now, insts, index, bus)
        if dut.scale__valid.value:
            scales.append([(dut.scale__payload.value.to_unsigned() >> 16) & 0xFFFF, now])
        running = int(dut.running.value)
        started = started or bool(running)
        if started and not running and finished == expected and not prog.queue:
            break
    counters = {"cycles": dut.cycles.value.to_unsigned()}
    counters.update({u: getattr(dut, f"busy_{u}").value.to_unsigned() for u in units})
    out = {
        "units": {u: unit.log for u, unit in units.items()},
        "records": {u: unit.records for u, unit in units.items()},
        "scales": scales,
        "counters": counters,
        "sim_cycles": now,
    }
    write_results(RESULTS_ENV, out)
