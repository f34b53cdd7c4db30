"""Test harness of the minifloat RTL: a systolic array of :class:`~barista_hw.fppe.MinifloatPE`,
LFSR lanes and a :class:`~barista_hw.fprequant.MinifloatRequantizer` on the drained rows, and a
top holding one such tile per format pair, driven by one set of inputs (one build per
simulator for every format). :mod:`sim.fppe_test` drives it, :mod:`sim.fppe_run` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module
from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from barista_hw import lfsr
from barista_hw.array import SystolicArray
from barista_hw.fppe import MinifloatArith
from barista_hw.fprequant import MinifloatRequantizer
from barista_hw.minifloat import PRESETS, MinifloatFormat
from barista_hw.requant import LfsrLanes

#: Lane width of the shared operand ports (a tile of narrower codes reads the low bits).
CODE_BITS = 8


@dataclass(frozen=True)
class TileSpec:
    """One tile: operand formats ``a`` x ``b``, reductions up to ``k``, output format ``out``."""

    a: str
    b: str
    out: str
    k: int = 64

    @property
    def arith(self) -> MinifloatArith:
        return MinifloatArith(PRESETS[self.a], PRESETS[self.b], self.k)

    @property
    def out_format(self) -> MinifloatFormat:
        return PRESETS[self.out]

    @property
    def name(self) -> str:
        return f"{self.a}x{self.b}to{self.out}"


class MinifloatTile(wiring.Component):
    """``rows x cols`` minifloat array whose top row feeds ``cols`` requantiser lanes.

    Ports:
        a (in, ``rows`` x code), b (in, ``cols`` x code), valid, last, drain (in): the
            array's (:class:`~barista_hw.array.SystolicArray`).
        row0 (out, ``cols`` x accumulator): the array's top result row (exact sums).
        tile_done (out): the array's.
        seed (in, 32), load (in), advance (in): load the LFSR lanes; step them all.
        rounding (in, 2): the requantiser's mode.
        q (out, ``cols`` x ``out`` code): ``row0`` and the LFSR words requantised
            :data:`MinifloatRequantizer.LATENCY` cycles after they were presented.
    """

    def __init__(self, rows: int, cols: int, spec: TileSpec) -> None:
        self.rows, self.cols, self.spec = rows, cols, spec
        arith = spec.arith
        super().__init__(
            {
                "a": In(data.ArrayLayout(arith.operand_shape, rows)),
                "b": In(data.ArrayLayout(arith.operand_shape, cols)),
                "valid": In(1),
                "last": In(1),
                "drain": In(1),
                "row0": Out(data.ArrayLayout(arith.acc_shape, cols)),
                "tile_done": Out(1),
                "seed": In(lfsr.STATE_BITS),
                "load": In(1),
                "advance": In(1),
                "rounding": In(2),
                "q": Out(data.ArrayLayout(spec.out_format.code_shape, cols)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        arith, cols = self.spec.arith, self.cols
        m.submodules.array = array = SystolicArray(self.rows, cols, arith)
        m.submodules.lfsr = lanes = LfsrLanes(cols)
        m.submodules.requant = rq = MinifloatRequantizer(
            arith.acc_width, arith.acc_exp, self.spec.out_format, cols
        )
        m.d.comb += [
            array.a.eq(self.a),
            array.b.eq(self.b),
            array.valid.eq(self.valid),
            array.last.eq(self.last),
            array.drain.eq(self.drain),
            self.row0.eq(array.row0),
            self.tile_done.eq(array.tile_done),
            lanes.seed.eq(self.seed),
            lanes.load.eq(self.load),
            lanes.advance.eq(self.advance.replicate(cols)),
            rq.acc.eq(array.row0),
            rq.words.eq(lanes.words),
            rq.rounding.eq(self.rounding),
            self.q.eq(rq.q),
        ]
        return m


class MinifloatTiles(wiring.Component):
    """One :class:`MinifloatTile` per spec, all driven by the same inputs.

    Ports: ``a``, ``b`` (lanes of :data:`CODE_BITS`), ``valid``, ``last``, ``drain``,
    ``seed``, ``load``, ``advance``, ``rounding`` as a tile's, to every tile; per tile
    ``i``: ``row0_i``, ``q_i``, ``done_i`` (its ``row0``, ``q`` and ``tile_done``).
    """

    def __init__(self, rows: int, cols: int, specs: tuple[TileSpec, ...]) -> None:
        self.rows, self.cols, self.specs = rows, cols, specs
        outs: dict[str, object] = {}
        for i, spec in enumerate(specs):
            outs[f"row0_{i}"] = Out(data.ArrayLayout(spec.arith.acc_shape, cols))
            outs[f"q_{i}"] = Out(data.ArrayLayout(spec.out_format.code_shape, cols))
            outs[f"done_{i}"] = Out(1)
        super().__init__(
            {
                "a": In(data.ArrayLayout(unsigned(CODE_BITS), rows)),
                "b": In(data.ArrayLayout(unsigned(CODE_BITS), cols)),
                "valid": In(1),
                "last": In(1),
                "drain": In(1),
                "seed": In(lfsr.STATE_BITS),
                "load": In(1),
                "advance": In(1),
                "rounding": In(2),
                **outs,
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for i, spec in enumerate(self.specs):
            tile = MinifloatTile(self.rows, self.cols, spec)
            m.submodules[f"tile{i}"] = tile
            m.d.comb += [
                *(tile.a[r].eq(self.a[r]) for r in range(self.rows)),
                *(tile.b[c].eq(self.b[c]) for c in range(self.cols)),
                *(
                    getattr(tile, name).eq(getattr(self, name))
                    for name in ("valid", "last", "drain", "seed", "load", "advance", "rounding")
                ),
                getattr(self, f"row0_{i}").eq(tile.row0),
                getattr(self, f"q_{i}").eq(tile.q),
                getattr(self, f"done_{i}").eq(tile.tile_done),
            ]
        return m
