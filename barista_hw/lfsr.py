"""The random source of stochastic rounding: one leap-forward Galois LFSR per output lane.

Specified once here and used by both the RTL (as an XOR network built from
:func:`leap_matrix`) and the numpy model (by GF(2) matrix powers), so the two
draw identical bits:

* polynomial ``x^32 + x^22 + x^2 + x + 1`` (maximal length), Galois form,
  shifting right: ``s' = (s >> 1) ^ (POLY if s & 1 else 0)``;
* each output beat uses the lane's current 32-bit state as its random word and
  then advances the lane by :data:`LEAP` = 32 Galois steps at once, so
  successive words share no bits;
* seed schedule: at the start of each GEMM command, lane ``c`` is loaded with
  ``(seed ^ lane_key(c)) | 1`` (never the all-zero lock-up state), with
  ``lane_key(c) = (0x9E3779B9 * (c + 1)) mod 2**32``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

POLY = 0x80200003
STATE_BITS = 32
LEAP = 32
_MASK = (1 << STATE_BITS) - 1


def lane_key(lane: int) -> int:
    return (0x9E3779B9 * (lane + 1)) & _MASK


def lane_seed(seed: int, lane: int) -> int:
    """Initial state of ``lane`` for a command with ``seed``."""
    return ((seed & _MASK) ^ lane_key(lane)) | 1


def galois_step(state: int) -> int:
    """One step of the Galois LFSR (the reference the matrices are checked against)."""
    return (state >> 1) ^ (POLY if state & 1 else 0)


def _step_matrix() -> np.ndarray:
    m = np.zeros((STATE_BITS, STATE_BITS), dtype=np.uint8)
    for i in range(STATE_BITS - 1):
        m[i, i + 1] = 1  # bit i of the next state is bit i+1 of this one ...
    for i in range(STATE_BITS):
        m[i, 0] ^= (POLY >> i) & 1  # ... xor the polynomial when bit 0 falls out
    return m


def _matpow(m: np.ndarray, n: int) -> np.ndarray:
    result = np.eye(STATE_BITS, dtype=np.uint8)
    base = m.copy()
    while n:
        if n & 1:
            result = (result.astype(np.int64) @ base) & 1
        base = (base.astype(np.int64) @ base) & 1
        n >>= 1
    return result.astype(np.uint8)


@cache
def leap_matrix(steps: int = LEAP) -> np.ndarray:
    """GF(2) matrix ``L`` with ``next_state = L @ state`` after ``steps`` Galois steps.

    Row ``i`` lists the state bits whose XOR is bit ``i`` of the next state.
    """
    return _matpow(_step_matrix(), steps)


def _row_masks(m: np.ndarray) -> np.ndarray:
    weights = np.uint64(1) << np.arange(STATE_BITS, dtype=np.uint64)
    return (m.astype(np.uint64) * weights).sum(axis=1).astype(np.uint32)


def apply_matrix(m: np.ndarray, states: np.ndarray) -> np.ndarray:
    """``m @ s`` over GF(2) for every 32-bit state in ``states`` (vectorised)."""
    states = np.asarray(states, dtype=np.uint32)
    out = np.zeros_like(states)
    for i, mask in enumerate(_row_masks(m)):
        parity = np.bitwise_count(states & mask) & np.uint8(1)
        out |= parity.astype(np.uint32) << np.uint32(i)
    return out


def lane_words(seed: int, lanes: int, beats: int) -> np.ndarray:
    """Random words of every lane for beats ``0..beats-1``: shape ``(beats, lanes)`` uint32.

    Built by doubling (``s[t + n] = L^n s[t]``), so the cost is
    ``O(32 * beats * lanes)`` vector work, with no loop over beats.
    """
    words = np.array([[lane_seed(seed, c) for c in range(lanes)]], dtype=np.uint32)
    if beats <= 0:
        return words[:0]
    jump = leap_matrix(LEAP)
    while words.shape[0] < beats:
        words = np.concatenate([words, apply_matrix(jump, words)])
        jump = _matpow(jump, 2)
    return words[:beats]
