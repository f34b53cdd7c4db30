"""Host driver of the UART link: GEMM passes on a board (or its simulation) over a serial port.

:class:`BoardLink` speaks :mod:`boards.protocol` over any pyserial port: a device
(``/dev/ttyUSB0``), or a URL (``socket://127.0.0.1:PORT`` for
:class:`boards.sim_board.SimulatedBoard`). It runs a GEMM as every other host
does, by the host program of :mod:`barista_hw.host` under its ``serial`` policy:
for each chunk, the buffer writes, the RUN command, the result beats of chunks
that end a block, then STATUS until the accelerator is idle, whose cycle counter is
that command's cycles (so the next chunk's writes find it finished).

Errors: :class:`LinkTimeout` when no valid answer comes after all retries (says what
was asked, how often, and the port); :class:`LinkRejected` when the board refuses a
request (NAK_BAD, a driver/bitstream mismatch); :class:`IdentityMismatch` when the
bitstream was built for another configuration than the manifest describes.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig
from barista_hw.host import gemm_program

from . import protocol as P
from .protocol import DEFAULT_BAUD


class LinkError(RuntimeError):
    """The board link failed."""


class LinkTimeout(LinkError):
    """No valid answer to a request after every retry."""


class LinkRejected(LinkError):
    """The board answered NAK_BAD: the request is impossible for this bitstream."""


class IdentityMismatch(LinkError):
    """The bitstream on the port is not the accelerator the host was given."""


class _Retry(Exception):
    pass


@dataclass
class LinkStats:
    """Counters of one link (all requests so far)."""

    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    nak_crc: int = 0
    bad_frames: int = 0
    bytes_out: int = 0
    bytes_in: int = 0


@dataclass(frozen=True)
class Ident:
    """What IDENT answered."""

    version: int
    config_hash: bytes
    result_depth: int
    rows: int
    cols: int
    lane_bits: int


@dataclass
class BoardRun:
    """One GEMM on the board."""

    result: np.ndarray  # (m, n) int64
    cycles: int  # sum over commands of the accelerator's cycle counter
    chunks: int
    wall_seconds: float
    retries: int  # retries during this GEMM
    chunk_cycles: list[int] = field(default_factory=list)


def open_port(port: Any, baudrate: int) -> Any:
    """A pyserial port from a device name or URL (an open port object is passed through)."""
    if not isinstance(port, str):
        return port
    try:
        import serial
    except ImportError:
        raise LinkError("the board link needs pyserial: pip install pyserial") from None
    try:
        return serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
    except (serial.SerialException, ValueError) as exc:
        raise LinkError(f"cannot open {port}: {exc}") from None


class FramedLink:
    """Requests and checked answers of :mod:`boards.protocol`'s framing over a serial
    port (what :class:`BoardLink` and :class:`boards.device_host.DeviceHost` share):
    SEQ per new request, retries on NAK_CRC, on an answer that does not check and on
    ``timeout`` seconds of silence, at most ``retries`` times.

    ``port``: a device name or URL for pyserial, or any object with ``read(n)`` (may
    return fewer bytes, or none after a short wait), ``write``, ``flush`` and ``close``.
    """

    def __init__(
        self, port: Any, *, baudrate: int = DEFAULT_BAUD, timeout: float = 0.5, retries: int = 8
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise InputError("board link: timeout > 0 and retries >= 0 needed")
        self.port_name = port if isinstance(port, str) else getattr(port, "name", repr(port))
        self.timeout = timeout
        self.retries = retries
        self.stats = LinkStats()
        self._seq = 0
        self._buf = bytearray()
        self.ser = open_port(port, baudrate)

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        if self.ser is not None:
            self.ser.close()
            self.ser = None

    def __enter__(self) -> FramedLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- frames -----------------------------------------------------------------------------
    def _fill(self, n: int, deadline: list[float]) -> None:
        """Read until ``n`` bytes are buffered; silence past the deadline raises _Retry."""
        while len(self._buf) < n:
            left = deadline[0] - time.monotonic()
            if left <= 0:
                self.stats.timeouts += 1
                raise _Retry("timeout")
            # The port's own read timeout is short (open_port: 50 ms); setting it per call
            # would reconfigure a real serial port every time.
            got = self.ser.read(n - len(self._buf))
            if got:
                self._buf += got
                self.stats.bytes_in += len(got)
                deadline[0] = time.monotonic() + self.timeout  # progress: silence restarts

    def _receive(self, t: int, seq: int) -> P.Response:
        deadline = [time.monotonic() + self.timeout]
        buf = self._buf
        while True:
            self._fill(1, deadline)
            if buf[0] != P.SYNC_RSP:
                del buf[0]
                continue
            self._fill(P.RSP_HEADER, deadline)
            try:
                code, rtype, rseq, length = P.parse_response_header(bytes(buf[: P.RSP_HEADER]))
            except P.FrameError:
                self.stats.bad_frames += 1
                del buf[0]
                continue
            need = P.RSP_HEADER + (length + 2 if length else 0)
            self._fill(need, deadline)
            frame = bytes(buf[:need])
            try:
                rsp = P.decode_response(frame)
            except P.FrameError:
                self.stats.bad_frames += 1
                del buf[0]
                if rseq == seq and rtype == t:
                    raise _Retry("corrupt answer") from None
                continue
            del buf[:need]
            if rsp.seq != seq or rsp.type != t:
                continue  # a late answer to an earlier attempt or request
            if rsp.code == P.Code.NAK_CRC:
                self.stats.nak_crc += 1
                raise _Retry("NAK (the board saw a CRC error)")
            return rsp

    def request(self, t: P.Type, addr: int = 0, count: int = 0, payload: bytes = b"") -> bytes:
        # ``t``: a request type of boards.protocol or another protocol on its framing.
        """Send one request (retrying as needed); the ACK's payload."""
        self._seq = (self._seq + 1) & 0xFF
        frame = P.encode_request(t, self._seq, addr, count, payload)
        self.stats.requests += 1
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.ser.write(frame)
            self.ser.flush()
            self.stats.bytes_out += len(frame)
            try:
                rsp = self._receive(t, self._seq)
            except _Retry as exc:
                why = str(exc)
                continue
            if rsp.code == P.Code.NAK_BAD:
                raise LinkRejected(
                    f"{self.port_name}: the board rejected {t.name} (addr {addr}, count {count}): "
                    "the request does not fit this bitstream"
                )
            return rsp.payload
        raise LinkTimeout(
            f"{self.port_name}: no valid answer to {t.name} (seq {self._seq}) after "
            f"{self.retries + 1} attempts, {self.timeout:g} s of silence each (last: {why}); "
            "is the board programmed, the port and baud rate right?"
        )


