"""The stochastic-rounding random source: matrices against the plain Galois step."""

import numpy as np

from barista_hw import lfsr


def _leap_reference(state: int, steps: int) -> int:
    for _ in range(steps):
        state = lfsr.galois_step(state)
    return state


def test_leap_matrix_matches_stepping() -> None:
    rng = np.random.default_rng(0)
    states = rng.integers(1, 2**32, size=50, dtype=np.uint64).astype(np.uint32)
    for steps in (1, 7, lfsr.LEAP):
        got = lfsr.apply_matrix(lfsr.leap_matrix(steps), states)
        expected = [_leap_reference(int(s), steps) for s in states]
        assert got.tolist() == expected


def test_lane_words_follow_the_seed_schedule() -> None:
    words = lfsr.lane_words(seed=1234, lanes=3, beats=37)
    assert words.shape == (37, 3)
    for lane in range(3):
        state = lfsr.lane_seed(1234, lane)
        assert state & 1 and state == (1234 ^ lfsr.lane_key(lane)) | 1
        for beat in range(37):
            assert int(words[beat, lane]) == state
            state = _leap_reference(state, lfsr.LEAP)


def test_lanes_and_seeds_differ() -> None:
    a = lfsr.lane_words(seed=1, lanes=4, beats=64)
    b = lfsr.lane_words(seed=2, lanes=4, beats=64)
    assert len({tuple(col) for col in a.T}) == 4
    assert not np.array_equal(a, b)
    assert lfsr.lane_words(seed=1, lanes=4, beats=0).shape == (0, 4)


def test_many_lanes_and_beats_match_the_steps() -> None:
    """The table-and-power words against stepping every lane beat by beat, for several
    seeds, lane counts and lengths (the cache of powers grows across the calls)."""
    for seed, lanes, beats in [
        (0, 1, 1),
        (7, 9, 700),
        (2**32 - 1, 16, 1100),
        (0x12345678, 3, 3000),
        (5, 700, 9),  # more lanes than beats: tables of the powers
        (2**31, 3000, 1),
    ]:
        words = lfsr.lane_words(seed, lanes, beats)
        assert words.shape == (beats, lanes) and words.dtype == np.uint32
        for lane in range(lanes):
            state = lfsr.lane_seed(seed, lane)
            for beat in range(beats):
                assert int(words[beat, lane]) == state
                state = _leap_reference(state, lfsr.LEAP)


def test_long_runs_match_the_leap_matrices() -> None:
    """Tens of thousands of beats against the GF(2) leap matrices the RTL is built from."""
    seed, lanes, beats = 99, 5, 70_000
    expected = np.array([[lfsr.lane_seed(seed, c) for c in range(lanes)]], dtype=np.uint32)
    doubling = 0
    while expected.shape[0] < beats:
        jump = lfsr.leap_matrix(lfsr.LEAP << doubling)  # s[t + 2**d] = L**(2**d) s[t]
        expected = np.concatenate([expected, lfsr.apply_matrix(jump, expected)])
        doubling += 1
    np.testing.assert_array_equal(lfsr.lane_words(seed, lanes, beats), expected[:beats])


def test_low_bits_are_the_words_masked() -> None:
    words = lfsr.lane_words(5, 4, 300)
    for bits in (1, 7, 16, 31):
        mask = np.uint32((1 << bits) - 1)
        np.testing.assert_array_equal(lfsr.lane_words(5, 4, 300, bits), words & mask)
