"""The MX PE: exact element products, summed per block, scaled at the block's end.

The dataflow (documented with its cost in docs/formats.md):

* **Scales beside the elements.** Every operand word is ``Cat(element code, E8M0 scale code)``
  (:meth:`MXArith.pack`): the element in the low ``element_bits`` bits, its block's scale in
  the 8 bits above. The buffers, streams and skew registers carry the wider word; no separate
  scale stream and no change to the array or the engine's sequencing. All words of one block
  carry the same scale (the model refuses operands that do not).
* **Block partial.** The product stage is :class:`~barista_hw.fppe.MinifloatPE`'s (sign,
  significand product, element shift) plus the biased scale sum ``c_a + c_b``; the partial
  register (:meth:`~barista_hw.mx.MXFormat.partial_width` bits: 42 for E4M3, 21 for MXINT8)
  sums the block's exact products.
* **Block end.** A counter of valid terms (reset by ``last``) marks the end of each block of
  ``block`` terms along K, counted from the command's first term; ``last`` ends the final,
  possibly short, block. At a block end the finished partial is shifted left by
  ``c_a + c_b - base`` and added to the accumulator, whose LSB is ``2**acc_exp`` with
  ``acc_exp = lo + unit_exp_a + unit_exp_b``: it holds the exact sum for scale sums
  ``X_a + X_b`` (unbiased) in ``[lo, hi]`` over ``k`` terms. A zero partial adds nothing
  whatever its scales (zero blocks, the engine's padding lanes).

:class:`MXPE` has the port contract of :class:`~barista_hw.pe.ProcessingElement` and the
latency of the minifloat PE (the shift and the wide add sit in the accumulator stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth import Module, Mux, Signal
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from .fppe import MinifloatArith, MinifloatDecoder, MinifloatPE, add_signed
from .minifloat import MinifloatFormat
from .mx import E8M0, SCALE_MAX, SCALE_MIN, MXFormat

__all__ = ["IntElementDecoder", "MXArith", "MXPE", "SCALE_SUM_MAX", "SCALE_SUM_MIN"]

#: The range of ``X_a + X_b`` over all finite E8M0 scales.
SCALE_SUM_MIN, SCALE_SUM_MAX = 2 * SCALE_MIN, 2 * SCALE_MAX


@dataclass(frozen=True)
class MXArith:
    """A PE's arithmetic on MX operands ``a`` and ``b`` (one block size): exact sums of up
    to ``k`` products whose scale sums ``X_a + X_b`` lie in ``[lo, hi]`` (module notes).

    Provides what :class:`~barista_hw.array.SystolicArray` reads of a format
    (``operand_shape``, ``acc_shape``, ``name``).
    """

    a: MXFormat
    b: MXFormat
    k: int
    lo: int = SCALE_SUM_MIN
    hi: int = SCALE_SUM_MAX

    def __post_init__(self) -> None:
        if self.a.block != self.b.block:
            raise InputError(
                f"MX PE: {self.a.name} and {self.b.name} need one block size "
                f"({self.a.block} vs {self.b.block})"
            )
        for fmt in (self.a, self.b):
            el = fmt.element
            if isinstance(el, MinifloatFormat):
                MinifloatArith(el, el, 1)  # the same element checks as the minifloat PE
        if self.k < 1:
            raise InputError(f"MX PE: reduction length k={self.k} must be at least 1")
        if not SCALE_SUM_MIN <= self.lo <= self.hi <= SCALE_SUM_MAX:
            raise InputError(
                f"MX PE: the scale-sum window [{self.lo}, {self.hi}] must lie within "
                f"[{SCALE_SUM_MIN}, {SCALE_SUM_MAX}] with lo <= hi"
            )

    @property
    def name(self) -> str:
        return f"{self.a.name}x{self.b.name}k{self.k}w{self.lo}_{self.hi}"

    @property
    def block(self) -> int:
        return self.a.block

    @property
    def element_bits(self) -> int:
        """Bits of the element field of a word (the wider element)."""
        return max(self.a.element_bits, self.b.element_bits)

    @property
    def operand_shape(self) -> Shape:
        return unsigned(self.element_bits + E8M0.bits)

    @property
    def partial_width(self) -> int:
        return self.a.partial_width(self.b)

    @property
    def base(self) -> int:
        """The biased scale sum ``c_a + c_b`` whose block lands unshifted (``lo``)."""
        return self.lo + 2 * E8M0.bias

    @property
    def span_width(self) -> int:
        """Bits of the block shift ``c_a + c_b - base`` (0 .. ``hi - lo``)."""
        return max(1, (self.hi - self.lo).bit_length())

    @property
    def acc_width(self) -> int:
        """Signed bits holding ``ceil(k / block)`` largest partials shifted by ``hi - lo``."""
        blocks = -(-self.k // self.block)
        bound = self.a.max_units * self.b.max_units * self.block * blocks
        return (bound << (self.hi - self.lo)).bit_length() + 1

    @property
    def acc_shape(self) -> Shape:
        return signed(self.acc_width)

    @property
    def acc_exp(self) -> int:
        """The accumulator's LSB is ``2**acc_exp``."""
        unit = int(math.log2(self.a.elem_unit)) + int(math.log2(self.b.elem_unit))
        return self.lo + unit

    @property
    def shift_width(self) -> int:
        """Bits of the element shift ``shift_a + shift_b`` (1 for integer elements)."""
        tops = [f.element.top_field - 1 for f in (self.a, self.b) if not f.is_int]
        return max(1, sum(tops).bit_length())

    def pack(self, elements: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """Element codes and one scale code per element -> operand words (int64)."""
        el = np.asarray(elements, dtype=np.int64) & ((1 << self.element_bits) - 1)
        return el | (np.asarray(scales, dtype=np.int64) << self.element_bits)

    def unpack(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Operand words -> (element codes, scale codes); :data:`~barista_hw.mx.INT8_ELEMENT`
        codes come back as signed integers."""
        words = np.asarray(words, dtype=np.int64)
        el = words & ((1 << self.element_bits) - 1)
        return el, (words >> self.element_bits) & ((1 << E8M0.bits) - 1)


class IntElementDecoder(wiring.Component):
    """Combinational: an MXINT8 element (two's complement) -> ``sign``, ``sig``, ``shift``.

    Ports:
        code (in, 8): the element.
        sign (out, 1): its sign bit.
        sig (out, 8): its magnitude (128 for -128).
        shift (out, 1): always 0 (the magnitude is ``sig`` units).
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__({"code": In(width), "sign": Out(1), "sig": Out(width), "shift": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        neg = self.code[-1]
        m.d.comb += [self.sign.eq(neg), self.sig.eq(Mux(neg, -self.code, self.code))]
        return m


def _decoder(fmt: MXFormat) -> wiring.Component:
    el = fmt.element
    return MinifloatDecoder(el) if isinstance(el, MinifloatFormat) else IntElementDecoder(el.width)


class MXPE(MinifloatPE):
    """Output-stationary MAC cell on MX words (ports as :class:`ProcessingElement`'s).

    Ports:
        a, b (in, ``operand_shape``): words ``Cat(element, scale)`` of ``arith.a``/``arith.b``.
        valid, last (in): a real term; the last term of a dot product.
        a_o, b_o, valid_o, last_o (out): the inputs one cycle later, for the neighbours.
        drain (in), shift_i (in, ``acc_shape``): shift the bank (``bank <= shift_i``).
        bank (out, ``acc_shape``): the last finished dot product, exact (LSB ``2**acc_exp``).
        capture (out): the bank takes the finished sum at the next clock edge.
    """

    def __init__(self, arith: MXArith, *, dsp_product: bool = False) -> None:
        super().__init__(arith, dsp_product=dsp_product)  # type: ignore[arg-type]

    def elaborate(self, platform: object) -> Module:
        m = Module()
        arith: MXArith = self.fmt  # type: ignore[assignment]
        eb = arith.element_bits
        bank = Signal(arith.acc_shape, reset_less=True)
        p_valid, p_last = self.pass_on(m, bank)
        m.submodules.dec_a = dec_a = _decoder(arith.a)
        m.submodules.dec_b = dec_b = _decoder(arith.b)
        m.d.comb += [
            dec_a.code.eq(self.a_o[: arith.a.element_bits]),
            dec_b.code.eq(self.b_o[: arith.b.element_bits]),
        ]
        p_sign, p_sig, p_shift = self.product(m, dec_a, dec_b, arith.shift_width)
        p_scale = Signal(E8M0.bits + 1, reset_less=True)  # c_a + c_b, biased
        m.d.sync += p_scale.eq(self.a_o[eb:] + self.b_o[eb:])
        # the block: its exact partial and the count of its terms so far
        pw = arith.partial_width
        part = Signal(signed(pw))
        part_total = Signal(signed(pw))
        m.d.comb += part_total.eq(add_signed(part, p_sig << p_shift, p_sign, pw))
        count = Signal(range(arith.block))
        end = p_last | (count == arith.block - 1)
        # at the block's end: the partial into the accumulator's frame (out-of-window
        # amounts only ever shift a zero partial: the model refuses anything else)
        amount = Signal(arith.span_width)
        m.d.comb += amount.eq(p_scale - arith.base)
        acc = Signal(arith.acc_shape)
        total = Signal(arith.acc_shape)
        m.d.comb += [
            total.eq(acc + (part_total << amount)),
            self.capture.eq(p_valid & p_last),
        ]
        with m.If(p_valid):
            m.d.sync += count.eq(Mux(end, 0, count + 1))
            with m.If(end):
                m.d.sync += [part.eq(0), acc.eq(Mux(p_last, 0, total))]
            with m.Else():
                m.d.sync += part.eq(part_total)
        self.bank_update(m, bank, total)
        return m
