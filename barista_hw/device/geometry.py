"""The window geometries of the device's operations, with Caffe's output-size rules.

One definition shared by the ISA (which encodes them), the DMA address generation
(im2col and col2im), the vector unit (pooling) and the compiler.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from barista_base.errors import InputError


class Space(enum.IntEnum):
    """The memories an instruction reads or writes (the ISA's encoding)."""

    DRAM = 0
    A = 1  # the engine's operand buffer A (``rows`` lanes a word)
    B = 2  # the engine's operand buffer B (``cols`` lanes a word)
    C = 3  # the result scratchpad (``cols`` lanes a word)
    V = 4  # the vector unit's scratchpad (``vector_lanes`` lanes a word)
    HOST = 5  # the other end of the link


def conv_output(size: int, kernel: int, pad: int, stride: int, dilation: int) -> int:
    """Caffe's convolution output size: ``(size + 2 pad - (dilation (kernel - 1) + 1)) /
    stride + 1``, rounded down."""
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def pool_output(size: int, kernel: int, pad: int, stride: int) -> int:
    """Caffe's pooling output size: rounded up, then one less if the last window would
    start in the padding (``PoolingLayer::Reshape``)."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class ConvGeometry:
    """A convolution window over ``channels x height x width`` images (Caffe's fields).

    ``group`` splits the channels (and the output channels) into independent groups;
    the GEMM of group ``g`` reads channels ``[g C/group, (g+1) C/group)``.
    """

    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    group: int = 1

    def __post_init__(self) -> None:
        dims = (self.channels, self.height, self.width, *self.kernel, *self.stride)
        if min(dims) < 1 or min(self.dilation) < 1 or min(self.pad) < 0:
            raise InputError(f"convolution geometry {self}: sizes must be positive")
        if self.group < 1 or self.channels % self.group:
            raise InputError(f"{self.channels} channels do not split into {self.group} groups")
        if min(self.out_height, self.out_width) < 1:
            raise InputError(f"convolution geometry {self}: the window does not fit the image")

    @property
    def out_height(self) -> int:
        return conv_output(
            self.height, self.kernel[0], self.pad[0], self.stride[0], self.dilation[0]
        )

    @property
    def out_width(self) -> int:
        return conv_output(
            self.width, self.kernel[1], self.pad[1], self.stride[1], self.dilation[1]
        )

    @property
    def group_channels(self) -> int:
        return self.channels // self.group

    @property
    def k(self) -> int:
        """The GEMM's reduction per group: ``channels/group * kernel_h * kernel_w``."""
        return self.group_channels * self.kernel[0] * self.kernel[1]

    @property
    def pixels(self) -> int:
        """Output pixels per image: the GEMM's ``N`` per image."""
        return self.out_height * self.out_width


@dataclass(frozen=True)
class PoolGeometry:
    """A pooling window over ``channels x height x width`` images (Caffe's fields)."""

    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if min(self.channels, self.height, self.width, *self.kernel, *self.stride) < 1:
            raise InputError(f"pooling geometry {self}: sizes must be positive")
        if min(self.pad) < 0 or self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
            raise InputError(f"pooling geometry {self}: the padding must be below the kernel")
        last_h = (self.out_height - 1) * self.stride[0] - self.pad[0]
        last_w = (self.out_width - 1) * self.stride[1] - self.pad[1]
        if last_h >= self.height or last_w >= self.width:  # as the runtime refuses it
            raise InputError(f"pooling geometry {self}: the last window starts outside the input")

    @property
    def out_height(self) -> int:
        return pool_output(self.height, self.kernel[0], self.pad[0], self.stride[0])

    @property
    def out_width(self) -> int:
        return pool_output(self.width, self.kernel[1], self.pad[1], self.stride[1])
