"""The device's scratchpads in block RAM: their geometry per space and the memory itself.

A scratchpad word holds ``lanes`` elements of ``bits`` bits, lane ``i`` at bits
``[i bits, (i+1) bits)`` (two's complement). The geometry of each space is one
definition, :func:`geometry`, read from the :class:`~barista_hw.device.memory.DeviceConfig`
the compiler and the model use: A ``rows`` lanes and B ``cols`` lanes of the format's
width (the engine's operand buffers), C ``cols`` lanes of the format's width, V
``vector_lanes`` lanes of ``v_lane_bits``.

Double buffering is an address split, as the program allocates it: half ``h`` of a
scratchpad of ``depth`` words starts at word ``h * (depth // 2)``
(:func:`half_base`; the compiler's ``a_half``, ``b_half`` and ``c_half``), so a DMA
fills one half while a unit reads the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError
from barista_hw.memory import collision_free_memory

from ..geometry import Space
from ..memory import DeviceConfig
from ..traffic import spad_lanes


@dataclass(frozen=True)
class SpadGeometry:
    """A scratchpad's shape: ``depth`` words of ``lanes`` lanes of ``bits`` bits."""

    lanes: int
    bits: int
    depth: int

    def __post_init__(self) -> None:
        if min(self.lanes, self.bits, self.depth) < 1:
            raise InputError(f"scratchpad {self}: lanes, bits and depth must be positive")

    @property
    def word_bits(self) -> int:
        return self.lanes * self.bits

    @property
    def addr_bits(self) -> int:
        return max(1, (self.depth - 1).bit_length())


def geometry(config: DeviceConfig, space: Space) -> SpadGeometry:
    """The scratchpad ``space`` (A, B, C or V) of the device ``config``."""
    acc, s = config.accelerator, config.scratchpads
    e = acc.engine
    shapes = {  # (lane bits, depth); the lanes are the time model's (spad_lanes)
        Space.A: (e.fmt.width, acc.a_depth),
        Space.B: (e.fmt.width, acc.b_depth),
        Space.C: (e.fmt.width, s.c_depth),
        Space.V: (s.v_lane_bits, s.v_depth),
    }
    if space not in shapes:
        raise InputError(f"{Space(space).name} is not a scratchpad (A, B, C or V)")
    return SpadGeometry(spad_lanes(config, space), *shapes[Space(space)])


def half_base(geom: SpadGeometry, half: int) -> int:
    """The first word of double-buffer half ``half`` (0 or 1)."""
    if half not in (0, 1):
        raise InputError(f"scratchpad half {half}: a scratchpad has halves 0 and 1")
    return half * (geom.depth // 2)


class Scratchpad(wiring.Component):
    """One block-RAM scratchpad: a write port and a read port of one cycle's latency.

    ``r_data`` is the word at the ``r_addr`` of the previous cycle. A read of the word
    written in the same cycle is undefined (:func:`~barista_hw.memory.collision_free_memory`):
    the units never read a half while it is being filled.
    """

    READ_LATENCY = 1

    def __init__(self, geom: SpadGeometry) -> None:
        self.geom = geom
        super().__init__(
            {
                "w_addr": In(geom.addr_bits),
                "w_data": In(geom.word_bits),
                "w_en": In(1),
                "r_addr": In(geom.addr_bits),
                "r_data": Out(geom.word_bits),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.mem = mem = collision_free_memory(self.geom.word_bits, self.geom.depth)
        wp, rp = mem.write_port(), mem.read_port(domain="sync")
        m.d.comb += [
            wp.addr.eq(self.w_addr),
            wp.data.eq(self.w_data),
            wp.en.eq(self.w_en),
            rp.addr.eq(self.r_addr),
            self.r_data.eq(rp.data),
        ]
        return m
