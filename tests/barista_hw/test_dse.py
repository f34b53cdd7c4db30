"""Design-space exploration: budgets, Pareto front, determinism."""

import pytest

from barista_base.errors import InputError
from barista_hw.dse import FORMAT_SLACK, RANK_SHAPES, explore, pareto_front, shortlist
from barista_hw.numfmt import FixedFormat
from barista_hw.plan import GemmLayer, plan_net
from barista_hw.resources import estimate
from barista_hw.targets import Budget, get_target

LENET = [
    GemmLayer("conv1", "conv", 64, 20, 25, 576, backward_data=False),
    GemmLayer("conv2", "conv", 64, 50, 500, 64),
    GemmLayer("ip1", "fc", 64, 500, 800),
    GemmLayer("ip2", "fc", 64, 10, 500),
]


@pytest.fixture(scope="module")
def lenet_85f():
    return explore(LENET, get_target("ulx3s-85f").budget, name="LeNet")


def test_every_candidate_respects_the_budget(lenet_85f) -> None:
    b = lenet_85f.budget
    assert b.bram_usable < b.bram_blocks and b.luts_usable < b.luts  # the planned shares
    for c in lenet_85f.candidates:
        r = c.resources
        assert r.mults <= b.mults and r.bram_blocks <= b.bram_usable and r.luts <= b.luts_usable
    small = Budget.parse("mults=6,bram_blocks=12,luts=9000,mhz=40")
    res = explore(LENET, small)
    assert res.best.config.engine.pes <= 6 and res.best.resources.bram_blocks <= 12
    assert res.best.config.clock_mhz == 40


def test_best_is_fastest_and_matches_the_plan(lenet_85f) -> None:
    best = lenet_85f.best
    assert best.cycles == min(
        c.cycles
        for c in lenet_85f.candidates
        if c.config.engine.fmt.width == best.config.engine.fmt.width
    )
    assert plan_net(best.config, LENET).cycles == best.cycles == lenet_85f.plan.cycles
    assert best.images_per_second == pytest.approx(64 * 50e6 / best.cycles)
    assert best.config.engine.fmt.width >= 12  # 8-bit formats only when asked for


def test_pareto_front_is_correct(lenet_85f) -> None:
    front = lenet_85f.pareto
    assert lenet_85f.best in front

    def fig(c) -> tuple:
        r = c.resources
        return (c.cycles, r.mults, r.bram_blocks, r.luts)

    def dominates(o, c) -> bool:
        a, b = fig(o), fig(c)
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    for c in front:
        assert c.figures() == fig(c)
        if c is not lenet_85f.best:  # the chosen design is listed even if dominated
            assert not any(dominates(o, c) for o in lenet_85f.candidates)
    figures = {fig(c) for c in front}
    for c in lenet_85f.candidates:
        assert fig(c) in figures or any(dominates(o, c) for o in front)
    plain = pareto_front(list(reversed(lenet_85f.candidates)))
    assert plain == [c for c in front if c in plain]
    assert "*" in lenet_85f.table()


def test_deterministic(lenet_85f) -> None:
    again = explore(LENET, get_target("ulx3s-85f").budget, name="LeNet")
    assert again.best.config == lenet_85f.best.config
    assert again.table() == lenet_85f.table()


def test_fixed_format_and_array() -> None:
    budget = get_target("ulx3s-25f").budget
    res = explore(LENET, budget, fmt=FixedFormat.parse("fx8"), array=(3, 5))
    e = res.best.config.engine
    assert (e.rows, e.cols, e.fmt.name) == (3, 5, "fx8.4a32")
    assert all(c.config.engine.rows == 3 for c in res.candidates)


def test_nothing_fits() -> None:
    with pytest.raises(InputError, match="no accelerator fits.*needs"):
        explore(LENET, Budget.parse("mults=4,bram_blocks=0,luts=100,mhz=50"))
    with pytest.raises(InputError, match=r"layer big, forward pass: N = .* 24 bits"):
        explore([GemmLayer("big", "conv", 4096, 8, 8, 1 << 13)], get_target("ulx3s-85f").budget)


def test_logic_bound_devices_get_smaller_shapes() -> None:
    """On the UP5K the logic runs out before the multipliers: the exploration tries the
    largest arrays that fit, so the front holds more than the single-PE design."""
    b = get_target("icebreaker").budget
    res = explore(LENET, b, name="LeNet")
    shapes = {(c.config.engine.rows, c.config.engine.cols) for c in res.candidates}
    assert {(1, 1), (2, 1)} <= shapes
    assert all(c.resources.luts <= b.luts_usable for c in res.candidates)
    assert res.best.config.engine.pes >= 2 and res.best.config.engine.acc_depth > 0


