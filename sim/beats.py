"""The engines' beat order on the host side: operands into ``a``/``b`` beats, ``o`` beats back.

Shared by every driver (pysim, cocotb, Verilator), so the order documented in
:mod:`barista_hw.engine` is written down once on the software side.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def tile_beats(
    a: np.ndarray, b: np.ndarray, rows: int, cols: int
) -> Iterator[tuple[list[int], list[int]]]:
    """The ``a``/``b`` beats of a GEMM in the engine's order (partial lanes zero-filled).

    For the weight-gradient engine, pass the operands of
    :func:`barista_hw.model.weight_grad_operands`: their reduction dimension is
    ``images * k``, image-major, which is the engine's nested order.
    """
    m, kt = a.shape
    n = b.shape[1]
    tm_count, tn_count = -(-m // rows), -(-n // cols)
    a_pad = np.zeros((tm_count * rows, kt), dtype=np.int64)
    a_pad[:m] = a
    b_pad = np.zeros((kt, tn_count * cols), dtype=np.int64)
    b_pad[:, :n] = b
    for tm in range(tm_count):
        for tn in range(tn_count):
            for k in range(kt):
                yield (
                    a_pad[tm * rows : (tm + 1) * rows, k].tolist(),
                    b_pad[k, tn * cols : (tn + 1) * cols].tolist(),
                )


def assemble(beats: list[list[int]], m: int, n: int, rows: int, cols: int) -> np.ndarray:
    """Output beats (engine order) -> the ``(m, n)`` result matrix."""
    out = np.zeros((m, n), dtype=np.int64)
    it = iter(beats)
    for tm in range(-(-m // rows)):
        for tn in range(-(-n // cols)):
            for r in range(min(rows, m - tm * rows)):
                row = next(it)
                width = min(cols, n - tn * cols)
                out[tm * rows + r, tn * cols : tn * cols + width] = row[:width]
    if next(it, None) is not None:
        raise AssertionError("engine emitted more beats than the result has rows")
    return out
