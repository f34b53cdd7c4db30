"""Elaboration to Verilog: one place that names top modules and writes files atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from .config import EngineConfig, Pass
from .engine import ENGINES


@dataclass(frozen=True)
class Family:
    """Stands in for an Amaranth platform of an FPGA ``family`` (e.g. ``"ecp5"``).

    Elaborating with it gives the RTL a board build of that family gets (its vendor
    DSP form, see :mod:`barista_hw.dsp`) without the board, so it can be simulated.
    """

    family: str


def to_verilog(component: wiring.Component, name: str, platform: object = None) -> str:
    """Verilog text of ``component`` as top module ``name`` (ports from its signature)."""
    return verilog.convert(component, name=name, platform=platform, emit_src=False)


def engine_module_name(kind: Pass, cfg: EngineConfig, family: str | None = None) -> str:
    """A module name that says what was built, e.g. ``forward_8x8_fx16_8a48[_ecp5]``."""
    fmt = cfg.fmt.name.replace(".", "_")
    return f"{kind.value}_{cfg.rows}x{cfg.cols}_{fmt}" + (f"_{family}" if family else "")


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_engine(
    kind: Pass, cfg: EngineConfig, out_dir: Path, family: str | None = None
) -> tuple[Path, str]:
    """Elaborate the engine of ``kind`` into ``out_dir/<name>.v``; returns (path, top name).

    ``family``: elaborate as for a board of that FPGA family (its vendor primitives).
    """
    name = engine_module_name(kind, cfg, family)
    path = Path(out_dir) / f"{name}.v"
    platform = Family(family) if family else None
    write_text_atomic(path, to_verilog(ENGINES[kind](cfg), name, platform))
    return path, name
