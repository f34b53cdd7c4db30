"""Requantisation of accumulator lanes to the operand format, and the LFSR lanes it draws from.

The rounding rules are those stated in :mod:`barista_hw.numfmt`; the random
source is specified in :mod:`barista_hw.lfsr`, whose matrices build the XOR
network here.
"""

from __future__ import annotations

from functools import reduce
from operator import xor

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import lfsr
from .numfmt import FixedFormat, Rounding


class Requantizer(wiring.Component):
    """Combinational: ``lanes`` accumulators -> saturated operands (shift, rounding, words)."""

    def __init__(self, fmt: FixedFormat, lanes: int) -> None:
        self.fmt, self.lanes = fmt, lanes
        super().__init__(
            {
                "acc": In(data.ArrayLayout(fmt.acc_shape, lanes)),
                "words": In(data.ArrayLayout(unsigned(lfsr.STATE_BITS), lanes)),
                "shift": In(fmt.shift_shape),
                "rounding": In(2),
                "q": Out(data.ArrayLayout(fmt.operand_shape, lanes)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        fmt = self.fmt
        # mask = 2**shift - 1 and half_m1 = 2**(shift-1) - 1 (0 when shift == 0).
        mask = Signal(unsigned(lfsr.STATE_BITS + 1))
        half_m1 = Signal(unsigned(lfsr.STATE_BITS))
        m.d.comb += [
            mask.eq((Const(1, lfsr.STATE_BITS + 1) << self.shift) - 1),
            half_m1.eq(mask >> 1),
        ]
        for lane in range(self.lanes):
            acc = self.acc[lane]
            bias = Signal(unsigned(lfsr.STATE_BITS + 1), name=f"bias{lane}")
            lsb = (acc >> self.shift)[0]
            with m.Switch(self.rounding):
                with m.Case(Rounding.NEAREST_EVEN):
                    m.d.comb += bias.eq(Mux(self.shift == 0, 0, half_m1 + lsb))
                with m.Case(Rounding.STOCHASTIC):
                    m.d.comb += bias.eq(self.words[lane] & mask)
                with m.Default():  # FLOOR (and the reserved code 3)
                    m.d.comb += bias.eq(0)
            # Wide enough for the accumulator plus a bias of up to 2**32 - 1.
            width = max(fmt.acc_width, lfsr.STATE_BITS + 1) + 2
            total = Signal(signed(width), name=f"total{lane}")
            q = Signal(signed(width), name=f"q{lane}")
            m.d.comb += [total.eq(acc + bias), q.eq(total >> self.shift)]
            with m.If(q > fmt.max_int):
                m.d.comb += self.q[lane].eq(fmt.max_int)
            with m.Elif(q < fmt.min_int):
                m.d.comb += self.q[lane].eq(fmt.min_int)
            with m.Else():
                m.d.comb += self.q[lane].eq(q)
        return m


class LfsrLanes(wiring.Component):
    """One leap-forward Galois LFSR per lane: ``load`` seeds them, ``advance`` steps them."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        super().__init__(
            {
                "seed": In(lfsr.STATE_BITS),
                "load": In(1),
                "advance": In(1),
                "words": Out(data.ArrayLayout(unsigned(lfsr.STATE_BITS), lanes)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        leap = lfsr.leap_matrix(lfsr.LEAP)
        for lane in range(self.lanes):
            state = self.words[lane]
            nxt = Cat(
                *(
                    reduce(xor, [state[j] for j in range(lfsr.STATE_BITS) if leap[i, j]])
                    for i in range(lfsr.STATE_BITS)
                )
            )
            with m.If(self.load):
                m.d.sync += state.eq((self.seed ^ lfsr.lane_key(lane)) | 1)
            with m.Elif(self.advance):
                m.d.sync += state.eq(nxt)
        return m
