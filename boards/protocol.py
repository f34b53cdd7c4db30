"""The UART host-link protocol: frame format, CRC and field widths (gateware and host share it).

Serial line: 8 data bits, no parity, 1 stop bit, LSB first, at the board's baud rate.
Every multi-byte integer is little-endian except the CRCs, which are sent most
significant byte first so that running the CRC over the protected bytes *and* their
CRC leaves zero (the check the gateware does).

CRC: CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, not reflected, no
final XOR; ``binascii.crc_hqx(data, 0xFFFF)``; check value 0x29B1 for ``b"123456789"``).

Request (host -> board)::

    offset  size  field
    0       1     SYNC   0x5A
    1       1     TYPE   (IDENT, WRITE_A, WRITE_B, RUN, READ, STATUS)
    2       1     SEQ    sequence number; the host increments it per new request and
                         repeats it when it retries a request
    3       3     ADDR   WRITE_*: first buffer word; READ: first result beat of the chunk
    6       2     COUNT  WRITE_*: words; READ: beats; others 0
    8       2     HCRC   CRC of bytes 1..7
    10      P     PAYLOAD  (P from TYPE and COUNT, see below; none for IDENT/READ/STATUS)
    10+P    2     PCRC   CRC of the payload (only when P > 0)

Response (board -> host)::

    0       1     SYNC   0xA5
    1       1     CODE   ACK 0x00, NAK_CRC 0x01 (payload CRC wrong: retry),
                         NAK_BAD 0x02 (a well-formed but impossible request: an error)
    2       1     TYPE   of the request answered
    3       1     SEQ    of the request answered
    4       2     LEN    payload bytes
    6       2     HCRC   CRC of bytes 1..5
    8       LEN   PAYLOAD
    8+LEN   2     PCRC   CRC of the payload (only when LEN > 0)

Payloads, lane values two's complement, lane ``i`` at bits ``i*w .. i*w+w-1`` of a
little-endian bit string padded to whole bytes (:class:`LinkGeometry` gives the sizes,
computed from the Amaranth layouts of :mod:`barista_hw.accelerator`):

* ``WRITE_A`` / ``WRITE_B``: COUNT words of ``rows`` / ``cols`` lanes, written to buffer
  A / B at ADDR, ADDR+1, ... The header CRC is checked before any word is written, so
  a corrupt address or count never writes; words of a request whose payload CRC
  fails may have landed, but only in ADDR..ADDR+COUNT-1, which the retry rewrites.
* ``RUN``: the accelerator command (:func:`barista_hw.accelerator.run_layout`) packed
  LSB first. Issued once the payload CRC checks; a retried RUN (same SEQ as the last
  request executed, which was this RUN) is acknowledged without running again. The
  ACK is sent when the accelerator accepts the command. RUN restarts the result
  beat numbering of the chunk at 0.
* ``READ``: answers COUNT result beats (``cols`` lanes each) starting at beat ADDR of
  the current chunk. The board keeps beats in a ring of ``result_depth`` beats and
  frees those before ADDR when a READ arrives (the host asking for ADDR confirms it
  has all earlier ones), so an answer lost on the line can be asked for again.
  NAK_BAD when ADDR is before the freed beats or after the produced ones, COUNT is
  0 or above ``result_depth``, or the accelerator stops before producing them.
* ``STATUS``: answer ``flags`` (1 byte: bit 0 busy), ``cycles`` (5 bytes: the
  accelerator's cycle counter of the latest command), ``beats`` (3 bytes: produced
  in the current chunk).
* ``IDENT``: answer ``b"BRST"``, protocol version (1 byte), configuration hash
  (8 bytes, :func:`config_hash`), ``result_depth`` (2 bytes), ``rows``, ``cols``,
  lane width (1 byte each).

Framing errors: the board hunts for SYNC and drops a request whose header CRC fails
without answering (its SEQ is unknown); it also drops a request whose bytes stop
arriving for :data:`IDLE_BYTE_TIMES` byte times. The host retries on NAK_CRC, on a
response it cannot check, and on silence (its timeout), a bounded number of times.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import struct
from dataclasses import dataclass

import numpy as np

from barista_base.errors import InputError
from barista_hw.accelerator import run_layout, write_layout
from barista_hw.command import fit_field
from barista_hw.config import AcceleratorConfig
from barista_hw.engine import CYCLE_BITS, output_layout
from barista_hw.targets import LINK_RESULT_DEPTH

PROTOCOL_VERSION = 1
DEFAULT_BAUD = 1_000_000  # the line rate of a build and its host unless they ask another
SYNC_REQ = 0x5A
SYNC_RSP = 0xA5
MAGIC = b"BRST"
REQ_HEADER = 10  # bytes, SYNC and HCRC included
RSP_HEADER = 8
ADDR_BITS = 24
COUNT_BITS = 16
IDLE_BYTE_TIMES = 64  # inter-byte silence (in byte times) after which a request is dropped
MAX_WORDS = 256  # buffer words / result beats a host puts in one frame (a retry resends one)
BITS_PER_BYTE = 10  # on the line: start bit, 8 data bits, stop bit
IDENT_LEN = 4 + 1 + 8 + 2 + 3
STATUS_LEN = 1 + 5 + 3
CYCLE_BYTES = 5
assert CYCLE_BITS <= 8 * CYCLE_BYTES


class Type(enum.IntEnum):
    """Request types."""

    IDENT = 0x01
    WRITE_A = 0x02
    WRITE_B = 0x03
    RUN = 0x04
    READ = 0x05
    STATUS = 0x06


class Code(enum.IntEnum):
    """Response codes."""

    ACK = 0x00
    NAK_CRC = 0x01
    NAK_BAD = 0x02


def request_bytes(payload: int) -> int:
    """Bytes of a request frame with ``payload`` payload bytes (header, payload, CRCs)."""
    return REQ_HEADER + (payload + 2 if payload else 0)


def response_bytes(payload: int) -> int:
    """Bytes of a response frame with ``payload`` payload bytes."""
    return RSP_HEADER + (payload + 2 if payload else 0)


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (see the module docstring)."""
    return binascii.crc_hqx(data, crc)


