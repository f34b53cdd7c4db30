"""SystolicArray: an R x C grid of :class:`ProcessingElement` with input skew and a drain path.

Each cycle the array takes one column of A (``a``, R lanes) and one row of B
(``b``, C lanes) for the same reduction index ``k``, aligned; it skews them
internally (row ``r`` of A is delayed ``r`` cycles, column ``c`` of B ``c``
cycles) so that PE ``(r, c)`` sees ``A[r, k]`` and ``B[k, c]`` together. The
``valid``/``last`` flags travel with A. Results are captured PE by PE as the
``last`` wave passes; ``tile_done`` pulses when the bottom-right PE, the last
to capture, has done so. Then ``drain`` shifts the result bank up one row per
pulse and ``row0`` shows the top row (C accumulators).

Only the output-stationary dataflow is built; the class takes the dataflow so
a weight-stationary variant can be added beside it.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import Dataflow
from .errors import InputError
from .numfmt import FixedFormat
from .pe import ProcessingElement
from .pipeline import delay


class SystolicArray(wiring.Component):
    """Output-stationary ``rows x cols`` MAC array in the number format ``fmt``."""

    def __init__(
        self,
        rows: int,
        cols: int,
        fmt: FixedFormat,
        dataflow: Dataflow = Dataflow.OUTPUT_STATIONARY,
    ) -> None:
        if dataflow not in (Dataflow.OUTPUT_STATIONARY, Dataflow.OUTPUT_STATIONARY.value):
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

    def elaborate(self, platform: object) -> Module:
        m = Module()
        R, C = self.rows, self.cols
        pes = [[ProcessingElement(self.fmt) for _ in range(C)] for _ in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

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
        for c in range(C):
            m.d.comb += pes[0][c].b.eq(delay(m, self.b[c], c, f"b_skew{c}", data=True))
            for r in range(1, R):
                m.d.comb += pes[r][c].b.eq(pes[r - 1][c].b_o)
            for r in range(R):
                below = pes[r + 1][c].bank if r + 1 < R else 0
                m.d.comb += [pes[r][c].shift_i.eq(below), pes[r][c].drain.eq(self.drain)]
            m.d.comb += self.row0[c].eq(pes[0][c].bank)
        m.d.comb += self.tile_done.eq(pes[R - 1][C - 1].capture)
        return m
