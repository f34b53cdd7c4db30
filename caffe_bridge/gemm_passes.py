"""The three GEMM passes of a convolution (with groups) and of an inner product, on a backend.

One definition of how a layer's matrices are handed to a
:class:`~caffe_bridge.backend.GemmBackend` (shapes, group slices, the batch folded into an
inner product's columns), shared by the
Caffe layers (:mod:`caffe_bridge.layers.vision`) and by any other front end (the PyTorch
modules of ``barista.torch``), so both call the backend with the same operands in the same
order and get the same bits back.

A convolution's operands: ``weights`` (num_output, Kg) with ``Kg = channels/group * kh * kw``,
``cols`` the im2col columns (B, group*Kg, N), ``dy`` the top gradient (B, num_output, N).
An inner product's: ``w`` (num_output, K), ``x`` the bottom (batch, K), ``dy`` the top
gradient (batch, num_output).
"""

from __future__ import annotations

import numpy as np

from .backend import GemmBackend


def conv_forward(
    backend: GemmBackend,
    weights: np.ndarray,
    cols: np.ndarray,
    group: int,
    out: np.ndarray,
    *,
    layer: str,
) -> None:
    """``out[:, group gi] = W[gi] @ cols[:, group gi]`` for every group; ``out`` (B, M, N)."""
    mg, kg = weights.shape[0] // group, weights.shape[1]
    for gi in range(group):
        out[:, gi * mg : (gi + 1) * mg] = backend.forward(
            weights[gi * mg : (gi + 1) * mg], cols[:, gi * kg : (gi + 1) * kg], layer=layer
        )


def conv_weight_grad(
    backend: GemmBackend,
    dy: np.ndarray,
    cols: np.ndarray,
    group: int,
    wdiff: np.ndarray,
    *,
    layer: str,
) -> None:
    """Adds each group's weight gradient ``sum_b dY[b] @ cols[b].T`` to ``wdiff`` (M, Kg)
    (Caffe accumulates into the parameter's diff)."""
    mg, kg = wdiff.shape[0] // group, wdiff.shape[1]
    for gi in range(group):
        m_slice, k_slice = slice(gi * mg, (gi + 1) * mg), slice(gi * kg, (gi + 1) * kg)
        wdiff[m_slice] += backend.weight_grad(dy[:, m_slice], cols[:, k_slice], layer=layer)


def conv_backward_data(
    backend: GemmBackend,
    weights: np.ndarray,
    dy: np.ndarray,
    group: int,
    *,
    layer: str,
    batch_last: bool = False,
) -> np.ndarray:
    """The columns' gradient ``W.T @ dY`` (B, g*Kg, N), the groups side by side; laid out
    batch-last (a (B, K, N) view of a (K, N, B) array) when ``batch_last``, as the columns."""
    if group == 1:
        return backend.backward_data(weights, dy, layer=layer)
    mg, kg = weights.shape[0] // group, weights.shape[1]
    num, _, n = dy.shape
    shape = (group * kg, n, num) if batch_last else (num, group * kg, n)
    dcols = np.empty(shape, dtype=np.float32)
    if batch_last:
        dcols = dcols.transpose(2, 0, 1)
    for gi in range(group):
        dcols[:, gi * kg : (gi + 1) * kg] = backend.backward_data(
            weights[gi * mg : (gi + 1) * mg], dy[:, gi * mg : (gi + 1) * mg], layer=layer
        )
    return dcols


def fc_forward(backend: GemmBackend, w: np.ndarray, x: np.ndarray, *, layer: str) -> np.ndarray:
    """``x @ w.T`` (batch, num_output); the batch is folded into the GEMM's N (X is (K, batch))."""
    return backend.forward(w, x.T[None], layer=layer)[0].T


def fc_weight_grad(
    backend: GemmBackend, dy: np.ndarray, x: np.ndarray, *, layer: str
) -> np.ndarray:
    """``dy.T @ x`` (num_output, K), summed over the batch."""
    return backend.weight_grad(dy.T[None], x.T[None], layer=layer)


def fc_backward_data(
    backend: GemmBackend, w: np.ndarray, dy: np.ndarray, *, layer: str
) -> np.ndarray:
    """``dy @ w`` (batch, K)."""
    return backend.backward_data(w, dy.T[None], layer=layer)[0].T
