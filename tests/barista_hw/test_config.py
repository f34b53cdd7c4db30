"""Configurations: the default array and format, and presets derived by keyword."""

import pytest

from barista_base.errors import InputError
from barista_hw.config import (
    DEFAULT_ACCELERATOR,
    DEFAULT_ARRAY,
    DEFAULT_COLS,
    DEFAULT_ROWS,
    AcceleratorConfig,
    EngineConfig,
)
from barista_hw.numfmt import DEFAULT_FORMAT, FixedFormat


def test_defaults_are_the_named_ones() -> None:
    e = EngineConfig()
    assert (e.rows, e.cols) == (DEFAULT_ROWS, DEFAULT_COLS)
    assert EngineConfig.parse_array(DEFAULT_ARRAY) == (DEFAULT_ROWS, DEFAULT_COLS)
    assert e.fmt == DEFAULT_FORMAT
    assert DEFAULT_ACCELERATOR == AcceleratorConfig()


def test_derive_changes_engine_and_accelerator_fields_by_keyword() -> None:
    fmt = FixedFormat(8, 4, 32)
    c = DEFAULT_ACCELERATOR.derive(name="x", rows=2, fmt=fmt, acc_depth=8, depth=64)
    assert (c.name, c.engine.rows, c.engine.cols, c.engine.fmt) == ("x", 2, DEFAULT_COLS, fmt)
    assert (c.engine.acc_depth, c.a_depth, c.b_depth) == (8, 64, 64)  # depth sets both
    assert c.clock_mhz == DEFAULT_ACCELERATOR.clock_mhz and c.target == DEFAULT_ACCELERATOR.target
    assert DEFAULT_ACCELERATOR.derive() == DEFAULT_ACCELERATOR
    with pytest.raises(InputError, match="acc_depth"):
        DEFAULT_ACCELERATOR.derive(rows=2, acc_depth=1)
    assert DEFAULT_ACCELERATOR.derive(b_depth=8).a_depth == DEFAULT_ACCELERATOR.a_depth
    with pytest.raises(TypeError):
        DEFAULT_ACCELERATOR.derive(colums=3)
    with pytest.raises(TypeError, match="not both"):
        DEFAULT_ACCELERATOR.derive(depth=64, a_depth=32)
