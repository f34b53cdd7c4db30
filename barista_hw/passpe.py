"""The per-pass minifloat PE: each operand is a code of one of two formats, chosen per command.

An engine whose three passes take operands in different formats (E4M3 forward, E5M2
gradients: :class:`~barista_hw.passengine.PassGemmFormat`) streams plain codes; the engine
appends a *tag* bit above each code (0: the ``fwd`` format, 1: ``grad``) from the command's
pass, and the PE decodes the tagged code into one common frame: the significand aligned to
the wider mantissa and the shift counted in the finest unit of both formats,

    u = min(f.unit_exp - (M - f.mant))        over f in (fwd, grad), M = max mantissa bits

so a code of ``f`` is ``(sig << (M - f.mant)) << (shift + off_f)`` units of ``2**u`` with
``off_f = f.unit_exp - (M - f.mant) - u >= 0``. For E4M3 and E5M2 that frame is E5M3's: a
4-bit significand, every value of either format exact. Products are exact in units of
``2**(2u)``; the accumulator is sized for the largest sum of the pass pairs that occur
(``fwd x fwd``, ``fwd x grad``, ``grad x fwd``), so it never overflows over ``k`` terms and
holds the very integer :func:`barista_hw.fpgemm.minifloat_gemm` forms for the pass, shifted
into this frame. Ports and latency are :class:`~barista_hw.fppe.MinifloatPE`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from amaranth import Module, Mux
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import wiring

from .fppe import MinifloatArith, MinifloatDecoder, MinifloatPE, decoder_signature
from .minifloat import MinifloatFormat

__all__ = ["PassArith", "PassPE", "TaggedDecoder"]


@dataclass(frozen=True)
class PassArith:
    """A per-pass PE's arithmetic: operand formats ``fwd`` and ``grad``, sums of up to ``k``
    products of the pairs ``pairs`` (``(A format, B format)`` per pass).

    Provides what :class:`~barista_hw.array.SystolicArray` reads of a format
    (``operand_shape``: the wider code plus the tag bit, ``acc_shape``, ``name``).
    """

    fwd: MinifloatFormat
    grad: MinifloatFormat
    k: int

    def __post_init__(self) -> None:
        MinifloatArith(self.fwd, self.grad, self.k)  # the minifloat PE's operand checks

    @property
    def formats(self) -> tuple[MinifloatFormat, MinifloatFormat]:
        """The operand formats by tag: 0 ``fwd``, 1 ``grad``."""
        return self.fwd, self.grad

    @property
    def pairs(self) -> tuple[tuple[MinifloatFormat, MinifloatFormat], ...]:
        """(A, B) formats of the forward, backward-data and weight-gradient passes."""
        f, g = self.fwd, self.grad
        return (f, f), (f, g), (g, f)

    @property
    def name(self) -> str:
        return f"{self.fwd.name}_{self.grad.name}k{self.k}"

    @property
    def code_bits(self) -> int:
        """Bits of an untagged code (the wider format's)."""
        return max(self.fwd.bits, self.grad.bits)

    @property
    def operand_shape(self) -> Shape:
        """A tagged code: the code in the low bits, the tag above them."""
        return unsigned(self.code_bits + 1)

    @property
    def mant(self) -> int:
        """Mantissa bits of the common frame (the wider of the two)."""
        return max(self.fwd.mant, self.grad.mant)

    @cached_property
    def unit_exp(self) -> int:
        """``u``: the frame's unit is ``2**u`` (module notes)."""
        return min(f.unit_exp - (self.mant - f.mant) for f in self.formats)

    def frame_shift(self, fmt: MinifloatFormat) -> int:
        """Left shift of ``fmt``'s units into the frame's."""
        return fmt.unit_exp - self.unit_exp

    def offset(self, fmt: MinifloatFormat) -> int:
        """``off_f``: what the decoder adds to ``fmt``'s shift (module notes)."""
        return self.frame_shift(fmt) - (self.mant - fmt.mant)

    def max_shift(self, fmt: MinifloatFormat) -> int:
        return self.offset(fmt) + fmt.top_field - 1

    @property
    def acc_width(self) -> int:
        """Signed bits of the largest exact sum of ``k`` products of any pass pair."""
        return max(
            a.acc_width(self.k, b) + self.frame_shift(a) + self.frame_shift(b)
            for a, b in self.pairs
        )

    @property
    def acc_shape(self) -> Shape:
        return signed(self.acc_width)

    @property
    def acc_exp(self) -> int:
        """The accumulator's LSB is ``2**acc_exp`` in every pass."""
        return 2 * self.unit_exp

    @property
    def shift_width(self) -> int:
        """Bits of ``shift_a + shift_b`` in the frame, over the pass pairs."""
        return max(self.max_shift(a) + self.max_shift(b) for a, b in self.pairs).bit_length()

    @property
    def decoded_shift_width(self) -> int:
        """Bits of one operand's shift in the frame."""
        return max(self.max_shift(f) for f in self.formats).bit_length()


class TaggedDecoder(wiring.Component):
    """Combinational: a tagged code of ``arith`` -> ``sign``, ``sig``, ``shift`` in the frame.

    Ports:
        code (in, ``arith.operand_shape``): a finite code of ``fwd`` (tag 0) or ``grad``
            (tag 1) in the low bits, the tag in the top bit.
        sign (out, 1): the sign bit.
        sig (out, ``arith.mant + 1``): significand aligned to the frame's mantissa.
        shift (out, ``arith.decoded_shift_width``): the magnitude is ``sig << shift`` units
            of ``2**arith.unit_exp``.
    """

    def __init__(self, arith: PassArith) -> None:
        self.arith = arith
        sig, shift = arith.mant + 1, arith.decoded_shift_width
        super().__init__(decoder_signature(arith.operand_shape, sig, shift))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        arith = self.arith
        tag = self.code[arith.code_bits]
        decoded = []
        for i, fmt in enumerate(arith.formats):
            m.submodules[f"dec{i}"] = dec = MinifloatDecoder(fmt)
            m.d.comb += dec.code.eq(self.code[: fmt.bits])
            decoded.append(
                (dec.sign, dec.sig << (arith.mant - fmt.mant), dec.shift + arith.offset(fmt))
            )
        (s0, g0, h0), (s1, g1, h1) = decoded
        m.d.comb += [
            self.sign.eq(Mux(tag, s1, s0)),
            self.sig.eq(Mux(tag, g1, g0)),
            self.shift.eq(Mux(tag, h1, h0)),
        ]
        return m


class PassPE(MinifloatPE):
    """The minifloat PE on tagged codes (:class:`TaggedDecoder`); ports, latency and
    accumulation as :class:`~barista_hw.fppe.MinifloatPE`'s."""

    def decoder(self, operand: str) -> wiring.Component:
        return TaggedDecoder(self.fmt)  # type: ignore[arg-type]
