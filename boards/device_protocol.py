"""The device host protocol: the frames of :mod:`boards.protocol`, the device's requests.

The board top of the device accelerator (:mod:`boards.device_board`) speaks the framing
of :mod:`boards.protocol` unchanged (8N1 UART; request ``SYNC 0x5A, TYPE, SEQ, ADDR[3],
COUNT[2], HCRC[2], PAYLOAD, PCRC[2]``; response ``SYNC 0xA5, CODE, TYPE, SEQ, LEN[2],
HCRC[2], PAYLOAD, PCRC[2]``; CRC-16/CCITT-FALSE, sent MSB first; ACK / NAK_CRC /
NAK_BAD; the board hunts for SYNC, drops a request whose header CRC fails or whose bytes
stop for :data:`~boards.protocol.IDLE_BYTE_TIMES` byte times, and answers nothing then).
Every payload here is a sequence of 16-bit bus words, little-endian, so a request's
payload is ``2 * words(TYPE, COUNT)`` bytes (:meth:`DeviceGeometry.words`).

Requests (COUNT at least 1 and at most :meth:`DeviceGeometry.max_count` where it counts):

* ``WRITE_DRAM`` (ADDR: first bus word, COUNT words): written to DRAM at ADDR.. once the
  payload CRC checks (on the board's own master of the memory port); ACK, no payload.
* ``READ_DRAM`` (ADDR, COUNT): answers the COUNT words from ADDR.
* ``REG`` (COUNT register writes, three words each: address, data low, data high): each
  queued as a ``prog`` beat (:func:`~barista_hw.device.rtl.device.pack_write`: ``prog``
  carries register writes only; a FIFO of :attr:`~DeviceGeometry.prog_fifo` words, so
  the link never waits for the device). ``FETCH_ADDR`` / ``FETCH_RUN`` start a program
  run fetched from DRAM (the records are written there with WRITE_DRAM); a read address
  makes the device answer on ``readback``.
* ``HOST_IN`` (COUNT words): queued for the device's ``host_in`` (a FIFO of
  :attr:`~DeviceGeometry.host_in_fifo` words).
  ``REG`` and ``HOST_IN`` answer a 2-byte payload: 1 if the words were queued,
  0 if the FIFO had no room for all of them (nothing queued: send them again later, as a
  new request).
* ``HOST_OUT`` (ADDR: index of the first word wanted, counted from 0 at reset modulo
  2**24; COUNT: at most that many): answers the words ADDR.. the device has produced, up
  to COUNT (possibly none). The board keeps them in a ring of
  :attr:`~DeviceGeometry.out_ring` words and frees those before ADDR (asking for ADDR
  confirms all earlier ones), so an answer lost on the line can be asked for again;
  ``host_out`` stalls the device while the ring is full. NAK_BAD when ADDR is before the
  freed words or after the produced ones.
* ``READBACK`` (ADDR: index of the ``readback`` word wanted, from 0 at reset): answers it
  (4 bytes). ADDR one below the words taken re-answers the last word; ADDR equal to the
  words taken takes the next word if the device offers one, else answers no payload (not
  yet); anything else is NAK_BAD.
* ``STATUS``: answers :data:`STATUS_FIELDS` (u16 flags: bit 0 ``running``, bit 1 a
  ``readback`` word waits, bit 2 the SDRAM is initialised; then u32 each: ``cycles``,
  ``busy_<unit>`` in :data:`~barista_hw.device.rtl.sequencer.UNITS` order, ``host_out``
  words produced, ``readback`` words taken, SCALE records taken (iterations ended),
  words waiting in the ``prog`` FIFO and in
  the ``host_in`` FIFO), one snapshot.
* ``IDENT``: answers ``b"BRSD"``, :data:`DEVICE_PROTOCOL_VERSION`, the bus width, the
  8-byte hash of the device configuration and decoder sizes (:func:`device_hash`) and
  the geometry's sizes (:func:`ident_payload`).

**Executed once.** A request that changes state (WRITE_DRAM, REG, HOST_IN) is
executed only after its payload CRC checks, from a staging buffer of
:attr:`~DeviceGeometry.staging` words, so a corrupt payload is never written anywhere.
The board remembers the TYPE and SEQ of the last request it acknowledged and answers a
request with the same TYPE and SEQ (a retry whose ACK was lost) with the same answer
without executing it again. The host increments SEQ for each new request.
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct
from dataclasses import dataclass

from barista_base.errors import InputError
from barista_hw.device.memory import DeviceConfig
from barista_hw.device.rtl.decode import write_layout
from barista_hw.device.rtl.port import max_length
from barista_hw.device.rtl.sequencer import UNITS

DEVICE_PROTOCOL_VERSION = 1
DEVICE_MAGIC = b"BRSD"
BUS_BITS = 16  # the payload's word: the device's bus word
WORD_BYTES = BUS_BITS // 8
REG_WORDS = 3  # a REG entry: address, data low, data high
#: STATUS payload fields in order: (name, bytes).
STATUS_FIELDS: tuple[tuple[str, int], ...] = (
    ("flags", 2),
    ("cycles", 4),
    *((f"busy_{u}", 4) for u in UNITS),
    ("out_produced", 4),
    ("readback_taken", 4),
    ("scales", 4),
    ("prog_queued", 4),
    ("host_in_queued", 4),
)
STATUS_BYTES = sum(n for _, n in STATUS_FIELDS)
FLAG_RUNNING, FLAG_READBACK, FLAG_MEMORY = 1, 2, 4
COUNTER_BITS = 24  # HOST_OUT and READBACK indices wrap at 2**24
IDENT_BYTES = 4 + 1 + 1 + 8 + 2 * 5


class DType(enum.IntEnum):
    """Request types of the device protocol."""

    IDENT = 0x01
    WRITE_DRAM = 0x02
    READ_DRAM = 0x03
    # 0x04 unused: ``prog`` carries register writes only (REG)
    REG = 0x05
    HOST_IN = 0x06
    HOST_OUT = 0x07
    READBACK = 0x08
    STATUS = 0x09


#: Types whose payload is queued (they answer 1 = queued, 0 = no room).
QUEUED = (DType.REG, DType.HOST_IN)


def beat_words(config: DeviceConfig) -> int:
    """Bus words of a ``prog`` beat, a register write (:func:`~barista_hw.device.rtl.decode.
    write_layout`; the same for every ``config``)."""
    return -(-write_layout().size // BUS_BITS)


def device_hash(config: DeviceConfig, tensors: int, registers: int) -> bytes:
    """8 bytes that identify a device build: its configuration and decoder sizes."""
    text = json.dumps([config.to_dict(), tensors, registers], sort_keys=True)
    return hashlib.sha256(text.encode()).digest()[:8]


@dataclass(frozen=True)
class DeviceGeometry:
    """The sizes a board top and its host agree on (IDENT reports them)."""

    beat_words: int  # bus words of a prog beat
    staging: int = 512  # words of the staging buffer: a request's payload
    prog_fifo: int = 1024  # words queued for prog
    host_in_fifo: int = 1024  # words queued for host_in
    out_ring: int = 512  # host_out words kept for the host

    def __post_init__(self) -> None:
        for name in ("staging", "prog_fifo", "host_in_fifo", "out_ring"):
            n = getattr(self, name)
            if n < 4 or n & (n - 1):
                raise InputError(f"device link {name} = {n} must be a power of two >= 4")
        if self.beat_words > min(self.staging, self.prog_fifo):
            raise InputError(
                f"a prog beat of {self.beat_words} words exceeds the staging buffer "
                f"({self.staging}) or the prog FIFO ({self.prog_fifo})"
            )

    @classmethod
    def of(cls, config: DeviceConfig, **sizes: int) -> DeviceGeometry:
        return cls(beat_words(config), **sizes)

    def max_count(self, t: DType) -> int:
        """The largest COUNT of a request of type ``t``."""
        if t in (DType.WRITE_DRAM, DType.READ_DRAM):
            return min(max_length(), self.staging)
        if t == DType.REG:
            return self.staging // REG_WORDS
        if t == DType.HOST_IN:
            return min(self.staging, self.host_in_fifo)
        if t == DType.HOST_OUT:
            return self.out_ring
        return 0xFFFF

    def words(self, t: DType, count: int) -> int:
        """Payload words of a request of type ``t`` with COUNT ``count``."""
        if t == DType.REG:
            return REG_WORDS * count
        if t in (DType.WRITE_DRAM, DType.HOST_IN):
            return count
        return 0


def ident_payload(config: DeviceConfig, tensors: int, registers: int, geo: DeviceGeometry) -> bytes:
    """What IDENT answers (the gateware holds the same bytes as a constant)."""
    sizes = (geo.beat_words, geo.staging, geo.prog_fifo, geo.host_in_fifo, geo.out_ring)
    return (
        DEVICE_MAGIC
        + bytes([DEVICE_PROTOCOL_VERSION, BUS_BITS])
        + device_hash(config, tensors, registers)
        + struct.pack("<5H", *sizes)
    )


def pack_words(words: list[int] | tuple[int, ...]) -> bytes:
    """Bus words -> payload bytes (little-endian, each word masked to 16 bits)."""
    return b"".join((int(w) & 0xFFFF).to_bytes(WORD_BYTES, "little") for w in words)


def unpack_words(data: bytes) -> list[int]:
    """Payload bytes -> bus words (unsigned)."""
    if len(data) % WORD_BYTES:
        raise InputError(f"payload of {len(data)} bytes is not whole bus words")
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


def reg_words(writes: list[tuple[int, int]]) -> list[int]:
    """REG payload words of ``(address, value)`` register writes."""
    out: list[int] = []
    for addr, value in writes:
        if not 0 <= addr < 1 << 16:
            raise InputError(f"register address {addr} does not fit 16 bits")
        v = value & 0xFFFFFFFF
        out += [addr, v & 0xFFFF, v >> 16]
    return out


def parse_status(payload: bytes) -> dict[str, int]:
    """The STATUS payload as ``{field: value}`` (:data:`STATUS_FIELDS`)."""
    if len(payload) != STATUS_BYTES:
        raise InputError(f"STATUS payload of {len(payload)} bytes, expected {STATUS_BYTES}")
    out, at = {}, 0
    for name, n in STATUS_FIELDS:
        out[name] = int.from_bytes(payload[at : at + n], "little")
        at += n
    return out
