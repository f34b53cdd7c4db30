"""cocotb test bench of the GEMM engines: packing of the flattened ports, stream drivers, monitor.

The generated Verilog flattens every stream into ``<name>__valid``,
``<name>__ready`` and ``<name>__payload``. Payloads are packed little-endian:

* ``a``/``b``: lane ``i`` at bits ``[i*w, (i+1)*w)``, two's complement;
* ``cmd`` and ``o`` follow the ``StructLayout`` s of :mod:`barista_hw.engine`:
  fields in declaration order from bit 0 (``o`` = C data lanes, then ``last``).

The packing helpers at the top are plain numpy and are used both inside the
simulator (by :mod:`sim.engine_test`) and by the unit tests. :class:`EngineTB`
runs the streams from one clocked loop (one coroutine, two triggers per
cycle), which is several times faster than one coroutine per stream while
keeping each stream's random gaps independent: each stream draws from its own
seeded :class:`random.Random`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from barista_hw.command import fit_field

#: ``name -> (bit offset, width)`` of a packed struct, in declaration order.
Fields = Mapping[str, tuple[int, int]]

_WORD = 64  # numpy lanes are packed in groups that fit one uint64


async def clock_and_reset(dut: Any, period_ns: int = 10) -> None:
    """Start the clock and hold the synchronous reset for two cycles."""
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge

    cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def start_cases(dut: Any, cases_env: str, idle: Sequence[str]) -> tuple[dict, random.Random]:
    """A cases-file bench's start: the header of the file named by ``cases_env``, the
    random source its ``seed`` gives, the ``idle`` inputs at 0, the clock, the reset."""
    import json
    import os

    with open(os.environ[cases_env]) as f:
        header = json.load(f)
    for name in idle:
        getattr(dut, name).value = 0
    await clock_and_reset(dut)
    return header, random.Random(header["seed"])


def write_results(env: str, out: Any) -> None:
    """The bench's results as JSON at the path in ``$env``, written whole or not at all
    (the runner reads the file once the simulator has exited)."""
    path = os.environ[env]
    with open(f"{path}.tmp", "w") as f:
        json.dump(out, f)
    os.replace(f"{path}.tmp", path)


def layout_fields(layout: Any) -> dict[str, tuple[int, int]]:
    """``(offset, width)`` of each field of an Amaranth ``StructLayout`` (declaration order)."""
    return {name: (f.offset, f.width) for name, f in layout}


def pack_fields(values: Mapping[str, int], fields: Fields) -> int:
    """Pack a struct; fields missing from ``values`` are zero, values must fit their width
    (:func:`barista_hw.command.fit_field`)."""
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown struct fields {sorted(unknown)} (layout has {list(fields)})")
    word = 0
    for name, (offset, width) in fields.items():
        word |= fit_field(name, values.get(name, 0), width, "struct") << offset
    return word


def unpack_fields(word: int, fields: Fields) -> dict[str, int]:
    """Inverse of :func:`pack_fields` (all fields unsigned)."""
    return {name: (word >> off) & ((1 << width) - 1) for name, (off, width) in fields.items()}


def twos_complement(x: np.ndarray, width: int) -> np.ndarray:
    """Lane values as the signed integers of their ``width`` bits (unsigned codes above
    ``2**(width-1)`` become negative; signed values are unchanged)."""
    x = np.asarray(x, dtype=np.int64)
    return np.where(x >= 1 << (width - 1), x - (1 << width), x)


def pack_lanes(x: np.ndarray, width: int) -> list[int]:
    """Rows of lanes (``(beats, lanes)`` integers) -> one packed Python int per beat.

    Lane ``i`` goes to bits ``[i*width, (i+1)*width)`` in two's complement.
    Vectorised per group of lanes that fits 64 bits; only the final
    assembly of wide words is per beat (Python ints are what the simulator takes).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"pack_lanes wants (beats, lanes), got shape {x.shape}")
    if not 1 <= width <= _WORD // 2:
        raise ValueError(f"lane width {width} out of range 1..{_WORD // 2}")
    beats, lanes = x.shape
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1  # two's complement lanes
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"lane values in [{x.min()}, {x.max()}] do not fit {width} bits")
    u = (x.astype(np.int64) & ((1 << width) - 1)).astype(np.uint64)
    per = _WORD // width
    words: list[int] = [0] * beats
    for g0 in range(0, lanes, per):
        chunk = u[:, g0 : g0 + per]
        shifts = np.arange(chunk.shape[1], dtype=np.uint64) * np.uint64(width)
        part = np.bitwise_or.reduce(chunk << shifts, axis=1).tolist()
        if g0 == 0:
            words = part
        else:
            off = g0 * width
            words = [w | (p << off) for w, p in zip(words, part, strict=True)]
    return words


