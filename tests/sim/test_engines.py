"""The cocotb suite: every engine kind, in every rounding mode, bit-exact with the model on Icarus
and Verilator (``--sim``), with partial tiles, K = 1, 1 x 1 and non-square arrays, extreme operands,
a wrapping accumulator, and random valid/ready stalls that must not change any result. Designs
with a ``family`` are the RTL a board of that FPGA family builds (its DSP primitives, simulated
with our models of them). Minifloat engines (``FP_DESIGNS``) are held to
:func:`barista_hw.fpgemm.engine_gemm` the same way, with operands over the formats' whole
range: largest normals, subnormals, zeros, sums that saturate, overflow or underflow.

One build and one simulation per (design, simulator); all cases of a design run back to back in
that simulation, and the tests below read the results.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from barista_hw import model
from barista_hw.config import EngineConfig, Pass, parse_engine_format
from barista_hw.engine import cycle_bound, is_minifloat
from barista_hw.mxformat import MXGemmFormat
from barista_hw.numfmt import MAX_SHIFT, Rounding
from barista_hw.passengine import PassGemmFormat
from sim.cases import auto_shift, pass_case
from sim.runner import GemmCase, SimRun, build, mismatch, run_cases

STALL = 0.3


@dataclass(frozen=True)
class DesignSpec:
    name: str
    kind: Pass
    rows: int
    cols: int
    fmt: str
    family: str | None = None
    acc_depth: int = 0  # an accumulator memory: cases whose reduction is several commands

    @property
    def cfg(self) -> EngineConfig:
        fmt = parse_engine_format(self.fmt)
        return EngineConfig(self.rows, self.cols, fmt, acc_depth=self.acc_depth)


# Few designs: a Verilator build takes ~25 s. Rounding is a run-time command field,
# so each design covers all three modes.
DESIGNS = [
    DesignSpec("fwd-2x3-fx8", Pass.FORWARD, 2, 3, "fx8"),
    DesignSpec("fwd-1x1-fx18", Pass.FORWARD, 1, 1, "fx18"),
    # acc_width = 2 * width: sums of a few products wrap, as the modular accumulator must.
    DesignSpec("bwd-3x2-fx12.6a24", Pass.BACKWARD_DATA, 3, 2, "fx12.6a24"),
    DesignSpec("grad-4x4-fx16", Pass.WEIGHT_GRAD, 4, 4, "fx16", acc_depth=64),
    # ECP5 boards: MULT18X18D with its own registers; fx18 fills the DSP's operands.
    # b on the DSP shift chain, broken below row 1 of column 1 (see Family.of).
    DesignSpec("fwd-3x2-fx16-ecp5chain", Pass.FORWARD, 3, 2, "fx16", family="ecp5chain"),
    DesignSpec("grad-2x3-fx18-ecp5", Pass.WEIGHT_GRAD, 2, 3, "fx18", family="ecp5"),
]
SLOW_DESIGNS = [
    DesignSpec("grad-1x1-fx8", Pass.WEIGHT_GRAD, 1, 1, "fx8"),
    DesignSpec("bwd-4x4-fx16", Pass.BACKWARD_DATA, 4, 4, "fx16"),
    DesignSpec("fwd-3x2-int8", Pass.FORWARD, 3, 2, "int8"),
]
# Minifloat engines: E4M3 saturating; E2M3 x E3M2 -> E2M1 (operand lanes wider than the
# results); E5M2 (a 77-bit accumulator over k = 4096) overflowing to inf.
FP_DESIGNS = [
    DesignSpec("fwd-2x3-e4m3", Pass.FORWARD, 2, 3, "e4m3"),
    DesignSpec("bwd-3x2-e2m3xe3m2", Pass.BACKWARD_DATA, 3, 2, "e2m3xe3m2_e2m1k64"),
    DesignSpec("grad-2x2-e5m2-nosat", Pass.WEIGHT_GRAD, 2, 2, "e5m2k4096_nosat"),
    # Float32 results (what training on the rtl backend reads): every sum is a normal float32.
    DesignSpec("fwd-2x3-e4m3-fp32", Pass.FORWARD, 2, 3, "e4m3_fp32_nosat"),
]
# MX engines (blocks of 32 along K, E8M0 scales in the words): MXFP8 E4M3 with the scale-sum
# window [-24, 24]. Simulated only with BARISTA_FULL=1 (minutes of builds and simulation a
# simulator): MXINT8 into float32 with [-40, 20]; MXFP6 x MXFP4 (lanes of two element widths)
# into E5M2 overflowing to inf, the gradient's blocks across images; MXFP8 over the whole E8M0
# range (561-bit accumulators; its first Verilator build takes minutes).
MX_DESIGNS = [DesignSpec("fwd-2x3-mxfp8", Pass.FORWARD, 2, 3, "mxfp8_e4m3k1024_wm24_24")]
# Formats per pass on one engine (the accelerator's: images in every command): each pass's
# commands name it (pass_id), E4M3 W and X, E5M2 dY; forward results E4M3, gradients E5M2.
PASS_DESIGNS = [DesignSpec("all-2x2-e4m3-e5m2", Pass.WEIGHT_GRAD, 2, 2, "fwd=e4m3,grad=e5m2k4096")]
FULL = os.environ.get("BARISTA_FULL") == "1"
SLOW_MX_DESIGNS = [
    DesignSpec("bwd-3x2-mxint8-fp32", Pass.BACKWARD_DATA, 3, 2, "mxint8k256_wm40_20"),
    DesignSpec(
        "grad-2x2-mxfp6xmxfp4",
        Pass.WEIGHT_GRAD,
        2,
        2,
        "mxfp6_e3m2xmxfp4_e2m1_e5m2k512_wm30_10_nosat",
    ),
    DesignSpec("fwd-2x3-mxfp8-full", Pass.FORWARD, 2, 3, "mxfp8_e4m3"),
]


def _ragged(rng: np.random.Generator, tile: int, tiles: int) -> int:
    """A size of about ``tiles`` tiles that is not a multiple of ``tile`` (when tile > 1)."""
    base = tile * int(rng.integers(1, tiles + 1))
    return base + (int(rng.integers(1, tile)) if tile > 1 else int(rng.integers(0, 3)))


@cache
def design_cases(spec: DesignSpec) -> tuple[GemmCase, ...]:
    """The cases of one design (deterministic: seeded from the design's name)."""
    if isinstance(spec.cfg.fmt, PassGemmFormat):
        return pass_design_cases(spec)
    if is_minifloat(spec.cfg):
        return fp_design_cases(spec)
    cfg = spec.cfg
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    grad = spec.kind is Pass.WEIGHT_GRAD
    cases: list[GemmCase] = []

    def add(m, k, n, *, rounding, shift=None, images=1, stall=0.0, operands="random", tag=""):
        seed = int(rng.integers(0, 2**32))
        s = auto_shift(cfg.fmt, k * images) if shift is None else shift
        name = f"{spec.name}/{tag or 'random'}"
        cases.append(
            pass_case(
                spec.kind,
                cfg,
                m,
                k,
                n,
                images=images,
                shift=s,
                rounding=rounding,
                seed=seed,
                stall=stall,
                operands=operands,
                name=name,
            )
        )

    for rounding in Rounding:
        mode = rounding.label
        m, n = _ragged(rng, cfg.rows, 3), _ragged(rng, cfg.cols, 3)
        k = int(rng.integers(2, 3 * (cfg.rows + cfg.cols)))
        images = int(rng.integers(2, 4)) if grad else 1
        # The same GEMM with and without stalls: the stalled copy must give the same bits.
        add(m, k, n, rounding=rounding, images=images, tag=f"ragged-{mode}")
        twin = f"{spec.name}/ragged-{mode}-stalled"
        cases.append(dataclasses.replace(cases[-1], stall=STALL, name=twin))
        add(
            _ragged(rng, cfg.rows, 2),
            1,
            _ragged(rng, cfg.cols, 2),
            rounding=rounding,
            images=images,
            tag=f"k1-{mode}",
        )
        add(
            2 * cfg.rows,
            int(rng.integers(1, 6)),
            cfg.cols,
            rounding=rounding,
            images=images,
            shift=int(rng.integers(0, MAX_SHIFT + 1)),
            tag=f"whole-tiles-random-shift-{mode}",
        )
    # Extreme operands: all most-negative (every product is the largest positive one), and
    # only the two range ends with shift 0 (saturation both ways) and with the widest shift.
    m, n = _ragged(rng, cfg.rows, 1), _ragged(rng, cfg.cols, 1)
    images = 2 if grad else 1
    add(
        m,
        3,
        n,
        rounding=Rounding.NEAREST_EVEN,
        shift=0,
        images=images,
        operands="min",
        tag="most-negative-shift0",
    )
    add(
        m,
        5,
        n,
        rounding=Rounding.FLOOR,
        shift=0,
        images=images,
        operands="extreme",
        tag="extreme-shift0",
    )
    add(
        m,
        4,
        n,
        rounding=Rounding.STOCHASTIC,
        shift=MAX_SHIFT,
        images=images,
        operands="extreme",
        stall=STALL,
        tag="extreme-shift31-stalled",
    )
    add(
        m,
        7,
        n,
        rounding=Rounding.STOCHASTIC,
        images=images,
        operands="extreme",
        stall=STALL,
        tag="extreme-auto-stalled",
    )
    cases += _read_out_cases(spec, rng)
    return tuple(cases)


def _read_out_cases(spec: DesignSpec, rng: np.random.Generator) -> list[GemmCase]:
    """The accumulator read-out (``raw``): a random shape with stalls, extreme operands
    (the widest sums, wrapping where the accumulator does); with an accumulator memory,
    reductions of three commands, read out and requantised."""
    cfg = spec.cfg
    images = 3 if spec.kind is Pass.WEIGHT_GRAD else 1
    out = []
    shapes = [(_ragged(rng, cfg.rows, 2), int(rng.integers(2, 9)), _ragged(rng, cfg.cols, 2))]
    for i, (m, k, n) in enumerate(shapes * 2):
        operands = "extreme" if i else "random"
        seed = int(rng.integers(0, 2**32))
        case = pass_case(
            spec.kind, cfg, m, k, n, images=images, shift=0, rounding=Rounding.FLOOR,
            seed=seed, operands=operands,
        )  # fmt: skip
        raw = model.accumulators(case.a, case.b, cfg)
        name = f"{spec.name}/raw-{operands}-stalled"
        out.append(dataclasses.replace(case, name=name, stall=STALL, raw=True, expected=raw))
    if cfg.acc_depth:
        case = out[0]
        for raw in (True, False):
            expected = case.expected if raw else _requantised(case, cfg)
            name = f"{spec.name}/{'raw' if raw else 'plain'}-3-commands-stalled"
            out.append(
                dataclasses.replace(
                    case, name=name, raw=raw, pieces=3, shift=9, expected=expected,
                    rounding=Rounding.STOCHASTIC,
                )
            )  # fmt: skip
    return out


def _requantised(case: GemmCase, cfg: EngineConfig) -> np.ndarray:
    return model.gemm(case.a, case.b, cfg, shift=9, rounding=Rounding.STOCHASTIC, seed=case.seed)


def fp_design_cases(spec: DesignSpec) -> tuple[GemmCase, ...]:
    """A minifloat design's cases: per rounding mode, ragged GEMMs whose sums fall in the
    output's normal range (and their stalled twins), near its subnormals, and K = 1; then
    random codes over the whole range, the extremes, and the most negative value everywhere
    (every sum beyond the largest normal)."""
    cfg = spec.cfg
    grad = spec.kind is Pass.WEIGHT_GRAD
    cases: list[GemmCase] = []
    # MX: K over a few blocks, the last one short (the gradient's images split blocks too)
    blocks = 2 * cfg.fmt.arith.block if isinstance(cfg.fmt, MXGemmFormat) else 0
    wide = "wide" if blocks else "random"
    adder, rng = _fp_adder(spec, cases)

    def add(m, k, n, **kw):  # noqa: ANN001, ANN003, ANN202
        adder(spec.kind, m, k, n, **kw)

    for rounding in Rounding:
        mode = rounding.label
        images = 2 if grad else 1
        m, n = _ragged(rng, cfg.rows, 3), _ragged(rng, cfg.cols, 3)
        k = int(rng.integers(2, 12)) + blocks
        add(m, k, n, rounding=rounding, operands="mid", images=images, tag=f"ragged-{mode}")
        twin = f"{spec.name}/ragged-{mode}-stalled"
        cases.append(dataclasses.replace(cases[-1], stall=STALL, name=twin))
        m, n = _ragged(rng, cfg.rows, 2), _ragged(rng, cfg.cols, 2)
        k = 5 + blocks // 2
        add(m, k, n, rounding=rounding, operands="tiny", images=images, tag=f"tiny-{mode}")
        add(m, 1, n, rounding=rounding, operands="mid", images=images, tag=f"k1-{mode}")
        add(m, 6 + blocks, n, rounding=rounding, operands=wide, images=images, tag=f"{wide}-{mode}")
    m, n = _ragged(rng, cfg.rows, 1), _ragged(rng, cfg.cols, 1)
    for rounding in Rounding:
        mode = rounding.label
        k = 4 + blocks
        add(m, k, n, rounding=rounding, operands="extreme", stall=STALL, tag=f"extreme-{mode}")
    add(m, 3 + blocks, n, rounding=Rounding.NEAREST_EVEN, operands="min", tag="most-negative")
    return tuple(cases)


def _fp_adder(spec: DesignSpec, cases: list[GemmCase]):  # noqa: ANN202
    """``add(kind, m, k, n, rounding=, operands=, images=1, stall=0, tag=)`` appending a
    case of pass ``kind`` to ``cases``, and the generator of its seeds (from the name)."""
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))

    def add(kind, m, k, n, *, rounding, operands, images=1, stall=0.0, tag):  # noqa: ANN001, ANN202
        seed = int(rng.integers(0, 2**32))
        kw = {"shift": 0, "rounding": rounding, "seed": seed, "stall": stall}
        name = f"{spec.name}/{tag}"
        cases.append(
            pass_case(kind, spec.cfg, m, k, n, images=images, operands=operands, name=name, **kw)
        )

    return add, rng


