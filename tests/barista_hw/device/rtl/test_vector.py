"""The vector unit's RTL against the model's functions (barista_hw.device.vector), bit for bit:
every result and every statistic, on Icarus and Verilator, in every rounding mode, with
random values and the extremes (the 32-bit ends, zero, saturation both ways, shifts past
the word and past 63), and stalled copies that must give the same bits; and each
instruction's cycles against the time model's (barista_hw.device.vector.cycles).

One build and one simulation per simulator; every case runs back to back in it and the
tests read the results.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from barista_hw.device import vector as model
from barista_hw.device.geometry import PoolGeometry
from barista_hw.device.rtl.vector import (
    BUILT_OPS,
    VecCommand,
    VectorUnit,
    beat_words,
    bias_grad_order,
    covering_order,
    decode_outputs,
    decode_stats,
    window_order,
)
from barista_hw.device.vector import Rounder, Stats, VecOp, covering_windows, reciprocals
from barista_hw.numfmt import Rounding

LANES = 4  # datapaths and random lanes: the cases' lengths are not multiples of it
BITS = 18  # the operand format's width (fx18, the ULX3S designs')
STALL = 0.3
TOP = "vector_unit_l4"
LO, HI = -(1 << 31), (1 << 31) - 1
UNIT = (lambda: VectorUnit(LANES), TOP, f"lanes={LANES}")  # how to make it, its name and key
EXACT_OPS = (VecOp.COPY, VecOp.MAXPOOL, VecOp.MAXPOOL_BACK)  # no rounding: one mode suffices


@dataclass(frozen=True)
class Case:
    """One instruction: its command, groups ``v`` ``(groups, length, 3)`` (an element
    operation's of length 1) with their ``pad`` flags, the model's results (per result its
    values and :class:`Stats`) and the time model's arguments (``elements_in``,
    ``elements_out``, ``window``, ``cover``)."""

    name: str
    cmd: VecCommand
    v: np.ndarray
    expected: tuple[tuple[np.ndarray, Stats], ...]
    timing: tuple[int, int, int, int]
    stall: float = 0.0
    pad: np.ndarray | None = None

    @property
    def words(self) -> list[int]:
        # Lanes off carry the 32-bit top: a statistic that counted them would show it.
        return beat_words(self.v, LANES, self.pad, idle=HI)

    @property
    def model_cycles(self) -> int:
        return model.cycles(self.cmd.op, *self.timing[:2], LANES, *self.timing[2:])


def _values(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    """``n`` random ``bits``-bit values with the 32-bit ends and zero among them."""
    x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), n)
    x[:3] = [HI, LO, 0]
    return rng.permutation(x)


def _cols(*cols: np.ndarray) -> np.ndarray:
    """Element operands side by side: groups of one ``(n, 1, 3)``."""
    return _groups(*(np.ravel(c)[:, None] for c in cols))


def _groups(*cols: np.ndarray) -> np.ndarray:
    """Group operands ``(groups, length)`` side by side: ``(groups, length, 3)``."""
    cols = [np.asarray(c) for c in cols]
    cols += [np.zeros_like(cols[0])] * (3 - len(cols))
    return np.stack(cols, axis=-1)


@cache
def cases() -> tuple[Case, ...]:
    """Every case (deterministic)."""
    rng = np.random.default_rng(zlib.crc32(b"vector-unit"))
    out: list[Case] = []

    def add(name: str, cmd: VecCommand, v, *expected) -> None:  # noqa: ANN001
        out.append(Case(name, cmd, v, tuple(expected), (len(v), len(v), 1, 1)))

    images, channels, pixels = 2, 3, 5  # 30 elements: 7.5 beats of 4 lanes
    shape = (images, channels, pixels)
    n = images * channels * pixels
    for r in Rounding:
        rnd = Rounder(r, int(rng.integers(0, 1 << 32)), LANES)
        x = _values(rng, n, 20).reshape(shape)
        x2 = _values(rng, n, 20).reshape(shape)
        tag = r.label
        add(f"copy-{tag}", VecCommand.copy(BITS), _cols(x), model.copy(x, BITS))
        for shift in (0, 3, 17, -5, -40, 40, 70):  # -40: past the word; 70: past 63
            add(
                f"convert{shift}-{tag}",
                VecCommand.convert(shift, 0, BITS, rnd),
                _cols(x),
                model.convert(x, shift, 0, BITS, rnd),
            )
        ties = (2 * np.arange(-n // 2, n // 2) + 1) << 3  # every value half-way: x.5 LSB
        add(
            f"convert-ties-{tag}",
            VecCommand.convert(4, 0, BITS, rnd),
            _cols(ties),
            model.convert(ties, 4, 0, BITS, rnd),
        )
        if r is Rounding.STOCHASTIC:  # a long one: the beats, not the latency, dominate
            long = _values(rng, 250 * LANES + 1, 24)
            add(
                f"convert-long-{tag}",
                VecCommand.convert(5, 0, BITS, rnd),
                _cols(long),
                model.convert(long, 5, 0, BITS, rnd),
            )
        for slope in (0.0, 0.1, -2.5):
            add(
                f"relu{slope}-{tag}",
                VecCommand.relu(BITS, slope, rnd),
                _cols(x),
                model.relu(x, BITS, slope, rnd=rnd),
            )
            add(
                f"relu_back{slope}-{tag}",
                VecCommand.relu(BITS, slope, rnd, back=True),
                _cols(x, x2),
                model.relu_back(x, x2, BITS, slope, rnd=rnd),
            )
        bias = _values(rng, channels, 18)
        full = np.broadcast_to(bias[None, :, None], shape)  # each element's channel's bias
        for frac_y, frac_bias in ((10, 14), (10, 3), (0, 40)):
            add(
                f"bias_add{frac_y},{frac_bias}-{tag}",
                VecCommand.bias_add(frac_y, frac_bias, BITS, rnd),
                _cols(x, full),
                model.bias_add(x, frac_y, bias, frac_bias, BITS, rnd),
            )
        mean = _values(rng, channels * pixels, 20).reshape(channels, pixels)
        for fx, fm, fo in ((4, 6, 2), (8, 3, 9), (0, 20, 0)):
            add(
                f"mean_sub{fx},{fm},{fo}-{tag}",
                VecCommand.mean_sub(fx, fm, fo, BITS, rnd),
                _cols(x, np.broadcast_to(mean[None], shape)),
                model.mean_sub(x, fx, mean, fm, fo, BITS, rnd),
            )
        dy = _values(rng, n, 32).reshape(shape)
        order = bias_grad_order(dy)
        for frac_out in (3, 20, -2):
            out.append(
                Case(
                    f"bias_grad{frac_out}-{tag}",
                    VecCommand.bias_grad(5, frac_out, BITS, rnd),
                    _groups(order),
                    (model.bias_grad(dy, 5, frac_out, BITS, rnd),),
                    (n, channels, 1, 1),
                )
            )
        out.extend(_sgd_cases(rng, rnd, tag))
        out.extend(_pool_cases(rng, rnd, tag))
    # Stalled twins of one case of each operation: the same bits whatever the handshakes.
    twins = [c for c in out if c.cmd.op in EXACT_OPS or c.cmd.rounding is Rounding.STOCHASTIC]
    seen: set[VecOp] = set()
    for c in twins:
        if c.cmd.op not in seen:
            seen.add(c.cmd.op)
            out.append(dataclasses.replace(c, name=f"{c.name}-stalled", stall=STALL))
    return tuple(out)


def _sgd_cases(rng: np.random.Generator, rnd: Rounder, tag: str) -> list[Case]:
    n = 23
    w, v, g = _values(rng, n, 31), _values(rng, n, 29), _values(rng, n, 22)
    result = []
    # (fracs of master, momentum, grad, operand; lr, momentum, decay): Caffe's values, and
    # a large rate that saturates the momentum and the master.
    for fm, fv, fg, fo, lr, mom, decay in (
        (30, 30, 20, 12, 0.01, 0.9, 0.0005),
        (24, 28, 12, 9, 0.1, 0.99, 0.004),
        (20, 20, 0, 20, 300.0, 0.5, 0.0),
    ):
        scalars = {
            "lr": model.encode_scalar(lr),
            "mom": model.encode_scalar(mom),
            "decay": model.encode_scalar(decay),
        }
        kw = dict(operand_bits=BITS, frac_operand=fo, rnd=rnd, **scalars)
        r = model.sgd(w, fm, v, fv, g, fg, **kw)
        result.append(
            Case(
                f"sgd{fm},{fv},{fg},{fo},{lr}-{tag}",
                VecCommand.sgd(fm, fv, fg, **kw),
                _cols(g, v, w),
                (
                    (r.momentum, r.momentum_stats),
                    (r.master, r.master_stats),
                    (r.operand, r.operand_stats),
                ),
                (3 * n, n, 1, 1),
            )
        )
    return result


# CEIL-mode windows past the image, padding, and a stride past the kernel (pixels no
# window covers); one channel-image plane after another.
GEOMETRIES = (
    PoolGeometry(2, 5, 5, (2, 2), (2, 2)),
    PoolGeometry(1, 6, 7, (3, 3), (2, 2), (1, 1)),
    PoolGeometry(1, 7, 6, (2, 3), (3, 2), (1, 0)),
)


def _stream(planes: np.ndarray, index: np.ndarray) -> np.ndarray:
    """What the DMA streams of ``planes`` ``(P, size)`` at ``index`` ``(groups, length)``
    (0 where it is -1): ``(P * groups, length)``, plane after plane."""
    got = np.where(index >= 0, planes[:, np.maximum(index, 0)], 0)
    return got.reshape(-1, index.shape[1])


def _pool_cases(rng: np.random.Generator, rnd: Rounder, tag: str) -> list[Case]:
    result = []
    for g, geom in enumerate(GEOMETRIES):
        images = 2 if g == 0 else 1
        shape = (images, geom.channels, geom.height, geom.width)
        out_shape = (images, geom.channels, geom.out_height, geom.out_width)
        x = _values(rng, int(np.prod(shape)), 20).reshape(shape)
        x[0, 0, :2, :2] = x[0, 0, 0, 0]  # ties: the first maximum wins
        dy = _values(rng, int(np.prod(out_shape)), 20).reshape(out_shape)
        planes = x.reshape(-1, geom.height * geom.width)
        outs = dy.reshape(-1, geom.out_height * geom.out_width)
        recip = np.broadcast_to(reciprocals(geom)[0].reshape(1, -1), outs.shape)
        fwd, back = window_order(geom), covering_order(geom)
        n_planes = len(planes)
        window = geom.kernel[0] * geom.kernel[1]
        cover = covering_windows(geom.kernel, geom.stride)
        forward = (x.size, dy.size, window, 1)  # the time model's arguments
        backward = (dy.size, x.size, window, cover)

        y, mask, s = model.maxpool(x, geom)
        pad = np.tile(fwd.pad, (n_planes, 1))
        name = f"pool{g}-{tag}"
        result.append(
            Case(
                f"max{name}",
                VecCommand.maxpool(),
                _groups(_stream(planes, fwd.inp)),
                ((y, s), (mask, Stats(0, 0, 0))),
                forward,
                pad=pad,
            )
        )
        result.append(
            Case(
                f"ave{name}",
                VecCommand.avepool(geom, BITS, rnd),
                _groups(_stream(planes, fwd.inp), _stream(recip, fwd.out)),
                (model.avepool(x, geom, BITS, rnd),),
                forward,
                pad=pad,
            )
        )
        pad = np.tile(back.pad, (n_planes, 1))
        masks = mask.reshape(outs.shape)
        result.append(
            Case(
                f"max{name}-back",
                VecCommand.maxpool_back(BITS),
                _groups(
                    _stream(outs, back.out),
                    _stream(masks, back.out),
                    np.tile(back.offset, (n_planes, 1)),
                ),
                (model.maxpool_back(dy, mask, geom, BITS),),
                backward,
                pad=pad,
            )
        )
        result.append(
            Case(
                f"ave{name}-back",
                VecCommand.avepool(geom, BITS, rnd, back=True),
                _groups(_stream(outs, back.out), _stream(recip, back.out)),
                (model.avepool_back(dy, geom, BITS, rnd),),
                backward,
                pad=pad,
            )
        )
    # The exact operations once (in the first rounding mode's pass).
    once = rnd.rounding is Rounding.NEAREST_EVEN
    return [c for c in result if once or c.cmd.op not in EXACT_OPS]


def unit_run(cache_: dict, sim: str):  # noqa: ANN201 - a sim.stream_run.UnitRun
    from sim.runner import component_build
    from sim.stream_run import Instruction, run_instructions

    key = ("vector-unit", sim)
    if key not in cache_:
        try:
            unit = component_build(*UNIT, sim)
            insts = [Instruction(c.cmd.word(), c.words, c.stall) for c in cases()]
            cache_[key] = run_instructions(unit, insts, tb_seed=5)
        except Exception as exc:  # reported by every test, built once
            cache_[key] = exc
    if isinstance(cache_[key], Exception):
        raise cache_[key]
    return cache_[key]


@pytest.mark.cocotb
@pytest.mark.parametrize("index", range(len(cases())), ids=[c.name for c in cases()])
def test_vector_unit_bit_exact(sim: str, index: int, sim_run_cache: dict) -> None:
    case = cases()[index]
    got = unit_run(sim_run_cache, sim).results[index]
    q, last = decode_outputs(got.y, LANES)
    n_out = np.ravel(case.expected[0][0]).size
    assert q.shape[0] == n_out, f"{case.name}: {q.shape[0]} outputs, the model has {n_out}"
    beats = -(-n_out // LANES)
    assert last.tolist() == [0] * (beats - 1) + [1], f"{case.name}: last flags {last}"
    stats = decode_stats(got.stats)
    for k, (want, want_stats) in enumerate(case.expected):
        want = np.ravel(want)
        bad = np.flatnonzero(q[:, k] != want)
        assert not bad.size, (
            f"{case.name} result {k}: {bad.size} of {want.size} differ, first at {bad[0]}: "
            f"rtl {q[bad[0], k]}, model {want[bad[0]]}"
        )
        assert stats[k] == want_stats, f"{case.name} result {k}: stats {stats[k]} != {want_stats}"
    for k in range(len(case.expected), 3):  # unused results report nothing
        assert stats[k] == Stats(0, 0, 0)


def cycle_table(run) -> list[tuple[str, int, int, int]]:  # noqa: ANN001 - a UnitRun
    """Per unstalled instruction: its name, x beats, cycles measured (from the previous
    instruction's statistics to its own) and the time model's cycles."""
    rows, previous = [], 0
    for case, got in zip(cases(), run.results, strict=True):
        if case.stall == 0:
            rows.append((case.name, len(case.words), got.cycle - previous, case.model_cycles))
        previous = got.cycle
    return rows


@pytest.mark.cocotb
def test_vector_unit_cycles_match_the_time_model(sim: str, sim_run_cache: dict) -> None:
    """Back to back and unstalled, each instruction takes the time model's cycles
    (``vector.cycles``: ``lanes`` outputs a beat, a beat a cycle), within 5%."""
    rows = cycle_table(unit_run(sim_run_cache, sim))
    print(f"\n{'instruction':28} {'beats':>5} {'rtl':>5} {'model':>5}")
    for name, beats, took, want in rows:
        print(f"{name:28} {beats:5} {took:5} {want:5}")
    off = [(name, took, want) for name, _, took, want in rows if abs(took - want) > 0.05 * want]
    assert not off, off
    # Not a lucky average: the lanes work side by side (fewer cycles than elements).
    assert any(took < beats * LANES / 2 for _, beats, took, _ in rows if beats > 8)


def test_cases_cover_the_brief() -> None:
    """Every built operation in every rounding mode, saturation both ways and overflow
    statistics, zero and the 32-bit ends among the inputs, stalled twins."""
    every = cases()
    assert {c.cmd.op for c in every} == set(BUILT_OPS)
    for op in BUILT_OPS:
        if op not in EXACT_OPS:
            assert {c.cmd.rounding for c in every if c.cmd.op is op} == set(Rounding), op
    results = np.concatenate([np.ravel(q) for c in every for q, _ in c.expected[:1]])
    assert (results == (1 << (BITS - 1)) - 1).any() and (results == -(1 << (BITS - 1))).any()
    assert any(s.overflow > 1 for c in every for _, s in c.expected)
    assert all({HI, LO, 0} <= set(c.v[:, 0, 0].tolist()) for c in every if c.cmd.op is VecOp.COPY)
    sgd = [c for c in every if c.cmd.op is VecOp.SGD]
    assert any(c.expected[0][1].saturated and c.expected[1][1].saturated for c in sgd)
    assert {c.cmd.op for c in every if c.stall} == set(BUILT_OPS)


@pytest.mark.parametrize("geom", GEOMETRIES, ids=str)
def test_pool_orders_cover_every_window_and_pixel(geom: PoolGeometry) -> None:
    """Forward: every output's whole window, offsets in order; backward: every input pixel
    one group, every (window, offset) inside the image once."""
    fwd, back = window_order(geom), covering_order(geom)
    k = geom.kernel[0] * geom.kernel[1]
    n_out, pixels = geom.out_height * geom.out_width, geom.height * geom.width
    assert fwd.offset.tolist() == [list(range(k))] * n_out
    assert fwd.out.tolist() == [[o] * k for o in range(n_out)]
    assert back.out.shape == (pixels, covering_windows(geom.kernel, geom.stride))
    assert back.inp.tolist() == [[p] * back.out.shape[1] for p in range(pixels)]
    inside = {
        (o, f)
        for i, o, f in zip(fwd.inp.ravel(), fwd.out.ravel(), fwd.offset.ravel(), strict=True)
        if i >= 0
    }
    covered = [(o, f) for o, f in zip(back.out.ravel(), back.offset.ravel(), strict=True) if o >= 0]
    assert sorted(covered) == sorted(inside)
    # every entry not padding names the window that holds this pixel at that offset
    kw, ow = geom.kernel[1], geom.out_width
    hs, ws = model.window_starts(geom)
    for p, o, f in zip(back.inp.ravel(), back.out.ravel(), back.offset.ravel(), strict=True):
        if o >= 0:
            assert (hs[o // ow] + f // kw, ws[o % ow] + f % kw) == divmod(p, geom.width)


def test_vector_unit_verilog_is_lint_clean() -> None:
    """``verilator --lint-only -Wall`` with the project's waivers (the simulated Verilog:
    the unit has no memories, so it is the synthesis form too)."""
    from sim.lint import lint
    from sim.runner import component_verilog

    assert lint(component_verilog(*UNIT), TOP) == []


def test_command_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="shifts"):
        VecCommand.convert(600, 0, BITS, Rounder(Rounding.FLOOR))
    with pytest.raises(ValueError, match="bits"):
        VecCommand.copy(40)
    with pytest.raises(ValueError, match="32 bits"):
        beat_words(np.array([[[1 << 31]]]), LANES)