def config_hash(cfg: AcceleratorConfig) -> bytes:
    """8 bytes that identify an accelerator configuration (the bitstream's identity)."""
    return hashlib.sha256(cfg.to_json().encode()).digest()[:8]


@dataclass(frozen=True)
class LinkGeometry:
    """Byte sizes of the payloads of one accelerator, from its Amaranth layouts."""

    rows: int
    cols: int
    lane_bits: int
    a_word_bytes: int
    b_word_bytes: int
    beat_bytes: int
    run_bytes: int
    run_fields: tuple[tuple[str, int, int], ...]  # (name, bit offset, width)
    wr_addr_bits: int
    a_depth: int
    b_depth: int
    result_depth: int

    @classmethod
    def from_config(
        cls, cfg: AcceleratorConfig, result_depth: int = LINK_RESULT_DEPTH
    ) -> LinkGeometry:
        e = cfg.engine
        w, o = e.fmt.width, e.fmt.output_shape.width  # operand and result lanes
        run = run_layout(cfg)
        wr = write_layout(cfg)
        out = output_layout(e)
        if out["data"].shape.size != e.cols * o:  # type: ignore[union-attr]
            raise InputError("output layout does not hold cols lanes (layout changed?)")
        if result_depth < 2 or result_depth & (result_depth - 1) or result_depth > 1 << 15:
            raise InputError(f"result_depth = {result_depth} must be a power of two in 2..32768")
        return cls(
            rows=e.rows,
            cols=e.cols,
            lane_bits=w,
            a_word_bytes=-(-e.rows * w // 8),
            b_word_bytes=-(-e.cols * w // 8),
            beat_bytes=-(-e.cols * o // 8),
            run_bytes=-(-run.size // 8),
            run_fields=tuple((str(n), f.offset, f.width) for n, f in run),
            wr_addr_bits=wr["addr"].shape.width,  # type: ignore[union-attr]
            a_depth=cfg.a_depth,
            b_depth=cfg.b_depth,
            result_depth=result_depth,
        )

    def word_bytes(self, t: Type) -> int:
        return self.a_word_bytes if t == Type.WRITE_A else self.b_word_bytes

    def payload_len(self, t: Type, count: int) -> int:
        """Request payload bytes of type ``t`` with COUNT ``count``."""
        if t in (Type.WRITE_A, Type.WRITE_B):
            return count * self.word_bytes(t)
        if t == Type.RUN:
            return self.run_bytes
        return 0

    def read_step(self, max_words: int = MAX_WORDS) -> int:
        """Result beats one READ may ask for: a frame's worth, within the ring and LEN."""
        return min(max_words, self.result_depth, 0xFFFF // self.beat_bytes)

    def pack_run(self, fields: dict[str, int]) -> bytes:
        """The RUN payload of an accelerator command (every field of ``run_layout``)."""
        value = 0
        for name, off, width in self.run_fields:
            if name not in fields:
                raise InputError(f"RUN command lacks field {name!r}")
            value |= fit_field(name, fields[name], width, "RUN command") << off
        return value.to_bytes(self.run_bytes, "little")


def pack_lanes(words: np.ndarray, lane_bits: int, nbytes: int) -> bytes:
    """(n, lanes) signed integers -> n words of ``nbytes`` bytes each (vectorised)."""
    words = np.asarray(words, dtype=np.int64)
    n, lanes = words.shape
    u = words & ((1 << lane_bits) - 1)
    bits = ((u[:, :, None] >> np.arange(lane_bits)) & 1).astype(np.uint8).reshape(n, -1)
    padded = np.zeros((n, nbytes * 8), dtype=np.uint8)
    padded[:, : lanes * lane_bits] = bits
    return np.packbits(padded, axis=1, bitorder="little").tobytes()


def unpack_lanes(data: bytes, lanes: int, lane_bits: int, nbytes: int) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: bytes -> (n, lanes) int64 (sign-extended)."""
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, nbytes)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, : lanes * lane_bits]
    bits = bits.reshape(-1, lanes, lane_bits).astype(np.int64)
    u = (bits << np.arange(lane_bits)).sum(axis=2)
    return np.where(u >= 1 << (lane_bits - 1), u - (1 << lane_bits), u)


def encode_request(t: Type, seq: int, addr: int = 0, count: int = 0, payload: bytes = b"") -> bytes:
    """One request frame (see the module docstring)."""
    if not 0 <= addr < 1 << ADDR_BITS or not 0 <= count < 1 << COUNT_BITS:
        raise InputError(f"request {t.name}: addr {addr} or count {count} out of range")
    head = struct.pack("<BB", int(t), seq & 0xFF) + addr.to_bytes(3, "little")
    head += struct.pack("<H", count)
    frame = bytes([SYNC_REQ]) + head + crc16(head).to_bytes(2, "big")
    if payload:
        frame += payload + crc16(payload).to_bytes(2, "big")
    return frame


@dataclass(frozen=True)
class Response:
    """A checked response frame."""

    code: Code
    type: int
    seq: int
    payload: bytes


def encode_response(code: Code, t: int, seq: int, payload: bytes = b"") -> bytes:
    """One response frame (what the gateware sends; used by tests and models)."""
    head = struct.pack("<BBBH", int(code), t, seq & 0xFF, len(payload))
    frame = bytes([SYNC_RSP]) + head + crc16(head).to_bytes(2, "big")
    if payload:
        frame += payload + crc16(payload).to_bytes(2, "big")
    return frame


class FrameError(Exception):
    """Bytes that are not a valid frame (bad CRC, truncated, unknown code)."""


def parse_response_header(head: bytes) -> tuple[Code, int, int, int]:
    """Check the 8 header bytes of a response: (code, type, seq, payload length)."""
    if len(head) != RSP_HEADER or head[0] != SYNC_RSP:
        raise FrameError("response header truncated or without SYNC")
    if crc16(head[1:]) != 0:
        raise FrameError("response header CRC mismatch")
    code, t, seq, length = struct.unpack("<BBBH", head[1:6])
    try:
        return Code(code), t, seq, length
    except ValueError:
        raise FrameError(f"unknown response code {code:#04x}") from None


def decode_response(frame: bytes) -> Response:
    """Check a whole response frame; :class:`FrameError` if anything is wrong."""
    code, t, seq, length = parse_response_header(frame[:RSP_HEADER])
    body = frame[RSP_HEADER:]
    if length == 0:
        if body:
            raise FrameError("response longer than its LEN")
        return Response(code, t, seq, b"")
    if len(body) != length + 2:
        raise FrameError(f"response payload of {len(body) - 2} bytes, LEN says {length}")
    if crc16(body) != 0:
        raise FrameError("response payload CRC mismatch")
    return Response(code, t, seq, body[:length])


def decode_request(frame: bytes, geo: LinkGeometry) -> tuple[Type, int, int, int, bytes]:
    """Check a whole request frame: (type, seq, addr, count, payload) (for tests/models)."""
    if len(frame) < REQ_HEADER or frame[0] != SYNC_REQ:
        raise FrameError("request truncated or without SYNC")
    if crc16(frame[1:REQ_HEADER]) != 0:
        raise FrameError("request header CRC mismatch")
    t, seq = frame[1], frame[2]
    addr = int.from_bytes(frame[3:6], "little")
    (count,) = struct.unpack("<H", frame[6:8])
    try:
        kind = Type(t)
    except ValueError:
        raise FrameError(f"unknown request type {t:#04x}") from None
    plen = geo.payload_len(kind, count)
    body = frame[REQ_HEADER:]
    if plen == 0:
        if body:
            raise FrameError("request longer than its type and COUNT allow")
        return kind, seq, addr, count, b""
    if len(body) != plen + 2:
        raise FrameError(f"request payload of {len(body) - 2} bytes, expected {plen}")
    if crc16(body) != 0:
        raise FrameError("request payload CRC mismatch")
    return kind, seq, addr, count, body[:plen]


def ident_payload(cfg: AcceleratorConfig, result_depth: int) -> bytes:
    """What IDENT answers for ``cfg`` (the gateware holds the same bytes as a constant)."""
    e = cfg.engine
    return (
        MAGIC
        + bytes([PROTOCOL_VERSION])
        + config_hash(cfg)
        + struct.pack("<HBBB", result_depth, e.rows, e.cols, e.fmt.width)
    )