def pass_design_cases(spec: DesignSpec) -> tuple[GemmCase, ...]:
    """A per-pass design's cases: each pass's commands with its formats, in every rounding
    mode a ragged GEMM whose sums fall in the output's normal range and the extremes with
    stalls; per pass sums near the output's subnormals, K = 1 of the extremes (zero results)
    and random codes over the whole range (rounding modes in turn); one stalled twin per
    mode; the most negative value everywhere. The passes follow one another, so the pass
    and output selects switch."""
    cfg = spec.cfg
    cases: list[GemmCase] = []
    add, rng = _fp_adder(spec, cases)
    modes = list(Rounding)
    for i, kind in enumerate(Pass):
        images = 2 if kind is Pass.WEIGHT_GRAD else 1
        name = f"{kind.value}"
        for rounding in Rounding:
            mode = rounding.label
            m, n = _ragged(rng, cfg.rows, 3), _ragged(rng, cfg.cols, 3)
            k = int(rng.integers(2, 12))
            add(
                kind,
                m,
                k,
                n,
                rounding=rounding,
                operands="mid",
                images=images,
                tag=f"{name}-{mode}",
            )
            if rounding is modes[i]:
                twin = f"{spec.name}/{name}-{mode}-stalled"
                cases.append(dataclasses.replace(cases[-1], stall=STALL, name=twin))
            m, n = _ragged(rng, cfg.rows, 1), _ragged(rng, cfg.cols, 1)
            tag = f"{name}-extreme-{mode}"
            add(
                kind,
                m,
                4,
                n,
                rounding=rounding,
                operands="extreme",
                images=images,
                stall=STALL,
                tag=tag,
            )
        m, n = _ragged(rng, cfg.rows, 2), _ragged(rng, cfg.cols, 2)
        for j, operands in enumerate(("tiny", "extreme", "random")):
            rounding = modes[(i + j) % len(modes)]
            k = 1 if j == 1 else 5
            tag = f"{name}-{'k1' if j == 1 else operands}-{rounding.label}"
            one = images if k > 1 else 1  # one term: a product of a zero is a zero result
            add(kind, m, k, n, rounding=rounding, operands=operands, images=one, tag=tag)
    m, n = _ragged(rng, cfg.rows, 1), _ragged(rng, cfg.cols, 1)
    add(Pass.BACKWARD_DATA, m, 3, n, rounding=modes[0], operands="min", tag="most-negative")
    return tuple(cases)


