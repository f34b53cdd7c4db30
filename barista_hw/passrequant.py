"""The requantiser of a per-pass engine: results in the pass's output format, chosen per command.

Forward results are codes of one format, the gradients' (backward-data and weight gradient)
of another (:class:`~barista_hw.passengine.PassGemmFormat`). The accumulators share one
frame in every pass (:class:`~barista_hw.passpe.PassArith`), so each output format's
:class:`~barista_hw.fprequant.MinifloatRequantizer` rounds the same exact value as the
per-pass model does; one requantiser per distinct output format sees every row, and ``sel``
(delayed with the rows) picks the codes. With one output format for all passes (float32
results for training) there is one requantiser and ``sel`` is unused.
"""

from __future__ import annotations

from amaranth import Module, Mux, unsigned
from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import lfsr
from .fprequant import MinifloatRequantizer
from .minifloat import MinifloatFormat
from .pipeline import delay

__all__ = ["PassRequantizer"]


class PassRequantizer(wiring.Component):
    """Pipelined: ``lanes`` exact accumulators -> codes of ``outs[sel]``.

    Ports:
        acc (in, ``lanes`` x signed ``acc_width``): the accumulators, LSB ``2**acc_exp``.
        words (in, ``lanes`` x 32): each lane's LFSR word.
        rounding (in, 2): a :class:`~barista_hw.numfmt.Rounding`.
        sel (in, 1): 0 for ``outs[0]`` (forward), 1 for ``outs[1]`` (gradients).
        q (out, ``lanes`` x the wider code): the codes (zero-extended) for the inputs
            presented :attr:`latency` cycles earlier.
    """

    def __init__(
        self,
        acc_width: int,
        acc_exp: int,
        outs: tuple[MinifloatFormat, MinifloatFormat],
        lanes: int,
        *,
        saturate: bool = True,
        delay: int = 0,
    ) -> None:
        self.outs = outs
        distinct = dict.fromkeys(outs)
        self.requants = [
            MinifloatRequantizer(acc_width, acc_exp, o, lanes, saturate=saturate, delay=delay)
            for o in distinct
        ]
        self.latency = self.requants[0].latency
        bits = max(o.bits for o in outs)
        super().__init__(
            {
                "acc": In(data.ArrayLayout(signed(acc_width), lanes)),
                "words": In(data.ArrayLayout(unsigned(lfsr.STATE_BITS), lanes)),
                "rounding": In(2),
                "sel": In(1),
                "q": Out(data.ArrayLayout(unsigned(bits), lanes)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for i, rq in enumerate(self.requants):
            m.submodules[f"requant{i}"] = rq
            m.d.comb += [
                rq.acc.eq(self.acc),
                rq.words.eq(self.words),
                rq.rounding.eq(self.rounding),
            ]
        if len(self.requants) == 1:
            m.d.comb += self.q.eq(self.requants[0].q)
            return m
        sel = delay(m, self.sel, self.latency, "sel")
        first, second = self.requants
        # Expressions, not an m.If process (see fprequant.leading_one on Icarus).
        m.d.comb += [self.q[i].eq(Mux(sel, second.q[i], first.q[i])) for i in range(len(self.q))]
        return m
