"""Run the SDRAM controller against the chip model in cocotb (Icarus or Verilator).

* :func:`build_controller` elaborates :class:`~barista_hw.device.rtl.sdram.SdramController`
  for a :class:`~barista_hw.device.memory.DramConfig` and builds it (cached by its Verilog
  text, :func:`sim.runner.build_verilog`);
* :func:`random_phase` and :func:`stream_phase` make traffic: random bursts (reads and
  writes, partial bursts, rows hit and missed in every bank) and sequential streams;
* :func:`run` runs phases through one simulation of :mod:`sim.sdram_test` and returns
  what was read, the expected words (a shadow memory of the writes, and
  :func:`~sim.sdram_model.power_up_word` for words never written), the cycles of each
  phase and the first timing rule broken, if any.

The chip model may be given other timings than the controller (``chip=``), so a test can
show that the model catches a controller built with a rule too short.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from barista_base.errors import log_tail
from barista_hw.device.memory import DramConfig
from barista_hw.device.rtl.port import command_layout as port_command_layout
from barista_hw.device.rtl.sdram import (
    SdramController,
    SdramPort,
    command_layout,
    split_address,
)

from .runner import component_build, new_run_dir, run_test_module
from .sdram_model import power_up_word
from .tb import layout_fields, pack_fields
from .tools import SimulationError

JOB_ENV = "BARISTA_SDRAM_JOB"  # read by sim.sdram_test
RESULTS_ENV = "BARISTA_SDRAM_RESULTS"
TEST_MODULE = "sim.sdram_test"
#: Top module names: the controller alone, and behind the memory port.
TOPS = {False: "sdram_controller", True: "sdram_port"}


@dataclass
class Burst:
    """A controller command: words ``first..last`` of burst address ``addr``."""

    write: bool
    addr: int
    first: int
    last: int
    words: list[int] = field(default_factory=list)  # the words written

    def word_addrs(self, dram: DramConfig) -> range:
        bl = dram.burst_length
        return range(self.addr * bl + self.first, self.addr * bl + self.last + 1)

    def payload(self, dram: DramConfig) -> int:
        values = {"addr": self.addr, "write": int(self.write), "first": self.first}
        return pack_fields({**values, "last": self.last}, layout_fields(command_layout(dram)))


@dataclass
class PortCommand:
    """A memory-port command: ``length`` words from word address ``addr``."""

    write: bool
    addr: int
    length: int
    words: list[int] = field(default_factory=list)

    def word_addrs(self, dram: DramConfig) -> range:
        return range(self.addr, self.addr + self.length)

    def payload(self, dram: DramConfig) -> int:
        values = {"addr": self.addr, "length": self.length, "write": int(self.write)}
        return pack_fields(values, layout_fields(port_command_layout()))


Command = Burst | PortCommand


def _op(cmd: Command, dram: DramConfig) -> list:
    reads = 0 if cmd.write else len(cmd.word_addrs(dram))
    return [cmd.payload(dram), int(cmd.write), cmd.words, reads]


@dataclass
class Phase:
    """Bursts run back to back; ``stall``: probability of a gap on each stream and cycle."""

    bursts: list[Command]
    stall: float = 0.0


@dataclass
class TrafficRun:
    """What one simulation returned."""

    sim: str
    got: list[list[int]]  # words read, per phase
    expected: list[list[int]]
    phase_cycles: list[int]
    violations: list[dict]  # rule, cycle, command of each (the first only unless recorded)
    timeout: str | None  # what was left when the cycle limit was reached
    counts: dict[str, int]
    cycles: int
    wall_seconds: float

    @property
    def violation(self) -> dict | None:
        """The first rule broken, if any."""
        return self.violations[0] if self.violations else None

    def mismatch(self) -> str | None:
        """None if every word read is the word expected, else the first difference."""
        for p, (got, exp) in enumerate(zip(self.got, self.expected, strict=False)):
            if len(got) != len(exp):
                return f"phase {p}: {len(got)} words read, {len(exp)} expected"
            for i, (g, e) in enumerate(zip(got, exp, strict=True)):
                if g != e:
                    return f"phase {p}: word {i} read {g:#06x}, expected {e:#06x}"
        return None


def build_controller(dram: DramConfig, sim: str, *, port: bool = False) -> tuple[Path, str]:
    """The controller for ``dram`` (``port``: behind the memory port) built for ``sim``;
    its build directory and top module."""
    top = TOPS[port]
    unit = component_build(
        lambda: SdramPort(dram) if port else SdramController(dram), top, repr(dram), sim
    )
    return unit.build_dir, top


def random_phase(
    dram: DramConfig, rng: random.Random, bursts: int, *, stall: float = 0.0, rows: int = 2
) -> Phase:
    """Random reads and writes over ``rows`` rows of every bank, a few bursts per row.

    A narrow address set makes rows hit and miss in every bank and reads return earlier
    writes; ``first``/``last`` are random, so partial bursts (DQM) are covered.
    """
    bl = dram.burst_length
    per_row = dram.row_bytes // dram.burst_bytes
    banks = dram.banks
    out = []
    for _ in range(bursts):
        bank, row, col = rng.randrange(banks), rng.randrange(rows), rng.randrange(3)
        addr = (row * banks + bank) * per_row + col * (per_row // 3)
        first = rng.randrange(bl)
        last = rng.randrange(first, bl)
        write = rng.random() < 0.5
        words = [rng.getrandbits(dram.bus_bits) for _ in range(last - first + 1)] if write else []
        out.append(Burst(write, addr, first, last, words))
    return Phase(out, stall)


def stream_phase(dram: DramConfig, start: int, bursts: int, *, write: bool, seed: int = 0) -> Phase:
    """``bursts`` whole bursts at consecutive burst addresses from ``start``, no stalls."""
    rng = random.Random(seed)
    bl = dram.burst_length
    return Phase(
        [
            Burst(
                write,
                start + i,
                0,
                bl - 1,
                [rng.getrandbits(dram.bus_bits) for _ in range(bl)] if write else [],
            )
            for i in range(bursts)
        ]
    )


def expected_reads(dram: DramConfig, phases: list[Phase]) -> list[list[int]]:
    """The words each phase's reads return: the last write, or the power-up word."""
    bl = dram.burst_length
    shadow: dict[int, int] = {}
    out = []
    for phase in phases:
        words: list[int] = []
        for b in phase.bursts:
            for i, addr in enumerate(b.word_addrs(dram)):
                if b.write:
                    shadow[addr] = b.words[i]
                elif addr in shadow:
                    words.append(shadow[addr])
                else:
                    bank, row, col = split_address(dram, addr // bl)
                    words.append(power_up_word(bank, row, col + addr % bl))
        out.append(words)
    return out


def random_port_phase(
    dram: DramConfig, rng: random.Random, commands: int, *, stall: float = 0.0, rows: int = 2
) -> Phase:
    """Random port commands (any start, 1 to 40 words) over ``rows`` rows of every bank."""
    words_per_row = dram.row_bytes // (dram.bus_bits // 8)
    out = []
    for _ in range(commands):
        bank, row = rng.randrange(dram.banks), rng.randrange(rows)
        length = rng.randrange(1, 41)
        start = (row * dram.banks + bank) * words_per_row + rng.randrange(words_per_row)
        write = rng.random() < 0.5
        words = [rng.getrandbits(dram.bus_bits) for _ in range(length)] if write else []
        out.append(PortCommand(write, start, length, words))
    return Phase(out, stall)


def run(
    build: tuple[Path, str],
    sim: str,
    dram: DramConfig,
    phases: list[Phase],
    *,
    chip: DramConfig | None = None,
    seed: int = 0,
    record: bool = False,
    max_cycles: int = 200_000,
    keep: bool = False,
) -> TrafficRun:
    """Run ``phases`` on the controller ``build`` (:func:`build_controller`) for ``dram``.

    ``chip``: the chip model's configuration (default ``dram``); ``record``: the model
    notes every violation and goes on (else the run stops at the first).
    """
    run_dir = new_run_dir()
    job_path, results_path = run_dir / "job.json", run_dir / "results.json"
    job = {
        "chip": (chip or dram).to_dict(),
        "seed": seed,
        "record": record,
        "max_cycles": max_cycles,
        "phases": [{"ops": [_op(b, dram) for b in p.bursts], "stall": p.stall} for p in phases],
    }
    job_path.write_text(json.dumps(job))
    env = {JOB_ENV: str(job_path), RESULTS_ENV: str(results_path)}
    build_dir, top = build
    label = f"SDRAM {top} on {sim}"
    run_test_module(build_dir, top, sim, TEST_MODULE, run_dir, env, label)
    if not results_path.is_file():
        log = run_dir / "sim.log"
        raise SimulationError(f"{label}: no results; log {log}:\n{log_tail(log)}")
    res = json.loads(results_path.read_text())
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return TrafficRun(
        sim=sim,
        got=[p["words"] for p in res["phases"]],
        expected=expected_reads(dram, phases),
        phase_cycles=[p["cycles"] for p in res["phases"]],
        violations=res["violations"],
        timeout=res["timeout"],
        counts=res["counts"],
        cycles=res["cycles"],
        wall_seconds=res["wall_seconds"],
    )
