"""``barista time``: per-layer forward and backward times, like ``caffe time``.

After one untimed forward-backward pass (warm-up, as Caffe's "initial loss"),
each of ``--iterations`` iterations runs a forward pass over all layers and a
backward pass over the layers that need one, timing every layer.  The report
gives each layer's average forward and backward time, then the average forward
pass, backward pass and forward-backward iteration and the total.
"""

from __future__ import annotations

import argparse
import sys
import time as _time

from barista_base.errors import InputError
from caffe_bridge.net import Net

from .args import add_backend_arguments, add_net_arguments, backend_options, parse_data_shapes

NAME = "time"
HELP = "benchmark a net: average forward/backward time per layer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="NET.prototxt", help="net definition")
    parser.add_argument(
        "--iterations", type=int, default=50, help="timed iterations (default 50, as Caffe)"
    )
    parser.add_argument("--weights", default=None, help="optional .caffemodel to load")
    add_net_arguments(parser)
    add_backend_arguments(parser, trace=False)


def time_net(net: Net, iterations: int) -> dict[str, object]:
    """Per-layer average forward/backward seconds and pass totals."""
    n = len(net.layers)
    fwd = [0.0] * n
    bwd = [0.0] * n
    net.forward_from_to()
    net.backward_from_to()
    clock = _time.perf_counter
    t_fwd = t_bwd = 0.0
    t0 = clock()
    for _ in range(iterations):
        start = clock()
        for i in range(n):
            t = clock()
            net.forward_layer(i)
            fwd[i] += clock() - t
        mid = clock()
        for i in range(n - 1, -1, -1):
            t = clock()
            net.backward_layer(i)
            bwd[i] += clock() - t
        end = clock()
        t_fwd += mid - start
        t_bwd += end - mid
    total = clock() - t0
    k = max(iterations, 1)
    return {
        "layers": [
            {"name": name, "type": layer.type_name, "forward": f / k, "backward": b / k}
            for name, layer, f, b in zip(net.layer_names, net.layers, fwd, bwd, strict=True)
        ],
        "forward": t_fwd / k,
        "backward": t_bwd / k,
        "forward_backward": (t_fwd + t_bwd) / k,
        "total": total,
        "iterations": iterations,
    }


def run(args: argparse.Namespace) -> int:
    from barista.backends import get_backend

    if args.iterations <= 0:
        raise InputError(f"--iterations must be positive, got {args.iterations}")
    name = args.backend or "cpu"
    backend = get_backend(name, **backend_options(args, name))
    # A simulator is built (or taken from the cache) before timing, saying which.
    backend.prepare(lambda line: print(line, file=sys.stderr))
    net = Net(
        args.model,
        args.phase,
        args.weights,
        level=args.level,
        stages=args.stage,
        backend=backend,
        data_shapes=parse_data_shapes(args.data_shape) or None,
    )
    report = time_net(net, args.iterations)
    width = max([len(str(lay["name"])) for lay in report["layers"]] + [5])  # type: ignore[union-attr]
    print(f"net: {net.name}  phase: {args.phase}  iterations: {args.iterations}")
    print(f"{'layer'.ljust(width)}  {'type':<16}  {'forward ms':>11}  {'backward ms':>11}")
    for lay in report["layers"]:  # type: ignore[union-attr]
        print(
            f"{str(lay['name']).ljust(width)}  {str(lay['type']):<16}  "
            f"{1e3 * lay['forward']:11.3f}  {1e3 * lay['backward']:11.3f}"
        )
    print(f"Average Forward pass: {1e3 * report['forward']:.3f} ms.")  # type: ignore[operator]
    print(f"Average Backward pass: {1e3 * report['backward']:.3f} ms.")  # type: ignore[operator]
    print(
        f"Average Forward-Backward: {1e3 * report['forward_backward']:.3f} ms."  # type: ignore[operator]
    )
    print(f"Total Time: {1e3 * report['total']:.3f} ms.")  # type: ignore[operator]
    return 0
