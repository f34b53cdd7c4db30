"""Named :class:`~barista_hw.config.AcceleratorConfig` presets (``barista generate --preset``).

Every preset is derived by keyword from
:data:`~barista_hw.config.DEFAULT_ACCELERATOR` (:meth:`AcceleratorConfig.derive`),
so each says only how it differs. ``tiny`` and ``small`` are for tests and quick
looks; each target's preset is part of its record in :data:`barista_hw.targets.TARGETS`,
a sensible fixed design for that device (it fits the target's budget by the estimate
of :mod:`barista_hw.resources` and runs every pass of the project's LeNet, which the
tests check). The design-space exploration usually finds a better one for a given
network.
"""

from __future__ import annotations

from barista_base.errors import InputError

from .config import DEFAULT_ACCELERATOR, AcceleratorConfig
from .numfmt import PRESETS as FORMATS
from .targets import TARGETS

TINY = DEFAULT_ACCELERATOR.derive(
    name="tiny", rows=2, cols=2, fmt=FORMATS["fx8"], acc_depth=8, depth=64
)
SMALL = DEFAULT_ACCELERATOR.derive(name="small", depth=512)

#: Every preset by name: the two above, then one per target.
PRESETS: dict[str, AcceleratorConfig] = {
    c.name: c for c in (TINY, SMALL, *(t.preset for t in TARGETS.values()))
}


def get_preset(name: str) -> AcceleratorConfig:
    """The preset called ``name``, or an error listing the known ones."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise InputError(f"unknown preset {name!r} (use {', '.join(PRESETS)})")
    return PRESETS[key]
