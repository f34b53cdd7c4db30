"""Finite-difference gradient checking, in the manner of Caffe's GradientChecker.

The objective is a fixed random projection of the tops, ``L = sum_t <top_t, R_t>``,
so the analytic gradient comes from one ``backward`` with ``top.diff = R`` and the
numerical one from central differences of ``L``. Tolerances follow Caffe: an
element passes when ``|analytic - numeric| <= threshold * max(|analytic|,
|numeric|, 1)``; elements within ``kink_range`` of ``kink`` (ReLU's 0, a max
pool's ties) are skipped as Caffe does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from google.protobuf import text_format

from .backend import GemmBackend
from .blob import Blob
from .layers.base import LAYER_TYPES, Layer, LayerContext
from .proto import caffe_pb2


def _objective(top: list[Blob], projections: list[np.ndarray]) -> float:
    return float(
        sum(
            np.dot(t.data.ravel().astype(np.float64), r.ravel())
            for t, r in zip(top, projections, strict=True)
        )
    )


def check_gradients(
    layer: Layer,
    bottom: list[Blob],
    top: list[Blob],
    *,
    check_bottom: Sequence[int] | None = None,
    check_params: bool = True,
    stepsize: float = 1e-2,
    threshold: float = 1e-3,
    kink: float | None = None,
    kink_range: float = -1.0,
    seed: int = 1701,
) -> None:
    """Raise ``AssertionError`` naming the blob and element whose gradient is wrong.

    ``check_bottom`` lists the bottom indices to check (default: all). The
    layer's random source is reset before every forward pass, so stochastic
    layers (Dropout) see the same mask in every evaluation.
    """
    if check_bottom is None:
        check_bottom = range(len(bottom))
    check_bottom = list(check_bottom)

    def forward() -> None:
        layer.ctx.rng = np.random.default_rng(seed)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)

    layer.check_blob_counts(bottom, top)
    layer.setup(bottom, top)
    forward()
    rng = np.random.default_rng(seed + 1)
    projections = [rng.standard_normal(t.shape).astype(np.float64) for t in top]

    # Analytic gradients.
    for blob in list(bottom) + layer.blobs:
        blob.diff[...] = 0
    for t, r in zip(top, projections, strict=True):
        t.diff[...] = r
    propagate = [i in check_bottom for i in range(len(bottom))]
    layer.backward(top, propagate, bottom)

    targets: list[tuple[str, Blob]] = [(f"bottom[{i}]", bottom[i]) for i in check_bottom]
    if check_params:
        targets += [(f"param[{i}]", b) for i, b in enumerate(layer.blobs)]
    analytic = {name: blob.diff.astype(np.float64).copy() for name, blob in targets}

    for name, blob in targets:
        flat = blob.data.reshape(-1)
        grad = analytic[name].reshape(-1)
        for i in range(flat.size):
            x0 = float(flat[i])
            flat[i] = x0 + stepsize
            forward()
            f_plus = _objective(top, projections)
            flat[i] = x0 - stepsize
            forward()
            f_minus = _objective(top, projections)
            flat[i] = x0
            if kink is not None and kink_range > 0:
                # Caffe skips elements whose *output* sits at a kink; we look at the input.
                if abs(x0 - kink) <= kink_range:
                    continue
            numeric = (f_plus - f_minus) / (2 * stepsize)
            scale = max(abs(grad[i]), abs(numeric), 1.0)
            if abs(grad[i] - numeric) > threshold * scale:
                raise AssertionError(
                    f"{layer.type_name} '{layer.name}': gradient of {name} element {i} "
                    f"(index {np.unravel_index(i, blob.shape)}): analytic {grad[i]:.6g}, "
                    f"numeric {numeric:.6g}"
                )
    forward()


def make_layer(
    text: str, phase: str = "TRAIN", seed: int = 0, backend: GemmBackend | None = None
) -> Layer:
    """A layer from its prototxt ``layer { ... }`` body, with a seeded random source."""
    param = text_format.Parse(text, caffe_pb2.LayerParameter())
    ctx = LayerContext(phase=phase, rng=np.random.default_rng(seed))
    if backend is not None:
        ctx.backend = backend
    return LAYER_TYPES[param.type](param, ctx)


def blob_from(array: np.ndarray | Sequence[float]) -> Blob:
    """A Blob holding ``array`` (as float32) in its data."""
    array = np.asarray(array, dtype=np.float32)
    blob = Blob(array.shape)
    blob.data[...] = array
    return blob


def gaussian(
    shape: Sequence[int], seed: int = 1701, std: float = 1.0, mean: float = 0.0
) -> np.ndarray:
    """Seeded normal float32 values (test inputs, as Caffe's GaussianFiller in its tests)."""
    return (mean + std * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)
