"""Host side of the device host protocol (:mod:`boards.device_protocol`) over any byte port.

:class:`DeviceHost` loads DRAM (weights, the program image, a dataset), sends ``prog``
beats and register writes, HOST_IN words, reads HOST_OUT words, ``readback`` words,
STATUS and IDENT, with the framing and retries of :class:`~boards.host.FramedLink`.
A queued request the board had no room for (answer 0) is sent again, as a new
request, after ``poll`` seconds.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from barista_hw.device.memory import DeviceConfig

from . import device_protocol as D
from .host import FramedLink, IdentityMismatch, LinkError, LinkTimeout
from .protocol import DEFAULT_BAUD


class DeviceHost(FramedLink):
    """A connection to a device board built for ``config`` with a decoder of ``tensors``
    / ``registers`` (``check_ident``: IDENT first, its hash compared)."""

    def __init__(
        self,
        port: Any,
        config: DeviceConfig,
        *,
        tensors: int,
        registers: int,
        geometry: D.DeviceGeometry | None = None,
        baudrate: int = DEFAULT_BAUD,
        timeout: float = 0.5,
        retries: int = 8,
        poll: float = 0.001,
        wait: float = 30.0,
        check_ident: bool = True,
    ) -> None:
        super().__init__(port, baudrate=baudrate, timeout=timeout, retries=retries)
        self.config, self.tensors, self.registers = config, tensors, registers
        self.geo = geometry or D.DeviceGeometry.of(config)
        self.poll, self.wait = poll, wait
        self.out_next = 0  # index of the next HOST_OUT word
        self.readback_next = 0
        if check_ident:
            try:
                self.check_ident()
            except BaseException:
                self.close()
                raise

    def check_ident(self) -> bytes:
        """IDENT, compared byte for byte with what this host expects."""
        want = D.ident_payload(self.config, self.tensors, self.registers, self.geo)
        got = self.request(D.DType.IDENT)
        if got[:4] != D.DEVICE_MAGIC:
            raise LinkError(f"{self.port_name}: IDENT answer {got.hex()} is not a device board")
        if got != want:
            raise IdentityMismatch(
                f"{self.port_name}: the bitstream identifies as {got.hex()}, this host "
                f"expects {want.hex()} (protocol version, configuration hash and sizes): "
                "load the matching bitstream"
            )
        return got

    # -- DRAM -------------------------------------------------------------------------------
    def write_dram(self, addr: int, words: list[int]) -> None:
        """Write bus words into DRAM from word ``addr``."""
        step = self.geo.max_count(D.DType.WRITE_DRAM)
        for i in range(0, len(words), step):
            part = list(words[i : i + step])
            self.request(D.DType.WRITE_DRAM, addr + i, len(part), D.pack_words(part))

    def read_dram(self, addr: int, n: int) -> list[int]:
        """``n`` bus words of DRAM from word ``addr`` (unsigned)."""
        step, out = self.geo.max_count(D.DType.READ_DRAM), []
        for i in range(0, n, step):
            count = min(step, n - i)
            out += D.unpack_words(self.request(D.DType.READ_DRAM, addr + i, count))
        return out

    # -- queued streams ---------------------------------------------------------------------
    def _queue(self, t: D.DType, count: int, words: list[int]) -> None:
        """A queued request, sent again (new SEQ) while the board has no room."""
        end = time.monotonic() + self.wait
        while self.request(t, 0, count, D.pack_words(words)) != b"\x01\x00":
            if time.monotonic() > end:
                raise LinkTimeout(f"{self.port_name}: no room for {t.name} for {self.wait} s")
            time.sleep(self.poll)

    def write_registers(self, writes: list[tuple[int, int]]) -> None:
        """Register writes ``(address, value)``, each a ``prog`` beat."""
        step = self.geo.max_count(D.DType.REG)
        for i in range(0, len(writes), step):
            part = writes[i : i + step]
            self._queue(D.DType.REG, len(part), D.reg_words(part))

    def host_in(self, words: list[int]) -> None:
        """Words for the device's HOST_INs, in program order."""
        step = self.geo.max_count(D.DType.HOST_IN)
        for i in range(0, len(words), step):
            part = list(words[i : i + step])
            self._queue(D.DType.HOST_IN, len(part), part)

    # -- reads ------------------------------------------------------------------------------
    def host_out(self, n: int) -> list[int]:
        """The next ``n`` HOST_OUT words (waits for them, up to ``wait`` seconds)."""
        out: list[int] = []
        end = time.monotonic() + self.wait
        while len(out) < n:
            count = min(n - len(out), self.geo.max_count(D.DType.HOST_OUT))
            got = D.unpack_words(self.request(D.DType.HOST_OUT, self.out_next, count))
            out += got
            self.out_next = (self.out_next + len(got)) % (1 << D.COUNTER_BITS)
            if not got:
                if time.monotonic() > end:
                    raise LinkTimeout(f"{self.port_name}: {n - len(out)} HOST_OUT words missing")
                time.sleep(self.poll)
        # Asking for the next index frees the words just read on the board.
        return out

    def readback(self) -> int:
        """The next ``readback`` word (waits for it)."""
        end = time.monotonic() + self.wait
        while True:
            p = self.request(D.DType.READBACK, self.readback_next)
            if p:
                self.readback_next = (self.readback_next + 1) % (1 << D.COUNTER_BITS)
                return struct.unpack("<I", p)[0]
            if time.monotonic() > end:
                raise LinkTimeout(f"{self.port_name}: no readback word for {self.wait} s")
            time.sleep(self.poll)

    def status(self) -> dict[str, int]:
        """STATUS as ``{field: value}`` (:data:`~boards.device_protocol.STATUS_FIELDS`)."""
        return D.parse_status(self.request(D.DType.STATUS))
