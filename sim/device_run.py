"""The device top in simulation: its build, one training iteration's inputs, and its run.

* :func:`build` elaborates :class:`~barista_hw.device.rtl.device.Device` for a device
  configuration and compiles it for Icarus or Verilator (cached);
* :func:`iterations_case` (:func:`iteration_case`: one) runs iterations of a program on
  the model (:class:`~barista_hw.device.machine.Machine`) and writes the ``prog`` beats
  the host sends, register writes all (:mod:`barista_hw.device.rtl.decode`): the
  exponent file's load once, then per iteration its register writes (seeds, scalars, the
  host's exponents) and the start of a fetch of the program's records with their static
  commands from the DRAM image (:class:`ProgramImage`, laid out once past the tensors,
  the same every iteration); it records
  what the host sends (HOST_IN) and receives (HOST_OUT) as bus words, and the DRAM
  before and after each iteration;
* :func:`run` plays the host in :mod:`sim.device_test`: the ``prog`` writes, each
  HOST_IN's words once the HOST_OUT words before it have arrived; the DRAM and the
  count of host words are taken at each SCALE.

Nothing is compared here: the tests compare with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from barista_hw.device.isa import Op
from barista_hw.device.machine import Machine
from barista_hw.device.memory import DeviceConfig, pack_stream
from barista_hw.device.rtl.decode import (
    RegisterMap,
    check_fits,
    decode_fields,
    exponent_writes,
    static_command,
)
from barista_hw.device.rtl.decoder import QUEUE, REPORT_NAMES
from barista_hw.device.rtl.device import (
    Device,
    beat_lengths,
    pack_record,
    pack_write,
    record_layout,
)
from barista_hw.device.rtl.fetch import image, program_base, start_writes
from barista_hw.device.rtl.port import ADDR_BITS, LEN_BITS
from barista_hw.device.rtl.sequencer import UNITS

from .gemm_path_run import BUS_BITS, dram_image
from .runner import LIGHT_CXX, UnitBuild, component_build, run_json_module
from .tools import SimulationError

TEST_MODULE = "sim.device_test"
CASES_ENV = "BARISTA_DEVICE_CASES"  # read by sim.device_test
RESULTS_ENV = "BARISTA_DEVICE_RESULTS"


def device_top(
    config: DeviceConfig,
    *,
    window: int = 64,
    depth: int = 4,
    tensors: int = 32,
    registers: int = 64,
) -> tuple[str, Callable[[], Device], str]:
    """The device top of ``config`` as its simulators build it: its module name, its
    constructor and the key of its cached Verilog (the cocotb bench's and the C++
    host's share it), its decoder sized for ``tensors`` tensors and ``registers`` host
    registers."""
    e = config.accelerator.engine
    top = f"device_{e.rows}x{e.cols}_w{window}_d{depth}_t{tensors}_r{registers}"
    sizes = {"window": window, "depth": depth, "tensors": tensors, "registers": registers}
    make = lambda: Device(config, bus_bits=BUS_BITS, **sizes)  # noqa: E731
    return top, make, f"{config!r} {sizes}"


def build(
    sim: str,
    config: DeviceConfig,
    *,
    window: int = 64,
    depth: int = 4,
    tensors: int = 32,
    registers: int = 64,
) -> UnitBuild:
    """The device top of ``config`` (:func:`device_top`) compiled for ``sim`` (cached;
    race-safe; Verilator's C++ at :data:`~sim.runner.LIGHT_CXX`: an iteration is tens of
    thousands of cycles)."""
    top, make, key = device_top(
        config, window=window, depth=depth, tensors=tensors, registers=registers
    )
    return component_build(make, top, key, sim, cxx=LIGHT_CXX)


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
    """Iterations' inputs to the RTL and what the model left after each."""

    name: str
    writes: list[int]  # prog beats: register writes (the fetches' starts among them)
    before: np.ndarray
    after: np.ndarray
    host_in: list[tuple[int, list[int]]]  # (HOST_OUT words to wait for, words)
    host_out: list[int]
    stall: float = 0.0
    latency: int = 3
    afters: list[np.ndarray] = field(default_factory=list)  # DRAM after each iteration
    outs: list[int] = field(default_factory=list)  # host words sent by each one's end
    fetched: int = 0  # records the device fetches from DRAM


def _words(machine: Machine, tensor: int) -> list[int]:
    t = machine.program.tensors[tensor]
    q = machine.tensor(tensor).reshape(-1)
    return [int(w) for w in pack_stream(q, t["bits"], BUS_BITS, 0)]


def program_beats(machine: Machine) -> list[int]:
    """The image's beats of the program's records (:func:`~barista_hw.device.rtl.device.
    record_layout`: static commands and decode fields, the same in every iteration)."""
    program, config = machine.program, machine.config
    regs = RegisterMap.of(program)
    return [
        pack_record(
            config,
            inst,
            static_command(inst, program, config, BUS_BITS),
            decode_fields(inst, program, regs),
        )
        for inst in program.instructions
    ]


@dataclass(frozen=True)
class ProgramImage:
    """The program's beats in DRAM (:mod:`barista_hw.device.rtl.fetch`): ``words`` from
    bus word ``base``, record ``k``'s from ``offsets[k]`` (one more: the end)."""

    base: int
    words: np.ndarray
    offsets: list[int]

    @classmethod
    def of(cls, machine: Machine, end: int) -> ProgramImage:
        """The image of ``machine``'s program past the tensors' ``end`` (bus words)."""
        config = machine.config
        bits, lengths = record_layout(config).size, beat_lengths(config, BUS_BITS)
        words, offsets = image(program_beats(machine), bits, lengths, BUS_BITS)
        return cls(program_base(end), words, offsets)

    def place(self, dram: np.ndarray) -> np.ndarray:
        """``dram`` (the tensors' words) with the image after them."""
        out = np.zeros(self.base + self.words.size, np.int64)
        out[: dram.size] = dram
        out[self.base :] = self.words
        return out

    def run(self, first: int, count: int, *, last: bool) -> list[int]:
        """The ``prog`` writes fetching and running records ``[first, first + count)``."""
        at = self.offsets[first]
        writes = start_writes(self.base + at, self.offsets[first + count] - at, last=last)
        return [pack_write(a, v) for a, v in writes]


def register_beats(machine: Machine, host: RecordingHost, scalars: dict) -> list[int]:
    """The register writes before the machine's next iteration: its seeds, the host's
    scalars and the exponents of what the host sends."""
    program = machine.program
    regs = RegisterMap.of(program)
    fracs = {t: host.inputs[program.tensors[t]["name"]][1] for t in regs.fracs}
    values = regs.values(machine.iteration, scalars, fracs)
    return [pack_write(a, v) for a, v in values.items()]


def iteration_case(
    name: str, machine: Machine, host: RecordingHost, scalars: dict
) -> IterationCase:
    """One iteration of ``machine``'s program (:func:`iterations_case`)."""
    return iterations_case(name, machine, [host], scalars)


def iterations_case(
    name: str,
    machine: Machine,
    hosts: list[RecordingHost],
    scalars: dict,
    *,
    tensors: int = 32,
    registers: int = 64,
) -> IterationCase:
    """Run ``len(hosts)`` iterations of ``machine``'s program on the model from its
    iteration on (:mod:`module docstring`): the exponent file's load, then each
    iteration's register writes and the fetch of its records; the DRAM (with the
    program's image) and host words after each.
    The program must fit a decoder of ``tensors`` entries and ``registers`` registers."""
    program = machine.program
    check_fits(program, tensors, registers)
    machine.scalars = scalars
    before = dram_image(program, machine.dram)
    img = ProgramImage.of(machine, before.size)
    before = img.place(before)
    writes = exponent_writes(machine.scales, program)
    beats = [pack_write(a, v) for a, v in writes.items()]
    host_in, host_out, afters, outs = [], [], [], []
    first = machine.iteration
    for i, host in enumerate(hosts):
        machine.host, machine.iteration = host, first + i
        beats += register_beats(machine, host, scalars)
        beats += img.run(0, len(program.instructions), last=i == len(hosts) - 1)
        for inst in program.instructions:
            machine.execute(inst)
            if inst.op is Op.HOST_IN:  # the words the host sent: the tensor as written
                host_in.append((len(host_out), _words(machine, inst["tensor"])))
            elif inst.op is Op.HOST_OUT:
                host_out += _words(machine, inst["tensor"])
        afters.append(img.place(dram_image(program, machine.dram)))
        outs.append(len(host_out))
    fetched = len(hosts) * len(program.instructions)
    return IterationCase(
        name,
        beats,
        before,
        afters[-1],
        host_in,
        host_out,
        afters=afters,
        outs=outs,
        fetched=fetched,
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
    snapshots: list[np.ndarray] = field(default_factory=list)  # DRAM at each SCALE
    outs: list[int] = field(default_factory=list)  # host words received by each SCALE
    scale_cycles: list[int] = field(default_factory=list)  # ``cycles`` at each SCALE


def counter_values(names: Sequence[str], values: Sequence[int], case: str) -> dict[str, int]:
    """The device's counters (``cycles``, ``busy_<unit>`` as ``<unit>``) by name, from its
    ports ``names`` and their ``values``; a set ``lost`` bit (a statistics report the
    decoder lost at a full queue) raises :class:`LostReports` naming case and reporter."""
    got = {n.removeprefix("busy_"): int(v) for n, v in zip(names, values, strict=True)}
    lost = got.pop("lost", 0)
    if lost:
        who = ", ".join(REPORT_NAMES[k] for k in range(len(REPORT_NAMES)) if lost >> k & 1)
        raise LostReports(
            f"device iteration {case!r}: the decoder lost a statistics report of {who} "
            f"(its report queue of {QUEUE} was full; the lost bits {lost:#x} read at STATUS): "
            "the exponents SCALE chose may differ from the model's"
        )
    return got


class LostReports(SimulationError):
    """The device's decoder lost a unit's statistics report (its sticky ``lost`` bits)."""


def max_cycles(case: IterationCase) -> int:
    """A cycle budget for ``case`` that only a hang exhausts."""
    words = sum(len(w) for _, w in case.host_in) + len(case.host_out)
    beats = len(case.writes) + case.fetched
    return int(2000 * beats * (1 + 10 * case.stall)) + 50 * words


def run(unit: UnitBuild, case: IterationCase, *, seed: int = 0) -> DeviceResult:
    """The case's iterations on the RTL top (cocotb)."""
    spec = {
        "addr_bits": ADDR_BITS,
        "len_bits": LEN_BITS,
        "seed": seed,
        "units": list(UNITS),
        "case": {
            "writes": [str(r) for r in case.writes],
            "memory": [int(w) for w in case.before],
            "host_in": case.host_in,
            "host_out_words": len(case.host_out),
            "stall": case.stall,
            "latency": case.latency,
            "max_cycles": max_cycles(case),
        },
    }
    out = run_json_module(unit, TEST_MODULE, spec, (CASES_ENV, RESULTS_ENV))
    return DeviceResult(
        case,
        np.array(out["memory"], np.int64),
        out["host_out"],
        out["scales"],
        counter_values(list(out["counters"]), list(out["counters"].values()), case.name),
        out["commands"],
        [np.array(w, np.int64) for w in out["snapshots"]],
        out["outs"],
        out.get("scale_cycles", []),
    )


__all__ = [
    "DeviceResult",
    "IterationCase",
    "LostReports",
    "ProgramImage",
    "RecordingHost",
    "build",
    "device_top",
    "iteration_case",
    "iterations_case",
    "max_cycles",
    "program_beats",
    "register_beats",
    "run",
]
