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

The model computes the same words another way (:func:`lane_words`). Read a state as
the polynomial ``sum(bit_j * x**j)``: a Galois step is multiplication by ``x**-1``
modulo ``Q(x) = x**32 + x**22 + x**2 + x + 1`` (``x * POLY(x) + 1``), so ``t`` leaps
from state ``s`` give ``s * G_t`` with ``G_t`` the state ``t`` leaps from ``1``. The
powers ``G_t`` do not depend on the seed and are kept once; multiplying by a fixed
``s`` is linear, so a word is four lookups (one per byte of ``G_t``) in 256-entry
tables built per lane, XORed: no loop over beats and no 32-pass matrix product.
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


_UNSTEP = ((POLY << 1) & _MASK) | 1  # Q without its x**32 term


def _times_x(state: int) -> int:
    """``state * x`` modulo ``Q``: a Galois step backwards (undoes :func:`galois_step`)."""
    return ((state << 1) & _MASK) ^ (_UNSTEP if state >> (STATE_BITS - 1) else 0)


def product_tables(states: list[int], bits: int = STATE_BITS) -> np.ndarray:
    """``(4, 256, lanes)`` uint32: entry ``[k, v, c]`` is ``states[c] * (v << 8k)`` modulo ``Q``.

    Only the low ``bits`` bits are kept (masking commutes with XOR), so a word
    assembled from the tables is already the part a ``bits``-bit shift uses.
    """
    basis = np.empty((STATE_BITS, len(states)), dtype=np.uint32)  # states[c] * x**i
    current = np.array([int(s) & _MASK for s in states], dtype=np.uint32)
    for i in range(STATE_BITS):  # _times_x on every lane at once (lanes can be ~10**5)
        basis[i] = current
        top = (current >> np.uint32(STATE_BITS - 1)).astype(bool)
        current = (current << np.uint32(1)) ^ np.where(top, np.uint32(_UNSTEP), np.uint32(0))
    basis &= np.uint32((1 << bits) - 1)
    tables = np.zeros((4, 256, len(states)), dtype=np.uint32)
    by_byte = basis.reshape(4, 8, len(states))
    for j in range(8):  # the span of a byte's 8 basis products, doubling
        tables[:, 1 << j : 2 << j] = tables[:, : 1 << j] ^ by_byte[:, j, None, :]
    return tables


# Bytes of the powers G_t (t leaps from state 1) for t < capacity: (4, capacity) uint8,
# byte k in row k. Seed-independent, so built once and grown by doubling.
_powers = np.array([[1], [0], [0], [0]], dtype=np.uint8)


def _word(planes: np.ndarray, t: int) -> int:
    return sum(int(planes[k, t]) << (8 * k) for k in range(4))


_CHUNK = 1 << 14  # beats per block: the block's words and lookups stay in cache


def _products(tables: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """``state * G`` for the byte planes of powers ``G``: four lookups and three XORs."""
    beats, lanes = planes.shape[1], tables.shape[2]
    words = np.empty((beats, lanes), dtype=np.uint32)
    part = np.empty((min(beats, _CHUNK), lanes), dtype=np.uint32)
    for t0 in range(0, beats, _CHUNK):
        t1 = min(beats, t0 + _CHUNK)
        out, tmp = words[t0:t1], part[: t1 - t0]
        # mode="clip" lets take write into `out` unbuffered (byte indices are always valid)
        np.take(tables[0], planes[0, t0:t1], axis=0, out=out, mode="clip")
        for k in range(1, 4):
            np.take(tables[k], planes[k, t0:t1], axis=0, out=tmp, mode="clip")
            out ^= tmp
    return words


def power_planes(beats: int) -> np.ndarray:
    """The byte planes of ``G_t`` for at least ``t < beats``: ``(4, capacity)`` uint8, row ``k``
    holding byte ``k`` of each power (shared and never modified: do not write to it)."""
    global _powers
    planes = _powers
    while planes.shape[1] < beats:
        n = planes.shape[1]
        g_n = _word(planes, n - 1)  # G_n: one more leap from G_(n-1)
        for _ in range(LEAP):
            g_n = galois_step(g_n)
        upper = _products(product_tables([g_n]), planes)[..., 0]  # G_(n+t) = G_t * G_n
        grown = np.empty((4, 2 * n), dtype=np.uint8)
        grown[:, :n] = planes
        for k in range(4):
            grown[k, n:] = (upper >> np.uint32(8 * k)) & np.uint32(0xFF)
        planes = grown
    _powers = planes  # replaced whole, never modified: safe to share
    return planes


def lane_words(seed: int, lanes: int, beats: int, bits: int = STATE_BITS) -> np.ndarray:
    """Random words of every lane for beats ``0..beats-1``: shape ``(beats, lanes)`` uint32.

    With ``bits`` < 32 only the low ``bits`` bits of each word (what a requantisation
    shift of ``bits`` adds). Word ``[t, c]`` is ``lane_seed(seed, c) * G_t`` (see the
    module notes): the same words as leaping each lane ``t`` times.
    """
    if beats <= 0:
        return np.zeros((0, lanes), dtype=np.uint32)
    seeds = [lane_seed(seed, c) for c in range(lanes)]
    powers = power_planes(beats)[:, :beats]
    if lanes <= beats:
        return _products(product_tables(seeds, bits), powers)
    # Products commute: with more lanes than beats (a weight gradient's K lanes), tables of
    # the few powers looked up by the seeds' bytes are smaller than tables of the seeds.
    planes = np.array(seeds, dtype=np.uint32) >> np.arange(0, 32, 8, dtype=np.uint32)[:, None]
    g = [_word(powers, t) for t in range(beats)]
    words = _products(product_tables(g, bits), (planes & np.uint32(0xFF)).astype(np.uint8))
    return np.ascontiguousarray(words.T)
