"""The layers a device program is compiled from: Caffe's layers as the device sees them.

The application reads a Caffe net and describes each layer with one of these
(:mod:`barista.device_net`); the compiler needs nothing else of Caffe. Blob names are
Caffe's: a layer computed in place (``top == bottom``) rewrites its bottom's tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

from barista_base.errors import InputError

from .geometry import ConvGeometry, PoolGeometry


@dataclass(frozen=True)
class Param:
    """A learnable blob's solver multipliers (Caffe's ``param { lr_mult decay_mult }``)."""

    lr_mult: float = 1.0
    decay_mult: float = 1.0


@dataclass(frozen=True)
class Conv:
    """Convolution (``geom`` over the bottom) or, with ``geom=None``, InnerProduct over a
    bottom of ``inputs`` values per image. ``backward_data``: the bottom needs a gradient."""

    name: str
    bottom: str
    top: str
    num_output: int
    geom: ConvGeometry | None = None
    inputs: int = 0
    bias: bool = True
    weight: Param = Param()
    bias_param: Param = Param()
    backward_data: bool = True

    def __post_init__(self) -> None:
        if (self.geom is None) == (self.inputs < 1):
            raise InputError(f"layer {self.name}: give a geometry or an input size, not both")
        if self.num_output < 1 or self.num_output % self.group:
            raise InputError(
                f"layer {self.name}: num_output {self.num_output} does not split into "
                f"{self.group} groups"
            )

    @property
    def group(self) -> int:
        return 1 if self.geom is None else self.geom.group

    @property
    def k(self) -> int:
        """The reduction of one group's GEMM."""
        return self.inputs if self.geom is None else self.geom.k

    @property
    def pixels(self) -> int:
        return 1 if self.geom is None else self.geom.pixels

    @property
    def in_shape(self) -> tuple[int, ...]:
        """One image of the bottom."""
        if self.geom is None:
            return (self.inputs,)
        return (self.geom.channels, self.geom.height, self.geom.width)

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.geom is None:
            return (self.num_output,)
        return (self.num_output, self.geom.out_height, self.geom.out_width)


@dataclass(frozen=True)
class Relu:
    name: str
    bottom: str
    top: str
    shape: tuple[int, ...]  # one image
    negative_slope: float = 0.0


@dataclass(frozen=True)
class Pool:
    """Pooling, ``method`` ``"max"`` or ``"ave"``."""

    name: str
    bottom: str
    top: str
    geom: PoolGeometry
    method: str = "max"

    def __post_init__(self) -> None:
        if self.method not in ("max", "ave"):
            raise InputError(f"layer {self.name}: pooling method {self.method!r} (max or ave)")

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.geom.channels, self.geom.height, self.geom.width)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.geom.channels, self.geom.out_height, self.geom.out_width)


@dataclass(frozen=True)
class HostLayer:
    """A layer the device cannot run: the host runs it between device segments."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    top_shapes: tuple[tuple[int, ...], ...]  # one image of each top


DeviceLayer = Conv | Relu | Pool
Layer = Conv | Relu | Pool | HostLayer
