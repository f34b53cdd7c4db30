"""Boards are the target registry's records; the host link's defaults are defined once."""

import inspect

from barista_hw.resources import estimate, memory_blocks
from barista_hw.targets import LINK_RESULT_DEPTH, TARGETS
from boards.build import build_board
from boards.floorplan import DSP_GRIDS
from boards.host import BoardLink
from boards.link import HostLink, LinkedAccelerator
from boards.platforms import BOARDS, BoardTop
from boards.protocol import DEFAULT_BAUD, LinkGeometry
from boards.sim_board import SimulatedBoard, build_bridge


def test_one_board_per_target_from_its_record() -> None:
    assert list(BOARDS) == list(TARGETS)
    for name, board in BOARDS.items():
        t = TARGETS[name]
        assert board.target is t and board.name == name
        assert (board.platform, board.family, board.clk, board.clk_mhz) == (
            t.platform,
            t.family,
            t.clk,
            t.clk_mhz,
        )
        assert (board.synth_opts, board.pnr_opts, board.bitstream) == (
            t.synth_opts,
            t.pnr_opts,
            t.bitstream,
        )
        assert board.dsp_grid is DSP_GRIDS.get(t.device)
        assert not board.b_chain


def _default(fn: object, name: str) -> object:
    return inspect.signature(fn).parameters[name].default  # type: ignore[arg-type]


def test_link_defaults_are_the_ones_the_resource_model_counts() -> None:
    for fn in (LinkGeometry.from_config, HostLink, LinkedAccelerator, SimulatedBoard, BoardTop):
        assert _default(fn, "result_depth") == LINK_RESULT_DEPTH, fn
    for fn in (build_board, build_bridge):
        assert _default(fn, "result_depth") == LINK_RESULT_DEPTH, fn
    for fn, name in ((BoardTop, "baud"), (build_board, "baud"), (BoardLink, "baudrate")):
        assert _default(fn, name) == DEFAULT_BAUD, fn
    t = TARGETS["ulx3s-45f"]
    ring = memory_blocks(LINK_RESULT_DEPTH, t.preset.engine.cols * 16, t.budget.bram_aspects)
    assert estimate(t.preset, t.budget).bram_detail["link"] == ring > 0
