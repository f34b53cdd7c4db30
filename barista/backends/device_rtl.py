"""``--backend device-rtl``: :class:`~.device.DeviceSolver`'s iterations on the Verilated
device top (:class:`sim.device_verilator.DeviceSession`), no Python per cycle.

The model stays the compiler and the reference: it compiles the program for the top
(``rtl_top``: :mod:`barista.device_top`), and its probe chooses the first exponents as
``--backend device`` does. Then the DRAM image, the program's image beside it (its
records with their static commands, :class:`sim.device_run.ProgramImage`) and the
exponent file go to the device once; each iteration the host sends the register writes
(seeds, scalars, the exponent of each tensor it sends, written just before that tensor's
HOST_IN record, when it is known), the start of the fetch of the records up to each
HOST_OUT and a read-back of that tensor's exponent entry,
runs until the words and the read-back arrived, unpacks the words at the read-back
``stored`` exponent and hands them to the host (SoftmaxWithLoss and its gradient), then
starts the rest of the records and runs to SCALE. An iteration reads back nothing else:
the device's state comes back when something reads it, once after each iteration (the
model keeps it until the next): test passes and the net's operand weights (asked for at
a test pass, a snapshot and the end of :meth:`~RtlDeviceSolver.step`) read the operand
weights and the whole exponent file, snapshots, the resume record and :meth:`close` also
the masters and the momentum. A test pass then runs the model's forward on that state
(the simplest correct choice: the model is bit-exact with the top). A restore or an
upload from floats makes the model the newer copy again, and the next iteration uploads
it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from barista_hw.device.isa import Op
from barista_hw.device.memory import pack_stream, unpack_stream
from barista_hw.device.rtl.decode import (
    RegisterMap,
    decoder_sizes,
    exponent_entry,
    exponent_writes,
    read_address,
    read_entry,
)
from barista_hw.device.rtl.device import pack_write
from sim.device_ports import MemoryTiming
from sim.device_run import ProgramImage
from sim.device_verilator import DeviceSession, DeviceSimulator, simulator
from sim.gemm_path_run import BUS_BITS, dram_image

from .device import PERSISTENT, DeviceSolver, _Host

MAX_CYCLES = 50_000_000  # a run of the device that does not arrive by then hangs
SCALES = "scales"  # in what the device holds newer: the exponent file


class RtlDeviceSolver(DeviceSolver):
    """:class:`~.device.DeviceSolver` on the Verilated device top (module docstring);
    ``max_cycles``: the budget of each run between two host exchanges."""

    _session: DeviceSession | None = None
    _model_ahead = True  # the model holds state the device has not (setup, restore)
    _behind: frozenset[str] = frozenset()  # what the device holds newer (an iteration)
    _net_behind = False  # the net's operand weights are older than the device's

    def __init__(self, *args: Any, max_cycles: int = MAX_CYCLES, **kw: Any) -> None:
        super().__init__(*args, rtl_top=True, **kw)
        self.max_cycles = max_cycles
        self.regs = RegisterMap.of(self.compiled.program)
        end = dram_image(self.compiled.program, self.machine.dram).size
        self.image = ProgramImage.of(self.machine, end)
        self.sim: DeviceSimulator | None = None
        self.cycles: list[int] = []  # each iteration's device cycles
        self.prog_beats: list[int] = []  # each iteration's beats on ``prog``
        self.seconds = 0.0  # wall time of the iterations on the device
        self._arrived = {"host_out": 0, "readback": 0, "scales": 0}

    # -- the session -----------------------------------------------------------------------
    def _device(self) -> DeviceSession:
        """The session, built and started on first use; the model's state uploaded if it is
        the newer copy."""
        program = self.compiled.program
        if self.sim is None:
            self.sim = simulator(
                self.config,
                on_build=lambda p: self.log(f"Device top: building the simulator in {p}"),
                **decoder_sizes(program),
            )
        if self._session is None:
            if self._behind:
                raise RuntimeError("the device's state was lost with its session")
            size = self.image.base + self.image.words.size
            timing = MemoryTiming.for_config(self.config, BUS_BITS)
            self._session = DeviceSession(self.sim, size, timing=timing)
            self._arrived = dict.fromkeys(self._arrived, 0)
            self._model_ahead = True
        if self._model_ahead:
            self._session.write(0, self.image.place(dram_image(program, self.machine.dram)))
            writes = exponent_writes(self.machine.scales, program)
            self._session.prog([pack_write(a, v) for a, v in writes.items()])
            self._model_ahead = False
        return self._session

    def _run_until(self, **want: int) -> dict[str, list[int]]:
        """Run until ``want[kind]`` more host-bound words / read-back words / SCALE records
        arrived (each kind); what arrived."""
        s = self._device()
        got: dict[str, list[int]] = {k: [] for k in want}
        while any(len(got[k]) < n for k, n in want.items()):
            targets = {k: self._arrived[k] + n if len(got[k]) < n else -1 for k, n in want.items()}
            r = s.run(**targets, max_cycles=self.max_cycles)
            arrived = {"host_out": r.host_out, "readback": r.readback, "scales": r.scale_records}
            for k, words in arrived.items():
                self._arrived[k] += len(words)
                if k in got:
                    got[k] += words
        return got

    def close(self) -> None:
        """End the device's process, its state read back into the model first."""
        if self._session is not None:
            if self._session.proc is not None:  # alive
                self._pull()
            self._session.close()
            self._session = None

    # -- one iteration -----------------------------------------------------------------------
    def _iterate(self, host: _Host, scalars: dict[str, float]) -> None:
        program, regs = self.compiled.program, self.regs
        s = self._device()
        start, before = time.perf_counter(), s.counters()["cycles"]
        # The exponents of what the host sends are written when known, before its record.
        values = regs.values(self.iter, scalars, dict.fromkeys(regs.fracs, 0))
        later = set(regs.fracs.values())
        beats = [pack_write(a, v) for a, v in values.items() if a not in later]
        first, sent = 0, 0  # the first record not yet fetched; the beats sent

        def fetch(upto: int) -> None:  # the records [first, upto) fetched from DRAM
            nonlocal first
            if upto > first:
                beats.extend(self.image.run(first, upto - first, last=False))
            first = upto

        for n, inst in enumerate(program.instructions):
            if inst.op is Op.HOST_IN:
                t = program.tensors[inst["tensor"]]
                q, frac = host.send(t["name"])
                fetch(n)
                beats.append(pack_write(regs.fracs[inst["tensor"]], frac))
                s.host_in([int(w) for w in pack_stream(q.reshape(-1), t["bits"], BUS_BITS)])
            if inst.op is Op.HOST_OUT:
                fetch(n + 1)
                beats.append(pack_write(read_address(inst["tensor"]), 0))
                s.prog(beats)
                sent += len(beats)
                beats.clear()
                self._receive(host, inst["tensor"])
        fetch(len(program.instructions))
        s.prog(beats)
        sent += len(beats)
        self.prog_beats.append(sent)
        self._run_until(scales=1)
        self._behind = frozenset((*PERSISTENT, SCALES))
        self._net_behind = True
        self.cycles.append(s.counters()["cycles"] - before)
        self.seconds += time.perf_counter() - start

    def _receive(self, host: _Host, tensor: int) -> None:
        """Run until HOST_OUT ``tensor``'s words and its entry's read-back arrived; the
        words, at the read-back ``stored`` exponent, to ``host``."""
        t = self.compiled.program.tensors[tensor]
        size = math.prod(t["shape"])
        got = self._run_until(host_out=-(-size * t["bits"] // BUS_BITS), readback=1)
        q = unpack_stream(np.array(got["host_out"]), t["bits"], size, BUS_BITS)
        stored = read_entry(got["readback"][0])["stored"]
        host.receive(t["name"], q.reshape(t["shape"]), stored)

    # -- the device's state into the model ---------------------------------------------------
    def _pull(self, roles: tuple[str, ...] = PERSISTENT) -> None:
        """The tensors of ``roles`` and the exponent file read back from the device into the
        model, those the device holds newer copies of."""
        behind = self._behind
        if not behind & {*roles, SCALES}:
            return
        s, program, m = self._device(), self.compiled.program, self.machine
        for t in program.tensors:
            if t["role"] in roles and t["role"] in behind:
                first, size = 8 * t["addr"], math.prod(t["shape"])
                at, off = divmod(first, BUS_BITS)
                words = s.read(at, -(-(off + size * t["bits"]) // BUS_BITS))
                q = unpack_stream(words, t["bits"], size, BUS_BITS, off)
                m.tensor(t["name"])[...] = q.reshape(t["shape"])
        if SCALES in behind:
            reads = [read_address(i, w) for i in range(len(program.tensors)) for w in range(4)]
            s.prog([pack_write(a, 0) for a in reads])
            back = self._run_until(readback=len(reads))["readback"]
            m.scales.load_state_dict(
                {
                    t["name"]: exponent_entry(back[4 * i : 4 * i + 4])
                    for i, t in enumerate(program.tensors)
                }
            )
        self._behind = behind - {*roles, SCALES}

    def _updated(self) -> None:
        """Nothing: the net's operand weights are read back when asked for (:meth:`_net`)."""

    def _net(self) -> None:
        """The device's operand weights into the net (and the model), if it lacks them."""
        if self._net_behind:
            self.download(masters=False)

    def _check_weights(self) -> None:
        # The device's weights are integers at an exponent, finite; the net is checked
        # when it holds them.
        if not self._net_behind:
            super()._check_weights()

    def step(self, iters: int) -> None:
        """:meth:`~caffe_bridge.solvers.solver.Solver.step`; the net then holds the device's
        operand weights (read back once, not each iteration)."""
        super().step(iters)
        self._net()

    def download(self, *, masters: bool) -> None:
        self._pull(PERSISTENT if masters else ("weight",))
        super().download(masters=masters)
        self._net_behind = masters  # the net holds the operand copies, else the masters

    def runtime_state(self) -> dict[str, Any]:
        self._pull()
        return super().runtime_state()

    def _forward_pass(self, net: Any) -> None:
        self._net()  # the model's forward, the host's layers or a net on the host read them
        super()._forward_pass(net)

    def upload(self) -> None:
        self._behind = frozenset()  # the floats replace the device's state
        super().upload()
        self._model_ahead = True

    def load_runtime_state(self, record: dict[str, Any]) -> None:
        self._behind = frozenset()
        super().load_runtime_state(record)
        self._model_ahead = True

    def device_report(self) -> str:
        if not self.cycles:
            return "Device top: no iteration ran"
        total = sum(self.cycles)
        return (
            f"Device top (Verilator): {len(self.cycles)} iterations, {total:,} cycles "
            f"(last {self.cycles[-1]:,}), {total / self.seconds:,.0f} cycles/s, "
            f"{self.prog_beats[-1]} prog beats an iteration (records fetched from DRAM)"
        )
