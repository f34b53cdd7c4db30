"""The device ISA: records, program files, listings, and the waits the builder derives."""

from __future__ import annotations

import pytest

from barista_base.errors import InputError
from barista_hw.device.emit import Builder
from barista_hw.device.isa import FIELDS, RECORD_BYTES, Instruction, Op, Program


def _values(op: Op, seed: int) -> dict[str, int]:
    limits = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}
    return {n: (seed * 7919 + i * 104729) % (limits[c] + 1) for i, (n, c) in enumerate(FIELDS[op])}


@pytest.mark.parametrize("op", list(Op))
def test_every_record_round_trips(op: Op) -> None:
    for seed in range(5):
        inst = Instruction(op, seed % 3, 1000 + seed, (seed + 1, 7)[: seed % 3], _values(op, seed))
        rec = inst.encode()
        assert len(rec) == RECORD_BYTES
        assert Instruction.decode(rec) == inst


def test_bad_records_name_the_fault() -> None:
    with pytest.raises(InputError, match="missing"):
        Instruction(Op.GEMM, fields={"m": 1})
    fields = _values(Op.HOST_IN, 0) | {"images": 1 << 16}
    with pytest.raises(InputError, match="does not fit"):
        Instruction(Op.HOST_IN, fields=fields).encode()
    with pytest.raises(InputError, match="opcode"):
        Instruction.decode(bytes([99]) + bytes(RECORD_BYTES - 1))


def test_program_file_round_trips_and_lists() -> None:
    b = Builder()
    b.tensor("x", (2, 3), 16, "activation")
    t = b.emit(Op.HOST_IN, writes=["x"], tensor=0, i0=0, images=2, dram=0, bytes=12)
    b.emit(Op.HOST_OUT, reads=["x"], tensor=0, i0=0, images=2, dram=0, bytes=12)
    b.emit(Op.SCALE, iteration=0)
    data = b.program.to_bytes()
    back = Program.from_bytes(data)
    assert back.instructions == b.program.instructions
    assert back.tensors == b.program.tensors
    text = back.listing()
    assert "HOST_IN" in text and "x" in text and f"{t:5d}" in text
    with pytest.raises(InputError, match="not a device program"):
        Program.from_bytes(b"nope" + data[4:])
    with pytest.raises(InputError, match="size"):
        Program.from_bytes(data[:-1])


def test_waits_follow_hazards_across_units() -> None:
    """A read waits for the other unit's write; a write for the other unit's read; the
    same unit runs in order and needs no wait."""
    b = Builder()
    b.tensor("t", (4,), 16, "activation")
    fields = {"tensor": 0, "i0": 0, "images": 1, "dram": 0, "bytes": 8}
    w = b.emit(Op.HOST_IN, writes=["t"], **fields)
    r = b.emit(Op.HOST_OUT, reads=["t"], **fields)  # same unit (link): no wait
    s = b.emit(Op.SCALE, reads=["t"], iteration=0)  # RAW on the link's write
    w2 = b.emit(Op.HOST_IN, writes=["t"], **fields)  # WAR on the sequencer's read
    insts = {i.token: i for i in b.program.instructions}
    assert insts[r].waits == ()
    assert insts[s].waits == (w,)
    assert insts[w2].waits == (s,)
