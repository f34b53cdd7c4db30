"""The Python layer: pycaffe's layer protocol for user modules.

A ``type: "Python"`` layer names a module and a class in ``python_param``. As in Caffe,
the module is imported by name (``sys.path`` as it is, plus the current directory),
the class is instantiated when the layer is built, ``param_str`` and ``phase`` (0 TRAIN,
1 TEST, pycaffe's ints) are set on the instance, and its ``setup(bottom, top)``,
``reshape(bottom, top)``, ``forward(bottom, top)`` and ``backward(top, propagate_down,
bottom)`` are called with pycaffe-style blobs (:class:`PyBlob`). Learnable parameters are
added with ``self.blobs.add_blob(*shape)``, pycaffe's form.

User modules written for pycaffe start with ``import caffe`` and subclass ``caffe.Layer``.
When no ``caffe`` module is importable, a minimal one (``Layer``, ``TRAIN``, ``TEST``) is
registered so that such modules load unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..blob import Blob
from .base import Layer, LayerContext, LayerError, register_layer

TRAIN, TEST = 0, 1  # caffe.Phase values, as pycaffe exposes them


class PyBlob:
    """A Blob as pycaffe shows it: ``data``, ``diff``, ``shape``, ``count``, ``reshape``,
    and the legacy 4-d accessors ``num``, ``channels``, ``height``, ``width``."""

    __slots__ = ("blob",)

    def __init__(self, blob: Blob) -> None:
        self.blob = blob

    @property
    def data(self) -> np.ndarray:
        return self.blob.data

    @property
    def diff(self) -> np.ndarray:
        return self.blob.diff

    @property
    def shape(self) -> tuple[int, ...]:
        return self.blob.shape

    @property
    def count(self) -> int:
        return self.blob.count

    def reshape(self, *shape: int) -> None:
        self.blob.reshape(*shape)

    def _legacy(self, index: int) -> int:
        # Caffe's LegacyShape: axes missing from a blob of fewer than 4 axes count as 1.
        shape = self.blob.shape
        if len(shape) > 4:
            raise ValueError(f"legacy accessors need at most 4 axes, blob has shape {shape}")
        if index >= len(shape) or index < -len(shape):
            return 1
        return int(shape[index])

    @property
    def num(self) -> int:
        return self._legacy(0)

    @property
    def channels(self) -> int:
        return self._legacy(1)

    @property
    def height(self) -> int:
        return self._legacy(2)

    @property
    def width(self) -> int:
        return self._legacy(3)

    def __repr__(self) -> str:
        return f"PyBlob(shape={self.shape})"


class BlobVec:
    """pycaffe's ``layer.blobs``: a list of the layer's learnable blobs with ``add_blob``."""

    def __init__(self, blobs: list[Blob]) -> None:
        self._blobs = blobs  # the Layer's own list: blobs added here are its parameters

    def add_blob(self, *shape: int) -> None:
        """Append a zero-filled parameter blob of the given shape."""
        if len(shape) == 1 and isinstance(shape[0], Sequence):
            shape = tuple(shape[0])
        self._blobs.append(Blob(tuple(int(s) for s in shape)))

    def __len__(self) -> int:
        return len(self._blobs)

    def __getitem__(self, index: int) -> PyBlob:
        return PyBlob(self._blobs[index])

    def __iter__(self) -> Iterator[PyBlob]:
        return (PyBlob(b) for b in self._blobs)


class PythonLayerBase:
    """pycaffe's ``caffe.Layer``: subclass it and define the four protocol methods."""

    def __init__(self, param: Any = None) -> None:
        self.param_str = ""
        self.phase = TRAIN
        self.blobs = BlobVec([])

    def setup(self, bottom: list[PyBlob], top: list[PyBlob]) -> None:
        """Read ``self.param_str``, check bottoms, add parameter blobs."""

    def reshape(self, bottom: list[PyBlob], top: list[PyBlob]) -> None:
        """Shape the tops."""

    def forward(self, bottom: list[PyBlob], top: list[PyBlob]) -> None:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, top: list[PyBlob], propagate_down: list[bool], bottom: list[PyBlob]) -> None:
        raise NotImplementedError(f"{type(self).__name__}.backward")


def _install_caffe_shim() -> None:
    """Register a minimal ``caffe`` module unless a real one is importable."""
    if "caffe" in sys.modules or importlib.util.find_spec("caffe") is not None:
        return
    shim = types.ModuleType("caffe", "Barista's stand-in for pycaffe, for Python layers.")
    shim.Layer = PythonLayerBase  # type: ignore[attr-defined]
    shim.TRAIN = TRAIN  # type: ignore[attr-defined]
    shim.TEST = TEST  # type: ignore[attr-defined]
    sys.modules["caffe"] = shim


def _wrap(blobs: list[Blob]) -> list[PyBlob]:
    return [PyBlob(b) for b in blobs]


@register_layer("Python")
class PythonLayer(Layer):
    """Runs a user's pycaffe-style layer class (``python_param.module`` / ``.layer``)."""

    def __init__(self, param: Any, ctx: LayerContext) -> None:
        super().__init__(param, ctx)
        pp = param.python_param
        self.module_name = str(pp.module)
        self.class_name = str(pp.layer)
        if not self.module_name:
            raise self.error("python_param.module is not set")
        if not self.class_name:
            raise self.error("python_param.layer (the class name) is not set")
        where = f"python_param.module '{self.module_name}', layer class '{self.class_name}'"
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)
        _install_caffe_shim()
        try:
            module = importlib.import_module(self.module_name)
        except Exception as exc:
            raise self.error(f"cannot import {where}: {type(exc).__name__}: {exc}") from exc
        cls = getattr(module, self.class_name, None)
        if not isinstance(cls, type):
            origin = getattr(module, "__file__", None) or self.module_name
            raise self.error(f"{where}: module ({origin}) has no class '{self.class_name}'")
        try:
            if issubclass(cls, PythonLayerBase):
                self.py = cls(param)
            else:
                self.py = cls()
        except Exception as exc:
            raise self.error(
                f"{where}: creating the layer object failed: {type(exc).__name__}: {exc}"
            ) from exc
        self.where = where

    def _call(self, method: str, *args: Any) -> None:
        fn = getattr(self.py, method, None)
        if fn is None:
            raise self.error(f"{self.where}: the class has no method '{method}'")
        fn(*args)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.py.param_str = str(self.param.python_param.param_str)
        self.py.phase = TRAIN if self.ctx.phase == "TRAIN" else TEST
        self.py.blobs = BlobVec(self.blobs)
        try:
            self._call("setup", _wrap(bottom), _wrap(top))
        except Exception as exc:
            if isinstance(exc, LayerError):
                raise
            raise self.error(f"{self.where}: setup failed: {type(exc).__name__}: {exc}") from exc

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        try:
            self._call("reshape", _wrap(bottom), _wrap(top))
        except Exception as exc:
            if isinstance(exc, LayerError):
                raise
            raise self.error(f"{self.where}: reshape failed: {type(exc).__name__}: {exc}") from exc

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._call("forward", _wrap(bottom), _wrap(top))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        self._call("backward", _wrap(top), list(propagate_down), _wrap(bottom))
