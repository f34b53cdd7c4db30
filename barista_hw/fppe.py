"""The minifloat PE: decodes two minifloat codes and sums their exact products in fixed point.

The arithmetic is :mod:`barista_hw.fpgemm`'s: a finite code is ``sig << shift`` units of its
format (:meth:`~barista_hw.minifloat.MinifloatFormat.to_units`), with ``sig`` the significand
(hidden bit set for a normal code) and ``shift = max(field, 1) - 1``; a product is
``(sig_a * sig_b) << (shift_a + shift_b)`` units of ``unit_a * unit_b``, exact, and the
accumulator of :attr:`MinifloatArith.acc_width` bits cannot overflow over ``k`` terms. The
significand product is a few bits (8 for E4M3, 6 for E5M2): it is built from LUTs as a sum of
partial products (Yosys would put a ``*`` this small on a whole MULT18X18D; ``dsp_product``
keeps the ``*``), and the product register holds only sign, significand product and shift,
not the shifted product.

:class:`MinifloatPE` has the port contract of :class:`~barista_hw.pe.ProcessingElement` (fabric
``b`` route), so :class:`~barista_hw.array.SystolicArray` builds a grid of them when given a
:class:`MinifloatArith` instead of a :class:`~barista_hw.numfmt.FixedFormat`.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from .dsp import BRoute
from .minifloat import MinifloatFormat
from .pipeline import REPLICA

__all__ = ["MinifloatArith", "MinifloatDecoder", "MinifloatPE", "add_signed", "decoder_signature"]


def add_signed(acc: Value, mag: Value, neg: Value, width: int) -> Value:
    """``acc - mag`` if ``neg`` else ``acc + mag``, as ``acc + (mag ^ neg...) + neg``: one
    adder with a carry-in, not a negation and a multiplexer (``mag`` at most ``width`` bits)."""
    flipped = (mag.as_unsigned()[:width] ^ neg.replicate(width)).as_signed()
    return acc + flipped + neg


@dataclass(frozen=True)
class MinifloatArith:
    """A PE's arithmetic: operand formats ``a`` and ``b``, reductions of up to ``k`` terms.

    Provides what :class:`~barista_hw.array.SystolicArray` reads of a format
    (``operand_shape``, ``acc_shape``, ``name``). Both operands travel in
    ``operand_shape`` (the wider code); a narrower format reads its low bits.
    """

    a: MinifloatFormat
    b: MinifloatFormat
    k: int

    def __post_init__(self) -> None:
        for fmt in (self.a, self.b):
            if not (fmt.signed and fmt.subnormals):
                raise InputError(f"minifloat PE: operand format {fmt.name} must be signed")
        if self.k < 1:
            raise InputError(f"minifloat PE: reduction length k={self.k} must be at least 1")

    @property
    def name(self) -> str:
        return f"{self.a.name}x{self.b.name}k{self.k}"

    @property
    def operand_shape(self) -> Shape:
        return unsigned(max(self.a.bits, self.b.bits))

    @property
    def acc_width(self) -> int:
        return self.a.acc_width(self.k, self.b)

    @property
    def acc_shape(self) -> Shape:
        return signed(self.acc_width)

    @property
    def acc_exp(self) -> int:
        """The accumulator's LSB is ``2**acc_exp`` (``exp`` of :func:`fpgemm.minifloat_gemm`)."""
        return self.a.unit_exp + self.b.unit_exp

    @property
    def shift_width(self) -> int:
        """Bits of ``shift_a + shift_b`` (each at most ``top_field - 1``)."""
        return (self.a.top_field + self.b.top_field - 2).bit_length()


def decoder_signature(code: Shape, sig_bits: int, shift_bits: int) -> dict:
    """The ports of a code decoder: ``code`` in; ``sign``, ``sig``, ``shift`` out."""
    return {"code": In(code), "sign": Out(1), "sig": Out(sig_bits), "shift": Out(shift_bits)}


class MinifloatDecoder(wiring.Component):
    """Combinational: a finite code of ``fmt`` -> ``sign``, ``sig``, ``shift``.

    Ports:
        code (in, ``fmt.bits``): the code (inf/NaN codes give meaningless outputs).
        sign (out, 1): the sign bit.
        sig (out, ``mant + 1``): significand, hidden bit set unless the field is 0.
        shift (out, ``exp``): ``max(field, 1) - 1``; the magnitude is ``sig << shift`` units.
    """

    def __init__(self, fmt: MinifloatFormat) -> None:
        self.fmt = fmt
        super().__init__(decoder_signature(fmt.code_shape, fmt.mant + 1, fmt.exp))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        _, exp, mant = self.fmt.fields()
        frac, field = self.code[:mant], self.code[mant : mant + exp]
        normal = field.any()
        m.d.comb += [
            self.sign.eq(self.code[mant + exp]),
            self.sig.eq(Cat(frac, normal)),
            self.shift.eq(Mux(normal, field - 1, 0)),
        ]
        return m


