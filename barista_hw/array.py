"""SystolicArray: an R x C grid of :class:`ProcessingElement` with input skew and a drain path.

Each cycle the array takes one column of A (``a``, R lanes) and one row of B
(``b``, C lanes) for the same reduction index ``k``, aligned; it skews them
internally (row ``r`` of A is delayed ``r`` cycles, column ``c`` of B ``c``
cycles) so that PE ``(r, c)`` sees ``A[r, k]`` and ``B[k, c]`` together. The
``valid``/``last`` flags travel with A. Results are captured PE by PE as the
``last`` wave passes; ``tile_done`` pulses when the bottom-right PE, the last
to capture, has done so. Then each ``drain`` pulse shifts the result bank up one
row :data:`SystolicArray.DRAIN_DELAY` cycles later; ``row0`` shows the top row (C
accumulators) and holds, in the cycle of that shift, the row the pulse takes. The
pulse is registered once per column (replicated registers, see
:mod:`barista_hw.pipeline`): one net from the controller to every PE's result
bank would span the whole array.

Where the platform chains ECP5 multipliers (:data:`barista_hw.dsp.B_CHAIN`), ``b``
goes down a column on the DSP shift chain instead of fabric registers; a PE below
a break in the chain takes its ``b`` from a fabric delay line of the column's input
(the same value, the same cycle).

Only the output-stationary dataflow is built; the class takes the dataflow so
a weight-stationary variant can be added beside it.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from .config import Dataflow
from .dsp import BRoute, b_chain_of
from .fppe import MinifloatArith, MinifloatPE
from .mxpe import MXPE, MXArith
from .numfmt import FixedFormat
from .passpe import PassArith, PassPE
from .pe import ProcessingElement
from .pipeline import delay, replicate


class SystolicArray(wiring.Component):
    """Output-stationary ``rows x cols`` MAC array in the number format ``fmt``.

    A :class:`~barista_hw.fppe.MinifloatArith` ``fmt`` builds :class:`MinifloatPE` cells
    (whose ``b`` always hops through the fabric), a :class:`~barista_hw.mxpe.MXArith`
    :class:`~barista_hw.mxpe.MXPE` cells, a :class:`~barista_hw.passpe.PassArith`
    :class:`~barista_hw.passpe.PassPE` cells; a :class:`FixedFormat` the fixed-point PE.
    """

    #: Cycles from a ``drain`` pulse to the bank's shift (the per-column register).
    DRAIN_DELAY = 1

    def __init__(
        self,
        rows: int,
        cols: int,
        fmt: FixedFormat | MinifloatArith | MXArith | PassArith,
        dataflow: Dataflow = Dataflow.OUTPUT_STATIONARY,
    ) -> None:
        if dataflow not in (Dataflow.OUTPUT_STATIONARY, Dataflow.OUTPUT_STATIONARY.value):
            self._MustUse__silence = True  # rejected, so never elaborated: no warning
            raise InputError(f"dataflow {dataflow!r} is not built (only output-stationary)")
        self.rows, self.cols, self.fmt = rows, cols, fmt
        super().__init__(
            {
                "a": In(data.ArrayLayout(fmt.operand_shape, rows)),
                "b": In(data.ArrayLayout(fmt.operand_shape, cols)),
                "valid": In(1),
                "last": In(1),
                "drain": In(1),
                "row0": Out(data.ArrayLayout(fmt.acc_shape, cols)),
                "tile_done": Out(1),
            }
        )

    @staticmethod
    def pe_name(row: int, col: int) -> str:
        """The submodule name of PE ``(row, col)``."""
        return f"pe_{row}_{col}"

    def elaborate(self, platform: object) -> Module:
        m = Module()
        R, C = self.rows, self.cols
        minifloat = isinstance(self.fmt, MinifloatArith | MXArith | PassArith)
        chained = (lambda r, c: False) if minifloat else b_chain_of(platform)

        def route(r: int, c: int) -> BRoute:
            if r > 0 and chained(r, c):
                return BRoute.CHAIN
            return BRoute.ENTER if r + 1 < R and chained(r + 1, c) else BRoute.FABRIC

        def make(r: int, c: int) -> ProcessingElement | MinifloatPE:
            if isinstance(self.fmt, MXArith):
                return MXPE(self.fmt)
            if isinstance(self.fmt, PassArith):
                return PassPE(self.fmt)
            if minifloat:
                return MinifloatPE(self.fmt)
            return ProcessingElement(self.fmt, route(r, c))

        pes = [[make(r, c) for c in range(C)] for r in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[self.pe_name(r, c)] = pes[r][c]

        for r in range(R):
            left = pes[r][0]
            m.d.comb += [
                left.a.eq(delay(m, self.a[r], r, f"a_skew{r}", data=True)),
                left.valid.eq(delay(m, self.valid, r, f"valid_skew{r}")),
                left.last.eq(delay(m, self.last, r, f"last_skew{r}")),
            ]
            for c in range(1, C):
                pe, prev = pes[r][c], pes[r][c - 1]
                m.d.comb += [pe.a.eq(prev.a_o), pe.valid.eq(prev.valid_o), pe.last.eq(prev.last_o)]
        # All rows must shift in the same cycle (a row takes the word below it before
        # that one moves), so the pulse is copied per column rather than skewed.
        drains = replicate(m, self.drain, C, "drain")
        for c in range(C):
            b_in = delay(m, self.b[c], c, f"b_skew{c}", data=True)
            m.d.comb += pes[0][c].b.eq(b_in)
            for r in range(1, R):
                pe, above = pes[r][c], pes[r - 1][c]
                if pe.b_route is BRoute.CHAIN:
                    m.d.comb += pe.b_chain_i.eq(above.b_chain_o)
                elif above.b_route is BRoute.FABRIC:
                    m.d.comb += pe.b.eq(above.b_o)
                else:  # below a break in the chain: b from the fabric, r cycles on
                    m.d.comb += pe.b.eq(delay(m, b_in, r, f"b_tap{c}_{r}", data=True))
            for r in range(R):
                below = pes[r + 1][c].bank if r + 1 < R else 0
                m.d.comb += [pes[r][c].shift_i.eq(below), pes[r][c].drain.eq(drains[c])]
            m.d.comb += self.row0[c].eq(pes[0][c].bank)
        m.d.comb += self.tile_done.eq(pes[R - 1][C - 1].capture)
        return m
