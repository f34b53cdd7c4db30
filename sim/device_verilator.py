"""The device top Verilated with a C++ host and DRAM model: whole iterations, no Python per cycle.

:func:`simulator` builds (or takes from the cache, :mod:`sim.verilator_build`) the
executable of a :class:`~barista_hw.device.memory.DeviceConfig`'s
:class:`~barista_hw.device.rtl.device.Device`: the Verilog (cached as the cocotb
bench's, :func:`sim.runner.component_verilog`), the reset-tying wrapper and the header
of :class:`~sim.device_ports.DevicePorts`, and the host ``sim/driver/device.cpp``.
:func:`run` writes the input file of a :class:`~sim.device_run.IterationCase` (the
``prog`` beats: the register writes, each iteration's fetch starts among them, and the
host words the model produced, :func:`sim.device_run.iterations_case`), runs the
executable, and reads what it left: at the end, and at each SCALE (an iteration's end)
the DRAM image, the count of words sent to the host and the cycle counter.
:class:`DeviceSession` keeps one device alive across calls instead (``device_sim
--serve``): a host writes and reads DRAM, sends beats and HOST_IN words as it learns
what to send, and runs the device to a target (host words, SCALE records, read-backs).

Input file (little-endian): 16 int64 (magic, words per beat, beats, DRAM words,
HOST_IN batches, HOST_IN words, latency, rate numerator, rate denominator, burst, seed,
max cycles, 4 spare), 2 float64 (host stall, memory stall), the beats (uint32 words),
the DRAM image (uint64), the batches (int64 pairs: host_out words first, words), the
HOST_IN words (uint64). Output file: 16 int64 (status, edges, host_out words, SCALE
records, words per SCALE record, DRAM words, memory commands, read words, write words,
memory stall cycles, counters, beats taken, HOST_IN words taken, loop nanoseconds, loop
CPU nanoseconds, 1 spare), the counters (int64), the DRAM image, the host_out words
(uint64), the SCALE records (uint32 words), per SCALE the host_out words so far and the
cycle counter (int64 pairs), per SCALE the DRAM image (uint64), the message (text).
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from barista_hw.device.memory import DeviceConfig

from .device_ports import SIM_TOP, DevicePorts, MemoryTiming
from .device_run import DeviceResult, IterationCase, counter_values, device_top
from .device_run import max_cycles as default_max_cycles
from .lint import waiver_control_text
from .runner import component_verilog
from .verilator_build import MAKE_FLAGS, VerilatorBuild, build
from .verilator_driver import (
    IO_HEADER,
    ProtocolError,
    RtlSimulationError,
    SimulationTimeout,
    SimulatorCrash,
    cache_root,
)

__all__ = [
    "DeviceSession",
    "DeviceSimulator",
    "SessionRun",
    "MemoryTiming",
    "ProtocolError",
    "RtlSimulationError",
    "SimulationTimeout",
    "SimulatorCrash",
    "VerilatedIteration",
    "run",
    "simulator",
]

DRIVER = Path(__file__).resolve().parent / "driver" / "device.cpp"
EXECUTABLE = "device_sim"
_CFLAGS = "-DVL_USER_FATAL -DVL_USER_STOP -DVL_USER_FINISH"
_MAGIC = 0x3156454442
_HEADER = 16
# Status codes of device.cpp.
_ERRORS = {1: SimulationTimeout, 3: ProtocolError, 4: ProtocolError}


@dataclass(frozen=True)
class DeviceSimulator:
    """A built executable and the ports it was built for."""

    path: Path
    ports: DevicePorts
    config: DeviceConfig

    @property
    def beat_words(self) -> int:
        """32-bit words of a ``prog`` beat (a register write) in the input file (at least
        2, as the C++)."""
        return _beat_words(self.ports)


def _beat_words(ports: DevicePorts) -> int:
    return max(2, -(-ports.width("prog__payload") // 32))


@dataclass
class VerilatedIteration(DeviceResult):
    """:class:`~sim.device_run.DeviceResult` plus the C++ run's own figures."""

    edges: int = 0  # clock edges the host ran
    loop_seconds: float = 0.0  # the C++ loop's wall time (model construction excluded)
    loop_cpu_seconds: float = 0.0  # its thread's CPU time (on a shared machine: the speed)
    scale_records: list[int] = field(default_factory=list)
    read_words: int = 0
    write_words: int = 0
    memory_stalls: int = 0

    @property
    def cycles_per_second(self) -> float:
        """Simulated cycles per second of the loop's wall time."""
        return self.edges / self.loop_seconds if self.loop_seconds else 0.0

    @property
    def cycles_per_cpu_second(self) -> float:
        """Simulated cycles per second of the loop's CPU time (one core)."""
        return self.edges / self.loop_cpu_seconds if self.loop_cpu_seconds else 0.0


