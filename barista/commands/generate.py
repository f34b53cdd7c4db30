"""``barista generate``: size and elaborate an accelerator for a Caffe net or an ONNX model.

``barista generate NET.prototxt|MODEL.onnx [--target T | --budget ...] [--format SPEC]
[--array RxC] [--preset NAME] [--data-shape name=N,C,H,W ...] [-o DIR]`` reads the net in
the TRAIN phase (an ONNX model: :mod:`barista.onnx_model`), plans the three GEMM passes of
every Convolution/InnerProduct layer, runs the design-space exploration (or takes a
preset) and writes ``accelerator.v``, ``manifest.json`` and ``summary.txt`` into ``DIR``
(default ``rtl_out/<net name>``).

``barista generate NET.prototxt --device [--target T] [--batch N] [--data-shape ...] [-o DIR]``
writes the device accelerator instead (:mod:`barista.device_generate`): the RTL device
top sized for the net's training program, ``device.v``, ``device_manifest.json``,
``program.bin`` and ``program.txt`` into ``DIR`` (default ``rtl_out/<net name>_device``),
all or nothing. ``--batch`` sets the first dimension of the data layers' tops.
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
        "--device",
        action="store_true",
        help="write the device accelerator (docs/device.md: the RTL top, its manifest and "
        "the net's training program) instead of the host-driven one",
    )
    parser.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="the batch: the first dimension of the data layers' tops (a Caffe net)",
    )
    parser.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        help="output directory (default rtl_out/<net name>, with --device "
        "rtl_out/<net name>_device)",
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


def train_net_at(
    path: str, data_shapes: dict[str, tuple[int, ...]], batch: int | None = None
) -> Net:
    """The net at ``path`` in the TRAIN phase (``data_shapes``: its data tops' shapes, when
    its data is not at hand; ``batch``: the first dimension of every data top)."""
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
    if batch is None:
        return net
    if batch < 1:
        raise InputError(f"--batch {batch}: the batch must be at least 1")
    tops = [t for layer, b in net.bottom_names.items() if not b for t in net.top_names[layer]]
    shapes = {t: (batch, *net.blobs[t].shape[1:]) for t in tops}
    return Net(path, "TRAIN", data_shapes=shapes)


def run(args: argparse.Namespace) -> int:
    """Generate and print the summary."""
    if args.device:
        return run_device(args)
    from barista.backends.plan import gemm_layers
    from barista_hw.generate import generate, module_name
    from barista_hw.targets import DEFAULT_TARGET, Budget
    from boards.traffic import describe

    from ..manifest import write_rtl_dir

    target = Budget.parse(args.budget) if args.budget else (args.target or DEFAULT_TARGET)
    if args.batch is not None:
        if Path(args.net).suffix.lower() == ".onnx":
            raise InputError("--batch applies to a Caffe net; give an ONNX model --data-shape")
        net = train_net_at(args.net, parse_data_shapes(args.data_shape), args.batch)
        name, layers = net.name or Path(args.net).stem, gemm_layers(net)
    else:
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


def run_device(args: argparse.Namespace) -> int:
    """``--device``: generate the device accelerator, write its directory, say what it is."""
    from barista.device_generate import DEVICE_MANIFEST, generate_device, write_device_dir
    from barista_hw.generate import module_name

    from ..manifest import check_replaceable

    fixed = [f"--{k}" for k in ("budget", "format", "array", "preset") if getattr(args, k)]
    if fixed:
        raise InputError(
            f"--device builds the RTL device top's one design (fx16, 8 rows): "
            f"{', '.join(fixed)} do not apply"
        )
    if Path(args.net).suffix.lower() == ".onnx":
        raise InputError(f"{args.net}: --device takes a Caffe net (.prototxt)")
    net = train_net_at(args.net, parse_data_shapes(args.data_shape), args.batch)
    name = net.name or Path(args.net).stem
    out = Path(args.out) if args.out else Path("rtl_out") / f"{module_name(name)}_device"
    check_replaceable(out, DEVICE_MANIFEST)  # before minutes of elaboration
    dd = generate_device(net, target=args.target, name=name)
    m = write_device_dir(dd, out)
    d, p, r = m["design"], m["program"], m["resources"]
    print(
        f"{dd.top}: {d['rows']}x{d['cols']} {d['format']} engine, {d['vector_lanes']} vector "
        f"lanes, decoder of {dd.tensors} tensors and {dd.registers} host registers, on "
        f"{m['target']}"
    )
    print(
        f"program: batch {p['batch']}, {p['instructions']} instructions, DRAM "
        f"{m['memory']['dram_bytes']:,} of {m['memory']['dram_size_bytes']:,} bytes"
    )
    b = r["budget"]
    print(
        f"estimate: {r['mults']}/{b['mults']} {b['mult_kind']}, {r['bram_blocks']}/"
        f"{b['bram_blocks']} {b['bram_kind']}, ~{r['luts']}/{b['luts']} {b['lut_kind']}, "
        f"~{r['ffs']} FFs" + ("" if r["fits"] else f": does not fit {b['name']}")
    )
    print(f"wrote {out}/device.v, device_manifest.json, program.bin, program.txt")
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
