"""Blob: Caffe's N-d array pair (``data`` and ``diff``), as pycaffe exposes it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Blob:
    """A float32 ``data``/``diff`` pair with Caffe's shape helpers.

    Arrays are replaced (not resized in place) on :meth:`reshape` when the count
    changes, so views handed out earlier keep their old shape, as in pycaffe.
    """

    __slots__ = ("data", "diff")

    def __init__(self, shape: Sequence[int] = (), dtype: type = np.float32) -> None:
        self.data = np.zeros(tuple(int(s) for s in shape), dtype=dtype)
        self.diff = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def count(self) -> int:
        return int(self.data.size)

    @property
    def num_axes(self) -> int:
        return self.data.ndim

    def canonical_axis(self, axis: int) -> int:
        """Caffe's CanonicalAxisIndex: negative axes count from the end."""
        n = self.data.ndim
        if not -n <= axis < max(n, 1):
            raise ValueError(f"axis {axis} out of range for a {n}-d blob of shape {self.shape}")
        return axis % n if n else 0

    def count_range(self, start: int, end: int | None = None) -> int:
        """Caffe's count(start, end): product of dimensions in [start, end)."""
        return int(np.prod(self.shape[start:end], dtype=np.int64))

    def reshape(self, *shape: int | Sequence[int]) -> None:
        """Give the blob a new shape; contents are kept when the count is unchanged."""
        if len(shape) == 1 and not isinstance(shape[0], int | np.integer):
            shape = tuple(shape[0])  # type: ignore[arg-type]
        new = tuple(int(s) for s in shape)  # type: ignore[arg-type]
        if any(s < 0 for s in new):
            raise ValueError(f"negative blob dimension in {new}")
        if new == self.data.shape:
            return
        if int(np.prod(new, dtype=np.int64)) == self.data.size:
            self.data = self.data.reshape(new)
            self.diff = self.diff.reshape(new)
        else:
            self.data = np.zeros(new, dtype=self.data.dtype)
            self.diff = np.zeros_like(self.data)

    def reshape_like(self, other: Blob) -> None:
        self.reshape(other.shape)

    def share_data(self, other: Blob) -> None:
        """Make this blob's data the very array of ``other`` (Caffe's ShareData)."""
        self.data = other.data

    def share_diff(self, other: Blob) -> None:
        self.diff = other.diff

    def __repr__(self) -> str:
        return f"Blob(shape={self.shape})"
