"""``barista generate``: size and elaborate an accelerator for a Caffe net or an ONNX model.

``barista generate NET.prototxt|MODEL.onnx [--target T | --budget ...] [--format SPEC]
[--array RxC] [--preset NAME] [--data-shape name=N,C,H,W ...] [-o DIR]`` reads the net in
the TRAIN phase (an ONNX model: :mod:`barista.onnx_model`), plans the three GEMM passes of
every Convolution/InnerProduct layer, runs the design-space exploration (or takes a
preset) and writes ``accelerator.v``, ``manifest.json`` and ``summary.txt`` into ``DIR``
(default ``rtl_out/<net name>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from barista_base.errors import InputError

from .args import add_data_shape_argument, parse_data_shapes

if TYPE_CHECKING:
    from caffe_bridge.net import Net

NAME = "generate"
HELP = "size a systolic-array accelerator for a net and write its Verilog and manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``barista generate``."""
    from barista_hw.presets import PRESETS
    from barista_hw.targets import DEFAULT_TARGET, TARGETS

    parser.add_argument(
        "net",
        metavar="NET.prototxt",
        help="the net (its TRAIN phase is used), or an ONNX model (.onnx)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default=None,
        help=f"board/device whose resources bound the design (default {DEFAULT_TARGET})",
    )
    where.add_argument(
        "--budget",
        metavar="SPEC",
        help="explicit budget, e.g. mults=100,bram_kbits=2000,luts=40000,mhz=80",
    )
    parser.add_argument(
        "--format",
        metavar="SPEC",
        help="fix the number format: fx<width>[.<frac>][a<acc>] or a preset, or a minifloat "
        "engine (e4m3, e5m2, e2m3xe3m2_e2m1k1024) or an MX engine (mxfp8_e4m3, "
        "mxint8k4096_wm64_16; docs/formats.md)",
    )
    parser.add_argument("--array", metavar="RxC", help="fix the array shape, e.g. 8x8")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="take a named design instead of exploring"
    )
    add_data_shape_argument(parser)
    parser.add_argument(
        "-o", "--out", metavar="DIR", help="output directory (default rtl_out/<net name>)"
    )


def load_layers(path: str, data_shapes: dict[str, tuple[int, ...]]) -> tuple[str, list]:
    """(net name, GEMM layers) of the net at ``path``: a prototxt in the TRAIN phase, or an
    ONNX model (``.onnx``)."""
    from barista.backends.plan import gemm_layers

    if Path(path).suffix.lower() == ".onnx":
        from ..onnx_model import load_layers as onnx_layers

        return onnx_layers(path, data_shapes)

    net = train_net_at(path, data_shapes)
    return net.name or Path(path).stem, gemm_layers(net)


def train_net_at(path: str, data_shapes: dict[str, tuple[int, ...]]) -> Net:
    """The net at ``path`` in the TRAIN phase (``data_shapes``: its data tops' shapes, when
    its data is not at hand)."""
    from caffe_bridge.net import Net

    if not Path(path).is_file():
        raise InputError(f"{path}: no such net file")
    kwargs = {"data_shapes": data_shapes} if data_shapes else {}
    try:
        net = Net(path, "TRAIN", **kwargs)
    except InputError as exc:
        if data_shapes or "source" not in str(exc):
            raise
        raise InputError(
            f"{exc}; without the data, give the shapes of the data layer's tops, e.g. "
            "--data-shape data=64,1,28,28 --data-shape label=64"
        ) from None
    return net


def run(args: argparse.Namespace) -> int:
    """Generate and print the summary."""
    from barista_hw.generate import generate, module_name
    from barista_hw.targets import DEFAULT_TARGET, Budget
    from boards.traffic import describe

    from ..manifest import write_rtl_dir

    target = Budget.parse(args.budget) if args.budget else (args.target or DEFAULT_TARGET)
    name, layers = load_layers(args.net, parse_data_shapes(args.data_shape))
    out = Path(args.out) if args.out else Path("rtl_out") / module_name(name)
    design = generate(
        layers, target=target, fmt=args.format, array=args.array, preset=args.preset, name=name
    )
    manifest = write_rtl_dir(design, out)
    if not args.preset:
        print(_pareto(manifest.design["dse"]))
    print(design.summary, end="")
    print(describe(design.plan))
    print(f"wrote {out}/accelerator.v, manifest.json, summary.txt")
    return 0


def _pareto(dse: dict) -> str:
    rows = dse["pareto"]
    lines = [
        f"Pareto front ({len(rows)} of {dse['evaluated']} designs):",
        f"  {'design':36} {'mults':>6} {'BRAM':>5} {'LUTs':>7} {'cycles':>12} {'img/s':>9}",
    ]
    for r in rows:
        mark = "*" if r["chosen"] else " "
        lines.append(
            f"{mark} {r['design']:36} {r['mults']:>6} {r['bram_blocks']:>5} "
            f"{r['luts']:>7} {r['cycles']:>12} {r['images_per_second']:>9.1f}"
        )
    return "\n".join(lines) + "\n"
