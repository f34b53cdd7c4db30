"""Packing helpers of the cocotb test bench: flattened stream payloads, beat order, reassembly."""

from __future__ import annotations

import numpy as np
import pytest

from barista_hw.config import EngineConfig
from barista_hw.engine import command_layout, output_layout
from sim.beats import assemble, tile_beats
from sim.tb import (
    layout_fields,
    operand_beats,
    pack_fields,
    pack_lanes,
    result_matrix,
    unpack_fields,
    unpack_lanes,
)


@pytest.mark.parametrize(("lanes", "width"), [(1, 2), (3, 8), (4, 16), (8, 16), (64, 18), (5, 13)])
def test_pack_lanes_places_lane_i_at_bits_i_times_w(lanes: int, width: int) -> None:
    rng = np.random.default_rng(lanes * 100 + width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    x = rng.integers(lo, hi, size=(20, lanes), endpoint=True)
    x[0] = lo  # most negative in every lane
    x[1] = -1  # all ones
    words = pack_lanes(x, width)
    for row, word in zip(x.tolist(), words, strict=True):
        expected = sum((v % (1 << width)) << (i * width) for i, v in enumerate(row))
        assert word == expected
    assert words[1] == (1 << (lanes * width)) - 1
    np.testing.assert_array_equal(unpack_lanes(words, lanes, width), x)


def test_unpack_lanes_unsigned_and_ignores_high_bits() -> None:
    words = [0b1_11_01_10, 0b0_00_11_01]  # bit 6 is a flag above three 2-bit lanes
    np.testing.assert_array_equal(unpack_lanes(words, 3, 2, signed=False), [[2, 1, 3], [1, 3, 0]])
    np.testing.assert_array_equal(unpack_lanes(words, 3, 2), [[-2, 1, -1], [1, -1, 0]])


def test_pack_lanes_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        pack_lanes(np.array([[128]]), 8)
    with pytest.raises(ValueError, match="do not fit"):
        pack_lanes(np.array([[-129]]), 8)


@pytest.mark.parametrize("batched", [False, True])
def test_command_packing_matches_amaranth(batched: bool) -> None:
    """Our packing of ``cmd__payload`` is Amaranth's own ``StructLayout.const``."""
    cfg = EngineConfig(3, 2)
    layout = command_layout(cfg, batched)
    fields = layout_fields(layout)
    cmd = {"m": 37, "k": 65535, "n": 1, "shift": 31, "rounding": 2, "seed": 0xDEADBEEF}
    if batched:
        cmd["images"] = 513
    word = pack_fields(cmd, fields)
    assert word == layout.const(cmd).as_bits()
    assert unpack_fields(word, fields) == {name: cmd.get(name, 0) for name in fields}


def test_output_layout_is_data_lanes_then_last() -> None:
    cfg = EngineConfig(2, 3)
    fields = layout_fields(output_layout(cfg))
    assert fields == {"data": (0, 3 * cfg.fmt.width), "last": (3 * cfg.fmt.width, 1)}


def test_pack_fields_rejects_bad_fields() -> None:
    fields = layout_fields(command_layout(EngineConfig(2, 2, dim_bits=8), False))
    with pytest.raises(ValueError, match="does not fit"):
        pack_fields({"m": 256}, fields)
    with pytest.raises(ValueError, match="unknown struct fields"):
        pack_fields({"images": 2}, fields)


@pytest.mark.parametrize(
    ("rows", "cols", "m", "kt", "n"),
    [(2, 3, 5, 4, 7), (1, 1, 3, 2, 2), (4, 4, 8, 1, 4), (3, 2, 1, 5, 9)],
)
def test_operand_beats_match_the_reference_order(
    rows: int, cols: int, m: int, kt: int, n: int
) -> None:
    rng = np.random.default_rng(m * kt * n)
    a = rng.integers(-100, 100, size=(m, kt))
    b = rng.integers(-100, 100, size=(kt, n))
    a_beats, b_beats = operand_beats(a, b, rows, cols)
    ref = list(tile_beats(a, b, rows, cols))
    assert a_beats.tolist() == [x for x, _ in ref]
    assert b_beats.tolist() == [y for _, y in ref]


def test_operand_beats_pad_lanes_only_past_the_edges() -> None:
    a = np.arange(15).reshape(5, 3)
    b = np.arange(12).reshape(3, 4)
    zero_a, zero_b = operand_beats(a, b, 2, 3)
    a_beats, b_beats = operand_beats(a, b, 2, 3, pad=np.random.default_rng(1), pad_range=(50, 60))
    real_a, real_b = zero_a != 0, zero_b != 0
    np.testing.assert_array_equal(a_beats[real_a], zero_a[real_a])
    np.testing.assert_array_equal(b_beats[real_b], zero_b[real_b])
    # Tile row 2 holds one real row of A (row 4), tile column 1 one real column of B (column 3).
    assert (a_beats[:, 1][-6:] >= 50).all() and (b_beats[:, 1:][3:6] >= 50).all()


@pytest.mark.parametrize(
    ("rows", "cols", "m", "n"), [(2, 3, 5, 7), (1, 1, 2, 3), (4, 4, 4, 4), (3, 2, 7, 1)]
)
def test_result_matrix_inverts_the_output_order(rows: int, cols: int, m: int, n: int) -> None:
    rng = np.random.default_rng(m + 10 * n)
    full_n = -(-n // cols) * cols
    full = rng.integers(-50, 50, size=(m, full_n))
    full[:, n:] = 0
    beats = []  # the documented order: tiles row-major, then the valid rows of each tile
    for tm0 in range(0, m, rows):
        for tn0 in range(0, full_n, cols):
            for r in range(tm0, min(tm0 + rows, m)):
                beats.append(full[r, tn0 : tn0 + cols])
    got, beyond = result_matrix(np.array(beats), m, n, rows)
    np.testing.assert_array_equal(got, full[:, :n])
    assert beyond.shape == (m, full_n - n) and not beyond.any()
    np.testing.assert_array_equal(got, assemble([list(b) for b in beats], m, n, rows, cols))
    with pytest.raises(ValueError, match="output beats"):
        result_matrix(np.array(beats[:-1]), m, n, rows)
