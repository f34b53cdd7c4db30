"""``barista info``: the layers of a net with their shapes, parameters and MACs.

MACs (multiply-accumulates) are counted for the GEMM layers only, for one
forward pass of the whole batch: a Convolution computes ``top elements x K``
with ``K = C_in/group x kernel_h x kernel_w``; a Deconvolution, whose forward is a
convolution's backward-data GEMM, ``bottom elements x num_output/group x kernel_h x
kernel_w``; an InnerProduct computes ``top elements x K`` with ``K`` its input
dimension.  Every other layer counts 0.
Parameters count the elements of the blobs a layer owns (a blob shared by name
is counted at its owner only).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from caffe_bridge.net import Net

from .args import add_net_arguments, parse_data_shapes

NAME = "info"
HELP = "show a net's layers, top shapes, parameter counts and MACs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("net", metavar="NET.prototxt", help="net definition")
    add_net_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def layer_macs(net: Net, i: int) -> int:
    """Forward multiply-accumulates of layer ``i`` for the whole batch (0 without a GEMM)."""
    layer = net.layers[i]
    tops = net.layer_tops(i)
    if not tops or not layer.blobs:
        return 0
    if layer.type_name == "Convolution":
        k = layer.blobs[0].count_range(1)  # C_in/group * kh * kw
        return int(tops[0].count) * int(k)
    if layer.type_name == "Deconvolution":
        k = layer.blobs[0].count_range(1)  # num_output/group * kh * kw
        return int(net.layer_bottoms(i)[0].count) * int(k)
    if layer.type_name == "InnerProduct":
        bottom = net.layer_bottoms(i)[0]
        axis = bottom.canonical_axis(layer.param.inner_product_param.axis)
        return int(tops[0].count) * int(bottom.count_range(axis))
    return 0


def describe(net: Net) -> dict[str, Any]:
    """The JSON form: ``{"name", "layers": [{name, type, bottoms, tops, top_shapes,
    params, macs}]}``."""
    owned = [0] * len(net.layers)
    for owner, (layer_id, p) in zip(net.param_owners, net.param_layer_indices, strict=True):
        if owner < 0:
            owned[layer_id] += net.layers[layer_id].blobs[p].count
    layers = []
    bottoms, tops = net.bottom_names, net.top_names
    for i, (name, layer) in enumerate(zip(net.layer_names, net.layers, strict=True)):
        layers.append(
            {
                "name": name,
                "type": layer.type_name,
                "bottoms": bottoms[name],
                "tops": tops[name],
                "top_shapes": [list(t.shape) for t in net.layer_tops(i)],
                "params": owned[i],
                "macs": layer_macs(net, i),
            }
        )
    return {"name": net.name, "layers": layers}


def _shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape) if shape else "()"


def format_table(info: dict[str, Any]) -> str:
    rows = [("layer", "type", "bottoms -> tops", "top shapes", "params", "MACs")]
    for lay in info["layers"]:
        rows.append(
            (
                lay["name"],
                lay["type"],
                f"{','.join(lay['bottoms']) or '-'} -> {','.join(lay['tops']) or '-'}",
                " ".join(_shape(s) for s in lay["top_shapes"]) or "-",
                f"{lay['params']:,}",
                f"{lay['macs']:,}",
            )
        )
    total_p = sum(lay["params"] for lay in info["layers"])
    total_m = sum(lay["macs"] for lay in info["layers"])
    rows.append(("total", "", "", "", f"{total_p:,}", f"{total_m:,}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [f"net: {info['name']}"]
    for n, r in enumerate(rows):
        cells = [r[c].rjust(widths[c]) if c >= 4 else r[c].ljust(widths[c]) for c in range(len(r))]
        lines.append("  ".join(cells).rstrip())
        if n == 0 or n == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    net = Net(
        args.net,
        args.phase,
        level=args.level,
        stages=args.stage,
        data_shapes=parse_data_shapes(args.data_shape) or None,
    )
    info = describe(net)
    print(json.dumps(info, indent=2) if args.json else format_table(info))
    return 0