def sim_run(cache: dict, spec: DesignSpec, sim: str) -> SimRun:
    key = (spec, sim)
    if key not in cache:
        try:
            design = build(spec.kind, spec.cfg, sim, family=spec.family)
            cache[key] = run_cases(design, design_cases(spec), tb_seed=7)
        except Exception as exc:  # reported by every test of the design, built once
            cache[key] = exc
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


def _params(designs: list[DesignSpec], marks=()):  # noqa: ANN001, ANN202
    return [
        pytest.param(spec, i, id=f"{c.name}#{i}", marks=marks)
        for spec in designs
        for i, c in enumerate(design_cases(spec))
    ]


# The engine the rtl backend trains formats per pass on (float32 results in every pass, one
# requantiser): BARISTA_FULL=1 only (the training test runs it through the accelerator).
SLOW_PASS_DESIGNS = [
    DesignSpec(
        "all-2x3-e4m3-e5m2-fp32", Pass.WEIGHT_GRAD, 2, 3, "fwd=e4m3_fp32,grad=e5m2_fp32k4096_nosat"
    )
]
SIMULATED_SLOW_DESIGNS = SLOW_DESIGNS + (SLOW_MX_DESIGNS + SLOW_PASS_DESIGNS if FULL else [])
CASE_PARAMS = (
    _params(DESIGNS)
    + _params(FP_DESIGNS)
    + _params(MX_DESIGNS)
    + _params(PASS_DESIGNS)
    + _params(SIMULATED_SLOW_DESIGNS, marks=pytest.mark.slow)
)
DESIGN_PARAMS = [
    pytest.param(d, id=d.name) for d in DESIGNS + FP_DESIGNS + MX_DESIGNS + PASS_DESIGNS
] + [pytest.param(d, id=d.name, marks=pytest.mark.slow) for d in SIMULATED_SLOW_DESIGNS]


