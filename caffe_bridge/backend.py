"""The GEMM backend interface: where Convolution and InnerProduct hand their matrix products.

Every Convolution and InnerProduct layer computes its three passes through one
:class:`GemmBackend`, so the hardware backends (bit-exact model, Verilated RTL,
board) slot in without touching layer code:

* forward:         ``Y[b] = W @ X[b]``           W (M, K), X (B, K, N) -> (B, M, N)
* backward-data:   ``dX[b] = W.T @ dY[b]``       W (M, K), dY (B, M, N) -> (B, K, N)
* weight-gradient: ``dW = sum_b dY[b] @ X[b].T`` dY (B, M, N), X (B, K, N) -> (M, K)

For a convolution (one group), ``M`` is the number of output channels, ``K`` is
``channels_in/group * kernel_h * kernel_w`` and ``N`` is the number of output
pixels; ``X`` is the im2col matrix of each image.  An InnerProduct layer is the
same with ``B = 1`` and the batch folded into ``N`` (``X`` is the transposed
input).  The weight-gradient pass returns the gradient summed over the batch;
the layer adds it to the parameter's ``diff`` (Caffe accumulates).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

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

    def for_test_nets(self) -> GemmBackend:
        """The backend a solver gives its test nets (default: this one)."""
        return self


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


_BACKENDS: dict[str, type[GemmBackend]] = {"cpu": CpuBackend}


def register_backend(cls: type[GemmBackend]) -> type[GemmBackend]:
    """Class decorator: make a backend selectable by its ``name``."""
    _BACKENDS[cls.name] = cls
    return cls


def get_backend(name: str, **options: object) -> GemmBackend:
    """Instantiate a registered backend by name (``cpu``, ...)."""
    if name not in _BACKENDS:
        # Registered on import; the rtl backend pulls in the Verilator driver.
        from . import hw_backend  # noqa: F401

        if name == "rtl":
            from . import rtl_backend  # noqa: F401
        elif name == "board":
            from . import board_backend  # noqa: F401
    try:
        cls = _BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS))
        raise ValueError(f"unknown backend {name!r} (known: {known})") from None
    return cls(**options)
