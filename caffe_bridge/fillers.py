"""Caffe's weight fillers (``FillerParameter``), drawing from a numpy ``Generator``.

The distributions and the fan-in/fan-out rules are Caffe's; the random streams
are numpy's, so values differ from Caffe's own draws but not in distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from barista_base.errors import InputError

from .blob import Blob

# FillerParameter.VarianceNorm values (caffe.proto).
FAN_IN, FAN_OUT, AVERAGE = 0, 1, 2

FILLER_TYPES = (
    "constant",
    "gaussian",
    "positive_unitball",
    "uniform",
    "xavier",
    "msra",
    "bilinear",
)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Caffe's fan_in = count / shape[0] and fan_out = count / shape[1] (integer division)."""
    count = int(np.prod(shape, dtype=np.int64))
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _variance_n(param: Any, shape: tuple[int, ...]) -> float:
    fan_in, fan_out = _fans(shape)
    norm = int(param.variance_norm)
    if norm == AVERAGE:
        return (fan_in + fan_out) / 2.0
    if norm == FAN_OUT:
        return float(fan_out)
    return float(fan_in)


def fill(target: Blob | np.ndarray, param: Any, rng: np.random.Generator) -> None:
    """Fill ``target`` (a Blob's data, or an array) in place as Caffe's filler ``param`` would.

    ``param`` is a ``caffe_pb2.FillerParameter``. Raises :class:`InputError`
    naming the filler type on an unknown type or a parameter Caffe rejects.
    """
    data = target.data if isinstance(target, Blob) else target
    kind = str(param.type)
    if kind not in FILLER_TYPES:
        raise InputError(f"unknown filler type {kind!r} (known: {', '.join(FILLER_TYPES)})")
    if data.size == 0:
        raise InputError(f"filler {kind!r}: cannot fill an empty blob of shape {data.shape}")
    sparse = int(param.sparse)
    if kind != "gaussian" and sparse != -1:
        raise InputError(f"filler {kind!r}: sparse={sparse} is only supported by 'gaussian'")
    shape = data.shape
    dtype = data.dtype

    if kind == "constant":
        data[...] = param.value
    elif kind == "uniform":
        lo, hi = float(param.min), float(param.max)
        if lo > hi:
            raise InputError(f"filler 'uniform': min {lo} is greater than max {hi}")
        data[...] = rng.uniform(lo, hi, size=shape)
    elif kind == "gaussian":
        if sparse < -1:
            raise InputError(f"filler 'gaussian': sparse must be >= -1, got {sparse}")
        values = rng.standard_normal(size=shape, dtype=np.float32) * np.float32(param.std)
        values += np.float32(param.mean)
        if sparse >= 0:
            if data.ndim < 1:
                raise InputError("filler 'gaussian': sparse needs a blob with at least one axis")
            # Caffe keeps each weight with probability sparse / num_outputs (shape[0]).
            p = min(sparse / shape[0], 1.0)
            values *= rng.random(size=shape) < p
        data[...] = values
    elif kind == "positive_unitball":
        values = rng.uniform(0.0, 1.0, size=shape)
        rows = values.reshape(shape[0] if data.ndim else 1, -1)
        rows /= rows.sum(axis=1, keepdims=True)
        data[...] = values
    elif kind == "xavier":
        scale = np.sqrt(3.0 / _variance_n(param, shape))
        data[...] = rng.uniform(-scale, scale, size=shape)
    elif kind == "msra":
        std = np.sqrt(2.0 / _variance_n(param, shape))
        data[...] = rng.standard_normal(size=shape, dtype=np.float32) * np.float32(std)
    else:  # bilinear
        if data.ndim != 4:
            raise InputError(f"filler 'bilinear': blob must be 4-d, got shape {shape}")
        if shape[2] != shape[3]:
            raise InputError(f"filler 'bilinear': filter must be square, got {shape[2]}x{shape[3]}")
        k = shape[3]
        f = int(np.ceil(k / 2.0))
        c = (k - 1) / (2.0 * f)
        profile = 1.0 - np.abs(np.arange(k) / f - c)
        data[...] = np.outer(profile, profile).astype(dtype)
