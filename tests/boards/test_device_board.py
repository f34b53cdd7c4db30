"""The whole device board simulated (``BARISTA_FULL=1``): the host class on the UART line of
the Verilated board core (link, device, SDRAM controller), the SDRAM chip model on its
pins; one training iteration of the test net, compared bit for bit with the model (the
DRAM's first 64 words loaded and read back over the line, the rest preloaded into and
read from the chip model)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from barista_hw.device.rtl.decode import decoder_sizes
from boards import device_protocol as D
from sim import device_cases as C

FULL = os.environ.get("BARISTA_FULL") == "1"


@pytest.mark.skipif(
    not FULL, reason="a Verilator build of the device and ~2M cycles: BARISTA_FULL=1"
)
def test_one_iteration_through_the_board_matches_the_model() -> None:
    from boards.device_sim import build, run

    case = C.iteration(0.0, 1)
    sizes = decoder_sizes(C.program())
    geo = D.DeviceGeometry.of(C.CONFIG)
    assert sum(len(w) for _, w in case.host_in) <= geo.host_in_fifo  # all queued at once
    unit = build(C.CONFIG, sizes["tensors"], sizes["registers"], geo)
    out = run(unit, C.CONFIG, case, **sizes, geo=geo, iterations=1)
    assert out["violation"] is None
    after = case.after & 0xFFFF
    np.testing.assert_array_equal(np.array(out["memory"]), after)
    assert out["linked_memory"] == list(after[:64])  # read back over the line
    assert out["host_out"] == [w & 0xFFFF for w in case.host_out]
    assert out["status"]["scales"] == 1
