"""Built-in datasets, written in Caffe's own on-disk format.

The default one is scikit-learn's bundled handwritten digits (1797 images of
8x8 pixels, values 0..16, shipped inside the package: no download), scaled up
to MNIST's look (a 20x20 digit centred in 28x28, uint8 0..255) and written as
LMDBs of ``Datum`` records laid out like Caffe's root directory, so that the
unmodified ``examples/mnist/lenet_train_test.prototxt`` and
``lenet_solver.prototxt`` run from the output directory.

There is no CIFAR-10 here (no download), so :func:`write_colour_digits` writes a
CIFAR-shaped stand-in from the same digits: 32x32 RGB images, each digit tinted
with a colour of its own on a background of its own, as the LMDBs and the mean
image ``examples/cifar10/cifar10_quick_train_test.prototxt`` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from barista_base.cache import atomic_directory
from barista_base.errors import InputError

from .transform import bilinear_matrix

# MNIST's geometry: the digit is normalised into a 20x20 box inside a 28x28 image.
MNIST_SIZE = 28
DIGIT_BOX = 20
LENET_PROTOTXTS: tuple[str, ...] = (
    "lenet_train_test.prototxt",
    "lenet_solver.prototxt",
    "lenet.prototxt",
)
TRAIN_LMDB = "mnist_train_lmdb"
TEST_LMDB = "mnist_test_lmdb"
# CIFAR-10's geometry and the files Caffe's examples/cifar10 scripts write.
CIFAR_SIZE = 32
CIFAR_DIGIT_BOX = 24
CIFAR_TRAIN_LMDB = "cifar10_train_lmdb"
CIFAR_TEST_LMDB = "cifar10_test_lmdb"
CIFAR_MEAN = "mean.binaryproto"
# The least difference, per channel, between a colour digit and its background (of 255).
MIN_CONTRAST = 80


@dataclass(frozen=True)
class SplitInfo:
    """One written LMDB: where it is, how many records, how many per label."""

    name: str
    path: Path
    count: int
    per_label: tuple[int, ...]


@dataclass(frozen=True)
class DigitsResult:
    """What :func:`write_digits` wrote."""

    out_dir: Path
    train: SplitInfo
    test: SplitInfo
    copied: list[Path] = field(default_factory=list)  # prototxts written
    kept: list[Path] = field(default_factory=list)  # user-edited prototxts left alone


@dataclass(frozen=True)
class ColourDigitsResult:
    """What :func:`write_colour_digits` wrote."""

    out_dir: Path
    train: SplitInfo
    test: SplitInfo
    mean: Path  # the training images' mean, a 1x3x32x32 BlobProto


def example_dir(name: str = "mnist") -> Path:
    """The directory holding the project's copy of a BVLC example (e.g. LeNet's prototxts).

    Found in ``<repo>/examples/<name>`` (a clone or an editable install) or, for an
    installed wheel, in the package data ``caffe_bridge/examples/<name>``.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "examples" / name, here / "examples" / name):
        if candidate.is_dir():
            return candidate
    raise InputError(
        f"cannot find Barista's example directory '{name}' (looked in "
        f"{here.parent / 'examples' / name} and {here / 'examples' / name}); "
        f"is the installation complete?"
    )


def centred(images: np.ndarray, box: int, size: int) -> np.ndarray:
    """``(n, h, w)`` images resized to ``box x box`` (bilinear) and centred in a
    ``size x size`` float64 canvas of zeros; values keep their units."""
    if images.ndim != 3:
        raise ValueError(f"expected an (n, h, w) stack of images, got shape {images.shape}")
    n, h, w = images.shape
    rows = bilinear_matrix(h, box)
    cols = bilinear_matrix(w, box)
    out = np.zeros((n, size, size))
    off = (size - box) // 2
    out[:, off : off + box, off : off + box] = np.einsum(
        "oi,nij,pj->nop", rows, images.astype(np.float64), cols
    )
    return out


def mnist_like(images: np.ndarray, max_value: float) -> np.ndarray:
    """Scale ``(n, h, w)`` images with values in ``0..max_value`` to MNIST's look.

    The digit is resized to 20x20 (bilinear) and centred in a 28x28 uint8 canvas
    with values 0..255, as MNIST's preprocessing does.
    """
    big = centred(images, DIGIT_BOX, MNIST_SIZE)
    return np.clip(np.rint(big * (255.0 / max_value)), 0, 255).astype(np.uint8)


