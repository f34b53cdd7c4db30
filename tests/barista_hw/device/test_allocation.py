"""DRAM allocation: transients whose lives are disjoint share memory, nothing else does;
slots (the model's) and bytes (packed, in DRAM) follow the same rule."""

from __future__ import annotations

import itertools

from barista_hw.device.allocation import (
    ALIGN_BYTES,
    ALIGN_SLOTS,
    plan,
    reserved_bytes,
    sequential,
    slots,
)


def _t(name: str, n: int, role: str = "activation", bits: int = 16) -> dict:
    return {"name": name, "role": role, "shape": [n], "bits": bits}


def test_reservations_are_aligned() -> None:
    assert slots(_t("a", 1)) == ALIGN_SLOTS
    assert slots(_t("a", ALIGN_SLOTS + 1)) == 2 * ALIGN_SLOTS
    assert reserved_bytes(_t("a", 8)) == ALIGN_BYTES  # 16 bytes
    assert reserved_bytes(_t("a", 9)) == 2 * ALIGN_BYTES
    assert reserved_bytes(_t("a", 64, bits=18)) == 144  # 64 x 18 bits, packed
    assert reserved_bytes(_t("a", 3, bits=32)) == ALIGN_BYTES


def test_sequential_gives_every_tensor_memory_of_its_own() -> None:
    p = sequential([_t("a", 16), _t("b", 40, bits=32), _t("c", 3)])
    assert p.dram == {"a": 0, "b": 16, "c": 64}
    assert p.addr == {"a": 0, "b": 32, "c": 32 + 160}
    assert (p.slots, p.nbytes) == (80, 32 + 160 + 16)
    assert p.aliases == {}


def test_disjoint_lives_share_and_overlapping_lives_do_not() -> None:
    tensors = [_t("w", 32, "weight"), _t("x", 64), _t("y", 64), _t("z", 32)]
    tensors.append(_t("g", 16, "gradient"))
    uses = {"w": (0, 9), "x": (0, 3), "y": (3, 6), "z": (4, 8), "g": (7, 9)}
    p = plan(tensors, uses)
    floor = 32  # the weight first, alone (32 slots, 64 bytes)
    assert p.dram == {"w": 0, "x": floor, "y": floor + 64, "z": floor, "g": floor + 32}
    assert p.slots == floor + 128
    assert p.addr == {"w": 0, "x": 64, "y": 64 + 128, "z": 64, "g": 64 + 64}
    assert p.nbytes == 64 + 256
    assert p.aliases == {"z": ("x",), "g": ("x",)}
    for a, b in itertools.permutations(tensors, 2):
        if "weight" in (a["role"], b["role"]):
            continue
        (fa, la), (fb, lb) = uses[a["name"]], uses[b["name"]]
        for base, size in ((p.dram, slots), (p.addr, reserved_bytes)):
            lo_a, lo_b = base[a["name"]], base[b["name"]]
            overlap = lo_a < lo_b + size(b) and lo_b < lo_a + size(a)
            assert not overlap or la < fb or lb < fa, (a["name"], b["name"])


def test_persistent_and_untouched_tensors_never_share() -> None:
    roles = ("weight", "master", "momentum", "accumulator", "input", "constant")
    tensors = [_t(r, 16, r) for r in roles] + [_t("unused", 16)]
    p = plan(tensors, {r: (i, i) for i, r in enumerate(roles)})
    assert sorted(p.dram.values()) == [16 * i for i in range(len(tensors))]
    assert sorted(p.addr.values()) == [32 * i for i in range(len(tensors))]