def device_build(
    config: DeviceConfig,
    *,
    make_flags: tuple[str, ...] | None = None,
    train: tuple[IterationCase, MemoryTiming] | None = None,
    **sizes: int,
) -> tuple[VerilatorBuild, DevicePorts]:
    """What goes into the executable of ``config``'s device top
    (:func:`sim.device_run.device_top` of ``sizes``: the cocotb bench's Verilog), and its
    ports; ``make_flags``: the C++ compiler's instead of
    :data:`~sim.verilator_build.MAKE_FLAGS` (a bench comparing builds); ``train``: a
    case and its memory that the build runs for gcc's profile
    (:attr:`~sim.verilator_build.VerilatorBuild.train`)."""
    top, make, key = device_top(config, **sizes)
    verilog = component_verilog(make, top, key)
    ports = DevicePorts.of(make())
    recipe = VerilatorBuild(
        name=f"device-sim-{top}",
        top=SIM_TOP,
        sources=(
            ("waivers.vlt", waiver_control_text()),
            (f"{SIM_TOP}.v", ports.wrapper(top)),
            (f"{top}.v", verilog.read_text()),
            ("device.cpp", DRIVER.read_text()),
            ("device_layout.h", ports.header()),
            (IO_HEADER.name, IO_HEADER.read_text()),
        ),
        output=EXECUTABLE,
        cflags=_CFLAGS,
        make_flags=tuple(MAKE_FLAGS if make_flags is None else make_flags),
    )
    if train is not None:
        case, timing = train
        data = input_bytes(
            _beat_words(ports), case, timing, seed=0, max_cycles=default_max_cycles(case)
        )
        recipe = dataclasses.replace(
            recipe, train=("train.in", "train.out"), train_files=(("train.in", data),)
        )
    return recipe, ports


def simulator(
    config: DeviceConfig,
    *,
    on_build: Callable[[Path], None] | None = None,
    make_flags: tuple[str, ...] | None = None,
    train: tuple[IterationCase, MemoryTiming] | None = None,
    **sizes: int,
) -> DeviceSimulator:
    """The executable of ``config``'s device top, built once per content (race-safe);
    ``sizes``: :func:`sim.device_run.device_top`'s (window, depth, the decoder's
    tensors and registers); ``on_build(entry)`` is called when a build starts, and only
    then; ``make_flags``, ``train``: :func:`device_build`'s."""
    recipe, ports = device_build(config, make_flags=make_flags, train=train, **sizes)
    return DeviceSimulator(build(recipe, cache_root(), on_build=on_build), ports, config)


# -- files ---------------------------------------------------------------------------------


def input_bytes(
    beat_words: int, case: IterationCase, timing: MemoryTiming, *, seed: int, max_cycles: int
) -> bytes:
    """The input file of ``case`` (module docstring) for beats of ``beat_words`` words."""
    pw = beat_words
    beats = b"".join(int(r).to_bytes(4 * pw, "little") for r in case.writes)
    host = [w for _, words in case.host_in for w in words]
    batches = np.array([(after, len(w)) for after, w in case.host_in], np.int64).reshape(-1, 2)
    rate = timing.rate
    head = [_MAGIC, pw, len(case.writes), case.before.size, len(batches), len(host)]
    head += [timing.latency, rate.numerator, rate.denominator, timing.burst, seed, max_cycles]
    return b"".join(
        [
            np.array(head + [0] * (_HEADER - len(head)), "<i8").tobytes(),
            np.array([case.stall, timing.stall], "<f8").tobytes(),
            beats,
            np.asarray(case.before).astype("<u8").tobytes(),
            batches.astype("<i8").tobytes(),
            np.array(host, "<u8").tobytes(),
        ]
    )


def write_input(
    path: Path,
    sim: DeviceSimulator,
    case: IterationCase,
    timing: MemoryTiming,
    *,
    seed: int,
    max_cycles: int,
) -> None:
    """The input file of ``case`` (module docstring) for ``sim``."""
    data = input_bytes(sim.beat_words, case, timing, seed=seed, max_cycles=max_cycles)
    Path(path).write_bytes(data)


