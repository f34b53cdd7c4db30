"""Cost of one minifloat PE against the fixed-point PE of the same operand width (ECP5).

Run from the repository: ``python bench/bench_fppe_cost.py [--k 1024] [--work DIR]``.

Each PE alone (its ports as the top's) is synthesised with the board flow's ``synth_ecp5``
(bench/calibrate_resources.py's :func:`synthesize`, cached under ``--work``) and ``stat``:
``e4m3 x e4m3 *`` keeps the significand product as ``*`` (``dsp_product``). Printed are
Yosys's LUT4, CCU2C (carry cells), TRELLIS_FF and MULT18X18D counts and the
logic cells nextpnr would report (``TRELLIS_COMB``, :func:`nextpnr_logic`). The accumulators
are as wide as a reduction of ``--k`` terms needs (the fixed PE: ``2 * width + log2(k) + 1``;
an MX PE's also span its scale-sum window, ``mxfp8 full`` the whole E8M0 range).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate_resources import (  # noqa: E402
    SynthError,
    flip_flops,
    nextpnr_logic,
    synthesize,
    yosys_version,
)

from barista_hw.fppe import MinifloatArith, MinifloatPE  # noqa: E402
from barista_hw.fprequant import MinifloatRequantizer  # noqa: E402
from barista_hw.minifloat import PRESETS  # noqa: E402
from barista_hw.mx import PRESETS as MX  # noqa: E402
from barista_hw.mxpe import MXPE, MXArith  # noqa: E402
from barista_hw.numfmt import FixedFormat  # noqa: E402
from barista_hw.pe import ProcessingElement  # noqa: E402
from barista_hw.requant import Requantizer  # noqa: E402

#: (label, operand bits, how to make the PE for a reduction length k)
DESIGNS = (
    ("fixed int8", 8, lambda k: ProcessingElement(FixedFormat(8, 0, 16 + k.bit_length()))),
    ("e4m3 x e4m3", 8, lambda k: MinifloatPE(MinifloatArith(PRESETS["e4m3"], PRESETS["e4m3"], k))),
    (
        "e4m3 x e4m3 *",
        8,
        lambda k: MinifloatPE(
            MinifloatArith(PRESETS["e4m3"], PRESETS["e4m3"], k), dsp_product=True
        ),
    ),
    ("e5m2 x e5m2", 8, lambda k: MinifloatPE(MinifloatArith(PRESETS["e5m2"], PRESETS["e5m2"], k))),
    ("e4m3 x e5m2", 8, lambda k: MinifloatPE(MinifloatArith(PRESETS["e4m3"], PRESETS["e5m2"], k))),
    ("fixed 6-bit", 6, lambda k: ProcessingElement(FixedFormat(6, 0, 12 + k.bit_length()))),
    ("e2m3 x e2m3", 6, lambda k: MinifloatPE(MinifloatArith(PRESETS["e2m3"], PRESETS["e2m3"], k))),
    ("e3m2 x e3m2", 6, lambda k: MinifloatPE(MinifloatArith(PRESETS["e3m2"], PRESETS["e3m2"], k))),
    ("fixed 4-bit", 4, lambda k: ProcessingElement(FixedFormat(4, 0, 8 + k.bit_length()))),
    ("e2m1 x e2m1", 4, lambda k: MinifloatPE(MinifloatArith(PRESETS["e2m1"], PRESETS["e2m1"], k))),
    # MX PEs (words: element + 8-bit scale): scale sums X_a + X_b in [-16, 16], and all of them
    ("mxfp8 w16", 16, lambda k: _mx("mxfp8_e4m3", k, 16)),
    ("mxint8 w16", 16, lambda k: _mx("mxint8", k, 16)),
    ("mxfp4 w16", 12, lambda k: _mx("mxfp4_e2m1", k, 16)),
    ("mxfp8 full", 16, lambda k: _mx("mxfp8_e4m3", k, 254)),
)


def _mx(name: str, k: int, window: int) -> MXPE:
    return MXPE(MXArith(MX[name], MX[name], k, -window, window))


def _mf_requant(a: str, out: str, k: int) -> MinifloatRequantizer:
    arith = MinifloatArith(PRESETS[a], PRESETS[a], k)
    return MinifloatRequantizer(arith.acc_width, arith.acc_exp, PRESETS[out], 1)


#: One requantiser lane: (label, how to make it for a reduction length k).
REQUANTIZERS = (
    ("fixed int8", lambda k: Requantizer(FixedFormat(8, 0, 16 + k.bit_length()), 1)),
    ("e4m3 -> e4m3", lambda k: _mf_requant("e4m3", "e4m3", k)),
    ("e5m2 -> e5m2", lambda k: _mf_requant("e5m2", "e5m2", k)),
    ("e2m1 -> e2m1", lambda k: _mf_requant("e2m1", "e2m1", k)),
)


def cells_of(component: object, work: Path, version: str) -> tuple[dict[str, int], str]:
    """Yosys's cells of ``component`` alone and the flow used: the board flow, or the purge
    flow where Yosys's abc9 asserts (as bench/calibrate_resources.py does)."""
    from amaranth.back import rtlil

    il = rtlil.convert(component, name="top", emit_src=False)
    try:
        return synthesize(il, "ecp5", "build", work, version)[0], "build"
    except SynthError as exc:
        if not exc.assertion:
            raise
        return synthesize(il, "ecp5", "purge", work, version)[0], "purge"


def row(label: str, bits: str, acc: str, cells: dict[str, int], flow: str) -> str:
    mark = " (purge flow)" if flow == "purge" else ""
    return (
        f"{label:14} {bits:>5} {acc:>5} {cells.get('LUT4', 0):5} {cells.get('CCU2C', 0):5} "
        f"{flip_flops(cells):5} {cells.get('MULT18X18D', 0):5} {nextpnr_logic(cells, 'ecp5'):5}"
        f"{mark}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=1024, help="reduction length the accumulator holds")
    ap.add_argument("--work", default="/work/scratch/fppe_cost", help="synthesis cache")
    ap.add_argument("--only", default="", help="only designs whose label contains this")
    args = ap.parse_args(argv)
    version, work = yosys_version(), Path(args.work)
    print(f"{version}; synth_ecp5 (board flow), one PE, accumulator for K = {args.k}")
    head = ("PE", "bits", "acc", "LUT4", "CCU2C", "FF", "MULT", "COMB")
    print(f"{head[0]:14} " + " ".join(f"{h:>5}" for h in head[1:]))
    for label, bits, make in DESIGNS:
        if args.only not in label:
            continue
        pe = make(args.k)
        cells, flow = cells_of(pe, work, version)
        print(row(label, str(bits), str(pe.fmt.acc_width), cells, flow))
    print("\nrequantiser, one lane (the fixed one: run-time shift; all: three rounding modes)")
    for label, make in REQUANTIZERS:
        if args.only not in label:
            continue
        cells, flow = cells_of(make(args.k), work, version)
        print(row(label, "", "", cells, flow))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
