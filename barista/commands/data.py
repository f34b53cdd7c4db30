"""``barista data``: write datasets in Caffe's own format.

``barista data digits --out DIR`` writes scikit-learn's handwritten digits as
MNIST-like LMDBs plus LeNet's prototxts under ``DIR``, laid out like Caffe's
root directory, and prints the command that trains on them.

``barista data mnist`` and ``barista data cifar10`` write what Caffe's
``create_mnist.sh`` and ``create_cifar10.sh`` write, from the user's files
(``--from``) or downloads checked against SHA-256 sums; ``barista data images``
is Caffe's ``convert_imageset`` (:mod:`caffe_bridge.converters`).
"""

from __future__ import annotations

import argparse
import shlex

from barista_base.errors import InputError
from caffe_bridge.converters import CIFAR10_URL, MNIST_URL

NAME = "data"
HELP = "write a dataset as Caffe LMDBs: digits (built in), mnist, cifar10, or listed images"


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
    _add_download_dataset(
        sub,
        "mnist",
        "MNIST as examples/mnist/mnist_{train,test}_lmdb, as Caffe's create_mnist.sh",
        "the IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each plain or .gz)",
        MNIST_URL,
    )
    _add_download_dataset(
        sub,
        "cifar10",
        "CIFAR-10 as examples/cifar10/cifar10_{train,test}_lmdb and mean.binaryproto, as "
        "Caffe's create_cifar10.sh",
        "cifar-10-binary.tar.gz, or the binary batches data_batch_1..5.bin and "
        "test_batch.bin (in cifar-10-batches-bin/ or directly); DIR may be the archive",
        CIFAR10_URL,
    )
    _add_images(sub)


def _add_download_dataset(
    sub: argparse._SubParsersAction, name: str, what: str, files: str, url: str
) -> None:
    """A dataset read from ``--from DIR`` or downloaded (``--url``, ``--sha256sums``)."""
    p = sub.add_parser(
        name,
        help=what,
        description=(
            f"Write {what}, under DIR. The source is {files} in --from DIR, or else "
            f"downloaded from {url} (or --url) into Barista's cache and checked against "
            "SHA-256 sums before use."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", metavar="DIR", help=f"read {files} here")
    source.add_argument(
        "--url", metavar="BASE", help=f"download from this base URL (a mirror; default {url})"
    )
    p.add_argument(
        "--sha256sums",
        metavar="FILE",
        help="check downloads against this file of 'sha256  name' lines (for a mirror "
        "serving other files) instead of the sums Barista knows",
    )
    p.add_argument("--force", action="store_true", help="replace existing LMDBs")


def _add_images(sub: argparse._SubParsersAction) -> None:
    """``barista data images``: Caffe's convert_imageset."""
    p = sub.add_parser(
        "images",
        help="images listed with labels as an LMDB, as Caffe's convert_imageset",
        description=(
            "Write the images of LIST ('<path> <label>' lines; each read as ROOT + path) "
            "as an LMDB of Caffe Datum records with keys %%08d_<path>, as Caffe's "
            "convert_imageset ROOT LIST DB does."
        ),
    )
    p.add_argument("list", metavar="LIST", help="the list file")
    p.add_argument("root", metavar="ROOT", help="prefix of every listed path (e.g. 'images/')")
    p.add_argument("--out", required=True, metavar="DB", help="the LMDB directory to write")
    for dim in ("height", "width"):
        p.add_argument(
            f"--resize-{dim}",
            f"--resize_{dim}",
            dest=f"resize_{dim}",
            type=int,
            default=0,
            metavar="N",
            help=f"resize to this {dim} (with the other size given too; default 0: keep)",
        )
    p.add_argument("--gray", action="store_true", help="read the images as grey")
    p.add_argument("--shuffle", action="store_true", help="shuffle the lines (seeded)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="shuffle seed (default 0)")
    p.add_argument(
        "--encoded", action="store_true", help="store encoded images (the files' own bytes)"
    )
    p.add_argument(
        "--encode-type",
        "--encode_type",
        dest="encode_type",
        default="",
        metavar="EXT",
        help="encode as png, jpg or bmp (implies --encoded)",
    )
    p.add_argument(
        "--check-size",
        "--check_size",
        dest="check_size",
        action="store_true",
        help="require every image to have the first one's size",
    )
    p.add_argument("--force", action="store_true", help="replace an existing LMDB")


def run(args: argparse.Namespace) -> int:
    """Write the chosen dataset; bad arguments raise ``InputError``."""
    if args.dataset in ("mnist", "cifar10"):
        return _run_download_dataset(args)
    if args.dataset == "images":
        return _run_images(args)
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


def _run_download_dataset(args: argparse.Namespace) -> int:
    from barista_base.download import read_sha256sums
    from caffe_bridge.converters import write_cifar10, write_mnist

    write = write_mnist if args.dataset == "mnist" else write_cifar10
    if args.sha256sums and args.source:
        raise InputError("--sha256sums applies to downloads, not to --from")
    sums = read_sha256sums(args.sha256sums) if args.sha256sums else None
    result = write(
        args.out, source=args.source, url=args.url, sha256=sums, force=args.force, log=print
    )
    total = sum(split.count for split in result.splits)
    print(f"wrote {total} {args.dataset} images:")
    for split in result.splits:
        per = " ".join(str(c) for c in split.per_label)
        print(f"  {split.path}  {split.count} records (per label: {per})")
    if result.mean is not None:
        print(f"  {result.mean}  (mean of the training images)")
    return 0


def _run_images(args: argparse.Namespace) -> int:
    from caffe_bridge.converters import convert_imageset

    result = convert_imageset(
        args.list,
        args.root,
        args.out,
        resize_height=args.resize_height,
        resize_width=args.resize_width,
        gray=args.gray,
        shuffle=args.shuffle,
        seed=args.seed,
        encoded=args.encoded,
        encode_type=args.encode_type,
        check_size=args.check_size,
        force=args.force,
    )
    for line in result.skipped:
        print(f"skipped (cannot read the image): {line}")
    print(f"wrote {result.count} records to {result.path}")
    return 0
