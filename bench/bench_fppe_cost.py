"""Cost of one minifloat PE against the fixed-point PE of the same operand width (ECP5).

Run from the repository: ``python bench/bench_fppe_cost.py [--k 1024] [--work DIR]``.

Each PE alone (its ports as the top's) is synthesised with the board flow's ``synth_ecp5``
(bench/calibrate_resources.py's :func:`synthesize`, cached under ``--work``) and ``stat``:
``e4m3 x e4m3 *`` keeps the significand product as ``*`` (``dsp_product``). Printed are
Yosys's LUT4, CCU2C (carry cells), TRELLIS_FF and MULT18X18D counts and the
logic cells nextpnr would report (``TRELLIS_COMB``, :func:`nextpnr_logic`). The accumulators
are as wide as a reduction of ``--k`` terms needs (the fixed PE: ``2 * width + log2(k) + 1``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate_resources import flip_flops, nextpnr_logic, synthesize, yosys_version  # noqa: E402

from barista_hw.fppe import MinifloatArith, MinifloatPE  # noqa: E402
from barista_hw.minifloat import PRESETS  # noqa: E402
from barista_hw.numfmt import FixedFormat  # noqa: E402
from barista_hw.pe import ProcessingElement  # noqa: E402

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
)


def main(argv: list[str] | None = None) -> int:
    from amaranth.back import rtlil

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=1024, help="reduction length the accumulator holds")
    ap.add_argument("--work", default="/work/scratch/fppe_cost", help="synthesis cache")
    ap.add_argument("--only", default="", help="only designs whose label contains this")
    args = ap.parse_args(argv)
    version = yosys_version()
    print(f"{version}; synth_ecp5 (board flow), one PE, accumulator for K = {args.k}")
    head = ("PE", "bits", "acc", "LUT4", "CCU2C", "FF", "MULT", "COMB")
    print(f"{head[0]:14} " + " ".join(f"{h:>5}" for h in head[1:]))
    for label, bits, make in DESIGNS:
        if args.only not in label:
            continue
        pe = make(args.k)
        acc = pe.fmt.acc_width
        il = rtlil.convert(pe, name="top", emit_src=False)
        cells, _ = synthesize(il, "ecp5", "build", Path(args.work), version)
        print(
            f"{label:14} {bits:5} {acc:5} {cells.get('LUT4', 0):5} {cells.get('CCU2C', 0):5} "
            f"{flip_flops(cells):5} {cells.get('MULT18X18D', 0):5} {nextpnr_logic(cells, 'ecp5'):5}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
