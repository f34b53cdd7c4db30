"""The device top in simulation: its build, one training iteration's inputs, and its run.

* :func:`build` elaborates :class:`~barista_hw.device.rtl.device.Device` for a device
  configuration and compiles it for Icarus or Verilator (cached);
* :func:`iteration_case` runs one iteration of a program on the model
  (:class:`~barista_hw.device.machine.Machine`), instruction by instruction, pre-decoding
  each from the model's state before it runs (the host's part, :func:`~barista_hw.device.
  rtl.device.command`), recording what the host sends (HOST_IN) and receives (HOST_OUT)
  as bus words, and the DRAM before and after;
* :func:`run` plays the host in :mod:`sim.device_test`: the program records with their
  commands, each HOST_IN's words once the HOST_OUT words before it have arrived.

Nothing is compared here: the tests compare with the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from barista_hw.device.isa import Op
from barista_hw.device.machine import Machine
from barista_hw.device.memory import DeviceConfig, pack_stream
from barista_hw.device.rtl.device import Device, command, pack_record
from barista_hw.device.rtl.port import ADDR_BITS, LEN_BITS
from barista_hw.device.rtl.sequencer import UNITS

from .gemm_path_run import BUS_BITS, dram_image
from .runner import UnitBuild, component_build, run_json_module

TEST_MODULE = "sim.device_test"
CASES_ENV = "BARISTA_DEVICE_CASES"  # read by sim.device_test
RESULTS_ENV = "BARISTA_DEVICE_RESULTS"


def build(sim: str, config: DeviceConfig, *, window: int = 64, depth: int = 4) -> UnitBuild:
    """The device top of ``config`` compiled for ``sim`` (cached; race-safe)."""
    e = config.accelerator.engine
    top = f"device_{e.rows}x{e.cols}_w{window}_d{depth}"
    make = lambda: Device(config, bus_bits=BUS_BITS, window=window, depth=depth)  # noqa: E731
    return component_build(make, top, f"{config!r} {window} {depth}", sim)


class RecordingHost:
    """The model's host for one iteration: sends ``inputs`` (name -> (integers, frac)),
    keeps what it receives."""

    def __init__(self, inputs: dict[str, tuple[np.ndarray, int]]) -> None:
        self.inputs, self.received = inputs, {}

    def send(self, name: str) -> tuple[np.ndarray, int]:
        return self.inputs[name]

    def receive(self, name: str, q: np.ndarray, frac: int) -> None:
        self.received[name] = q


@dataclass
class IterationCase:
    """One iteration's inputs to the RTL and what the model left."""

    name: str
    records: list[int]
    before: np.ndarray
    after: np.ndarray
    host_in: list[tuple[int, list[int]]]  # (HOST_OUT words to wait for, words)
    host_out: list[int]
    stall: float = 0.0
    latency: int = 3


def _words(machine: Machine, tensor: int) -> list[int]:
    t = machine.program.tensors[tensor]
    q = machine.tensor(tensor).reshape(-1)
    return [int(w) for w in pack_stream(q, t["bits"], BUS_BITS, 0)]


def iteration_case(
    name: str, machine: Machine, host: RecordingHost, scalars: dict
) -> IterationCase:
    """Run one iteration of ``machine``'s program on the model (:mod:`module docstring`)."""
    program = machine.program
    machine.host, machine.scalars = host, scalars
    before = dram_image(program, machine.dram)
    records, host_in, host_out = [], [], []
    last = len(program.instructions) - 1
    for n, inst in enumerate(program.instructions):
        cmd = command(inst, machine, BUS_BITS)
        records.append(pack_record(inst, cmd, last=n == last))
        machine.execute(inst)
        if inst.op is Op.HOST_IN:  # the words the host sent: the tensor as written
            host_in.append((len(host_out), _words(machine, inst["tensor"])))
        elif inst.op is Op.HOST_OUT:
            host_out += _words(machine, inst["tensor"])
    return IterationCase(
        name, records, before, dram_image(program, machine.dram), host_in, host_out
    )


@dataclass
class DeviceResult:
    """What the RTL left: DRAM, the words sent to the host, SCALE records, counters."""

    case: IterationCase
    memory: np.ndarray
    host_out: list[int]
    scales: int
    counters: dict[str, int] = field(default_factory=dict)
    memory_commands: int = 0


def run(unit: UnitBuild, case: IterationCase, *, seed: int = 0) -> DeviceResult:
    """One iteration on the RTL top."""
    words = sum(len(w) for _, w in case.host_in) + len(case.host_out)
    spec = {
        "addr_bits": ADDR_BITS,
        "len_bits": LEN_BITS,
        "seed": seed,
        "units": list(UNITS),
        "case": {
            "records": [str(r) for r in case.records],
            "memory": [int(w) for w in case.before],
            "host_in": case.host_in,
            "host_out_words": len(case.host_out),
            "stall": case.stall,
            "latency": case.latency,
            "max_cycles": int(2000 * len(case.records) * (1 + 10 * case.stall)) + 50 * words,
        },
    }
    out = run_json_module(unit, TEST_MODULE, spec, (CASES_ENV, RESULTS_ENV))
    return DeviceResult(
        case,
        np.array(out["memory"], np.int64),
        out["host_out"],
        out["scales"],
        out["counters"],
        out["commands"],
    )


__all__ = ["DeviceResult", "IterationCase", "RecordingHost", "build", "iteration_case", "run"]
