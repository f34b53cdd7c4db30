"""Caffe's DataTransformer: mean subtraction, scaling, cropping and mirroring of
the records a data layer reads (``transform_param``).

The value written for every pixel is ``(x - mean) * scale``, where ``mean`` comes
from ``mean_file`` (a full-size image, subtracted before cropping) or
``mean_value`` (one value, or one per channel).  With ``crop_size`` the crop is
random in TRAIN and central in TEST; with ``mirror`` each image is flipped
left-right with probability 1/2, in both phases, exactly as Caffe's
DataTransformer does. :func:`resize_bilinear` is the resize of Caffe's image readers
(OpenCV's ``INTER_LINEAR``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from barista_base.errors import InputError

from .io import read_binaryproto


class DataTransformer:
    """Applies a ``TransformationParameter`` to batches of (C, H, W) records.

    ``where`` prefixes error messages (e.g. "file:line: layer 'mnist' (Data)").
    """

    def __init__(
        self, param: Any, phase: str, rng: np.random.Generator, *, where: str = ""
    ) -> None:
        self.param = param
        self.phase = phase
        self.rng = rng
        self.where = where
        self.scale = float(param.scale)
        self.crop = int(param.crop_size)
        self.mirror = bool(param.mirror)
        self.mean: np.ndarray | None = None  # (C, H, W) from mean_file
        self.mean_values: np.ndarray | None = None  # (C,) or (1,)
        if param.HasField("mean_file") and len(param.mean_value):
            raise self._error("transform_param: give mean_file or mean_value, not both")
        if param.HasField("mean_file"):
            try:
                mean = read_binaryproto(param.mean_file)
            except InputError as exc:
                raise self._error(f"transform_param.mean_file: {exc}") from None
            if mean.ndim == 4:
                if mean.shape[0] != 1:
                    raise self._error(
                        f"transform_param.mean_file {param.mean_file}: expected one mean "
                        f"image, got shape {mean.shape}"
                    )
                mean = mean[0]
            if mean.ndim != 3:
                raise self._error(
                    f"transform_param.mean_file {param.mean_file}: expected a (1, C, H, W) "
                    f"blob, got shape {mean.shape}"
                )
            self.mean = mean.astype(np.float32)
        elif len(param.mean_value):
            self.mean_values = np.asarray(param.mean_value, dtype=np.float32)

    def _error(self, message: str) -> InputError:
        return InputError(f"{self.where}: {message}" if self.where else message)

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The (C, H, W) of a transformed record of input shape ``shape``; checks the
        mean and the crop against it."""
        c, h, w = shape
        if self.mean is not None and self.mean.shape != (c, h, w):
            raise self._error(
                f"transform_param.mean_file {self.param.mean_file} has shape "
                f"{self.mean.shape}, the records are {(c, h, w)}"
            )
        if self.mean_values is not None and len(self.mean_values) not in (1, c):
            raise self._error(
                f"transform_param.mean_value must be given once or once per channel ({c}), "
                f"got {len(self.mean_values)} values"
            )
        if self.crop:
            if self.crop > h or self.crop > w:
                raise self._error(
                    f"transform_param.crop_size {self.crop} is larger than the records ({h} x {w})"
                )
            return c, self.crop, self.crop
        return c, h, w

    def __call__(self, batch: np.ndarray, out: np.ndarray) -> None:
        """Transform ``batch`` (N, C, H, W), uint8 or float, into ``out`` (float32)."""
        n, c, h, w = batch.shape
        x = batch.astype(np.float32)
        if self.mean is not None:
            x -= self.mean
        elif self.mean_values is not None:
            x -= (
                self.mean_values.reshape(-1, 1, 1)
                if len(self.mean_values) > 1
                else (self.mean_values[0])
            )
        if self.scale != 1.0:
            x *= np.float32(self.scale)
        train = self.phase == "TRAIN"
        if self.crop:
            cs = self.crop
            if train:
                hoff = self.rng.integers(0, h - cs + 1, size=n)
                woff = self.rng.integers(0, w - cs + 1, size=n)
            else:
                hoff = np.full(n, (h - cs) // 2)
                woff = np.full(n, (w - cs) // 2)
            # Gather every crop at once with per-image index grids.
            rows = hoff[:, None] + np.arange(cs)[None, :]  # (n, cs)
            cols = woff[:, None] + np.arange(cs)[None, :]
            x = x[
                np.arange(n)[:, None, None, None],
                np.arange(c)[None, :, None, None],
                rows[:, None, :, None],
                cols[:, None, None, :],
            ]
        if self.mirror:  # Caffe flips at random in TEST too
            flip = self.rng.integers(0, 2, size=n).astype(bool)
            x[flip] = x[flip, :, :, ::-1]
        out[...] = x


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of 1-D bilinear resampling with pixel-centre alignment.

    Applied on both axes (``A @ img @ A.T``) it resizes a whole stack of images in
    one ``einsum``; edge pixels are replicated, as in the usual image resizers.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    mat = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(mat, (rows, lo), 1.0 - frac)
    np.add.at(mat, (rows, hi), frac)
    return mat


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (C, H, W) uint8 image resized to (C, ``height``, ``width``) as Caffe's
    ``ReadImageToCVMat`` does with OpenCV's ``INTER_LINEAR``: pixel-centre alignment, edge
    pixels replicated, no smoothing when shrinking. Computed in float64 and rounded to the
    nearest integer, so a value may differ by one grey level from a given OpenCV build's
    fixed-point arithmetic.
    """
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {image.shape}")
    _, h, w = image.shape
    if (h, w) == (height, width):
        return image
    rows = bilinear_matrix(h, height)
    cols = bilinear_matrix(w, width)
    out = rows @ image.astype(np.float64) @ cols.T
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
