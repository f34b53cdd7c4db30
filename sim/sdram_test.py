"""The cocotb test module of the SDRAM controller: traffic in phases against the chip model.

Input: the JSON file named by ``BARISTA_SDRAM_JOB`` (written by :func:`sim.sdram_run.run`):
the chip's :class:`~barista_hw.device.memory.DramConfig`, a seed, a cycle limit and the
phases, each a list of commands ``[payload, write, words written, words read]`` (the
``cmd`` payload packed by the host, so the same bench drives the controller's bursts and
the memory port's commands) and a stall probability. Output: the JSON file named by
``BARISTA_SDRAM_RESULTS``: per phase the words read and the cycles it took, the chip's
command counts, and the rules the controller broke: the first (the simulation stops
there), or with ``record`` every one (:class:`~sim.sdram_model.SdramChip`).

One loop does everything: at each falling edge the chip model takes the pins (the
command the chip samples at the next rising edge) and drives DQ, and the bench sets the
stream inputs; at ``ReadOnly`` it records which beats move at that rising edge. A
phase's clock runs from its first command offered to its last read word received or
last write word taken by the chip; a phase starts when the previous one is over.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from pathlib import Path

import cocotb

from barista_hw.device.memory import DramConfig
from sim.sdram_model import SdramChip, SdramViolation
from sim.tb import write_results

JOB_ENV = "BARISTA_SDRAM_JOB"
RESULTS_ENV = "BARISTA_SDRAM_RESULTS"
PINS = ("cke", "cs_n", "ras_n", "cas_n", "we_n", "ba", "a", "dqm", "dq_o", "dq_oe")


def _int(handle) -> int:  # noqa: ANN001 - a cocotb handle
    """A signal's value; an undefined one (Icarus before its first evaluation) as 0."""
    v = handle.value
    return int(v) if v.is_resolvable else 0


@cocotb.test()
async def traffic(dut) -> None:  # noqa: ANN001 - a cocotb handle
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

    job = json.loads(Path(os.environ[JOB_ENV]).read_text())
    chip = SdramChip(DramConfig.from_dict(job["chip"]), record=job["record"])
    rng = random.Random(job["seed"])
    pins = {name: getattr(dut, f"pins__{name}") for name in PINS}

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("cmd__valid", "cmd__payload", "w__valid", "w__payload", "r__ready", "pins__dq_i"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    results: dict = {"phases": [], "violations": [], "timeout": None}
    edge, settle = FallingEdge(dut.clk), ReadOnly()
    cycle = 0
    wall = time.perf_counter()
    stepped = False  # the chip has taken this cycle's pins
    try:
        for index, phase in enumerate(job["phases"]):
            cmds = deque(phase["ops"])
            words = deque(w for op in phase["ops"] for w in op[2])
            to_read = sum(op[3] for op in phase["ops"])
            stall = phase["stall"]
            got: list[int] = []
            start = None
            cmd_valid = w_valid = False
            while True:
                if not stepped:
                    drive = chip.step(**{k: int(v.value) for k, v in pins.items()})
                    # A floating bus reads as noise, so a word taken at the wrong edge shows.
                    dut.pins__dq_i.value = rng.getrandbits(16) if drive is None else drive
                    stepped = True
                # Over once every command is taken, every word read and the chip has
                # taken the last word written.
                if not cmds and not words and len(got) == to_read and not chip.writes:
                    break
                if cmds and not cmd_valid and _int(dut.ready) and rng.random() >= stall:
                    dut.cmd__payload.value = cmds[0][0]
                    cmd_valid = True
                    start = cycle if start is None else start
                if words and not w_valid and rng.random() >= stall:
                    dut.w__payload.value = words[0]
                    w_valid = True
                dut.cmd__valid.value = int(cmd_valid)
                dut.w__valid.value = int(w_valid)
                r_ready = rng.random() >= stall
                dut.r__ready.value = int(r_ready)
                await settle  # the beats that move at the coming rising edge
                fire_cmd = cmd_valid and bool(_int(dut.cmd__ready))
                fire_w = w_valid and bool(_int(dut.w__ready))
                fire_r = r_ready and bool(_int(dut.r__valid))
                r_word = int(dut.r__payload.value) if fire_r else 0
                await edge
                cycle += 1
                stepped = False
                if cycle > job["max_cycles"]:
                    results["timeout"] = (
                        f"phase {index}: {len(cmds)} commands and {len(words)} write "
                        f"words not taken, {len(got)} of {to_read} words read after "
                        f"{cycle} cycles"
                    )
                    raise TimeoutError
                if fire_cmd:
                    cmds.popleft()
                    cmd_valid = False
                if fire_w:
                    words.popleft()
                    w_valid = False
                if fire_r:
                    got.append(r_word)
            results["phases"].append({"words": got, "cycles": cycle - (start or cycle)})
    except SdramViolation as exc:
        chip.violations.append(exc)
    except TimeoutError:
        pass
    results["violations"] = [
        {"rule": v.rule, "cycle": v.cycle, "command": v.command} for v in chip.violations
    ]
    results["counts"] = chip.counts.commands
    results["cycles"] = cycle
    results["wall_seconds"] = time.perf_counter() - wall
    write_results(RESULTS_ENV, results)
