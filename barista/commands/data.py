"""``barista data``: write built-in datasets in Caffe's own format.

``barista data digits --out DIR`` writes scikit-learn's handwritten digits as
MNIST-like LMDBs plus LeNet's prototxts under ``DIR``, laid out like Caffe's
root directory, and prints the command that trains on them.
"""

from __future__ import annotations

import argparse
import shlex

from barista_base.errors import InputError

NAME = "data"
HELP = "write a built-in dataset (Caffe LMDBs) and the example nets that use it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``data``'s own subcommands (one per dataset)."""
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    digits = sub.add_parser(
        "digits",
        help="scikit-learn's handwritten digits as MNIST-like LMDBs, with LeNet's prototxts",
        description=(
            "Write scikit-learn's 1797 handwritten digits, scaled up to MNIST's 28x28 look, "
            "as DIR/examples/mnist/mnist_{train,test}_lmdb (Caffe Datum records) plus "
            "copies of BVLC's LeNet prototxts, so that the unmodified LeNet example runs "
            "from DIR."
        ),
    )
    digits.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    digits.add_argument(
        "--force", action="store_true", help="replace existing LMDBs and edited prototxts"
    )
    digits.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="fraction of each class put into the test set (default 0.2)",
    )
    digits.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the split (default 0)"
    )


def run(args: argparse.Namespace) -> int:
    """Write the chosen dataset; bad arguments raise ``InputError``."""
    if args.dataset != "digits":  # argparse's choices make this unreachable; be explicit
        raise InputError(f"unknown dataset {args.dataset!r}")
    from caffe_bridge.datasets import write_digits

    if not 0.0 < args.test_fraction < 1.0:
        raise InputError(f"--test-fraction must be between 0 and 1, got {args.test_fraction}")
    result = write_digits(
        args.out, test_fraction=args.test_fraction, seed=args.seed, force=args.force
    )
    print(
        f"wrote {result.train.count} training and {result.test.count} test images "
        f"(1x28x28 uint8, labels 0-9, seed {args.seed}):"
    )
    for split in (result.train, result.test):
        per = " ".join(str(c) for c in split.per_label)
        print(f"  {split.path}  {split.count} records (per label: {per})")
    for path in result.copied:
        print(f"  {path}")
    for path in result.kept:
        print(f"  {path}  (kept: differs from Barista's copy; --force replaces it)")
    print("next:")
    print(
        f"  cd {shlex.quote(str(result.out_dir))} && "
        "barista train --solver examples/mnist/lenet_solver.prototxt"
    )
    return 0
