"""Elaboration to Verilog: one place that names top modules and writes files atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from .config import EngineConfig, Pass
from .engine import ENGINES


def to_verilog(component: wiring.Component, name: str) -> str:
    """Verilog text of ``component`` as top module ``name`` (ports from its signature)."""
    return verilog.convert(component, name=name, emit_src=False)


def engine_module_name(kind: Pass, cfg: EngineConfig) -> str:
    """A module name that says what was built, e.g. ``forward_8x8_fx16_8a48``."""
    fmt = cfg.fmt.name.replace(".", "_")
    return f"{kind.value}_{cfg.rows}x{cfg.cols}_{fmt}"


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


def write_engine(kind: Pass, cfg: EngineConfig, out_dir: Path) -> tuple[Path, str]:
    """Elaborate the engine of ``kind`` into ``out_dir/<name>.v``; returns (path, top name)."""
    name = engine_module_name(kind, cfg)
    path = Path(out_dir) / f"{name}.v"
    write_text_atomic(path, to_verilog(ENGINES[kind](cfg), name))
    return path, name
