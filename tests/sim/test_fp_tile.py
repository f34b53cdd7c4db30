"""The minifloat PE array and requantiser in RTL against fpgemm's model, every bit, on Icarus and
Verilator: E4M3 and E5M2 (and E2M3 x E3M2 into E2M1, mixed 6-bit operands into FP4) tiles of
3 x 2 PEs, random K, random, extreme (largest normal of both signs, smallest subnormal, zero),
cancelling and small operands, every rounding mode; and every finite FP8 code through the array
(times the smallest subnormal, whose units are 1) gives exactly its ``to_units``.

One build and one simulation per simulator; the tests read its results.
"""

from __future__ import annotations

import zlib
from functools import cache

import numpy as np
import pytest

from barista_hw.minifloat import PRESETS, MinifloatFormat
from barista_hw.numfmt import Rounding
from sim.fp_tile import TileSpec
from sim.fppe_run import TileCase, Tiles

ROWS, COLS = 3, 2
TILES = Tiles(
    ROWS,
    COLS,
    (
        TileSpec("e4m3", "e4m3", "e4m3"),
        TileSpec("e5m2", "e5m2", "e5m2"),
        TileSpec("e2m3", "e3m2", "e2m1"),
    ),
)
KINDS = ("random", "extremes", "max", "min", "tiny", "cancel", "mid", "small")


def finite(fmt: MinifloatFormat) -> np.ndarray:
    return np.flatnonzero(np.isfinite(fmt.table))


