"""Presets: derived by keyword from the default accelerator, with the values they always had."""

from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.numfmt import PRESETS as FORMATS
from barista_hw.presets import PRESETS


def test_preset_values() -> None:
    got = {
        name: (
            c.engine.rows,
            c.engine.cols,
            c.engine.fmt,
            c.a_depth,
            c.b_depth,
            c.engine.acc_depth,
            c.clock_mhz,
            c.target,
        )
        for name, c in PRESETS.items()
    }
    fx8, fx16 = FORMATS["fx8"], FORMATS["fx16"]
    assert got == {
        "tiny": (2, 2, fx8, 64, 64, 8, 50.0, "generic"),
        "small": (4, 4, fx16, 512, 512, 64, 50.0, "generic"),
        "ulx3s-85f": (12, 12, fx16, 1024, 1024, 96, 50.0, "ulx3s-85f"),
        "ulx3s-45f": (8, 8, fx16, 1024, 1024, 64, 50.0, "ulx3s-45f"),
        "ulx3s-25f": (5, 5, fx16, 1024, 1024, 40, 50.0, "ulx3s-25f"),
        "icebreaker": (2, 1, fx16, 1024, 1024, 32, 24.0, "icebreaker"),
    }
    assert list(PRESETS) == list(got)  # the order error messages list them in


def test_presets_differ_from_the_base_only_where_they_say() -> None:
    for name, c in PRESETS.items():
        assert c.name == name
        assert c.engine.dim_bits == DEFAULT_ACCELERATOR.engine.dim_bits
        assert c.engine.dataflow == DEFAULT_ACCELERATOR.engine.dataflow