class MinifloatPE(wiring.Component):
    """Output-stationary MAC cell on minifloat codes (ports as :class:`ProcessingElement`'s).

    Ports:
        a, b (in, ``operand_shape``): codes of ``arith.a`` and ``arith.b`` (low bits).
        valid, last (in): a real term; the last term of a dot product.
        a_o, b_o, valid_o, last_o (out): the inputs one cycle later, for the neighbours.
        drain (in), shift_i (in, ``acc_shape``): shift the bank (``bank <= shift_i``).
        bank (out, ``acc_shape``): the last finished dot product, exact.
        capture (out): the bank takes the finished sum at the next clock edge.

    Latency as the fixed-point PE's: input registers, product register, accumulator.
    ``dsp_product``: the significand product as ``*`` (a DSP block on ECP5), not LUTs.
    """

    #: ``b`` hops through a fabric register (the array reads this of every PE).
    b_route = BRoute.FABRIC

    def __init__(self, arith: MinifloatArith, *, dsp_product: bool = False) -> None:
        self.fmt, self.dsp_product = arith, dsp_product
        op, acc = arith.operand_shape, arith.acc_shape
        super().__init__(
            {
                "a": In(op),
                "b": In(op),
                "valid": In(1),
                "last": In(1),
                "a_o": Out(op),
                "b_o": Out(op),
                "valid_o": Out(1),
                "last_o": Out(1),
                "drain": In(1),
                "shift_i": In(acc),
                "bank": Out(acc),
                "capture": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        arith = self.fmt
        width = arith.acc_width
        bank = Signal(arith.acc_shape, reset_less=True)
        p_valid, p_last = self.pass_on(m, bank)
        m.submodules.dec_a = dec_a = self.decoder("a")
        m.submodules.dec_b = dec_b = self.decoder("b")
        m.d.comb += [dec_a.code.eq(self.a_o), dec_b.code.eq(self.b_o)]
        p_sign, p_sig, p_shift = self.product(m, dec_a, dec_b, arith.shift_width)
        acc = Signal(arith.acc_shape)
        total = Signal(arith.acc_shape)
        m.d.comb += [
            total.eq(add_signed(acc, p_sig << p_shift, p_sign, width)),
            self.capture.eq(p_valid & p_last),
        ]
        with m.If(p_valid):
            with m.If(p_last):
                m.d.sync += acc.eq(0)
            with m.Else():
                m.d.sync += acc.eq(total)
        self.bank_update(m, bank, total)
        return m

    def decoder(self, operand: str) -> wiring.Component:
        """The decoder of operand ``"a"`` or ``"b"`` (``code`` in; ``sign``, ``sig``,
        ``shift`` out)."""
        return MinifloatDecoder(getattr(self.fmt, operand))

    def pass_on(self, m: Module, bank: Signal) -> tuple[Signal, Signal]:
        """The input registers (``a_o``, ``b_o``, ``valid_o``, ``last_o``, to the
        neighbours) and ``bank`` on its port; returns ``valid`` and ``last`` of the product
        stage."""
        shape = self.fmt.operand_shape
        a_o = Signal(shape, reset_less=True)
        b_o = Signal(shape, reset_less=True)
        valid_o = Signal(name=f"valid_o{REPLICA}")  # per-PE copies: see pe.py
        last_o = Signal(name=f"last_o{REPLICA}")
        p_valid = Signal(name=f"p_valid{REPLICA}")
        p_last = Signal(name=f"p_last{REPLICA}")
        m.d.comb += [
            self.a_o.eq(a_o),
            self.b_o.eq(b_o),
            self.valid_o.eq(valid_o),
            self.last_o.eq(last_o),
            self.bank.eq(bank),
        ]
        m.d.sync += [
            a_o.eq(self.a),
            b_o.eq(self.b),
            valid_o.eq(self.valid),
            last_o.eq(self.last),
            p_valid.eq(valid_o),
            p_last.eq(last_o),
        ]
        return p_valid, p_last

    def product(
        self, m: Module, dec_a: wiring.Component, dec_b: wiring.Component, shift_width: int
    ) -> tuple[Signal, Signal, Signal]:
        """The product register: sign, significand product and exponent sum (a few bits);
        the shift into the accumulator's frame happens in the accumulator stage."""
        p_sign = Signal(reset_less=True)
        p_sig = Signal(len(dec_a.sig) + len(dec_b.sig), reset_less=True)
        p_shift = Signal(shift_width, reset_less=True)
        m.d.sync += [
            p_sign.eq(dec_a.sign ^ dec_b.sign),
            p_sig.eq(self._sig_product(dec_a.sig, dec_b.sig)),
            p_shift.eq(dec_a.shift + dec_b.shift),
        ]
        return p_sign, p_sig, p_shift

    def bank_update(self, m: Module, bank: Signal, total: Value) -> None:
        """The bank takes the finished sum on ``capture``, else shifts on ``drain``."""
        with m.If(self.capture):
            m.d.sync += bank.eq(total)
        with m.Elif(self.drain):
            m.d.sync += bank.eq(self.shift_i)

    def _sig_product(self, x: Value, y: Value) -> Value:
        if self.dsp_product:
            return x * y
        partial = [Mux(y[i], x << i, 0) for i in range(len(y))]
        return sum(partial[1:], partial[0])
