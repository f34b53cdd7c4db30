"""Exact integer matrix products through float BLAS, and the order in which an engine's
results leave it (which beat, which lane's random word): what the fixed-point model
(:mod:`barista_hw.model`) and the minifloat one (:mod:`barista_hw.fpgemm`) share.
"""

from __future__ import annotations

import numpy as np

from . import lfsr

_EXACT_F64 = float(2**53 - 1)
_EXACT_F32 = float(2**24 - 1)


def _max_abs(x: np.ndarray) -> float:
    return float(max(x.max(), -x.min())) if x.size else 0.0


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` (int64, modulo 2**64) through floating-point BLAS."""
    return _chunked_matmul(
        np.asarray(a), np.asarray(b), _max_abs(np.asarray(a)) * _max_abs(np.asarray(b))
    )


def _chunked_matmul(a: np.ndarray, b: np.ndarray, bound: float) -> np.ndarray:
    m, k = a.shape
    n = b.shape[1]
    if k == 0 or bound == 0:
        return np.zeros((m, n), dtype=np.int64)
    if bound * k <= _EXACT_F32:
        return np.matmul(a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)).astype(
            np.int64
        )
    chunk = max(1, int(_EXACT_F64 // bound))
    af = a.astype(np.float64, copy=False)
    bf = b.astype(np.float64, copy=False)
    out = np.zeros((m, n), dtype=np.int64)
    for k0 in range(0, k, chunk):  # a handful of chunks, each one BLAS call
        out += np.matmul(af[:, k0 : k0 + chunk], bf[k0 : k0 + chunk]).astype(np.int64)
    return out


def output_beats(m: int, n: int, rows: int, cols: int) -> np.ndarray:
    """Index of the output beat that carries element ``(i, j)``: shape ``(m, n)``.

    The engine emits tiles in row-major tile order (``tm`` outer, ``tn``
    inner); a tile emits its valid rows, one beat each, ``cols`` lanes wide.
    """
    tn_count = -(-n // cols)
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    tm, r = np.divmod(i, rows)
    rows_valid = np.minimum(rows, m - tm * rows)
    return tm * tn_count * rows + (j // cols) * rows_valid + r


def output_words(seed: int, m: int, n: int, rows: int, cols: int, bits: int) -> np.ndarray:
    """The random word each element ``(i, j)`` of an ``(m, n)`` result is rounded with.

    Lane ``j % cols``'s word at the beat that carries the element
    (:func:`output_beats`), keeping its low ``bits`` bits; uint32, shape ``(m, n)``.
    Beats run tile by tile, so the words are the beat-ordered lane words with each
    row tile's (column tile, row) axes swapped: no per-element index.
    """
    tn = -(-n // cols)
    words = lfsr.lane_words(seed, cols, m * tn, bits)  # (beats, cols)
    if rows > 1 and tn > 1:
        ordered = np.empty((m, tn, cols), dtype=np.uint32)
        full = m - m % rows
        ordered[:full].reshape(full // rows, rows, tn, cols)[...] = (
            words[: full * tn].reshape(full // rows, tn, rows, cols).transpose(0, 2, 1, 3)
        )
        ordered[full:] = words[full * tn :].reshape(tn, m - full, cols).transpose(1, 0, 2)
        words = ordered
    return words.reshape(m, tn * cols)[:, :n]


def join_raw(beats: np.ndarray, per_row: int, width: int, acc_width: int) -> np.ndarray:
    """The accumulators of an accumulator read-out (the engine's ``raw`` command).

    ``beats``: ``(rows * per_row, lanes)`` lane values as the engine emits them, each row's
    ``per_row`` beats in a row, beat ``j`` holding bits ``j*width ..`` of every lane's
    accumulator; returns ``(rows, lanes)`` int64, the accumulators as signed
    ``acc_width``-bit values.
    """
    pieces = np.asarray(beats, dtype=np.int64).reshape(-1, per_row, beats.shape[-1])
    mask = np.int64((1 << width) - 1)
    acc = np.zeros(pieces[:, 0].shape, dtype=np.int64)
    for j in range(per_row):  # j * width < acc_width <= 64: every piece lands in int64
        acc |= (pieces[:, j] & mask) << np.int64(j * width)
    if acc_width < 64:
        sign = np.int64(1) << np.int64(acc_width - 1)
        acc = ((acc & ((sign << np.int64(1)) - 1)) ^ sign) - sign
    return acc
