"""DRAM allocation: transients whose lives are disjoint share memory, nothing else does."""

from __future__ import annotations

from barista_hw.device.allocation import ALIGN_WORDS, WORD_BYTES, plan, sequential, words


def _t(name: str, n: int, role: str = "activation", bits: int = 16) -> dict:
    return {"name": name, "role": role, "shape": [n], "bits": bits}


def test_words_are_the_bytes_aligned_to_a_burst() -> None:
    assert words(_t("a", 1)) == ALIGN_WORDS
    assert words(_t("a", ALIGN_WORDS)) == ALIGN_WORDS
    assert words(_t("a", ALIGN_WORDS, bits=32)) == 2 * ALIGN_WORDS
    assert words(_t("a", ALIGN_WORDS + 1)) == 2 * ALIGN_WORDS


def test_sequential_gives_every_tensor_memory_of_its_own() -> None:
    p = sequential([_t("a", 16), _t("b", 40, bits=32), _t("c", 3)])
    assert p.base == {"a": 0, "b": 16, "c": 16 + 80}
    assert p.words == 16 + 80 + 16 and p.nbytes == p.words * WORD_BYTES
    assert p.aliases == {}


def test_disjoint_lives_share_and_overlapping_lives_do_not() -> None:
    tensors = [_t("w", 32, "weight"), _t("x", 64), _t("y", 64), _t("z", 32)]
    tensors.append(_t("g", 16, "gradient"))
    uses = {"w": (0, 9), "x": (0, 3), "y": (3, 6), "z": (4, 8), "g": (7, 9)}
    p = plan(tensors, uses)
    floor = 32  # the weight first, alone
    assert p.base["w"] == 0
    assert p.base["x"] == floor  # the largest transients first, lowest address
    assert p.base["y"] == floor + 64  # x and y meet at instruction 3: no sharing
    assert p.base["z"] == floor  # x is dead by 4
    assert p.base["g"] == floor + 32  # z is live until 8; x's memory above z is free
    assert p.words == floor + 128
    assert p.aliases == {"z": ("x",), "g": ("x",)}
    for a in tensors:
        for b in tensors:
            if a is b or "weight" in (a["role"], b["role"]):
                continue
            (fa, la), (fb, lb) = uses[a["name"]], uses[b["name"]]
            lo_a, lo_b = p.base[a["name"]], p.base[b["name"]]
            overlap = lo_a < lo_b + words(b) and lo_b < lo_a + words(a)
            assert not overlap or la < fb or lb < fa, (a["name"], b["name"])


def test_persistent_and_untouched_tensors_never_share() -> None:
    roles = ("weight", "master", "momentum", "accumulator", "input")
    tensors = [_t(r, 16, r) for r in roles] + [_t("unused", 16)]
    p = plan(tensors, {r: (i, i) for i, r in enumerate(roles)})
    assert sorted(p.base.values()) == [16 * i for i in range(len(tensors))]
