"""sim.cases: the operands of each pass mapped onto the engine's A @ B."""

from __future__ import annotations

import numpy as np

from barista_hw.config import EngineConfig, Pass
from barista_hw.numfmt import FixedFormat, Rounding
from sim.cases import pass_case


def test_pass_case_maps_each_pass_onto_a_at_b() -> None:
    """The streamed operands multiply (exactly, before requantisation) to the pass's result."""
    cfg = EngineConfig(2, 2, FixedFormat(8, 4, 40))
    for kind, images in ((Pass.FORWARD, 1), (Pass.BACKWARD_DATA, 1), (Pass.WEIGHT_GRAD, 3)):
        c = pass_case(kind, cfg, 3, 4, 5, images=images, shift=0, rounding=Rounding.FLOOR, seed=2)
        assert c.a.shape == (3, 4 * images) and c.b.shape == (4 * images, 5)
        exact = c.a @ c.b
        np.testing.assert_array_equal(c.expected, np.clip(exact, -128, 127))
