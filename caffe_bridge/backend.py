"""The GEMM backend interface: where Convolution and InnerProduct hand their matrix products.

Every Convolution, Deconvolution and InnerProduct layer computes its three passes
through one :class:`GemmBackend`, so the hardware backends (bit-exact model, Verilated
RTL, board) slot in without touching layer code:

* forward:         ``Y[b] = W @ X[b]``           W (M, K), X (B, K, N) -> (B, M, N)
* backward-data:   ``dX[b] = W.T @ dY[b]``       W (M, K), dY (B, M, N) -> (B, K, N)
* weight-gradient: ``dW = sum_b dY[b] @ X[b].T`` dY (B, M, N), X (B, K, N) -> (M, K)

For a convolution (one group), ``M`` is the number of output channels, ``K`` is
``channels_in/group * kernel_h * kernel_w`` and ``N`` is the number of output
pixels; ``X`` is the im2col matrix of each image.  An InnerProduct layer is the
same with ``B = 1`` and the batch folded into ``N`` (``X`` is the transposed
input).  The weight-gradient pass returns the gradient summed over the batch;
the layer adds it to the parameter's ``diff`` (Caffe accumulates). A Deconvolution is
a convolution run backwards: its forward is the backward-data pass (then col2im), its
bottom gradient the forward pass on the top gradient's im2col, and its weight gradient
the weight-gradient pass with the bottom in the place of ``dY``.

Besides the three passes, a backend has the hooks the solver and the training loop
call (:meth:`GemmBackend.prepare`, :meth:`~GemmBackend.begin_iteration`,
:meth:`~GemmBackend.report`, :meth:`~GemmBackend.state_dict`,
:meth:`~GemmBackend.close`); their defaults do nothing, so the float32
:class:`CpuBackend` is just the three products. The hardware backends live in the
``barista`` application (``barista.backends``); this runtime only knows the contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np


class GemmBackend(ABC):
    """Computes the three GEMM passes of a layer. Inputs and outputs are float32."""

    name: str = "abstract"
    #: A layout hint, never a change of values or shapes: whether the backend multiplies
    #: batch-last operands (the (B, K, N) views of (K, N, B) arrays that
    #: :func:`caffe_bridge.im2col.im2col_batch_last` makes) at least as fast as im2col's
    #: (B, K, N) arrays, so that layers may hand it those. The hardware backends lay every
    #: GEMM out image-major for the engine and keep the default.
    prefers_batch_last: bool = False
    #: Whether a convolution keeps its forward pass's columns until its backward pass and,
    #: when the bottom still holds the same bits, hands ``weight_grad`` those very arrays
    #: (read-only) instead of a fresh im2col. A backend that sets it may reuse work done
    #: on a read-only operand it saw before (same memory, same layout): such arrays are
    #: taken not to change. Costs the columns' memory between the passes.
    keeps_columns: bool = False

    @abstractmethod
    def forward(self, w: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        """``W @ X[b]`` for every b: (M, K) x (B, K, N) -> (B, M, N)."""

    @abstractmethod
    def backward_data(self, w: np.ndarray, dy: np.ndarray, *, layer: str = "") -> np.ndarray:
        """``W.T @ dY[b]`` for every b: (M, K) x (B, M, N) -> (B, K, N)."""

    @abstractmethod
    def weight_grad(self, dy: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        """``sum_b dY[b] @ X[b].T``: (B, M, N) x (B, K, N) -> (M, K)."""

    # -- hooks of the solver and the training loop ---------------------------------------
    def for_test_nets(self) -> GemmBackend:
        """The backend a solver gives its test nets (default: this one)."""
        return self

    def prepare(self, log: Callable[[str], None]) -> None:
        """Build or connect what the first GEMM would (a simulator, a board), saying so."""
        return None

    def begin_iteration(self, iteration: int | None = None) -> None:
        """A training iteration starts (before its forward pass); ``iteration`` is its
        number as the solver counts, from 0 as in Caffe's log (None: not known)."""
        return None

    def report(self) -> str | None:
        """What to show when training ends (e.g. cycles per layer pass), or None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """The state a snapshot keeps to resume bit-identically (JSON-able; empty: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        return None

    def close(self) -> None:
        """Release simulators, ports and files."""
        return None


#: Makes the backend of one net: a solver gives each of its nets its own, so a test
#: pass never changes the training net's state.
BackendFactory = Callable[[], GemmBackend]


class CpuBackend(GemmBackend):
    """Plain float32 numpy (BLAS), Caffe's CPU arithmetic.

    When an operand's images lie side by side in memory (the batch-last columns of
    :func:`caffe_bridge.im2col.im2col_batch_last`, or images one after another) the
    batch is folded into one GEMM over all of them, which a multi-threaded BLAS spreads
    over its threads, and the result comes back as a (B, ., N) view in the same column
    order. Other operands (im2col's (B, K, N) columns) take one product per image.
    """

    name = "cpu"
    prefers_batch_last = True

    def forward(self, w: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        folded = _fold(x)
        if folded is None:
            return np.matmul(w, x)
        x2, inner = folded
        return _unfold(_product(w, x2), x.shape[0], inner)

    def backward_data(self, w: np.ndarray, dy: np.ndarray, *, layer: str = "") -> np.ndarray:
        folded = _fold(dy)
        if folded is None:
            return np.matmul(w.T, dy)
        dy2, inner = folded
        return _unfold(_product(w.T, dy2), dy.shape[0], inner)

    def weight_grad(self, dy: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        b, m, n = dy.shape
        k = x.shape[1]
        fdy, fx = _fold(dy), _fold(x)
        if fdy is not None and fx is not None and (b == 1 or fdy[1] == fx[1]):
            # One GEMM with the batch folded into the reduction dimension.
            dy2, x2 = fdy[0], fx[0]
            if dy2.shape[1] > max(m, k):
                # A long reduction (a convolution's batch of pixels): OpenBLAS runs it
                # faster, and on more threads, as the product of the transposed operands.
                return (x2 @ dy2.T).T
            return dy2 @ x2.T
        if m * k <= (m + k) * n:
            # One product per image, then their sum: the (B, M, K) products take no more
            # memory than folding copies of the operands would.
            return np.matmul(dy, x.transpose(0, 2, 1)).sum(axis=0)
        return dy.transpose(1, 0, 2).reshape(m, b * n) @ x.transpose(0, 2, 1).reshape(b * n, k)


def _fold(a: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """A (B, R, N) array as the 2-D (R, B*N) view of its columns, with whether the batch
    is the inner index (columns ``n*B + b``) or the outer one (``b*N + n``); None when the
    columns are not laid out that way (folding them would need a copy)."""
    b, r, n = a.shape
    if b == 1:
        return a[0], False
    item = a.itemsize
    sb, _, sn = a.strides
    if sb == item and (n == 1 or sn == b * item):
        return a.transpose(1, 2, 0).reshape(r, n * b), True
    if (n == 1 or sn == item) and sb == n * item:
        return a.transpose(1, 0, 2).reshape(r, b * n), False
    return None


def _product(w: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """``w @ x2``, laid out like ``x2``: computed transposed when ``x2``'s columns are
    contiguous (an InnerProduct's transposed input), so that the layer's copy of the
    result back to its blob reads memory in order."""
    if x2.flags.f_contiguous and not x2.flags.c_contiguous:
        return (x2.T @ w.T).T
    return w @ x2


def _unfold(y: np.ndarray, b: int, inner: bool) -> np.ndarray:
    """The (R, B*N) product of folded operands as the (B, R, N) view of its columns."""
    r = y.shape[0]
    if inner:
        return y.reshape(r, -1, b).transpose(2, 0, 1)
    return y.reshape(r, b, -1).transpose(1, 0, 2)
