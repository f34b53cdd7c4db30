"""A light cocotb model of a memory behind the memory port (:mod:`barista_hw.device.rtl.port`).

:class:`PortMemory` plays the memory side of one port of a DUT whose flattened signals
are ``<prefix>__cmd__valid`` ... ``<prefix>__r__payload``: it takes commands, performs
them in command order on a numpy array of bus words, returns read data ``latency``
cycles or more after the command, and stalls every stream it drives at random
(``stall``: the probability of ``ready`` or ``valid`` low in a cycle). It also checks
the master's side of the stream rules: a ``valid`` beat stays up with its payload
until taken, and no command has length 0.

Like :class:`sim.tb.EngineTB`'s streams it runs from the test bench's one clocked
loop: :meth:`drive` after each rising edge, :meth:`sample` in the read-only phase.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PortStats:
    """What the memory saw: commands, their lengths, words moved, stall cycles."""

    commands: int = 0
    lengths: list[int] = field(default_factory=list)
    read_words: int = 0
    write_words: int = 0
    stalls: int = 0


class PortMemory:
    """The memory side of a memory port, on ``words`` (unsigned bus words, changed in place)."""

    def __init__(
        self,
        dut: Any,
        prefix: str,
        words: np.ndarray,
        *,
        addr_bits: int,
        len_bits: int,
        latency: int = 2,
        stall: float = 0.0,
        seed: int = 0,
    ) -> None:
        if latency < 1:
            raise ValueError(f"memory latency {latency} must be at least one cycle")
        sig = {n: getattr(dut, f"{prefix}__{n}") for n in ("cmd__valid", "cmd__ready")}
        for s in ("cmd", "w", "r"):
            for part in ("valid", "ready", "payload"):
                sig[f"{s}__{part}"] = getattr(dut, f"{prefix}__{s}__{part}")
        self.sig = sig
        self.words = words
        self.addr_bits, self.len_bits = addr_bits, len_bits
        self.latency, self.stall = latency, stall
        self.rng = random.Random(seed)
        self.cycle = 0
        # Commands taken, in order: [addr, length, write, done, cycle data may start].
        self.queue: deque[list[int]] = deque()
        self.stats = PortStats()
        self._out = {"cmd__ready": 0, "w__ready": 0, "r__valid": 0}
        self._r_payload: int | None = None
        self._r_taken = False  # the offered read beat moved at the last edge
        self._held: dict[str, int] = {}  # master streams offered and not taken last cycle
        for name in self._out:
            sig[name].value = 0

    @classmethod
    def for_case(
        cls, dut: Any, header: dict, case: dict, master: random.Random, dtype: type = np.int64
    ) -> PortMemory:
        """The memory on the DUT's port ``port`` for one case of a cases file: the case's
        ``memory``, ``latency`` and ``stall``, the header's ``addr_bits``/``len_bits``, a
        seed drawn from ``master``."""
        return cls(
            dut,
            "port",
            np.array(case["memory"], dtype=dtype),
            addr_bits=header["addr_bits"],
            len_bits=header["len_bits"],
            latency=case["latency"],
            stall=case["stall"],
            seed=master.getrandbits(32),
        )

    def _set(self, name: str, v: int) -> None:
        if self._out[name] != v:
            self.sig[name].value = v
            self._out[name] = v

    def _go(self) -> int:
        if self.stall and self.rng.random() < self.stall:
            self.stats.stalls += 1
            return 0
        return 1

    def drive(self) -> None:
        """After a clock edge: this cycle's ``cmd.ready``, ``w.ready``, ``r.valid``/payload."""
        self.cycle += 1
        self._set("cmd__ready", self._go())
        head = self.queue[0] if self.queue else None
        self._set("w__ready", int(head is not None and head[2] == 1 and self._go()))
        read = head is not None and head[2] == 0 and self.cycle >= head[4]
        # A read beat, once offered, stays offered until taken (the stream rules).
        held, self._r_taken = self._out["r__valid"] and not self._r_taken, False
        if held:
            return
        if read and self._go():
            word = int(self.words[head[0] + head[3]])
            if word != self._r_payload:
                self.sig["r__payload"].value = word
                self._r_payload = word
            self._set("r__valid", 1)
        else:
            self._set("r__valid", 0)

    def _check_held(self, stream: str, valid: int, payload: int, took: bool) -> None:
        """A master's beat offered and not taken must stay offered, payload unchanged."""
        if stream in self._held:
            if not valid or payload != self._held[stream]:
                raise AssertionError(
                    f"{stream} beat withdrawn or changed at cycle {self.cycle} before it was taken"
                )
        if valid and not took:
            self._held[stream] = payload
        else:
            self._held.pop(stream, None)

    def sample(self) -> None:
        """In the read-only phase before an edge: the transfers that happen at that edge."""
        s = self.sig
        valid = int(s["cmd__valid"].value)
        payload = s["cmd__payload"].value.to_unsigned() if valid else 0
        took = bool(valid and self._out["cmd__ready"])
        self._check_held("cmd", valid, payload, took)
        # The head's beat is taken before a new command joins the queue.
        head = self.queue[0] if self.queue else None
        if head is not None and head[2] == 1:
            w_valid = int(s["w__valid"].value)
            w_payload = s["w__payload"].value.to_unsigned() if w_valid else 0
            w_took = bool(w_valid and self._out["w__ready"])
            self._check_held("w", w_valid, w_payload, w_took)
            if w_took:
                self.words[head[0] + head[3]] = w_payload
                self.stats.write_words += 1
                head[3] += 1
        elif head is not None and self._out["r__valid"] and int(s["r__ready"].value):
            self.stats.read_words += 1
            head[3] += 1
            self._r_taken = True
        if head is not None and head[3] == head[1]:
            self.queue.popleft()
        if took:
            addr = payload & ((1 << self.addr_bits) - 1)
            length = (payload >> self.addr_bits) & ((1 << self.len_bits) - 1)
            write = (payload >> (self.addr_bits + self.len_bits)) & 1
            if length == 0:
                raise AssertionError(f"a command of length 0 at cycle {self.cycle}")
            if addr + length > self.words.size:
                raise AssertionError(
                    f"command [{addr}, {addr + length}) at cycle {self.cycle} is outside "
                    f"the memory of {self.words.size} words"
                )
            self.queue.append([addr, length, write, 0, self.cycle + self.latency])
            self.stats.commands += 1
            self.stats.lengths.append(length)

    @property
    def idle(self) -> bool:
        """No command is waiting or in progress."""
        return not self.queue
