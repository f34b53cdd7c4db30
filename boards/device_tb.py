"""The cocotb module of the whole device board: the host class over the UART line.

:class:`boards.device_host.DeviceHost` runs in a thread (cocotb's ``bridge``); its byte
port's ``read`` lets the simulation run (``resume``) while the bench plays the serial
line bit by bit and the SDRAM chip (:class:`~sim.sdram_model.SdramChip`, on the pins at
every falling edge, as :mod:`sim.sdram_test` does). The DRAM image is preloaded into
the chip model except its first ``link_words`` words, which the host writes over the
line (a whole image at 40 cycles a byte would take millions of cycles); the host then
queues the HOST_IN words, sends the ``prog`` beats (register writes, as REG requests;
the records are fetched from DRAM), reads the HOST_OUT words, waits for the iterations' SCALEs and
reads the first ``link_words`` words of DRAM back over the line; the whole DRAM is
read from the chip model.

Input: the JSON named by ``BARISTA_BOARD_JOB`` (:func:`boards.device_sim.run`);
output: the JSON named by ``BARISTA_BOARD_RESULTS``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import FallingEdge, RisingEdge

from barista_hw.device.memory import DeviceConfig, DramConfig
from barista_hw.device.rtl.device import pack_write
from barista_hw.device.rtl.sdram import split_address
from boards import device_protocol as D
from boards.device_host import DeviceHost
from sim.sdram_model import SdramChip, SdramViolation
from sim.tb import write_results

JOB_ENV = "BARISTA_BOARD_JOB"
RESULTS_ENV = "BARISTA_BOARD_RESULTS"
PINS = ("cke", "cs_n", "ras_n", "cas_n", "we_n", "ba", "a", "dqm", "dq_o", "dq_oe")


class _Line:
    """The serial line and the SDRAM chip, stepped a cycle at a time by ``run``."""

    name = "cocotb"

    def __init__(self, dut, chip: SdramChip, divisor: int, seed: int) -> None:  # noqa: ANN001
        self.dut, self.chip, self.div = dut, chip, divisor
        self.rng = random.Random(seed)
        self.pins = {name: getattr(dut, f"pins__{name}") for name in PINS}
        self.out_bits: deque[int] = deque()  # host -> board, one per cycle
        self.received = bytearray()
        self.rx_state: list[int] | None = None  # [cycles to the next sample, bits so far, byte]
        self.cycles = 0

    # -- the byte port of DeviceHost (called in its thread) ----------------------------------
    def write(self, frame: bytes) -> None:
        for byte in frame:
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                self.out_bits.extend([bit] * self.div)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, n: int) -> bytes:
        if not self.received:
            self._run(max(len(self.out_bits), 50 * self.div))
        out = bytes(self.received[:n])
        del self.received[:n]
        return out

    # -- the simulation --------------------------------------------------------------------
    @resume
    async def _run(self, cycles: int) -> None:
        for _ in range(cycles):
            await self.cycle()
            if self.received and not self.out_bits:
                return

    async def cycle(self) -> None:
        """One clock: the chip takes the pins and drives DQ, the line moves a bit."""
        dut = self.dut
        await FallingEdge(dut.clk)
        drive = self.chip.step(**{k: int(v.value) for k, v in self.pins.items()})
        # A floating bus reads as noise, so a word taken at the wrong edge shows.
        dut.pins__dq_i.value = self.rng.getrandbits(16) if drive is None else drive
        dut.rx.value = self.out_bits.popleft() if self.out_bits else 1
        self._sample(int(dut.tx.value))
        self.cycles += 1
        if self.cycles % 200_000 == 0:  # progress in sim.log
            dut._log.info(f"cycle {self.cycles}: {len(self.out_bits)} line bits to send")

    def _sample(self, tx: int) -> None:
        s = self.rx_state
        if s is None:
            if not tx:  # a start bit: sample bit 0 in its middle
                self.rx_state = [self.div + self.div // 2, 0, 0]
            return
        s[0] -= 1
        if s[0]:
            return
        if s[1] == 8:  # the stop bit
            self.received.append(s[2])
            self.rx_state = None
            return
        s[2] |= tx << s[1]
        s[1] += 1
        s[0] = self.div


def _location(dram: DramConfig, addr: int) -> tuple[int, int, int]:
    """The chip's (bank, row, column) of bus word ``addr`` (the controller's mapping)."""
    bl = dram.burst_length
    bank, row, col = split_address(dram, addr // bl)
    return bank, row, col + addr % bl


def _write(beat: int) -> tuple[int, int]:
    """``(address, value)`` of a ``prog`` beat (a register write)."""
    addr, value = beat & 0xFFFF, beat >> 16
    assert pack_write(addr, value) == beat, f"not a register write: {beat:#x}"
    return addr, value


def _play(host: DeviceHost, job: dict) -> dict:
    """The host's side of the run (in the bridge thread)."""
    case = job["case"]
    t0 = time.perf_counter()
    while not host.status()["flags"] & D.FLAG_MEMORY:
        pass
    host.write_dram(0, case["memory"][: job["link_words"]])
    load_seconds = time.perf_counter() - t0
    host.host_in([w for _, words in case["host_in"] for w in words])
    host.write_registers([_write(int(b)) for b in case["writes"]])
    out = host.host_out(case["host_out_words"])
    while True:
        status = host.status()
        if status["scales"] >= case["iterations"] and not status["flags"] & D.FLAG_RUNNING:
            break
    return {
        "linked_memory": host.read_dram(0, job["link_words"]),
        "host_out": out,
        "status": status,
        "load_seconds": load_seconds,
        "stats": vars(host.stats),
    }


@cocotb.test()
async def board(dut) -> None:  # noqa: ANN001 - a cocotb handle
    job = json.loads(Path(os.environ[JOB_ENV]).read_text())
    chip = SdramChip(DramConfig.from_dict(job["dram"]))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.rx.value = 1
    dut.pins__dq_i.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    line = _Line(dut, chip, job["divisor"], job["seed"])
    config = DeviceConfig.from_dict(job["config"])
    geo = D.DeviceGeometry(**job["geometry"])

    def host_main() -> dict:
        host = DeviceHost(
            line,
            config,
            tensors=job["tensors"],
            registers=job["registers"],
            geometry=geo,
            timeout=60.0,
            poll=0,
            wait=3600.0,  # a slow simulation: wall seconds before HOST_OUT words are missing
        )
        return _play(host, job)

    dram = DramConfig.from_dict(job["dram"])
    words = job["case"]["memory"]
    for addr in range(job["link_words"], len(words)):
        chip.mem[_location(dram, addr)] = words[addr]
    results: dict = {"violation": None}
    try:
        results.update(await bridge(host_main)())
    except SdramViolation as exc:
        results["violation"] = str(exc)
    results["memory"] = [chip.word(*_location(dram, a)) for a in range(len(words))]
    results["cycles"] = line.cycles
    results["commands"] = chip.counts.commands
    write_results(RESULTS_ENV, results)