def read_output(path: Path, sim: DeviceSimulator, case: IterationCase) -> VerilatedIteration:
    """What the executable left in ``path``; a failed run raises an
    :class:`~sim.verilator_driver.RtlSimulationError` naming the case."""
    raw = Path(path).read_bytes()
    h = np.frombuffer(raw, "<i8", _HEADER)
    at = 8 * _HEADER
    counters = np.frombuffer(raw, "<i8", int(h[10]), at)
    at += 8 * int(h[10])
    memory = np.frombuffer(raw, "<u8", int(h[5]), at).astype(np.int64)
    at += 8 * int(h[5])
    host_out = np.frombuffer(raw, "<u8", int(h[2]), at)
    at += 8 * int(h[2])
    sw, n_scales = int(h[4]), int(h[3])
    scales = np.frombuffer(raw, "<u4", n_scales * sw, at).reshape(-1, sw)
    at += 4 * scales.size
    at_scale = np.frombuffer(raw, "<i8", 2 * n_scales, at).reshape(-1, 2)
    at += 8 * at_scale.size
    snapshots = np.frombuffer(raw, "<u8", n_scales * int(h[5]), at).reshape(n_scales, int(h[5]))
    at += 8 * snapshots.size
    if h[0]:
        message = raw[at:].decode(errors="replace")
        error = _ERRORS.get(int(h[0]), SimulatorCrash)
        raise error(f"device iteration {case.name!r}: {message} (after {h[1]} cycles)")
    return VerilatedIteration(
        case,
        memory,
        [int(w) for w in host_out],
        int(h[3]),
        counter_values(sim.ports.counters, counters, case.name),
        int(h[6]),
        [s.astype(np.int64) for s in snapshots],
        [int(n) for n in at_scale[:, 0]],
        [int(c) for c in at_scale[:, 1]],
        edges=int(h[1]),
        loop_seconds=int(h[13]) * 1e-9,
        loop_cpu_seconds=int(h[14]) * 1e-9,
        scale_records=[int.from_bytes(r.tobytes(), "little") for r in scales],
        read_words=int(h[7]),
        write_words=int(h[8]),
        memory_stalls=int(h[9]),
    )


def run(
    sim: DeviceSimulator,
    case: IterationCase,
    *,
    timing: MemoryTiming | None = None,
    seed: int = 0,
    max_cycles: int | None = None,
) -> VerilatedIteration:
    """The iterations of ``case`` on the Verilated device top.

    ``timing``: the memory's (default: ``case.latency`` cycles, a word a cycle, stalling
    as ``case.stall``, as the cocotb bench's memory); the host's streams stall as
    ``case.stall``; ``seed`` draws every stall.
    """
    if timing is None:
        timing = MemoryTiming(latency=case.latency, stall=case.stall)
    budget = default_max_cycles(case) if max_cycles is None else max_cycles
    with tempfile.TemporaryDirectory(prefix="barista-device-") as tmp:
        inp, out = Path(tmp, "input.bin"), Path(tmp, "output.bin")
        write_input(inp, sim, case, timing, seed=seed, max_cycles=budget)
        done = subprocess.run(
            [str(sim.path), str(inp), str(out)], capture_output=True, text=True, check=False
        )
        if done.returncode or not out.is_file():
            raise SimulatorCrash(
                f"device iteration {case.name!r}: {sim.path.name} exited with "
                f"{done.returncode}: {done.stderr.strip()[-2000:]}"
            )
        return read_output(out, sim, case)


# -- the serve mode: a device kept alive across iterations ----------------------------------
_OP = {"quit": 0, "init": 1, "write": 2, "read": 3, "prog": 4, "host_in": 5, "run": 6}
_OP["counters"] = 7


@dataclass
class SessionRun:
    """What one :meth:`DeviceSession.run` brought back: the new host-bound words, SCALE
    records and read-back words, and the clock edges so far."""

    host_out: list[int]
    scale_records: list[int]
    readback: list[int]
    edges: int
    cycles: int


