"""Input and DummyData layers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from barista_base.errors import InputError

from ..blob import Blob
from ..fillers import FILLER_TYPES, fill
from .base import Layer, register_layer


def _reshape_top(layer: Layer, top: Blob, shape: list[int], what: str) -> None:
    try:
        top.reshape(shape)
    except ValueError as exc:
        raise layer.error(f"{what}: {exc}") from None


@register_layer("Input")
class InputLayer(Layer):
    """A net input: its tops are shaped from ``input_param.shape`` and written from outside.

    As in Caffe, ``shape`` is given once (every top), once per top, or not at all
    (the tops keep whatever shape the caller gives them).
    """

    exact_bottoms = 0
    min_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        shapes = self.param.input_param.shape
        if len(shapes) not in (0, 1, len(top)):
            raise self.error(
                f"input_param.shape must be given once, once per top blob, or not at all: "
                f"{len(top)} tops vs. {len(shapes)} shapes"
            )
        for i, t in enumerate(top):
            if shapes:
                dims = list(shapes[0 if len(shapes) == 1 else i].dim)
                _reshape_top(self, t, dims, f"input_param.shape[{i}]")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Caffe's Input layer never reshapes its tops itself: the caller owns their shape."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        """The data is written into the tops from outside the net."""


@register_layer("DummyData")
class DummyDataLayer(Layer):
    """Tops filled by ``dummy_data_param.data_filler`` (default: constant 0).

    Shapes come from ``shape`` or Caffe's legacy ``num``/``channels``/``height``/
    ``width`` fields, each given once or once per top. As in Caffe, tops with a
    constant filler are filled once at setup; the others are refilled on every
    forward pass.
    """

    exact_bottoms = 0
    min_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.dummy_data_param
        n_top = len(top)
        n_fill = len(p.data_filler)
        if n_fill not in (0, 1, n_top):
            raise self.error(
                f"dummy_data_param.data_filler must be given 0, 1 or {n_top} (one per top) "
                f"times; got {n_fill}"
            )
        legacy = {name: list(getattr(p, name)) for name in ("num", "channels", "height", "width")}
        if any(legacy.values()):
            if len(p.shape):
                raise self.error(
                    "dummy_data_param: both 'shape' and the legacy num/channels/height/width "
                    "fields were given"
                )
            for name, values in legacy.items():
                if len(values) not in (1, n_top):
                    raise self.error(
                        f"dummy_data_param.{name} must be given once or once per top blob "
                        f"({n_top}); given {len(values)} times"
                    )
            for i, t in enumerate(top):
                dims = [v[0] if len(v) == 1 else v[i] for v in legacy.values()]
                _reshape_top(self, t, dims, "dummy_data_param")
        else:
            if len(p.shape) not in (1, n_top):
                raise self.error(
                    f"dummy_data_param.shape must be given once or once per top blob "
                    f"({n_top}); given {len(p.shape)} times"
                )
            for i, t in enumerate(top):
                dims = list(p.shape[0 if len(p.shape) == 1 else i].dim)
                _reshape_top(self, t, dims, f"dummy_data_param.shape[{i}]")

        if n_fill == 0:
            # Caffe's default: one constant filler of value 0 for every top.
            self._fillers: list[Any] = [SimpleNamespace(type="constant", value=0.0, sparse=-1)]
        else:
            self._fillers = list(p.data_filler)
        for k, f in enumerate(self._fillers):
            if f.type not in FILLER_TYPES:  # Caffe's GetFiller rejects it at setup
                raise self.error(
                    f"dummy_data_param.data_filler[{k}]: unknown filler type {f.type!r} "
                    f"(known: {', '.join(FILLER_TYPES)})"
                )
        # Constant fillers are applied once here and never again (Caffe's refill_ rule).
        self._refill = [f.type != "constant" for f in self._fillers]
        for i, t in enumerate(top):
            k = i if len(self._fillers) > 1 else 0
            if not self._refill[k]:
                self._fill(t, k)

    def _fill(self, top: Blob, k: int) -> None:
        try:
            fill(top, self._fillers[k], self.ctx.rng)
        except InputError as exc:
            raise self.error(f"dummy_data_param.data_filler[{k}]: {exc}") from None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Shapes are fixed at setup, as in Caffe."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for i, t in enumerate(top):
            k = i if len(self._fillers) > 1 else 0
            if self._refill[k]:
                self._fill(t, k)
