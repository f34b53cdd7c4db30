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