def test_step_down_is_the_fastest_front_design_that_fits_corrected() -> None:
    res = explore(LENET, get_target("icebreaker").budget, name="LeNet")
    usable = res.budget.luts_usable
    first = res.best
    # Nothing corrected: the fastest other design of the front.
    others = [c for c in res.pareto if c.config != first.config]
    assert res.step_down([first.config], {}) == min(others, key=lambda c: c.sort_key())
    # A build measured 10% more logic than estimated: that carries over to the others.
    nxt = res.step_down([first.config], {"luts": 1.1})
    assert nxt is not None and nxt in res.pareto and nxt.config != first.config
    assert nxt.resources.luts * 1.1 <= usable
    faster = [c for c in others if c.sort_key() < nxt.sort_key()]
    assert all(c.resources.luts * 1.1 > usable for c in faster)
    assert res.step_down([first.config], {"luts": 1.0 + usable}) is None  # nothing fits
    assert res.step_down([c.config for c in res.pareto], {}) is None  # all tried


def test_a_device_design_fits_with_its_stage_buffer() -> None:
    """With a device's im2col stage buffer (1,024 elements a lane of B) every candidate's
    estimate counts it and fits; on this budget the host-driven design would not."""
    small = Budget.parse("mults=16,bram_blocks=20,luts=20000,mhz=40")
    host = explore(LENET, small).best
    assert not estimate(host.config, small, im2col_stage=1024).fits(small)
    device = explore(LENET, small, im2col_stage=1024)
    for c in device.candidates:
        assert c.resources == estimate(c.config, small, im2col_stage=1024)
        assert c.resources.fits(small)
        assert c.resources.bram_detail["im2col_stage"] == c.config.engine.cols
    assert device.best.config != host.config


def test_shortlist_is_one_deepest_design_per_format_of_the_best_shapes(lenet_85f) -> None:
    short = shortlist(lenet_85f.candidates)
    ordered = sorted(lenet_85f.candidates, key=lambda c: c.sort_key())
    shapes = list(dict.fromkeys((c.config.engine.rows, c.config.engine.cols) for c in ordered))
    assert {(c.config.engine.rows, c.config.engine.cols) for c in short} == set(
        shapes[:RANK_SHAPES]
    )
    groups = {(c.config.engine.rows, c.config.engine.cols, c.config.engine.fmt) for c in short}
    assert len(groups) == len(short) > RANK_SHAPES
    for c in short:
        e = c.config.engine
        same = [
            o
            for o in lenet_85f.candidates
            if (o.config.engine.rows, o.config.engine.cols, o.config.engine.fmt)
            == (e.rows, e.cols, e.fmt)
        ]
        assert c.cycles == min(o.cycles for o in same)
        fastest = [o for o in same if o.cycles == c.cycles]
        assert e.acc_depth == max(o.config.engine.acc_depth for o in fastest)


def test_a_rank_chooses_among_the_shortlist_by_its_figures(lenet_85f) -> None:
    """A ranking whose time disagrees with the engine's cycles picks its own winner; each
    shortlisted design is ranked once; a narrower format only beyond the slack."""
    short = shortlist(lenet_85f.candidates)
    wide = short[0].config.engine.fmt
    worst_wide = max((c for c in short if c.config.engine.fmt == wide), key=lambda c: c.sort_key())
    assert worst_wide != lenet_85f.best
    seen = []

    def prefer(c) -> tuple[float, float]:  # the engine's slowest wide design is fastest here
        seen.append(c)
        return (1.0 if c == worst_wide else 2.0, 0.0)

    res = explore(LENET, lenet_85f.budget, name="LeNet", rank=prefer)
    assert res.best == worst_wide and res.best in res.pareto
    assert seen == short
    assert plan_net(res.best.config, LENET).cycles == res.plan.cycles and res.plan.config == (
        res.best.config
    )
    narrow = next(c for c in short if c.config.engine.fmt.width < wide.width)
    for factor, chosen in ((1 - FORMAT_SLACK / 2, worst_wide), (1 - 2 * FORMAT_SLACK, narrow)):

        def faster_narrow(c, factor=factor) -> tuple[float, float]:
            return (factor if c == narrow else 1.0 if c == worst_wide else 2.0, 0.0)

        assert explore(LENET, lenet_85f.budget, name="LeNet", rank=faster_narrow).best == chosen
    # Equal times: the energy decides, then the engine's key.
    cheap = short[-1]
    tie = explore(
        LENET, lenet_85f.budget, name="LeNet", rank=lambda c: (1.0, 0.0 if c == cheap else 1.0)
    )
    assert tie.best == cheap
    even = explore(LENET, lenet_85f.budget, name="LeNet", rank=lambda c: (1.0, 1.0))
    assert even.best == short[0]
