"""ProcessingElement: one multiply-accumulate cell of an output-stationary systolic array.

Pipeline (each arrow is one register):

    a, b, valid, last --> [input regs] --> [product reg] --> [acc / bank]
                             |
                             +--> a_o/valid_o/last_o to the right, b_o downwards

The input registers double as the hop to the neighbours, so operands move one
PE per cycle. On an ECP5 platform the multiplier is a MULT18X18D whose own input
and output registers hold the same pipeline (see :mod:`barista_hw.dsp`); there
``b`` may also come and go on the DSP's shift chain (``b_route``, see
:class:`~barista_hw.dsp.BRoute`), as ``b_chain_i``/``b_chain_o`` instead of
``b``/``b_o``.
``valid`` marks real operands (bubbles are allowed anywhere), ``last`` marks the
final term of a dot product: on it the finished sum goes to ``bank`` and ``acc``
restarts at zero, so the next tile computes while ``bank`` drains (double
buffering). ``drain`` shifts ``bank`` up the column (``bank <= shift_i``); the
controller never drains while a capture can happen, which
:class:`~barista_hw.engine.GemmEngine` guarantees.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dsp import CHAIN_SHAPE, ECP5, BRoute, family_of, registered_product
from .numfmt import FixedFormat
from .pipeline import REPLICA


class ProcessingElement(wiring.Component):
    """Output-stationary MAC cell in the number format ``fmt``; ``b_route``: how ``b`` hops."""

    def __init__(self, fmt: FixedFormat, b_route: BRoute = BRoute.FABRIC) -> None:
        self.fmt, self.b_route = fmt, b_route
        b_ports = {
            BRoute.FABRIC: {"b": In(fmt.operand_shape), "b_o": Out(fmt.operand_shape)},
            BRoute.ENTER: {"b": In(fmt.operand_shape), "b_chain_o": Out(CHAIN_SHAPE)},
            BRoute.CHAIN: {"b_chain_i": In(CHAIN_SHAPE), "b_chain_o": Out(CHAIN_SHAPE)},
        }[b_route]
        super().__init__(
            {
                "a": In(fmt.operand_shape),
                **b_ports,
                "valid": In(1),
                "last": In(1),
                "a_o": Out(fmt.operand_shape),
                "valid_o": Out(1),
                "last_o": Out(1),
                "drain": In(1),
                "shift_i": In(fmt.acc_shape),
                "bank": Out(fmt.acc_shape),
                "capture": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        family = family_of(platform)
        if self.b_route is not BRoute.FABRIC and family != ECP5:
            raise ValueError(
                f"b route {self.b_route.value!r}: the B shift chain exists only in the ECP5 form"
            )
        m = Module()
        fmt = self.fmt
        # Data registers have no reset (their values are only used under valid/capture),
        # which keeps the reset net's fan-out small and the flip-flops' LSR pins free.
        a_o = Signal(fmt.operand_shape, reset_less=True)
        bank = Signal(fmt.acc_shape, reset_less=True)
        # The flags of all PEs on one anti-diagonal hold equal values; synthesis would
        # merge them into one register whose net spans the array, so each PE keeps its
        # own (named as replicas, see :mod:`barista_hw.pipeline`).
        valid_o = Signal(name=f"valid_o{REPLICA}")
        last_o = Signal(name=f"last_o{REPLICA}")
        p_valid = Signal(name=f"p_valid{REPLICA}")
        p_last = Signal(name=f"p_last{REPLICA}")
        acc = Signal(fmt.acc_shape)
        total = Signal(fmt.acc_shape)

        m.d.comb += [
            self.a_o.eq(a_o),
            self.valid_o.eq(valid_o),
            self.last_o.eq(last_o),
            self.bank.eq(bank),
        ]
        m.d.sync += [
            a_o.eq(self.a),
            valid_o.eq(self.valid),
            last_o.eq(self.last),
            p_valid.eq(valid_o),
            p_last.eq(last_o),
        ]
        route = self.b_route
        b = None if route is BRoute.CHAIN else self.b
        chain_in = self.b_chain_i if route is BRoute.CHAIN else None
        chain_out = None if route is BRoute.FABRIC else self.b_chain_o
        b_o = None
        if route is BRoute.FABRIC:
            b_o = Signal(fmt.operand_shape, name="b_o", reset_less=True)
            m.d.sync += b_o.eq(b)
            m.d.comb += self.b_o.eq(b_o)
        prod = registered_product(
            m, self.a, b, a_o, b_o, fmt.product_shape, family, chain_in, chain_out
        )
        # Truncation to acc_width is the modular accumulator of numfmt.
        m.d.comb += [total.eq(acc + prod), self.capture.eq(p_valid & p_last)]
        with m.If(p_valid):
            with m.If(p_last):
                m.d.sync += acc.eq(0)
            with m.Else():
                m.d.sync += acc.eq(total)
        with m.If(self.capture):
            m.d.sync += bank.eq(total)
        with m.Elif(self.drain):
            m.d.sync += bank.eq(self.shift_i)
        return m
