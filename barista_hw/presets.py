"""Named :class:`~barista_hw.config.AcceleratorConfig` presets (``barista generate --preset``).

``tiny`` and ``small`` are for tests and quick looks; one preset per target is a
sensible fixed design for that device (each fits its target's budget by the
estimate of :mod:`barista_hw.resources`, which the tests check). The design-space
exploration usually finds a better one for a given network.
"""

from __future__ import annotations

from barista_base.errors import InputError

from .config import AcceleratorConfig, EngineConfig
from .numfmt import PRESETS as FORMATS


def _cfg(
    name: str,
    rows: int,
    cols: int,
    fmt: str,
    depth: int,
    acc_depth: int,
    mhz: float,
    target: str = "generic",
) -> AcceleratorConfig:
    engine = EngineConfig(rows, cols, FORMATS[fmt], acc_depth=acc_depth)
    return AcceleratorConfig(engine, depth, depth, mhz, name, target)


PRESETS: dict[str, AcceleratorConfig] = {
    c.name: c
    for c in (
        _cfg("tiny", 2, 2, "fx8", 64, 8, 50.0),
        _cfg("small", 4, 4, "fx16", 512, 64, 50.0),
        _cfg("ulx3s-85f", 12, 12, "fx16", 1024, 96, 50.0, "ulx3s-85f"),
        _cfg("ulx3s-45f", 8, 8, "fx16", 1024, 64, 50.0, "ulx3s-45f"),
        _cfg("ulx3s-25f", 5, 5, "fx16", 1024, 40, 50.0, "ulx3s-25f"),
        # 2x4 fx16 did not fit the UP5K: Yosys alone mapped it (with the link) to 5647 SB_LUT4;
        # 4x1 fx16 reached 99% of its logic cells once the ECP5 timing work (registered
        # buffer reads, replicated registers) had grown the fixed logic.
        _cfg("icebreaker", 2, 1, "fx16", 256, 0, 24.0, "icebreaker"),
    )
}


def get_preset(name: str) -> AcceleratorConfig:
    """The preset called ``name``, or an error listing the known ones."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise InputError(f"unknown preset {name!r} (use {', '.join(PRESETS)})")
    return PRESETS[key]
