"""The device accelerator's ULX3S board top, built: ``python bench/bench_board.py --device``.

Compiles LeNet's training program for the device top at ``--batch`` (default 2) as
``barista generate --device`` does (:func:`barista.device_top.compile_for_top`), builds
:class:`boards.device_board.DeviceBoardTop` for ULX3S 85F with ``--mhz`` asked of nextpnr
(default :data:`boards.device_board.DEVICE_MHZ`; the issue's goal is :data:`GOAL_MHZ`)
and prints, as text and JSON (``build/bench_device_board.json``): Fmax (post-route, or
nextpnr's post-placement estimate when ``--timeout`` stopped the build while routing,
labelled as such), each cell type used / available beside the estimate of
:func:`barista.device_top.top_resources`, and the build time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

GOAL_MHZ = 150.0
#: nextpnr's cell types -> the estimate's resources.
CELLS = {
    "TRELLIS_COMB": "luts",
    "MULT18X18D": "mults",
    "DP16KD": "bram_blocks",
    "TRELLIS_FF": "ffs",
}


def device_main(args: argparse.Namespace, lenet: Path) -> int:
    """Build and report (the module docstring)."""
    from barista.commands.generate import train_net_at
    from barista.device_top import compile_for_top, top_resources
    from barista_hw.device.rtl.decode import decoder_sizes
    from boards.build import build_device_board
    from boards.device_board import DEVICE_MHZ

    batch = args.batch or 2
    mhz = args.mhz or DEVICE_MHZ
    shapes = {"data": (batch, 1, 28, 28), "label": (batch,)}
    net = train_net_at(str(lenet), shapes, batch)
    dc = compile_for_top(net, target="ulx3s-85f")
    sizes = decoder_sizes(dc.compiled.program)
    est = top_resources(dc.config, dc.compiled.program)
    e = dc.config.accelerator.engine
    print(
        f"LeNet batch {batch} device top on ULX3S 85F: {e.rows}x{e.cols} {e.fmt.name}, "
        f"{dc.config.scratchpads.vector_lanes} vector lane(s), decoder {sizes}, {mhz:g} MHz asked"
    )
    t0 = time.perf_counter()
    out = Path(args.out).with_name("bench_device_board")
    report = build_device_board(
        dc.config, "ulx3s-85f", out=out, mhz=mhz, timeout=args.timeout, **sizes
    )
    wall = time.perf_counter() - t0
    print(report.summary())
    fmax = min((f["achieved_mhz"] for f in report.fmax.values()), default=0.0)
    routed = bool(fmax)
    if not routed:
        fmax = min(report.fmax_placed.values(), default=0.0)
    cells = {}
    for cell, key in CELLS.items():
        u = report.utilisation.get(cell, {})
        cells[cell] = {
            "used": u.get("used"),
            "available": u.get("available"),
            "estimate": getattr(est, key),
        }
        c = cells[cell]
        print(f"  {cell:<13} used {c['used']} / {c['available']}, estimate {c['estimate']}")
    result = {
        "status": report.status,
        "batch": batch,
        "design": f"{e.rows}x{e.cols} {e.fmt.name}",
        "decoder": sizes,
        "asked_mhz": mhz,
        "fmax_mhz": fmax,
        "fmax_kind": "post-route" if routed else "post-placement estimate (not routed)",
        "goal_mhz": GOAL_MHZ,
        "cells": cells,
        "build_seconds": report.build_seconds,
        "wall_seconds": round(wall, 1),
        "cached": report.cached,
        "critical_path": report.critical_path,
        "messages": report.messages,
    }
    path = Path(__file__).resolve().parents[1] / "build" / "bench_device_board.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    verdict = "met" if fmax >= GOAL_MHZ else "NOT met"
    print(f"Fmax {fmax:.1f} MHz ({result['fmax_kind']}), goal >= {GOAL_MHZ:g} MHz: {verdict}")
    return 0
