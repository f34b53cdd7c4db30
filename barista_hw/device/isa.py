"""The device's instruction set: fixed 32-byte records, a program, its file and its listing.

A record is a 10-byte header (opcode, subcode, token, three wait tokens) and 22 bytes of
operand fields whose layout the opcode fixes (:data:`FIELDS`, the ISA table of
``docs/device.md``). Window geometries and matrix views are too large for a record:
they sit in the program's *descriptor* table and instructions name them by index,
as layer descriptors do in the training accelerators of the literature.

An instruction waits for the instructions whose tokens it names (0: none): the
units run concurrently and these edges are the only ordering the program states.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from barista_base.errors import InputError

RECORD_BYTES = 32
HEADER = struct.Struct("<BBHHHH")  # opcode, subcode, token, three wait tokens
MAX_WAITS = 3
PAYLOAD_BYTES = RECORD_BYTES - HEADER.size
MAGIC = b"BRDP"  # Barista device program
VERSION = 1


class Op(enum.IntEnum):
    """Opcodes (the unit that runs each in parentheses)."""

    LOAD = 1  # (DMA) DRAM -> scratchpad: dense, folded or im2col view
    STORE = 2  # (DMA) scratchpad -> DRAM: dense, folded or col2im (accumulating)
    GEMM = 3  # (engine) one accelerator chunk command on buffers A and B, result to C
    VEC = 4  # (vector unit) an element or window operation (subcode: the operation)
    HOST_IN = 5  # (link) a tensor from the host into DRAM
    HOST_OUT = 6  # (link) a DRAM tensor to the host
    SCALE = 7  # (sequencer) end of iteration: exponents from the statistics
    SYNC = 8  # (sequencer) wait for tokens
    FETCH = 9  # (DMA) the iteration's batch from the dataset preloaded in DRAM


class View(enum.IntEnum):
    """How a LOAD or STORE addresses DRAM (its subcode); descriptors carry the shape."""

    MATRIX = 0  # a strided matrix: rows x cols, row and column strides
    FOLDED = 1  # (images, channels, pixels) tensor seen as channels x (images * pixels)
    IM2COL = 2  # Caffe's im2col matrix of an (images, C, H, W) tensor; a STORE: col2im


# Operand fields per opcode: (name, struct code). Every layout fits PAYLOAD_BYTES.
_TILE = (
    ("space", "B"),  # geometry.Space of the scratchpad side
    ("desc", "B"),  # descriptor index of the DRAM view
    ("group", "B"),  # convolution group (IM2COL)
    ("flags", "B"),  # bit 0: the tile is the view transposed
    ("dram", "I"),  # base slot of the DRAM tensor
    ("spad", "H"),  # scratchpad word address
    ("r0", "I"),  # tile rows [r0, r0 + rows) of the (transposed) view
    ("rows", "H"),
    ("c0", "I"),  # tile columns [c0, c0 + cols)
    ("cols", "H"),
)
FIELDS: dict[Op, tuple[tuple[str, str], ...]] = {
    Op.LOAD: _TILE,
    Op.STORE: _TILE,
    Op.GEMM: (
        ("m", "H"),
        ("k", "H"),  # per image
        ("n", "H"),
        ("images", "H"),
        ("desc", "B"),  # descriptor of the GEMM: its operand and result tensors (the shift)
        ("mode", "B"),  # bits 0-1: rounding; bit 2: acc_first; bit 3: acc_last
        ("seed", "I"),  # the pass's seed (the iteration is mixed in when run)
        ("block", "H"),  # the output block: its lanes start from the block's seed
        ("a_base", "H"),
        ("b_base", "H"),
        ("c_base", "H"),
    ),
    Op.VEC: (
        ("src", "H"),  # tensor-table index of the operand (and its scratchpad tile)
        ("src2", "H"),  # a second operand (bias, mask, gradient), 0xFFFF: none
        ("dst", "H"),  # tensor-table index of the result
        ("dst2", "H"),  # a second result (the argmax mask, the momentum), 0xFFFF: none
        ("desc", "B"),  # descriptor index (pooling window), 0xFF: none
        ("rounding", "B"),
        ("i0", "H"),  # images [i0, i0 + images) of the tensors
        ("images", "H"),
        ("seed", "I"),
        ("param", "I"),  # the op's parameter (scalar-table index for SGD)
    ),
    Op.HOST_IN: (("tensor", "H"), ("i0", "H"), ("images", "H"), ("dram", "I"), ("bytes", "I")),
    Op.HOST_OUT: (("tensor", "H"), ("i0", "H"), ("images", "H"), ("dram", "I"), ("bytes", "I")),
    # Records [r, r + images) of the dataset ``source`` (modulo its ``records``), r the
    # per-iteration scalar at index ``scalar``, copied into ``tensor``.
    Op.FETCH: (
        ("tensor", "H"),
        ("source", "H"),
        ("images", "H"),
        ("scalar", "H"),
        ("records", "I"),
    ),
    Op.SCALE: (("iteration", "I"),),
    Op.SYNC: (),
}
_STRUCTS = {op: struct.Struct("<" + "".join(c for _, c in f)) for op, f in FIELDS.items()}
for _op, _s in _STRUCTS.items():
    assert _s.size <= PAYLOAD_BYTES, f"{_op.name} fields take {_s.size} bytes"
NONE = 0xFFFF
ACC_FIRST, ACC_LAST = 4, 8  # GEMM mode bits
WIRE8, PREFETCH = 1, 2  # HOST_IN subcode bits: a byte a value (unsigned); the input batch
# A VEC whose ``desc`` is ON_C works on the result block in C at word ``dst2`` (a GEMM's
# epilogue): ``i0`` is its first row's channel, ``images`` its rows, ``src`` its columns.
ON_C = 0xFE


@dataclass(frozen=True)
class Instruction:
    """One instruction: opcode, subcode (VEC operation, LOAD/STORE view), its token, the
    tokens it waits for, and its operand fields (all of :data:`FIELDS` ``[op]``)."""

    op: Op
    sub: int = 0
    token: int = 0
    waits: tuple[int, ...] = ()
    fields: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [n for n, _ in FIELDS[self.op]]
        missing = [n for n in names if n not in self.fields]
        extra = [n for n in self.fields if n not in names]
        if missing or extra or len(self.waits) > MAX_WAITS:
            raise InputError(
                f"{self.op.name}: fields {missing} missing, {extra} unknown, or more than "
                f"{MAX_WAITS} waits ({self.waits})"
            )

    def __getitem__(self, name: str) -> int:
        return self.fields[name]

    def encode(self) -> bytes:
        waits = (*self.waits, 0, 0, 0)[:MAX_WAITS]
        try:
            head = HEADER.pack(self.op, self.sub, self.token, *waits)
            body = _STRUCTS[self.op].pack(*(self.fields[n] for n, _ in FIELDS[self.op]))
        except struct.error as e:
            raise InputError(f"{self.text()}: a field does not fit its record ({e})") from e
        return head + body.ljust(PAYLOAD_BYTES, b"\0")

    @classmethod
    def decode(cls, record: bytes) -> Instruction:
        op, sub, token, *waits = HEADER.unpack_from(record)
        try:
            op = Op(op)
        except ValueError as e:
            raise InputError(f"unknown opcode {op} in a device program record") from e
        values = _STRUCTS[op].unpack_from(record, HEADER.size)
        names = [n for n, _ in FIELDS[op]]
        return cls(
            op, sub, token, tuple(w for w in waits if w), dict(zip(names, values, strict=True))
        )

    def text(self) -> str:
        """One line of the listing: ``token op.sub [waits] field=value ...``."""
        sub = _sub_name(self.op, self.sub)
        waits = f" after {','.join(map(str, self.waits))}" if self.waits else ""
        args = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.token:5d} {self.op.name}{'.' + sub if sub else ''}{waits} {args}".rstrip()


def _sub_name(op: Op, sub: int) -> str:
    if op in (Op.LOAD, Op.STORE):
        return View(sub).name.lower()
    if op is Op.VEC:
        from .vector import VecOp  # the vector unit's own table of operations

        return VecOp(sub).name.lower()
    return ""


@dataclass
class Program:
    """A device program: its tensors (the allocation), descriptors and instructions.

    ``tensors``: one JSON-able dict per tensor (name, role, shape, bits, dram slot, ...);
    ``descriptors``: one JSON-able dict per view or window; ``scalars``: the names of the
    per-iteration values the host sends (learning rates, momentum).
    """

    tensors: list[dict[str, Any]] = field(default_factory=list)
    descriptors: list[dict[str, Any]] = field(default_factory=list)
    scalars: list[str] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The program file: magic, version, a JSON table section, then the records."""
        tables = json.dumps(
            {
                "tensors": self.tensors,
                "descriptors": self.descriptors,
                "scalars": self.scalars,
                "meta": self.meta,
            },
            sort_keys=True,
        ).encode()
        head = MAGIC + struct.pack("<HII", VERSION, len(tables), len(self.instructions))
        return head + tables + b"".join(i.encode() for i in self.instructions)

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "device program") -> Program:
        if data[:4] != MAGIC:
            raise InputError(f"{what}: not a device program (no {MAGIC!r} header)")
        version, n_tables, n_inst = struct.unpack_from("<HII", data, 4)
        if version != VERSION:
            raise InputError(f"{what}: program version {version}, this reader knows {VERSION}")
        start = 4 + 10 + n_tables
        if len(data) != start + n_inst * RECORD_BYTES:
            raise InputError(f"{what}: {len(data)} bytes, the header announces another size")
        tables = json.loads(data[14:start])
        records = (data[start + i * RECORD_BYTES :][:RECORD_BYTES] for i in range(n_inst))
        return cls(
            tables["tensors"],
            tables["descriptors"],
            tables["scalars"],
            [Instruction.decode(r) for r in records],
            tables["meta"],
        )

    def listing(self) -> str:
        """The disassembly: the tensor table, the descriptors, then one line per instruction."""
        lines = ["# tensors"]
        lines += [
            f"{i:4d} {t['name']:<24} {t['role']:<10} {t['space']:<5} slot {t.get('dram', '-')}"
            f" shape {t['shape']} {t['bits']} bits"
            for i, t in enumerate(self.tensors)
        ]
        # Keys sorted, as the program file stores them: a file lists as the program did.
        descriptors = [f"{i:4d} {dict(sorted(d.items()))}" for i, d in enumerate(self.descriptors)]
        lines += ["# descriptors", *descriptors]
        lines += ["# scalars"] + [f"{i:4d} {s}" for i, s in enumerate(self.scalars)]
        lines += ["# instructions"] + [i.text() for i in self.instructions]
        return "\n".join(lines) + "\n"


def count_ops(instructions: Iterable[Instruction]) -> dict[str, int]:
    """Instructions per opcode (and VEC operation), for summaries."""
    counts: dict[str, int] = {}
    for i in instructions:
        key = i.op.name if i.op is not Op.VEC else f"VEC.{_sub_name(i.op, i.sub)}"
        counts[key] = counts.get(key, 0) + 1
    return counts
