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
    """Plain float32 numpy (BLAS), Caffe's CPU arithmetic."""

    name = "cpu"

    def forward(self, w: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        return np.matmul(w, x)

    def backward_data(self, w: np.ndarray, dy: np.ndarray, *, layer: str = "") -> np.ndarray:
        return np.matmul(w.T, dy)

    def weight_grad(self, dy: np.ndarray, x: np.ndarray, *, layer: str = "") -> np.ndarray:
        b, m, n = dy.shape
        k = x.shape[1]
        # One GEMM with the batch folded into the reduction dimension.
        return dy.transpose(1, 0, 2).reshape(m, b * n) @ x.transpose(0, 2, 1).reshape(b * n, k)