def _codes(kind: str, fmt: MinifloatFormat, shape: tuple[int, int], rng: np.random.Generator):  # noqa: ANN202
    """Operand codes of one kind (see :data:`KINDS`)."""
    sign = 1 << (fmt.bits - 1)
    if kind == "random":
        return rng.choice(finite(fmt), shape)
    if kind == "extremes":
        one = int(fmt.encode(np.array([1.0]))[0])
        pool = [fmt.max_code, fmt.max_code | sign, 1, 1 | sign, 0, sign, one, one | sign]
        return rng.choice(pool, shape)
    if kind == "max":  # the accumulator's largest sum (saturates the output)
        return np.full(shape, fmt.max_code)
    if kind == "min":
        return np.full(shape, fmt.max_code | sign)
    if kind == "tiny":  # products far below the output's smallest subnormal
        return rng.choice([1, 1 | sign, 2, 3 | sign], shape)
    scale = {"cancel": 1.0, "mid": 1.0, "small": 2.0 ** (fmt.emin // 2 - 2)}[kind]
    return fmt.encode(rng.standard_normal(shape) * scale, saturate=True).astype(np.int64)


def gemm_cases(label: bytes, repeats: int) -> list[TileCase]:
    """``repeats`` cases of each kind per tile and rounding mode (deterministic per label)."""
    rng = np.random.default_rng(zlib.crc32(label))
    out: list[TileCase] = []
    for t, spec in enumerate(TILES.specs):
        fa, fb = spec.arith.a, spec.arith.b
        for rnd in Rounding:
            for kind in KINDS * repeats:
                m, n = int(rng.integers(1, ROWS + 1)), int(rng.integers(1, COLS + 1))
                if kind in ("mid", "small"):  # whole tiles: every row's random words
                    m, n = ROWS, COLS
                k = spec.k if kind in ("max", "min") else int(rng.integers(1, spec.k + 1))
                a, b = _codes(kind, fa, (m, k), rng), _codes(kind, fb, (k, n), rng)
                if kind == "cancel":  # each term twice, the second negated: exact zero
                    a = np.concatenate([a, a], axis=1)[:, : spec.k]
                    b = np.concatenate([b, b ^ (1 << (fb.bits - 1))], axis=0)[: spec.k]
                seed = int(rng.integers(0, 1 << 32))
                out.append(TileCase(f"{spec.name}-{rnd.label}-{kind}", t, a, b, rnd, seed))
    return out


@cache
def cases() -> tuple[TileCase, ...]:
    """The default run: one case of each kind, and the decode sweep."""
    out = gemm_cases(b"fp-tile", 1)
    for t, spec in enumerate(TILES.specs[:2]):  # every finite FP8 code, ROWS at a time
        fmt = spec.arith.a
        codes = finite(fmt)
        b = np.array([[1, fmt.max_code | 0x80]])  # units 1, and the largest negative
        for i in range(0, len(codes), ROWS):
            a = codes[i : i + ROWS, None]
            out.append(TileCase(f"decode-{fmt.name}-{i}", t, a, b, Rounding.NEAREST_EVEN))
    return tuple(out)


def tile_results(cache_: dict, sim: str, which: tuple[TileCase, ...] | None = None) -> list:
    """The results of ``which`` (default :func:`cases`), one simulation per set and simulator
    (a list of :class:`sim.fppe_run.TileResult`)."""
    from sim import fppe_run

    which = cases() if which is None else which
    key = ("fp-tiles", sim, len(which))
    if key not in cache_:
        try:
            cache_[key] = fppe_run.run_cases(fppe_run.build(TILES, sim), TILES, which)
        except Exception as exc:  # reported by every test, run once
            cache_[key] = exc
    if isinstance(cache_[key], Exception):
        raise cache_[key]
    return cache_[key]


def check(case: TileCase, got) -> None:  # noqa: ANN001 - a sim.fppe_run.TileResult
    """Accumulators and codes equal the model's; columns past N hold zero."""
    acc, codes = case.expected(TILES.specs[case.tile])
    n = acc.shape[1]
    bad = np.argwhere(got.acc[:, :n] != acc)
    where = tuple(bad[0]) if bad.size else None
    assert not bad.size, f"{case.name}: acc {where}: rtl {got.acc[where]}, model {acc[where]}"
    bad = np.argwhere(got.q[:, :n] != codes)
    where = tuple(bad[0]) if bad.size else None
    assert not bad.size, f"{case.name}: code {where}: rtl {got.q[where]}, model {codes[where]}"
    assert (got.acc[:, n:] == 0).all(), f"{case.name}: columns past N are not zero"


def _groups() -> list[str]:
    return sorted({c.name.rsplit("-", 1)[0] for c in cases() if not c.name.startswith("decode")})


@pytest.mark.cocotb
@pytest.mark.parametrize("group", _groups())
def test_tile_bit_exact(sim: str, group: str, sim_run_cache: dict) -> None:
    """Accumulators and codes of every case of one tile and rounding mode equal the model's."""
    results = tile_results(sim_run_cache, sim)
    for case, got in zip(cases(), results, strict=True):
        if case.name.rsplit("-", 1)[0] == group:
            check(case, got)


@pytest.mark.slow
@pytest.mark.cocotb
def test_tile_bit_exact_many_cases(sim: str, sim_run_cache: dict) -> None:
    """Eight cases of each kind per tile and rounding mode (576 GEMMs)."""
    many = tuple(gemm_cases(b"fp-tile-many", 8))
    for case, got in zip(many, tile_results(sim_run_cache, sim, many), strict=True):
        check(case, got)


@pytest.mark.cocotb
@pytest.mark.parametrize("name", ["e4m3", "e5m2"])
def test_every_finite_code_decodes_to_its_units(sim: str, name: str, sim_run_cache: dict) -> None:
    fmt = PRESETS[name]
    results = tile_results(sim_run_cache, sim)
    pairs = [
        (c, r)
        for c, r in zip(cases(), results, strict=True)
        if c.name.startswith(f"decode-{name}-")
    ]
    codes = np.concatenate([c.a[:, 0] for c, _ in pairs])
    got = np.concatenate([r.acc[:, 0] for _, r in pairs]).astype(np.int64)
    assert len(codes) == len(finite(fmt)) and len(np.unique(codes)) == len(codes)
    np.testing.assert_array_equal(got, fmt.to_units(codes))
    for case, r in pairs:  # and the other columns and the codes, as the model has them
        acc, q = case.expected(TILES.specs[case.tile])
        assert (r.acc == acc).all() and (r.q == q).all(), case.name


def test_tiles_verilog_is_lint_clean() -> None:
    """``verilator --lint-only -Wall`` with the project's waivers."""
    from sim.fppe_run import verilog
    from sim.lint import lint

    assert lint(verilog(TILES), TILES.top) == []


def test_cases_cover_the_brief() -> None:
    """Every tile in every rounding mode; saturation both ways, zero, subnormal results."""
    every = [c for c in cases() if not c.name.startswith("decode")]
    assert {(c.tile, c.rounding) for c in every} == {(t, r) for t in range(3) for r in Rounding}
    for t, spec in enumerate(TILES.specs):
        out = spec.out_format
        q = np.concatenate([c.expected(spec)[1].ravel() for c in every if c.tile == t])
        sign = 1 << (out.bits - 1)
        assert {out.max_code, out.max_code | sign, 0} <= set(q.tolist()), spec.name
        subnormal = (q & (sign - 1)) >> out.mant == 0
        assert (subnormal & ((q & ((1 << out.mant) - 1)) != 0)).any(), spec.name
    assert len({c.a.shape[1] for c in every}) > 10  # many K
