"""``verilator --lint-only -Wall`` on generated Verilog, with a short list of named waivers.

Amaranth writes Verilog through Yosys (``write_verilog``), whose output trips
five of Verilator's style checks by construction, and the vendor primitives
of a board form one more. Each is waived by name, with the reason it is benign
for this kind of Verilog; anything else is reported. The same waivers (as a
Verilator control file) let the simulation builds of :mod:`sim.runner` run without
``-Wno-fatal``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from .tools import check_simulator, simulator_env

#: Verilator warning -> why it is benign in Yosys-written Verilog.
WAIVERS: dict[str, str] = {
    "DECLFILENAME": (
        "Yosys writes the whole hierarchy into one file, submodules named "
        "'<top>.<path>', so module and file names cannot match"
    ),
    "PROCASSINIT": (
        "registers are declared with their reset value as initial value "
        "('reg x = 0;') and then assigned in always blocks: the FPGA power-up value"
    ),
    "WIDTHEXPAND": (
        "Yosys relies on Verilog's context-determined widths (operands extended "
        "to the width of the expression); the widths were fixed by Amaranth's typed IR"
    ),
    "WIDTHTRUNC": (
        "as WIDTHEXPAND: implicit truncation to the assignment width is the "
        "intended modular result (e.g. the wrapping accumulator)"
    ),
    "UNUSEDSIGNAL": (
        "Amaranth keeps every named signal and every field/element view of a "
        "layout ('cmd.rounding', 'row0[3]') as a wire, Yosys keeps the unused carry "
        "bits of arithmetic and ports left idle by edge instances (last PE column): "
        "unused by design and trimmed by synthesis"
    ),
    "PINMISSING": (
        "a vendor primitive's ports a form leaves open on purpose: a MULT18X18D's "
        "B shift chain (SRIB/SROB) where b comes from or goes to the fabric; tied "
        "off, nextpnr would have to route a constant to the chain's dedicated pins"
    ),
}


def waiver_control_text() -> str:
    """The waivers as a Verilator control (``.vlt``) file."""
    lines = ["`verilator_config"]
    for rule, reason in WAIVERS.items():
        lines.append(f"// {rule}: {reason}")
        lines.append(f"lint_off -rule {rule}")
    return "\n".join(lines) + "\n"


def lint(verilog_path: Path | str, top: str) -> list[str]:
    """Warnings (and errors) left after the waivers, one line each; empty when clean."""
    check_simulator("verilator")
    verilog_path = Path(verilog_path)
    if not verilog_path.is_file():
        raise FileNotFoundError(f"no Verilog file {verilog_path}")
    with tempfile.TemporaryDirectory(prefix="barista-lint-") as tmp:
        control = Path(tmp) / "waivers.vlt"
        control.write_text(waiver_control_text())
        with simulator_env("verilator"):
            proc = subprocess.run(
                [
                    "verilator",
                    "--lint-only",
                    "-Wall",
                    "--top-module",
                    top,
                    str(control),
                    str(verilog_path),
                ],
                capture_output=True,
                text=True,
            )
    found = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.startswith(("%Warning", "%Error")) and not line.startswith("%Error: Exiting due to")
    ]
    if proc.returncode != 0 and not found:
        raise RuntimeError(
            f"verilator --lint-only failed ({proc.returncode}): {proc.stderr[-500:]}"
        )
    return found