def load_digits_8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as they ship: ``(images (n, 8, 8) float 0..16, labels (n,))``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # a declared dependency, but say what to do if it is missing
        raise InputError(
            "the digits dataset needs scikit-learn (pip install scikit-learn)"
        ) from exc
    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def load_digits_28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(images (n, 28, 28) uint8, labels (n,) int64)``."""
    images, labels = load_digits_8()
    return mnist_like(images, 16.0), labels


def colour_digits(images: np.ndarray, max_value: float, seed: int) -> np.ndarray:
    """``(n, h, w)`` digits as CIFAR-shaped ``(n, 3, 32, 32)`` uint8 RGB images.

    Each digit is resized to 24x24 and centred; image ``i`` gets a random background
    colour and a digit colour that differs from it by at least :data:`MIN_CONTRAST`
    in every channel, so every channel carries the digit and colour alone tells
    nothing of the label. Seeded: the same ``seed`` gives the same colours.
    """
    ink = centred(images, CIFAR_DIGIT_BOX, CIFAR_SIZE) / max_value  # 0..1
    rng = np.random.default_rng(seed)
    n = ink.shape[0]
    background = rng.integers(0, 256, (n, 3))
    shift = rng.integers(MIN_CONTRAST, 256 - MIN_CONTRAST + 1, (n, 3))
    digit = (background + shift) % 256  # |digit - background| >= MIN_CONTRAST either way
    mix = ink[:, None] * digit[:, :, None, None] + (1 - ink[:, None]) * background[:, :, None, None]
    return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: a seeded, per-class split, each part in shuffled order.

    Every class contributes ``round(test_fraction * class_size)`` images to the
    test part. The order is shuffled because Caffe's Data layer reads records in
    key order, and SGD wants the classes mixed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(test_fraction * idx.size))
        if n_test == 0 or n_test == idx.size:
            raise InputError(
                f"test fraction {test_fraction} leaves class {int(cls)} "
                f"({idx.size} images) without training or test images"
            )
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def write_datum_lmdb(
    path: Path,
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    key_format: bytes = b"%08d",
) -> None:
    """Write ``(n, c, h, w)`` uint8 images as an LMDB of Caffe ``Datum`` records.

    Keys are ``key_format`` of the record index: ``%08d`` as Caffe's
    ``convert_mnist_data`` writes them, ``%05d`` as ``convert_cifar_data`` does, so
    key order is record order. ``path`` must not exist yet or be empty.
    """
    from .proto import caffe_pb2

    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected (n, c, h, w) uint8 images, got {images.dtype} {images.shape}")
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images")
    n, c, h, w = images.shape

    def records() -> Iterator[tuple[bytes, bytes]]:
        datum = caffe_pb2.Datum(channels=c, height=h, width=w)
        for i in range(n):  # one record per image: the loop is over records, not pixels
            datum.data = images[i].tobytes()
            datum.label = int(labels[i])
            yield key_format % i, datum.SerializeToString()

    # Generous: LMDB only allocates what it writes, but a full map is a hard error.
    write_lmdb(path, records(), map_size=64 * 2**20 + 4 * images.nbytes)


def write_lmdb(path: Path, records: Iterable[tuple[bytes, bytes]], *, map_size: int) -> int:
    """Put ``(key, value)`` records into a new LMDB at ``path`` in one transaction; returns
    how many. ``map_size``: the most the database may hold (LMDB allocates only what it
    writes)."""
    import lmdb

    env = lmdb.open(str(path), map_size=map_size, subdir=True, lock=True)
    count = 0
    try:
        with env.begin(write=True) as txn:
            for key, value in records:
                txn.put(key, value)
                count += 1
    finally:
        env.close()
    return count


def _non_empty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def write_digits(
    out_dir: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    force: bool = False,
) -> DigitsResult:
    """Write the digits dataset and LeNet's prototxts under ``out_dir`` in Caffe's layout.

    Creates ``out_dir/examples/mnist/{mnist_train_lmdb,mnist_test_lmdb}`` and
    copies of the project's LeNet prototxts beside them, so that
    ``cd out_dir && barista train --solver examples/mnist/lenet_solver.prototxt``
    runs the unmodified BVLC example. The split is stratified and seeded: the same
    ``seed`` and ``test_fraction`` give the same records. Each LMDB is built in a
    temporary directory beside its destination and renamed into place.

    Existing non-empty LMDBs are an error unless ``force``; an existing prototxt
    that differs from the project's copy is kept (the user may have edited it)
    unless ``force``.
    """
    out = Path(out_dir)
    dest = out / "examples" / "mnist"
    lmdb_paths = {TRAIN_LMDB: dest / TRAIN_LMDB, TEST_LMDB: dest / TEST_LMDB}
    check_output(out, list(lmdb_paths.values()), force)
    _check_fraction(test_fraction)
    sources = example_dir("mnist")

    images, labels = load_digits_28()
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    parts = {TRAIN_LMDB: train_idx, TEST_LMDB: test_idx}

    make_dir(dest)
    for name, idx in parts.items():
        with atomic_directory(lmdb_paths[name], replace=True) as tmp:
            write_datum_lmdb(tmp, images[idx][:, None], labels[idx])

    copied: list[Path] = []
    kept: list[Path] = []
    for fname in LENET_PROTOTXTS:
        src_bytes = (sources / fname).read_bytes()
        target = dest / fname
        if target.exists() and not force and target.read_bytes() != src_bytes:
            kept.append(target)
            continue
        part = target.with_name(f".{fname}.part")
        part.write_bytes(src_bytes)
        part.replace(target)
        copied.append(target)

    train, test = (split_info(n, lmdb_paths[n], labels[parts[n]]) for n in parts)
    return DigitsResult(out, train, test, copied, kept)


def write_colour_digits(
    out_dir: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    force: bool = False,
) -> ColourDigitsResult:
    """Write the digits as a CIFAR-10 stand-in under ``out_dir`` in Caffe's layout.

    Creates ``out_dir/examples/cifar10/{cifar10_train_lmdb,cifar10_test_lmdb}``
    (3x32x32 uint8 ``Datum`` records, :func:`colour_digits`) and ``mean.binaryproto``
    (the per-pixel mean of the training images, a legacy 1x3x32x32 ``BlobProto`` as
    Caffe's ``compute_image_mean`` writes it), the files
    ``examples/cifar10/cifar10_quick_train_test.prototxt`` reads. The split is
    :func:`write_digits`'s (stratified, seeded); the colours are seeded by ``seed`` too.
    Existing non-empty LMDBs are an error unless ``force``.
    """
    from .io import write_binaryproto

    out = Path(out_dir)
    dest = out / "examples" / "cifar10"
    paths = {CIFAR_TRAIN_LMDB: dest / CIFAR_TRAIN_LMDB, CIFAR_TEST_LMDB: dest / CIFAR_TEST_LMDB}
    check_output(out, list(paths.values()), force)
    _check_fraction(test_fraction)

    digits, labels = load_digits_8()
    images = colour_digits(digits, 16.0, seed)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    parts = {CIFAR_TRAIN_LMDB: train_idx, CIFAR_TEST_LMDB: test_idx}
    make_dir(dest)
    for name, idx in parts.items():
        with atomic_directory(paths[name], replace=True) as tmp:
            write_datum_lmdb(tmp, images[idx], labels[idx])
    mean = dest / CIFAR_MEAN
    # compute_image_mean sums in double and stores the float mean with num = 1.
    write_binaryproto(mean, images[train_idx].mean(axis=0, dtype=np.float64)[None])
    train, test = (split_info(name, paths[name], labels[parts[name]]) for name in parts)
    return ColourDigitsResult(out, train, test, mean)


def check_output(out: Path, lmdbs: list[Path], force: bool) -> None:
    """Refuse an output that is not a directory and non-empty LMDBs without ``force``:
    before the slow part, so a wrong argument fails at once."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if not force:
        busy = [str(p) for p in lmdbs if _non_empty(p)]
        if busy:
            verb = "exists and is" if len(busy) == 1 else "exist and are"
            raise InputError(f"{' and '.join(busy)} {verb} not empty; use --force to replace")


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")


def make_dir(dest: Path) -> None:
    """``mkdir -p dest``; failure is an ``InputError`` naming it."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{dest}: cannot create directory: {exc.strerror}") from None


def split_info(name: str, path: Path, labels: np.ndarray) -> SplitInfo:
    """A written LMDB's :class:`SplitInfo` from its labels (0-9) in record order."""
    per = np.bincount(labels, minlength=10)
    return SplitInfo(name, path, int(labels.size), tuple(int(x) for x in per))