def unpack_lanes(words: Sequence[int], lanes: int, width: int, signed: bool = True) -> np.ndarray:
    """Packed beats -> ``(beats, lanes)`` int64 (bits above ``lanes*width`` are ignored)."""
    if not 1 <= width <= _WORD // 2:
        raise ValueError(f"lane width {width} out of range 1..{_WORD // 2}")
    per = _WORD // width
    out = np.zeros((len(words), lanes), dtype=np.int64)
    mask = np.uint64((1 << width) - 1)
    for g0 in range(0, lanes, per):
        n = min(per, lanes - g0)
        gmask, off = (1 << (n * width)) - 1, g0 * width
        part = np.array([(w >> off) & gmask for w in words], dtype=np.uint64)
        shifts = np.arange(n, dtype=np.uint64) * np.uint64(width)
        out[:, g0 : g0 + n] = ((part[:, None] >> shifts) & mask).astype(np.int64)
    if signed:
        out = np.where(out >= 1 << (width - 1), out - (1 << width), out)
    return out


def operand_beats(
    a: np.ndarray,
    b: np.ndarray,
    rows: int,
    cols: int,
    pad: np.random.Generator | None = None,
    pad_range: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray]:
    """The ``a`` and ``b`` beats of ``a @ b`` in the engine's order: ``(beats, R)``, ``(beats, C)``.

    Order (see :mod:`barista_hw.engine`): output tiles row-major, then the
    reduction index (image-major for the weight-gradient engine, whose
    operands already have the batch folded into the reduction dimension).
    Lanes past the matrix edge are don't-care for the engine; with ``pad``
    they get random values from ``pad_range`` so a test proves the engine
    ignores them.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    m, kt = a.shape
    n = b.shape[1]
    if b.shape[0] != kt:
        raise ValueError(f"operand shapes {a.shape} and {b.shape} do not chain")
    tm, tn = -(-m // rows), -(-n // cols)

    def padded(shape: tuple[int, int]) -> np.ndarray:
        if pad is None:
            return np.zeros(shape, dtype=np.int64)
        return pad.integers(pad_range[0], pad_range[1], size=shape, endpoint=True)

    a_pad = padded((tm * rows, kt))
    a_pad[:m] = a
    b_pad = padded((kt, tn * cols))
    b_pad[:, :n] = b
    a_t = a_pad.reshape(tm, rows, kt).transpose(0, 2, 1)  # (tm, k, rows)
    b_t = b_pad.reshape(kt, tn, cols).transpose(1, 0, 2)  # (tn, k, cols)
    a_beats = np.broadcast_to(a_t[:, None], (tm, tn, kt, rows)).reshape(-1, rows)
    b_beats = np.broadcast_to(b_t[None], (tm, tn, kt, cols)).reshape(-1, cols)
    return a_beats, b_beats


def result_matrix(beats: np.ndarray, m: int, n: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``o`` beats (``(beats, cols)``, engine order) -> (``(m, n)`` result, lanes past ``n``).

    The second array holds the lanes of the last tile column past ``n``
    (``(m, tn*cols - n)``), which the engine promises to be zero.
    """
    beats = np.asarray(beats)
    cols = beats.shape[1]
    tn = -(-n // cols)
    expected = tn * m
    if beats.shape[0] != expected:
        raise ValueError(f"engine emitted {beats.shape[0]} output beats, expected {expected}")
    blocks = []
    pos = 0
    for tm0 in range(0, m, rows):  # one block per tile row; beats are (tn, row) inside it
        rv = min(rows, m - tm0)
        block = beats[pos : pos + tn * rv].reshape(tn, rv, cols).transpose(1, 0, 2)
        blocks.append(block.reshape(rv, tn * cols))
        pos += tn * rv
    full = np.concatenate(blocks) if blocks else np.zeros((0, tn * cols), dtype=np.int64)
    return full[:, :n], full[:, n:]


# -- the cocotb side -----------------------------------------------------------


@dataclass
class StreamStats:
    """What one stream saw: transfers and cycles with valid (or ready) held low by the TB."""

    transfers: int = 0
    gaps: int = 0


class StreamSource:
    """Drives ``valid``/``payload`` of a stream from a queue of ``(word, stall)`` items.

    Before each offer the source idles with probability ``stall`` of the item
    (from its own ``random.Random``); once ``valid`` is up it stays up, payload
    unchanged, until the transfer (the stream rules of Amaranth).
    """

    def __init__(self, dut: Any, name: str, rng: random.Random) -> None:
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name = name
        self.rng = rng
        self.queue: deque[tuple[int, float]] = deque()
        self.offering = False
        self._valid_out = 0
        self._payload_out: int | None = None
        self.stats = StreamStats()
        self.valid.value = 0

    def extend(self, words: Sequence[int], stall: float = 0.0) -> None:
        self.queue.extend((w, stall) for w in words)

    def drive(self) -> None:
        """After a clock edge: offer the head of the queue (or idle for a random gap)."""
        if not self.offering and self.queue:
            word, stall = self.queue[0]
            if stall and self.rng.random() < stall:
                self.stats.gaps += 1
            else:
                self.offering = True
                if word != self._payload_out:
                    self.payload.value = word
                    self._payload_out = word
        v = int(self.offering)
        if v != self._valid_out:
            self.valid.value = v
            self._valid_out = v

    def sample(self) -> bool:
        """In the read-only phase before an edge: does the offer transfer at that edge?"""
        if self.offering and self.ready.value:
            self.queue.popleft()
            self.offering = False
            self.stats.transfers += 1
            return True
        return False


class StreamSink:
    """Drives ``ready`` of a stream with random gaps and records the payload of each transfer."""

    def __init__(self, dut: Any, name: str, rng: random.Random) -> None:
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng = rng
        self.words: list[int] = []
        self._ready_out = 0
        self.stats = StreamStats()
        self.ready.value = 0

    def drive(self, stall: float) -> None:
        r = 1
        if stall and self.rng.random() < stall:
            r = 0
            self.stats.gaps += 1
        if r != self._ready_out:
            self.ready.value = r
            self._ready_out = r

    def sample(self) -> int | None:
        if self._ready_out and self.valid.value:
            word = self.payload.value.to_unsigned()
            self.words.append(word)
            self.stats.transfers += 1
            return word
        return None


@dataclass
class EngineRun:
    """What :meth:`EngineTB.run` returns."""

    outputs: list[list[int]]  # packed ``o`` words, one list per command
    cycles: list[int]  # the engine's ``cycles`` output after each command
    sim_cycles: int  # clock cycles the loop ran (reset excluded)
    wall_seconds: float
    stats: dict[str, StreamStats] = field(default_factory=dict)


class EngineTB:
    """Wraps an engine DUT: clock, reset, command and operand streams, output monitor.

    ``cmd_fields`` is :func:`layout_fields` of the engine's command layout;
    ``out_width`` the width of one output lane (``out_signed``: two's complement, else
    unsigned codes). Random gaps come from
    ``random.Random(seed)`` split into one generator per stream.
    """

    def __init__(
        self,
        dut: Any,
        cmd_fields: Fields,
        *,
        cols: int,
        out_width: int,
        out_signed: bool = True,
        seed: int = 0,
        period_ns: int = 10,
    ) -> None:
        self.dut = dut
        self.cmd_fields = dict(cmd_fields)
        self.cols = cols
        self.out_width, self.out_signed = out_width, out_signed
        self.period_ns = period_ns
        master = random.Random(seed)
        self.cmd = StreamSource(dut, "cmd", random.Random(master.getrandbits(64)))
        self.a = StreamSource(dut, "a", random.Random(master.getrandbits(64)))
        self.b = StreamSource(dut, "b", random.Random(master.getrandbits(64)))
        self.o = StreamSink(dut, "o", random.Random(master.getrandbits(64)))
        self._last_bit = cols * out_width  # ``last`` follows the data lanes in the layout

    async def start(self) -> None:
        """Start the clock and hold the synchronous reset for two cycles."""
        await clock_and_reset(self.dut, self.period_ns)

    def command_word(self, command: Mapping[str, int]) -> int:
        return pack_fields(command, self.cmd_fields)

    async def run(
        self,
        commands: Sequence[Mapping[str, int]],
        a_words: Sequence[Sequence[int]],
        b_words: Sequence[Sequence[int]],
        stalls: Sequence[float],
        max_cycles: int,
    ) -> EngineRun:
        """Stream the commands back to back; per command its operand words and stall probability.

        Commands are queued all at once (the engine takes the next one when it
        is idle); operand beats of a command may be offered while the previous
        one still drains, which the engine must hold off. Returns the output
        words of each command (split at ``last``) and its ``cycles`` count. A command
        with ``acc_last`` = 0 emits nothing (its sums stay in the accumulator memory): it
        is done when ``busy`` falls.
        """
        from cocotb.triggers import ReadOnly, RisingEdge

        n = len(commands)
        if not (len(a_words) == len(b_words) == len(stalls) == n):
            raise ValueError("one operand list and one stall probability per command")
        for cmd, aw, bw, stall in zip(commands, a_words, b_words, stalls, strict=True):
            self.cmd.extend([self.command_word(cmd)], stall)
            self.a.extend(aw, stall)
            self.b.extend(bw, stall)
        outputs: list[list[int]] = [[] for _ in range(n)]
        cycles: list[int] = []
        emits = [bool(c.get("acc_last", 1)) for c in commands]
        taken = 0  # commands accepted
        done = 0  # commands whose final output beat has transferred
        read_cycles = False  # the final beat transferred at the last edge: ``cycles`` is final
        edge, settle = RisingEdge(self.dut.clk), ReadOnly()
        start = time.perf_counter()
        count = 0
        while done < n or read_cycles:
            await edge
            count += 1
            if count > max_cycles:
                raise TimeoutError(
                    f"engine did not finish in {max_cycles} cycles: {done}/{n} commands done, "
                    f"{self.a.stats.transfers} operand beats taken, "
                    f"{self.o.stats.transfers} output beats seen"
                )
            stall = stalls[min(done, n - 1)]
            self.cmd.drive()
            self.a.drive()
            self.b.drive()
            self.o.drive(stall)
            await settle
            if read_cycles:
                cycles.append(self.dut.cycles.value.to_unsigned())
                read_cycles = False
            if done < taken and not emits[done] and not self.dut.busy.value:
                cycles.append(self.dut.cycles.value.to_unsigned())
                done += 1
            taken += self.cmd.sample()
            a_took, b_took = self.a.sample(), self.b.sample()
            if a_took != b_took:
                raise AssertionError(f"a and b streams transferred apart at cycle {count}")
            word = self.o.sample()
            if word is not None:
                if done >= n:
                    raise AssertionError(f"output beat after the final command at cycle {count}")
                outputs[done].append(word)
                if (word >> self._last_bit) & 1:
                    done += 1
                    read_cycles = True
        wall = time.perf_counter() - start
        stats = {s: getattr(self, s).stats for s in ("cmd", "a", "b", "o")}
        return EngineRun(outputs, cycles, count, wall, stats)

    def unpack_outputs(self, words: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Packed ``o`` words -> (``(beats, cols)`` int64 data, ``last`` flags)."""
        data = unpack_lanes(words, self.cols, self.out_width, self.out_signed)
        last = np.array([(w >> self._last_bit) & 1 for w in words], dtype=np.int64)
        return data, last
