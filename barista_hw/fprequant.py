"""Requantisation of exact fixed-point accumulators to minifloat codes (the RTL of
:func:`barista_hw.fpgemm.requantize` with a :class:`~barista_hw.minifloat.MinifloatFormat`).

The accumulator ``acc`` (signed, LSB ``2**acc_exp``) is rounded once, on its magnitude, as
:meth:`MinifloatFormat.encode` rounds a float. With the output's unit ``2**u`` and
``d = acc_exp - u``, the magnitude in output units is ``m = |acc| << max(d, 0)`` with
``F = max(-d, 0)`` fraction bits; ``p`` the position of its leading one. The kept LSB is bit

    s = max(p - mant, F)          (a normal binade keeps mant + 1 bits; below it, subnormals)

and ``n = round(m >> s)``: nearest-even on the remainder; floor truncates the magnitude;
stochastic adds the low :data:`~barista_hw.minifloat.SR_BITS` bits of the lane's LFSR word to
the ``SR_BITS`` bits below the kept LSB (bits further down dropped first) and keeps the carry.
``t = s - F`` is the binade above the smallest; a carry out of the significand
(``n = 2**(mant+1)``) halves ``n`` and adds one to ``t``. Then the exponent field is ``t + 1``
for a normal ``n`` (``n >= 2**mant``), else 0; a field or code beyond the largest finite gives
:meth:`MinifloatFormat.overflow_code` (the largest finite value when saturating). The sign is
the accumulator's (a negative value that rounds to zero gives -0, as the model does).
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value, unsigned
from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from . import lfsr
from .minifloat import SR_BITS, MinifloatFormat
from .numfmt import Rounding
from .pipeline import delay

__all__ = ["MinifloatRequantizer", "lane_widths", "leading_one"]


def lane_widths(acc_width: int, acc_exp: int, out: MinifloatFormat) -> tuple[int, int, int, int]:
    """A lane's constant pre-shift ``up``, fraction bits ``F``, the width of the magnitude
    in output units and the bits of the kept-LSB position ``s`` (module notes)."""
    d = acc_exp - out.unit_exp
    up, frac_bits = max(d, 0), max(-d, 0)
    mwidth = acc_width + up
    return up, frac_bits, mwidth, max(mwidth, frac_bits + 1).bit_length()  # s <= either


def leading_one(v: Value) -> Value:
    """The position of the highest set bit of ``v`` (0 when none), as a tree of multiplexers.

    Expressions only, no ``m.If`` process: Icarus never ran the Verilog ``always @*`` block
    of such a process in a lane whose accumulator held zero from time 0, leaving it x.
    """
    if len(v) <= 1:
        return Const(0, 1)
    half = 1 << ((len(v) - 1).bit_length() - 1)  # the largest power of two below len(v)
    return Mux(v[half:].any(), half + leading_one(v[half:]), leading_one(v[:half]))


class MinifloatRequantizer(wiring.Component):
    """Pipelined: ``lanes`` exact accumulators -> codes of ``out`` (run-time rounding mode).

    Ports:
        acc (in, ``lanes`` x signed ``acc_width``): the accumulators, LSB ``2**acc_exp``.
        words (in, ``lanes`` x 32): each lane's LFSR word (:class:`~barista_hw.requant.LfsrLanes`).
        rounding (in, 2): a :class:`~barista_hw.numfmt.Rounding` (code 3 floors).
        q (out, ``lanes`` x ``out.bits``): the codes for the ``acc``/``words``/``rounding``
            presented :attr:`latency` cycles earlier.

    Stages: inputs registered; magnitude, leading one and shift registered; rounding and
    packing registered (:data:`LATENCY`); then ``delay`` more registers on ``q`` (an engine
    pads to its fixed-point requantiser's latency).
    """

    LATENCY = 3

    def __init__(
        self,
        acc_width: int,
        acc_exp: int,
        out: MinifloatFormat,
        lanes: int,
        *,
        saturate: bool = True,
        delay: int = 0,
    ) -> None:
        if not (out.signed and out.subnormals):
            self._MustUse__silence = True  # rejected, so never elaborated: no warning
            raise InputError(f"minifloat requantiser: output format {out.name} must be signed")
        self.acc_width, self.acc_exp, self.out = acc_width, acc_exp, out
        self.lanes, self.saturate, self.delay = lanes, saturate, delay
        self.latency = self.LATENCY + delay
        super().__init__(
            {
                "acc": In(data.ArrayLayout(signed(acc_width), lanes)),
                "words": In(data.ArrayLayout(unsigned(lfsr.STATE_BITS), lanes)),
                "rounding": In(2),
                "q": Out(data.ArrayLayout(out.code_shape, lanes)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for lane in range(self.lanes):
            self._lane(m, lane)
        return m

    def _lane(self, m: Module, lane: int) -> None:
        out, width = self.out, self.acc_width
        up, frac_bits, mwidth, sbits = lane_widths(width, self.acc_exp, out)
        owidth = max(mwidth, frac_bits) + 1
        # stage 1: inputs
        acc = Signal(signed(width), name=f"acc{lane}", reset_less=True)
        word1 = Signal(SR_BITS, name=f"word1_{lane}", reset_less=True)
        rnd1 = Signal(2, name=f"rnd1_{lane}", reset_less=True)
        m.d.sync += [
            acc.eq(self.acc[lane]),
            word1.eq(self.words[lane][:SR_BITS]),
            rnd1.eq(self.rounding),
        ]
        # stage 2: sign, magnitude in output units, kept-LSB position s
        neg = acc[-1]
        mag = Signal(unsigned(width), name=f"mag{lane}")
        m.d.comb += mag.eq(Mux(neg, -acc, acc))
        lead = Signal(range(mwidth), name=f"lead{lane}")  # the leading one of mag << up
        m.d.comb += lead.eq(leading_one(mag) + up)
        sign = Signal(name=f"sign{lane}", reset_less=True)
        mant = Signal(unsigned(mwidth), name=f"m{lane}", reset_less=True)
        s = Signal(sbits, name=f"s{lane}", reset_less=True)
        word2 = Signal(SR_BITS, name=f"word2_{lane}", reset_less=True)
        rnd2 = Signal(2, name=f"rnd2_{lane}", reset_less=True)
        normal_lsb = lead >= frac_bits + out.mant
        m.d.sync += [
            sign.eq(neg),
            mant.eq(mag << up),
            s.eq(Mux(normal_lsb, lead - out.mant, frac_bits)),
            word2.eq(word1),
            rnd2.eq(rnd1),
        ]
        # stage 3: round, renormalise, pack, saturate
        kept = Signal(unsigned(out.mant + 1), name=f"kept{lane}")
        m.d.comb += kept.eq(mant >> s)
        ones = Signal(unsigned(owidth), name=f"ones{lane}")  # 2**s - 1
        m.d.comb += ones.eq((Const(1, owidth) << s) - 1)
        rem = mant & ones
        half = ones ^ (ones >> 1)  # 2**(s-1), or 0 when s == 0
        ne_up = (s != 0) & ((rem > half) | ((rem == half) & kept[0]))
        ext = Signal(unsigned(SR_BITS), name=f"ext{lane}")  # the SR_BITS bits below the LSB
        m.d.comb += ext.eq((mant << SR_BITS) >> s)
        sr_up = (ext + word2)[SR_BITS]
        inc = Mux(rnd2 == Rounding.NEAREST_EVEN, ne_up, Mux(rnd2 == Rounding.STOCHASTIC, sr_up, 0))
        n = Signal(unsigned(out.mant + 2), name=f"n{lane}")
        m.d.comb += n.eq(kept + inc)
        carry = n[out.mant + 1]
        sig = Mux(carry, n >> 1, n)[: out.mant + 1]
        t = Signal(unsigned(sbits + 1), name=f"t{lane}")
        m.d.comb += t.eq(s - frac_bits + carry)
        field = Mux(sig[out.mant], t + 1, 0)
        code = Signal(unsigned(sbits + 2 + out.mant), name=f"code{lane}")
        m.d.comb += code.eq((field << out.mant) | sig[: out.mant])
        big = (field > out.top_field) | (code > out.max_code)
        q = Signal(out.code_shape, name=f"q{lane}", reset_less=True)
        packed = Mux(big, out.overflow_code(self.saturate), code)
        m.d.sync += q.eq(packed | (sign << (out.bits - 1)))
        m.d.comb += self.q[lane].eq(delay(m, q, self.delay, f"q_delay{lane}", data=True))
