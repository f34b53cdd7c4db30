"""The layer protocol (Caffe's ``Layer``) and the registry of layer types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from barista_base.errors import InputError

from ..backend import CpuBackend, GemmBackend
from ..blob import Blob


class LayerError(InputError):
    """Bad layer definition or input; the message names the layer and parameter."""


@dataclass
class LayerContext:
    """What a layer may use besides its own parameters.

    ``phase`` is ``"TRAIN"`` or ``"TEST"``; ``rng`` is the net's random source
    (fillers, dropout, data shuffling), seeded from the solver's ``random_seed``.
    """

    phase: str = "TRAIN"
    backend: GemmBackend = field(default_factory=CpuBackend)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    source_file: str = ""  # the prototxt the layer came from, for error messages


class Layer:
    """Base class of every layer, with Caffe's life cycle.

    ``setup`` (Caffe's LayerSetUp: read parameters, create and fill ``blobs``),
    ``reshape`` (top shapes from bottom shapes), ``forward`` and ``backward``.
    All operate on lists of :class:`Blob`. ``blobs`` holds the learnable
    parameters in Caffe's order (e.g. weights then bias).
    """

    type_name: ClassVar[str] = ""
    # Caffe's ExactNumBottomBlobs/MinBottomBlobs/... (None: no constraint).
    exact_bottoms: ClassVar[int | None] = None
    min_bottoms: ClassVar[int | None] = None
    max_bottoms: ClassVar[int | None] = None
    exact_tops: ClassVar[int | None] = None
    min_tops: ClassVar[int | None] = None
    max_tops: ClassVar[int | None] = None
    # Loss layers: Caffe gives their first top a default loss_weight of 1.
    is_loss: ClassVar[bool] = False
    # Caffe's EqualNumBottomTopBlobs.
    equal_bottom_top: ClassVar[bool] = False

    def __init__(self, param: Any, ctx: LayerContext) -> None:
        self.param = param  # the caffe_pb2.LayerParameter
        self.ctx = ctx
        self.name: str = param.name
        self.blobs: list[Blob] = []
        # Set by the Net: per param blob, whether its gradient is needed (lr_mult != 0).
        self.param_propagate_down: list[bool] = []

    # -- Caffe's life cycle -------------------------------------------------
    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Read parameters and create ``self.blobs`` (LayerSetUp)."""

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Shape the tops from the bottoms."""
        raise NotImplementedError(f"{type(self).__name__}.reshape")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        """Write bottom diffs (where ``propagate_down``) and accumulate param diffs."""

    def allow_force_backward(self, bottom_index: int) -> bool:
        """Caffe's AllowForceBackward: False for inputs such as labels."""
        return True

    # -- what a snapshot keeps besides the weights ---------------------------
    def state_dict(self) -> dict[str, Any] | None:
        """A JSON-able position to resume from (data layers' cursors), or None: stateless."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""

    # -- helpers ------------------------------------------------------------
    def error(self, message: str) -> LayerError:
        """An error that names the file and layer: ``raise self.error("...")``."""
        where = f"{self.ctx.source_file}: " if self.ctx.source_file else ""
        return LayerError(f"{where}layer '{self.name}' ({self.type_name}): {message}")

    def check_blob_counts(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Caffe's CheckBlobCounts, with a readable error."""

        def check(kind: str, n: int, exact: int | None, lo: int | None, hi: int | None) -> None:
            if exact is not None and n != exact:
                raise self.error(f"takes exactly {exact} {kind} blob(s), got {n}")
            if lo is not None and n < lo:
                raise self.error(f"takes at least {lo} {kind} blob(s), got {n}")
            if hi is not None and n > hi:
                raise self.error(f"takes at most {hi} {kind} blob(s), got {n}")

        check("bottom", len(bottom), self.exact_bottoms, self.min_bottoms, self.max_bottoms)
        check("top", len(top), self.exact_tops, self.min_tops, self.max_tops)
        if self.equal_bottom_top and len(bottom) != len(top):
            raise self.error(f"needs as many tops as bottoms ({len(bottom)} vs {len(top)})")


LAYER_TYPES: dict[str, type[Layer]] = {}


def register_layer(type_name: str) -> Callable[[type[Layer]], type[Layer]]:
    """Class decorator: register a layer class under its Caffe ``type`` string."""

    def deco(cls: type[Layer]) -> type[Layer]:
        cls.type_name = type_name
        LAYER_TYPES[type_name] = cls
        return cls

    return deco
