"""MemoryData layer (Caffe's MemoryDataLayer): batches from arrays fed by Python.

Two ways in, as in Caffe:

* :meth:`MemoryDataLayer.set_input_arrays` is pycaffe's ``net.set_input_arrays``
  (Caffe's ``Reset``): float arrays of exactly ``(n, channels, height, width)``,
  served as they are. Like Caffe, it does not apply ``transform_param`` and
  warns when one is set.
* :meth:`MemoryDataLayer.add_images` is Caffe's ``AddMatVector``/``AddDatumVector``:
  raw images (e.g. uint8 pixels) that go through ``transform_param`` first
  (Caffe's DataTransformer: mean_value or mean_file subtracted, then ``scale``;
  ``crop_size`` and ``mirror`` too, in which case the images are larger than
  ``height`` x ``width`` and cropped to it), the way Caffe's MemoryDataLayer
  honours it.

Either way ``n`` must be a positive multiple of ``batch_size``; each forward pass
serves the next ``batch_size`` rows and wraps around at the end.
"""

from __future__ import annotations

import warnings

import numpy as np

from barista_base.errors import InputError

from ..blob import Blob
from ..transform import DataTransformer
from .base import Layer, register_layer


@register_layer("MemoryData")
class MemoryDataLayer(Layer):
    """Tops ``data`` ``(batch, channels, height, width)`` and ``label`` ``(batch,)``."""

    exact_bottoms = 0
    exact_tops = 2

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.memory_data_param
        dims = {"batch_size": p.batch_size, "channels": p.channels}
        dims |= {"height": p.height, "width": p.width}
        bad = [f"{k} = {v}" for k, v in dims.items() if v <= 0]
        if bad:
            raise self.error(
                f"memory_data_param: batch_size, channels, height and width must be given "
                f"and positive ({', '.join(bad)})"
            )
        self._batch = int(p.batch_size)
        self._chw = (int(p.channels), int(p.height), int(p.width))
        self._setup_transform()
        self._data: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._pos = 0
        self._has_new_data = False
        top[0].reshape((self._batch, *self._chw))
        top[1].reshape((self._batch,))

    def _setup_transform(self) -> None:
        """Caffe's DataTransformer for :meth:`add_images`, checked now where it can be."""
        self._has_transform = self.param.HasField("transform_param")
        tp = self.param.transform_param
        try:
            self._transformer = DataTransformer(tp, self.ctx.phase, self.ctx.rng)
            if not tp.crop_size:  # without a crop, the input images are (C, H, W) too
                self._transformer.output_shape(self._chw)
        except InputError as exc:
            raise self.error(str(exc)) from None

    # -- feeding ------------------------------------------------------------
    def _check_arrays(self, data: np.ndarray, labels: np.ndarray, what: str) -> np.ndarray:
        """Common checks of both entry points; returns the labels as an ``(n,)`` array."""
        if data.ndim != 4:
            raise self.error(f"{what}: data must be 4-D (n, c, h, w), got shape {data.shape}")
        n = data.shape[0]
        if labels.size != n or (labels.ndim > 0 and labels.shape[0] != n):
            raise self.error(
                f"{what}: {n} images but labels of shape {labels.shape} (need {n} labels)"
            )
        if n == 0 or n % self._batch:
            raise self.error(
                f"{what}: the number of images ({n}) must be a positive multiple of "
                f"memory_data_param.batch_size ({self._batch})"
            )
        return labels.reshape(n)

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """Serve ``data`` ``(n, channels, height, width)`` and ``labels`` ``(n,)`` as given.

        pycaffe's ``net.set_input_arrays`` (Caffe's ``Reset``): no transformation
        is applied, as in Caffe, which warns when ``transform_param`` is set;
        :meth:`add_images` applies it. The arrays are copied (as float32).
        """
        data = np.asarray(data)
        labels = np.asarray(labels)
        labels = self._check_arrays(data, labels, "set_input_arrays")
        if data.shape[1:] != self._chw:
            raise self.error(
                f"set_input_arrays: data of shape {data.shape} does not match "
                f"memory_data_param (n, {', '.join(map(str, self._chw))})"
            )
        if self._has_transform:
            warnings.warn(
                f"layer '{self.name}' (MemoryData): set_input_arrays does not apply "
                f"transform_param (as in Caffe); use add_images to have it applied",
                stacklevel=2,
            )
        self._reset(data.astype(np.float32), labels.astype(np.float32))

    def add_images(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Serve ``images`` ``(n, channels, h, w)`` transformed by ``transform_param``.

        Caffe's ``AddMatVector``/``AddDatumVector``: ``(image - mean) * scale``, then
        crop and mirror if asked; the result must be ``(channels, height, width)``.
        As in Caffe, new images may only be added once the previous ones have all
        been served.
        """
        if self._has_new_data:
            raise self.error(
                "add_images: the images added before have not all been served yet "
                "(run forward until they are, as Caffe requires)"
            )
        images = np.asarray(images)
        labels = np.asarray(labels)
        labels = self._check_arrays(images, labels, "add_images")
        try:
            shape = self._transformer.output_shape(images.shape[1:])
        except InputError as exc:
            raise self.error(f"add_images: {exc}") from None
        if shape != self._chw:
            raise self.error(
                f"add_images: images of shape {images.shape} become {shape} after "
                f"transform_param, but memory_data_param wants {self._chw}"
            )
        out = np.empty((images.shape[0], *self._chw), np.float32)
        self._transformer(images, out)
        self._reset(out, labels.astype(np.float32))
        self._has_new_data = True

    def _reset(self, data: np.ndarray, labels: np.ndarray) -> None:
        self._data = data
        self._labels = labels
        self._pos = 0

    # -- life cycle -----------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """The position of the next batch, for exact training resumes."""
        return {"pos": int(self._pos)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._pos = int(state["pos"])

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Shapes are fixed by memory_data_param."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if self._data is None or self._labels is None:
            raise self.error(
                "no input: call set_input_arrays(data, labels) or add_images(images, labels) "
                "before the forward pass"
            )
        end = self._pos + self._batch
        top[0].data[...] = self._data[self._pos : end]
        top[1].data[...] = self._labels[self._pos : end]
        self._pos = end % self._data.shape[0]
        if self._pos == 0:
            self._has_new_data = False