class BoardLink(FramedLink):
    """A connection to a board running ``cfg`` (see the module docstring).

    ``timeout``: seconds of silence after which a request is retried; ``retries``:
    how many times; ``max_words``: buffer words / result beats per frame (a retry
    resends one frame); ``check_ident``: ask IDENT first and compare the
    configuration hash with ``cfg``'s.
    """

    def __init__(
        self,
        port: Any,
        cfg: AcceleratorConfig,
        *,
        baudrate: int = DEFAULT_BAUD,
        timeout: float = 0.5,
        retries: int = 8,
        max_words: int = P.MAX_WORDS,
        check_ident: bool = True,
    ) -> None:
        if max_words < 1:
            raise InputError("board link: max_words >= 1 needed")
        super().__init__(port, baudrate=baudrate, timeout=timeout, retries=retries)
        self.cfg = cfg
        self.max_words = min(max_words, (1 << P.COUNT_BITS) - 1)
        self.geo = P.LinkGeometry.from_config(cfg)
        self.identity: Ident | None = None
        if check_ident:
            try:
                self._check_identity(cfg)
            except BaseException:
                self.close()  # do not leave the port open behind a failed constructor
                raise

    def _check_identity(self, cfg: AcceleratorConfig) -> None:
        """IDENT, and the configuration hash compared with ``cfg``'s."""
        self.identity = self.ident()
        want = P.config_hash(cfg)
        if self.identity.config_hash != want:
            raise IdentityMismatch(
                f"{self.port_name}: the bitstream was built for configuration "
                f"{self.identity.config_hash.hex()} ({self.identity.rows}x"
                f"{self.identity.cols}, {self.identity.lane_bits}-bit lanes), the host "
                f"was given {want.hex()} ({cfg.engine.rows}x{cfg.engine.cols} "
                f"{cfg.engine.fmt.name}): load the matching bitstream or manifest"
            )
        self.geo = P.LinkGeometry.from_config(cfg, self.identity.result_depth)

    # -- operations -------------------------------------------------------------------------
    def ident(self) -> Ident:
        """Ask the bitstream who it is."""
        p = self.request(P.Type.IDENT)
        if len(p) != P.IDENT_LEN or p[:4] != P.MAGIC:
            raise LinkError(f"{self.port_name}: IDENT answer {p.hex()} is not a Barista board")
        if p[4] != P.PROTOCOL_VERSION:
            raise LinkError(
                f"{self.port_name}: protocol version {p[4]}, this host speaks "
                f"{P.PROTOCOL_VERSION}: rebuild the bitstream"
            )
        depth, rows, cols, width = struct.unpack("<HBBB", p[13:18])
        return Ident(p[4], bytes(p[5:13]), depth, rows, cols, width)

    def write(self, sel: int, base: int, words: np.ndarray) -> None:
        """Write operand words (``(n, lanes)`` integers) into buffer A (0) or B (1) at ``base``."""
        t = P.Type.WRITE_B if sel else P.Type.WRITE_A
        nbytes = self.geo.word_bytes(t)
        for i in range(0, len(words), self.max_words):
            part = words[i : i + self.max_words]
            data = P.pack_lanes(part, self.geo.lane_bits, nbytes)
            self.request(t, base + i, len(part), data)

    def run(self, fields: dict[str, int]) -> None:
        """Issue one accelerator command (the value of every field of ``run_layout``)."""
        self.request(P.Type.RUN, payload=self.geo.pack_run(fields))

    def read(self, beats: int) -> np.ndarray:
        """The ``beats`` result beats of the current chunk: ``(beats, cols)`` int64."""
        out = []
        step = self.geo.read_step(self.max_words)
        for s in range(0, beats, step):
            n = min(step, beats - s)
            data = self.request(P.Type.READ, s, n)
            out.append(P.unpack_lanes(data, self.geo.cols, self.geo.lane_bits, self.geo.beat_bytes))
        if not out:
            return np.zeros((0, self.geo.cols), dtype=np.int64)
        return np.concatenate(out)

    def status(self) -> tuple[bool, int, int]:
        """(busy, cycle counter of the latest command, beats produced in the chunk)."""
        p = self.request(P.Type.STATUS)
        return bool(p[0] & 1), int.from_bytes(p[1:6], "little"), int.from_bytes(p[6:9], "little")

    def wait_idle(self, seconds: float = 10.0) -> int:
        """Poll STATUS until the accelerator is idle; its cycle counter."""
        end = time.monotonic() + seconds
        while True:
            busy, cycles, _ = self.status()
            if not busy:
                return cycles
            if time.monotonic() > end:
                raise LinkTimeout(f"{self.port_name}: the accelerator stayed busy for {seconds} s")

    def gemm(
        self,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        blocks: Collection[int] | None = None,
    ) -> BoardRun:
        """``a @ b`` (``a``: M x images*k, ``b``: images*k x N, integers) on the board; with
        ``blocks``, only those output blocks (the rest of the result is 0)."""
        a = np.asarray(a)
        b = np.asarray(b)
        fmt = self.cfg.engine.fmt
        for name, x in (("A", a), ("B", b)):
            if x.size and (x.min() < fmt.min_int or x.max() > fmt.max_int):
                raise InputError(f"board GEMM: operand {name} exceeds the {fmt.name} range")
        a = a.astype(np.int64, copy=False)
        b = b.astype(np.int64, copy=False)
        prog = gemm_program(self.cfg, a, b, cmd, host="serial", what="board GEMM", blocks=blocks)
        out = prog.new_result()
        t0, retries0 = time.perf_counter(), self.stats.retries
        per_chunk = []
        for i, step in enumerate(prog.steps):
            for w in step.writes:  # serial: the previous chunk has finished (wait_idle)
                self.write(w.sel, w.base, w.words)
            self.run(step.fields)
            if step.beats:
                prog.place(out, i, self.read(step.beats))
            per_chunk.append(self.wait_idle())
        return BoardRun(
            result=out,
            cycles=sum(per_chunk),
            chunks=len(prog.steps),
            wall_seconds=time.perf_counter() - t0,
            retries=self.stats.retries - retries0,
            chunk_cycles=per_chunk,
        )