class DeviceSession:
    """``device_sim --serve``: one Verilated device and its DRAM model alive across calls
    (``sim/driver/device.cpp``'s serve mode), a context manager that ends the process.

    The host writes and reads DRAM words, appends ``prog`` beats (register writes,
    read-backs, fetch starts) and HOST_IN words, and runs the device until a number of
    host-bound words, SCALE records or read-back words have arrived in all. A run over
    its cycle budget raises :class:`SimulationTimeout`, a memory command outside DRAM
    :class:`ProtocolError`; the session is then closed."""

    def __init__(
        self,
        sim: DeviceSimulator,
        dram_words: int,
        *,
        timing: MemoryTiming | None = None,
        stall: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.sim = sim
        self.proc: subprocess.Popen | None = subprocess.Popen(
            [str(sim.path), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        t = timing or MemoryTiming()
        head = np.array([t.latency, t.rate.numerator, t.rate.denominator, t.burst], "<i8")
        stalls = np.array([stall, t.stall], "<f8")
        self._call("init", dram_words, seed, payload=head.tobytes() + stalls.tobytes())

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the process (QUIT, then kill if it does not)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.write(np.array([_OP["quit"], 0, 0, 0, 0], "<i8").tobytes())
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            proc.stdout.close()

    def _read(self, n: int) -> bytes:
        data = self.proc.stdout.read(n)
        if len(data) != n:
            code = self.proc.poll()
            self.close()
            raise SimulatorCrash(f"{self.sim.path.name} --serve ended (exit {code})")
        return data

    def _call(self, op: str, a: int = 0, b: int = 0, c: int = 0, d: int = 0, *,
              payload: bytes = b"") -> np.ndarray:  # fmt: skip
        if self.proc is None:
            raise SimulatorCrash("the device session is closed")
        self.proc.stdin.write(np.array([_OP[op], a, b, c, d], "<i8").tobytes() + payload)
        self.proc.stdin.flush()
        h = np.frombuffer(self._read(64), "<i8")
        if h[0]:
            message = self._read(int(h[2])).decode(errors="replace")
            self.close()
            error = {**_ERRORS, 2: ProtocolError}.get(int(h[0]), SimulatorCrash)
            raise error(f"device session: {message} (after {h[1]} cycles)")
        return h

    def write(self, addr: int, words: np.ndarray) -> None:
        """DRAM bus words from ``addr``."""
        words = np.asarray(words).astype("<u8")
        self._call("write", addr, words.size, payload=words.tobytes())

    def read(self, addr: int, n: int) -> np.ndarray:
        """``n`` DRAM bus words from ``addr``."""
        self._call("read", addr, n)
        return np.frombuffer(self._read(8 * n), "<u8").astype(np.int64)

    def prog(self, beats: list[int]) -> None:
        """Append ``prog`` beats (sent in order as the device takes them)."""
        pw = self.sim.beat_words
        data = b"".join(int(r).to_bytes(4 * pw, "little") for r in beats)
        self._call("prog", len(beats), payload=data)

    def host_in(self, words: list[int]) -> None:
        """Append HOST_IN bus words."""
        self._call("host_in", len(words), payload=np.array(words, "<u8").tobytes())

    def run(
        self,
        *,
        host_out: int = -1,
        scales: int = -1,
        readback: int = -1,
        max_cycles: int = 50_000_000,
    ) -> SessionRun:
        """Run until ``host_out`` host-bound words, ``scales`` SCALE records or
        ``readback`` read-back words have arrived since the session began (the first
        target reached), within ``max_cycles``; what arrived since the last run."""
        h = self._call("run", host_out, scales, readback, max_cycles)
        n1, n2, n3 = (int(x) for x in h[2:5])
        out = np.frombuffer(self._read(8 * n1), "<u8")
        sw = max(2, -(-self.sim.ports.width("scale__payload") // 32))
        recs = np.frombuffer(self._read(4 * n2 * sw), "<u4").reshape(-1, sw)
        rb = np.frombuffer(self._read(8 * n3), "<u8")
        return SessionRun(
            [int(w) for w in out],
            [int.from_bytes(r.tobytes(), "little") for r in recs],
            [int(w) for w in rb],
            int(h[1]),
            int(h[5]),
        )

    def counters(self) -> dict[str, int]:
        """``cycles`` and the units' busy counters (:func:`~.device_run.counter_values`:
        a report the decoder lost raises)."""
        h = self._call("counters")
        values = np.frombuffer(self._read(8 * int(h[2])), "<i8")
        return counter_values(self.sim.ports.counters, values, "session")
