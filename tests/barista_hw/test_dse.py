"""Design-space exploration: budgets, Pareto front, determinism."""

import pytest

from barista_base.errors import InputError
from barista_hw.dse import explore, pareto_front
from barista_hw.numfmt import FixedFormat
from barista_hw.plan import GemmLayer, plan_net
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
    for c in lenet_85f.candidates:
        r = c.resources
        assert r.mults <= b.mults and r.bram_blocks <= b.bram_blocks and r.luts <= b.luts
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

    def dominates(o, c) -> bool:
        a = (o.cycles, o.resources.mults, o.resources.bram_blocks)
        b = (c.cycles, c.resources.mults, c.resources.bram_blocks)
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    for c in front:
        if c is not lenet_85f.best:  # the chosen design is listed even if dominated
            assert not any(dominates(o, c) for o in lenet_85f.candidates)
    figures = {(c.cycles, c.resources.mults, c.resources.bram_blocks) for c in front}
    for c in lenet_85f.candidates:
        fig = (c.cycles, c.resources.mults, c.resources.bram_blocks)
        assert fig in figures or any(dominates(o, c) for o in front)
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