@pytest.mark.cocotb
@pytest.mark.parametrize(("spec", "index"), CASE_PARAMS)
def test_engine_bit_exact(sim: str, spec: DesignSpec, index: int, sim_run_cache: dict) -> None:
    run = sim_run(sim_run_cache, spec, sim)
    result = run.results[index]
    problem = mismatch(run.design, result)
    assert problem is None, problem


@pytest.mark.cocotb
@pytest.mark.parametrize("spec", DESIGN_PARAMS)
def test_engine_cycle_counts(sim: str, spec: DesignSpec, sim_run_cache: dict) -> None:
    """Stall-free: useful beats <= cycles <= cycle_bound; stalled: >= the stall-free twin."""
    run = sim_run(sim_run_cache, spec, sim)
    cfg = spec.cfg
    free: dict[str, int] = {}
    for res in run.results:
        c = res.case
        tiles = -(-c.m // cfg.rows) * -(-c.n // cfg.cols)
        beats = tiles * c.k * c.images
        assert res.cycles >= beats, f"{c.describe()}: {res.cycles} cycles < {beats} operand beats"
        if c.stall == 0:
            bound = cycle_bound(cfg, c.m, c.k, c.n, c.images, raw=c.raw)
            assert res.cycles <= bound, f"{c.describe()}: {res.cycles} cycles > bound {bound}"
            free[c.name] = res.cycles
    twins = 0
    for res in run.results:
        twin = res.case.name.removesuffix("-stalled")
        if res.case.stall and twin in free:
            twins += 1
            assert res.cycles >= free[twin], (
                f"{res.case.describe()}: {res.cycles} cycles with stalls < {free[twin]} without"
            )
    assert twins == len(Rounding)


def test_stalled_twins_share_operands() -> None:
    """The stalled copy of a case streams exactly the same GEMM (else the twin check is moot)."""
    cases = {c.name: c for c in design_cases(DESIGNS[0])}
    for name, c in cases.items():
        if name.endswith("-stalled") and name.removesuffix("-stalled") in cases:
            twin = cases[name.removesuffix("-stalled")]
            assert c.stall == STALL and twin.stall == 0
            np.testing.assert_array_equal(c.a, twin.a)
            np.testing.assert_array_equal(c.b, twin.b)
            assert (c.shift, c.rounding, c.seed) == (twin.shift, twin.rounding, twin.seed)


def test_cases_cover_the_brief() -> None:
    """Each design has every rounding mode, K = 1, partial tiles and saturation both ways."""
    for spec in DESIGNS + SLOW_DESIGNS:
        cases = design_cases(spec)
        cfg = spec.cfg
        assert {c.rounding for c in cases} == set(Rounding)
        assert any(c.k == 1 for c in cases)
        if cfg.rows > 1 and cfg.cols > 1:
            assert any(c.m % cfg.rows and c.n % cfg.cols for c in cases)
        if spec.kind is Pass.WEIGHT_GRAD:
            assert all(c.images > 1 for c in cases)
        exp = np.concatenate([np.ravel(c.expected) for c in cases])
        assert (exp == cfg.fmt.max_int).any() and (exp == cfg.fmt.min_int).any()
        assert any(c.stall > 0 for c in cases)


def test_fp_cases_cover_the_brief() -> None:
    """Each minifloat design: every rounding mode, K = 1, partial tiles and stalls; results
    that are zero, subnormal, normal and the largest magnitude (or inf/NaN without saturation)
    of both signs (float32 results: zero and normal, as every sum is); operands with the
    largest normals, subnormals and zeros."""
    for spec in FP_DESIGNS:
        cases, out = design_cases(spec), spec.cfg.fmt.out
        assert {c.rounding for c in cases} == set(Rounding)
        assert any(c.k == 1 for c in cases) and any(c.stall > 0 for c in cases)
        assert any(c.m % spec.rows and c.n % spec.cols for c in cases)
        codes = np.concatenate([np.ravel(c.expected) for c in cases])
        mag, field = codes & ~(1 << (out.bits - 1)), (codes >> out.mant) & out.top_field
        top = out.overflow_code(spec.cfg.fmt.saturate)
        assert 0 in mag and ((field > 0) & (mag < top)).any(), spec.name
        if out.bits <= 8:
            assert top in mag and ((field == 0) & (mag > 0)).any(), spec.name
        assert (codes >> (out.bits - 1)).any() and not (codes >> (out.bits - 1)).all()
        ops = np.concatenate([np.ravel(c.a) for c in cases] + [np.ravel(c.b) for c in cases])
        fa = spec.cfg.fmt.a
        assert {0, 1, fa.max_code} <= set((ops & ~(1 << (fa.bits - 1))).tolist())


def _covers_codes(codes: np.ndarray, out, saturate: bool) -> bool:  # noqa: ANN001
    """Zero, normal, and for 8-bit outputs subnormal and the largest (or overflow) codes of
    ``out``, both signs (float32 results: every sum is zero or normal)."""
    mag, field = codes & ~(1 << (out.bits - 1)), (codes >> out.mant) & out.top_field
    top = out.overflow_code(saturate)
    sign = codes >> (out.bits - 1)
    ends = out.bits > 8 or (top in mag and ((field == 0) & (mag > 0)).any())
    return bool(
        0 in mag and ((field > 0) & (mag < top)).any() and ends and sign.any() and not sign.all()
    )


def test_pass_cases_cover_the_brief() -> None:
    """Each per-pass design: every pass in every rounding mode, with K = 1, partial tiles and
    stalls; each pass's results cover its output format (forward E4M3, gradients E5M2: zero,
    subnormal, normal, largest, both signs); operands hold both formats' extremes."""
    for spec in PASS_DESIGNS + SLOW_PASS_DESIGNS:
        fmt, cases = spec.cfg.fmt, design_cases(spec)
        for pid, kind in enumerate(Pass):
            mine = [c for c in cases if c.pass_id == pid]
            f = fmt.for_pass(pid)
            assert {c.rounding for c in mine} == set(Rounding), kind
            assert any(c.k == 1 for c in mine) and any(c.stall > 0 for c in mine), kind
            assert any(c.m % spec.rows and c.n % spec.cols for c in mine), kind
            codes = np.concatenate([np.ravel(c.expected) for c in mine])
            assert _covers_codes(codes, f.out, fmt.saturate), kind
            for side, ops in (("a", [c.a for c in mine]), ("b", [c.b for c in mine])):
                of = f.a if side == "a" else f.b
                got = set(
                    (np.concatenate([np.ravel(o) for o in ops]) & ~(1 << (of.bits - 1))).tolist()
                )
                assert {0, 1, of.max_code} <= got, (kind, side)


def test_mx_cases_cover_the_brief() -> None:
    """Each MX design: the minifloat designs' coverage of modes, shapes and stalls; K over
    several blocks with a short last one; zero blocks, blocks of the smallest elements with one
    largest, scales at both ends of the window; results zero, normal and the largest magnitude
    (or inf) of both signs, subnormal ones for 8-bit outputs."""
    for spec in MX_DESIGNS + SLOW_MX_DESIGNS:
        fmt, cases = spec.cfg.fmt, design_cases(spec)
        arith, out = fmt.arith, fmt.out
        assert {c.rounding for c in cases} == set(Rounding)
        assert any(c.k == 1 for c in cases) and any(c.stall > 0 for c in cases)
        assert any(c.m % spec.rows and c.n % spec.cols for c in cases)
        assert any(c.k * c.images > 2 * arith.block and c.k * c.images % arith.block for c in cases)
        codes = np.concatenate([np.ravel(c.expected) for c in cases])
        mag, field = codes & ~(1 << (out.bits - 1)), (codes >> out.mant) & out.top_field
        assert 0 in mag and ((field > 0) & (mag < out.overflow_code(fmt.saturate))).any()
        if out.bits <= 8:
            assert out.overflow_code(fmt.saturate) in mag and ((field == 0) & (mag > 0)).any()
        assert (codes >> (out.bits - 1)).any() and not (codes >> (out.bits - 1)).all()
        blocks = []
        for c in cases:
            for words in (c.a, c.b.T):
                el, sc = arith.unpack(words)
                k = words.shape[1] // arith.block * arith.block
                blocks += zip(
                    el[:, :k].reshape(-1, arith.block).tolist(),
                    sc[:, : k : arith.block].ravel().tolist(),
                    strict=True,
                )
        scales = {x - 127 for _, x in blocks}
        assert {-(-arith.lo // 2), arith.hi // 2} <= scales, spec.name
        assert any(not any(e) for e, _ in blocks), "a zero block"
        top = fmt.a.element.max_code if not fmt.a.is_int else 128
        assert any(e.count(top) == 1 and e.count(1) == arith.block - 1 for e, _ in blocks)
