"""``barista test``: score a trained net, like ``caffe test``.

Runs the net in the TEST phase for ``--iterations`` batches, printing every
output of every batch (``Batch i, name = value``), then the mean loss and the
mean of each output, with Caffe's ``(* weight = value loss)`` note on loss
outputs.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from barista_base.errors import InputError

from .args import add_backend_arguments, backend_options

NAME = "test"
HELP = "score a trained net (.prototxt + .caffemodel) in the TEST phase, like `caffe test`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``barista test`` options."""
    parser.add_argument("--model", required=True, metavar="NET.prototxt", help="the net")
    parser.add_argument(
        "--weights",
        required=True,
        metavar="W.caffemodel",
        help="trained weights (comma-separated list: applied in order)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=50,
        metavar="N",
        help="number of batches to score (default 50, as in Caffe)",
    )
    parser.add_argument("--level", type=int, default=0, help="NetState level (default 0)")
    parser.add_argument(
        "--stage", default="", metavar="S1,S2", help="NetState stages, comma-separated"
    )
    add_backend_arguments(parser)


def _fmt(x: float) -> str:
    return f"{float(x):.6g}"


def run(args: argparse.Namespace) -> int:
    """Score the net; returns the exit status."""
    from tqdm import tqdm

    from caffe_bridge.net import Net

    if args.iterations < 1:
        raise InputError(f"--iterations must be >= 1, got {args.iterations}")
    from barista.backends import get_backend

    from .generate import load_layers

    backend_name = args.backend or "cpu"
    options = backend_options(args, backend_name, lambda: load_layers(args.model, {}))

    backend = get_backend(backend_name, **options)
    # A simulator is built (or taken from the cache) before scoring, saying which.
    backend.prepare(lambda line: print(line, file=sys.stderr))
    weights = [w for w in args.weights.split(",") if w]
    for w in weights:
        try:
            with open(w, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"{w}: cannot read weights: {exc.strerror}") from None
    stages = tuple(s for s in args.stage.split(",") if s)
    net = Net(args.model, "TEST", level=args.level, stages=stages, backend=backend)
    for w in weights:
        net.copy_from(w)

    def out(line: str) -> None:
        tqdm.write(line, file=sys.stdout)

    out(f"Running for {args.iterations} iterations.")
    loss_weights = net.blob_loss_weights
    sums: np.ndarray | None = None
    names: list[str] = []
    loss = np.float32(0)
    for i in tqdm(range(args.iterations), unit="batch", file=sys.stderr, disable=None, desc="test"):
        net.forward()
        loss += np.float32(net.loss)
        values, batch_names = [], []
        for name in net.outputs:
            for v in np.asarray(net.blobs[name].data, dtype=np.float32).ravel():
                values.append(v)
                batch_names.append(name)
                out(f"Batch {i}, {name} = {_fmt(v)}")
        arr = np.array(values, dtype=np.float32)
        if sums is None:
            sums, names = arr, batch_names
        else:
            sums += arr  # float32 accumulation, as in Caffe
    loss /= np.float32(args.iterations)
    out(f"Loss: {_fmt(loss)}")
    assert sums is not None
    for name, total in zip(names, sums, strict=True):
        mean = total / np.float32(args.iterations)
        w = float(loss_weights.get(name, 0.0))
        extra = f" (* {_fmt(w)} = {_fmt(np.float32(w) * mean)} loss)" if w else ""
        out(f"{name} = {_fmt(mean)}{extra}")
    return 0
