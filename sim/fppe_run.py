"""Build :class:`sim.fp_tile.MinifloatTiles` and run GEMM cases through it on Icarus or Verilator
(the pytest side of :mod:`sim.fppe_test`), with the model's answers to compare with."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from barista_hw.fpgemm import minifloat_gemm, requantize, to_odd_float
from barista_hw.fprequant import MinifloatRequantizer
from barista_hw.minifloat import random_words
from barista_hw.numfmt import Rounding

from . import fp_tile
from .fp_tile import CODE_BITS, MinifloatTiles, TileSpec
from .runner import (
    UnitBuild,
    component_build,
    component_verilog,
    run_json_module,
)

TEST_MODULE = "sim.fppe_test"
CASES_ENV = "BARISTA_SIM_CASES"
RESULTS_ENV = "BARISTA_SIM_RESULTS"


@dataclass(frozen=True)
class Tiles:
    """The simulated top's geometry and tiles."""

    rows: int
    cols: int
    specs: tuple[TileSpec, ...]

    @property
    def top(self) -> str:
        return f"fp_tiles_{self.rows}x{self.cols}_{len(self.specs)}"

    @property
    def key(self) -> str:
        return f"{self.rows}x{self.cols}:" + ",".join(f"{s.name}k{s.k}" for s in self.specs)


@dataclass(frozen=True)
class TileCase:
    """One GEMM on tile ``tile``: codes ``a`` (M x K) and ``b`` (K x N), M <= rows, N <= cols."""

    name: str
    tile: int
    a: np.ndarray
    b: np.ndarray
    rounding: Rounding
    seed: int = 0

    def expected(self, spec: TileSpec) -> tuple[np.ndarray, np.ndarray]:
        """The model's exact accumulators and requantised codes (fpgemm)."""
        arith, out = spec.arith, spec.out_format
        acc, exp = minifloat_gemm(self.a, arith.a, self.b, arith.b)
        words = random_words(self.seed, acc.shape)
        codes = requantize(to_odd_float(acc, exp), out, self.rounding, words=words)
        return acc, codes


@dataclass
class TileResult:
    acc: np.ndarray  # (M, cols) object array of Python ints, signed
    q: np.ndarray  # (M, cols) codes


def _unit(tiles: Tiles) -> tuple[Callable[[], MinifloatTiles], str, str]:
    """How to make the top, its name and its cache key."""
    make = lambda: MinifloatTiles(tiles.rows, tiles.cols, tiles.specs)  # noqa: E731
    # The harness lives here, outside the hardware sources the cache key covers.
    harness = hashlib.sha256(Path(fp_tile.__file__).read_bytes()).hexdigest()[:16]
    return make, tiles.top, f"{tiles.key}|{harness}"


def verilog(tiles: Tiles) -> Path:
    """The simulated Verilog of the tiles (cached)."""
    return component_verilog(*_unit(tiles))


def build(tiles: Tiles, sim: str) -> UnitBuild:
    """Elaborate and compile the tiles for ``sim`` (cached; race-safe)."""
    return component_build(*_unit(tiles), sim)


def run_cases(unit: UnitBuild, tiles: Tiles, cases: Sequence[TileCase]) -> list[TileResult]:
    """Run ``cases`` one after the other in one simulation; results in case order."""
    if not cases:
        raise ValueError("no cases to run")
    specs = tiles.specs
    widths = [s.arith.acc_width for s in specs]
    spec = {
        "rows": tiles.rows,
        "cols": tiles.cols,
        "code_bits": CODE_BITS,
        "latency": MinifloatRequantizer.LATENCY,
        "tiles": [
            {"acc_bits": w, "code_bits": s.out_format.bits}
            for w, s in zip(widths, specs, strict=True)
        ],
        "cases": [
            {
                "tile": c.tile,
                "a": np.asarray(c.a).tolist(),
                "b": np.asarray(c.b).tolist(),
                "rounding": int(c.rounding),
                "seed": c.seed,
            }
            for c in cases
        ],
    }
    out = run_json_module(unit, TEST_MODULE, spec, (CASES_ENV, RESULTS_ENV))["cases"]
    results = []
    for case, got in zip(cases, out, strict=True):
        w = widths[case.tile]
        acc = [[v - (1 << w) if v >> (w - 1) else v for v in row] for row in got["acc"]]
        results.append(TileResult(np.array(acc, dtype=object), np.array(got["q"])))
    return results
