"""Caffe's dataset tools, written in Python: the LMDBs its example scripts make.

* :func:`write_mnist` is ``data/mnist/get_mnist.sh`` + ``examples/mnist/create_mnist.sh``
  (``convert_mnist_data``): MNIST's IDX files as 1x28x28 uint8 ``Datum`` records with
  keys ``%08d``, in ``examples/mnist/mnist_{train,test}_lmdb``;
* :func:`write_cifar10` is ``data/cifar10/get_cifar10.sh`` +
  ``examples/cifar10/create_cifar10.sh`` (``convert_cifar_data`` and
  ``compute_image_mean``): the binary batches as 3x32x32 records (channels as stored,
  R, G, B) with keys ``%05d``, in ``examples/cifar10/cifar10_{train,test}_lmdb``, and
  the training images' mean in ``examples/cifar10/mean.binaryproto``;
* :func:`convert_imageset` is ``convert_imageset``: images listed with labels, raw or
  encoded, keys ``%08d_<path>``.

The source files are the user's own (``source``: a directory) or downloaded from the
dataset's home (or a mirror, ``url``) into the cache and checked against SHA-256 sums
first (:mod:`barista_base.download`). Every source is read and checked before anything
is written; each LMDB is built in a temporary directory and renamed into place.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from barista_base.cache import atomic_directory
from barista_base.download import fetch, join_url
from barista_base.errors import InputError

from .datasets import (
    CIFAR_MEAN,
    CIFAR_TEST_LMDB,
    CIFAR_TRAIN_LMDB,
    TEST_LMDB,
    TRAIN_LMDB,
    SplitInfo,
    check_output,
    make_dir,
    split_info,
    write_datum_lmdb,
    write_lmdb,
)
from .images import load_image, parse_image_list
from .transform import resize_bilinear

Log = Callable[[str], None]

# MNIST (http://yann.lecun.com/exdb/mnist/, where Caffe's get_mnist.sh fetches it).
MNIST_URL = "http://yann.lecun.com/exdb/mnist/"
MNIST_IMAGES_MAGIC = 2051
MNIST_LABELS_MAGIC = 2049
#: (images file, labels file) per LMDB, as create_mnist.sh pairs them.
MNIST_SPLITS: dict[str, tuple[str, str]] = {
    TRAIN_LMDB: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    TEST_LMDB: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: SHA-256 of the gzipped files as served. Not published by the MNIST site itself;
#: these are the sums several independent projects pin for these files.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

# CIFAR-10's binary version (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
#: SHA-256 of the archive. The site publishes its MD5 (c32a1d4ab5d03f1284b67883e8d87530);
#: this is the SHA-256 several independent projects pin for the same file.
CIFAR10_SHA256: dict[str, str] = {
    CIFAR10_ARCHIVE: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
}
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_SHAPE = (3, 32, 32)
CIFAR10_RECORD = 1 + 3 * 32 * 32  # a label byte, then the R, G and B planes
#: The batch files per LMDB, in the order convert_cifar_data reads them.
CIFAR10_SPLITS: dict[str, tuple[str, ...]] = {
    CIFAR_TRAIN_LMDB: tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    CIFAR_TEST_LMDB: ("test_batch.bin",),
}


@dataclass(frozen=True)
class DatasetResult:
    """What :func:`write_mnist` or :func:`write_cifar10` wrote."""

    out_dir: Path
    splits: list[SplitInfo]
    mean: Path | None = None
    downloaded: list[Path] | None = None  # the cache files used, when downloaded


# -- MNIST ------------------------------------------------------------------------------


def read_idx(data: bytes, name: str, magic: int) -> np.ndarray:
    """An IDX file's uint8 array: images ``(n, rows, cols)`` (magic 2051) or labels ``(n,)``
    (magic 2049), with the checks ``convert_mnist_data`` makes; ``name`` is for errors."""
    dims = 3 if magic == MNIST_IMAGES_MAGIC else 1
    header = 4 * (1 + dims)
    if len(data) < header:
        raise InputError(f"{name}: {len(data)} bytes, too short for an IDX header")
    found, *shape = struct.unpack(f">{1 + dims}I", data[:header])
    if found != magic:
        raise InputError(f"{name}: IDX magic number {found}, expected {magic}")
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != size:
        raise InputError(
            f"{name}: {len(data) - header} data bytes after the header, "
            f"expected {size} for shape {tuple(shape)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def mnist_arrays(files: Mapping[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{lmdb name: (images (n, 1, rows, cols), labels (n,))}`` from the IDX files
    (``files``: base name, e.g. ``train-images-idx3-ubyte``, to a plain or ``.gz`` path)."""
    out = {}
    for lmdb_name, (images_name, labels_name) in MNIST_SPLITS.items():
        images = read_idx(_read(files[images_name]), str(files[images_name]), MNIST_IMAGES_MAGIC)
        labels = read_idx(_read(files[labels_name]), str(files[labels_name]), MNIST_LABELS_MAGIC)
        if len(images) != len(labels):
            raise InputError(
                f"{files[images_name]} holds {len(images)} images but "
                f"{files[labels_name]} {len(labels)} labels"
            )
        out[lmdb_name] = (images[:, None], labels)
    return out


def find_mnist(source: Path) -> dict[str, Path]:
    """The four IDX files in directory ``source``, each plain or gzipped."""
    found = {}
    for name in (n for pair in MNIST_SPLITS.values() for n in pair):
        for candidate in (source / name, source / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            raise InputError(f"{source}: has neither {name} nor {name}.gz")
    return found


def write_mnist(
    out_dir: str | Path,
    *,
    source: str | Path | None = None,
    url: str | None = None,
    sha256: Mapping[str, str] | None = None,
    force: bool = False,
    log: Log = lambda _line: None,
) -> DatasetResult:
    """Write ``out_dir/examples/mnist/mnist_{train,test}_lmdb`` as ``create_mnist.sh`` does.

    From the IDX files in ``source``, or else downloaded from ``url`` (default
    :data:`MNIST_URL`) and checked against ``sha256`` (default :data:`MNIST_SHA256`).
    Existing non-empty LMDBs are an error unless ``force``.
    """
    out = Path(out_dir)
    dest = out / "examples" / "mnist"
    paths = {name: dest / name for name in MNIST_SPLITS}
    check_output(out, list(paths.values()), force)
    downloaded = None
    if source is not None:
        files = find_mnist(_source_dir(source))
    else:
        sums = dict(sha256 or MNIST_SHA256)
        downloaded = _download(url or MNIST_URL, sums, list(MNIST_SHA256), log)
        files = {p.name.removesuffix(".gz"): p for p in downloaded}
    arrays = mnist_arrays(files)
    make_dir(dest)
    splits = []
    for name, (images, labels) in arrays.items():
        with atomic_directory(paths[name], replace=True) as tmp:
            write_datum_lmdb(tmp, images, labels, key_format=b"%08d")
        splits.append(split_info(name, paths[name], labels))
    return DatasetResult(out, splits, None, downloaded)


# -- CIFAR-10 ---------------------------------------------------------------------------


def read_cifar_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 binary batch: ``(images (n, 3, 32, 32) uint8, labels (n,))``."""
    if not data or len(data) % CIFAR10_RECORD:
        raise InputError(
            f"{name}: {len(data)} bytes is not a whole number of {CIFAR10_RECORD}-byte "
            "CIFAR-10 records"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0]
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise InputError(f"{name}: record {int(bad[0])} has label {int(labels[bad[0]])} (not 0-9)")
    return records[:, 1:].reshape(-1, *CIFAR10_SHAPE), labels


def cifar10_batches(source: Path) -> dict[str, tuple[bytes, str]]:
    """``{batch file name: (bytes, where it was read)}`` from a directory holding
    ``cifar-10-binary.tar.gz``, ``cifar-10-batches-bin/`` or the ``.bin`` files, or from
    the archive itself."""
    wanted = [n for names in CIFAR10_SPLITS.values() for n in names]
    archive = source if source.is_file() else source / CIFAR10_ARCHIVE
    for folder in (source / CIFAR10_DIR, source):
        if folder.is_dir() and all((folder / n).is_file() for n in wanted):
            return {n: ((folder / n).read_bytes(), str(folder / n)) for n in wanted}
    if archive.is_file():
        return _from_archive(archive, wanted)
    raise InputError(
        f"{source}: has neither {CIFAR10_ARCHIVE}, nor {CIFAR10_DIR}/ with "
        f"{', '.join(wanted)}, nor those files"
    )


def _from_archive(archive: Path, wanted: list[str]) -> dict[str, tuple[bytes, str]]:
    """The batch files from the tar.gz, found by name anywhere in it."""
    found: dict[str, tuple[bytes, str]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in found:
                    f = tar.extractfile(member)
                    assert f is not None  # a regular file
                    found[base] = (f.read(), f"{archive}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{archive}: cannot read the archive: {exc}") from None
    missing = [n for n in wanted if n not in found]
    if missing:
        raise InputError(f"{archive}: has no {', '.join(missing)}")
    return found


def cifar10_arrays(
    batches: Mapping[str, tuple[bytes, str]],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{lmdb name: (images, labels)}``, the batches of each split concatenated in order."""
    out = {}
    for lmdb_name, names in CIFAR10_SPLITS.items():
        parts = [read_cifar_batch(*batches[n]) for n in names]
        out[lmdb_name] = (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )
    return out


def image_mean(images: np.ndarray) -> np.ndarray:
    """``compute_image_mean``'s mean of ``(n, c, h, w)`` uint8 images, ``(1, c, h, w)``
    float32: the sum kept in float32 (the BlobProto's own floats), image by image in
    record order, then divided by the count in float32."""
    total = np.zeros(images.shape[1:], dtype=np.float32)
    for image in images:  # one add per record, in order: float32 sums round as Caffe's do
        total += image
    return (total / np.float32(len(images)))[None]


def write_cifar10(
    out_dir: str | Path,
    *,
    source: str | Path | None = None,
    url: str | None = None,
    sha256: Mapping[str, str] | None = None,
    force: bool = False,
    log: Log = lambda _line: None,
) -> DatasetResult:
    """Write what ``create_cifar10.sh`` writes under ``out_dir/examples/cifar10``: the
    train and test LMDBs and ``mean.binaryproto`` of the training set.

    From ``source`` (see :func:`cifar10_batches`), or else the archive downloaded from
    ``url`` (default :data:`CIFAR10_URL`) and checked against ``sha256`` (default
    :data:`CIFAR10_SHA256`). Existing non-empty LMDBs are an error unless ``force``.
    """
    from .io import write_binaryproto

    out = Path(out_dir)
    dest = out / "examples" / "cifar10"
    paths = {name: dest / name for name in CIFAR10_SPLITS}
    check_output(out, list(paths.values()), force)
    downloaded = None
    if source is not None:
        batches = cifar10_batches(_source_dir(source))
    else:
        sums = dict(sha256 or CIFAR10_SHA256)
        downloaded = _download(url or CIFAR10_URL, sums, [CIFAR10_ARCHIVE], log)
        batches = cifar10_batches(downloaded[0])
    arrays = cifar10_arrays(batches)
    make_dir(dest)
    splits = []
    for name, (images, labels) in arrays.items():
        with atomic_directory(paths[name], replace=True) as tmp:
            write_datum_lmdb(tmp, images, labels, key_format=b"%05d")
        splits.append(split_info(name, paths[name], labels))
    mean = dest / CIFAR_MEAN
    write_binaryproto(mean, image_mean(arrays[CIFAR_TRAIN_LMDB][0]))
    return DatasetResult(out, splits, mean, downloaded)


# -- convert_imageset ----------------------------------------------------------------------

#: Pillow's names of the encodings convert_imageset's --encode_type takes.
PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP"}


@dataclass(frozen=True)
class ImagesetResult:
    """What :func:`convert_imageset` wrote: the LMDB, its record count, the lines skipped."""

    path: Path
    count: int
    skipped: list[str]


def convert_imageset(
    list_file: str | Path,
    root: str,
    db: str | Path,
    *,
    resize_height: int = 0,
    resize_width: int = 0,
    gray: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    encoded: bool = False,
    encode_type: str = "",
    check_size: bool = False,
    force: bool = False,
) -> ImagesetResult:
    """Caffe's ``convert_imageset ROOT LIST DB``: one ``Datum`` per listed image.

    Paths are ``root + path`` (string concatenation, as in Caffe); keys are
    ``%08d_<path>`` of the line's position after the optional shuffle (a seeded
    permutation: Caffe's own shuffle order cannot be reproduced). Raw records are
    (C, H, W) BGR or grey uint8 with ``encoded: false``; images are resized (bilinear,
    :func:`~caffe_bridge.transform.resize_bilinear`) when both sizes are given.
    ``encoded``: the file's own bytes when not resized and its extension is the
    encoding, else the image re-encoded (by Pillow) as ``encode_type`` (default: the
    file's extension); ``encode_type`` alone implies ``encoded``. Unreadable images
    are skipped, as Caffe does, and listed in the result. ``check_size``: every raw
    record must have the first one's shape.
    """
    list_path, db = Path(list_file), Path(db)
    if encode_type and not encoded:
        encoded = True  # as convert_imageset: "encode_type specified, assuming encoded=true"
    if (resize_height < 0) or (resize_width < 0):
        raise InputError(f"resize sizes must be >= 0, got {resize_height}x{resize_width}")
    for enc in (encode_type,) if encode_type else ():
        if enc.lower() not in PIL_FORMATS:
            raise InputError(f"--encode-type {enc!r}: use one of {', '.join(PIL_FORMATS)}")
    try:
        text = list_path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{list_path}: cannot read the image list: {exc}") from None
    lines = parse_image_list(text, str(list_path))
    if not lines:
        raise InputError(f"{list_path}: lists no images")
    if shuffle:
        lines = [lines[i] for i in np.random.default_rng(seed).permutation(len(lines))]
    check_output(db.parent, [db], force)
    skipped: list[str] = []
    options = _ImageOptions(root, not gray, resize_height, resize_width, encoded, encode_type)

    def records() -> Iterator[tuple[bytes, bytes]]:
        shape = None
        for index, (path, label, number) in enumerate(lines):
            datum = _image_datum(path, label, options)
            if datum is None:
                skipped.append(f"{list_path}:{number}: {root + path}")
                continue
            if check_size and not datum.encoded:
                here = (datum.channels, datum.height, datum.width)
                if shape is not None and here != shape:
                    raise InputError(
                        f"{list_path}:{number}: {root + path} is {here}, the first {shape}"
                    )
                shape = here
            yield b"%08d_" % index + path.encode(), datum.SerializeToString()

    make_dir(db.parent)
    with atomic_directory(db, replace=True) as tmp:
        count = write_lmdb(tmp, records(), map_size=1 << 40)  # Caffe's size; sparse on disk
    return ImagesetResult(db, count, skipped)


@dataclass(frozen=True)
class _ImageOptions:
    root: str
    is_color: bool
    height: int
    width: int
    encoded: bool
    encode_type: str


def _image_datum(path: str, label: int, o: _ImageOptions):  # noqa: ANN202 - a Datum or None
    """``ReadImageToDatum``: the record of one image, or None when it cannot be read."""
    from .proto import caffe_pb2

    full = o.root + path
    try:
        image = load_image(full, o.is_color)
    except OSError:
        return None
    resize = o.height > 0 and o.width > 0
    if resize:
        image = resize_bilinear(image, o.height, o.width)
    if o.encoded:
        enc = (o.encode_type or full.rsplit(".", 1)[-1]).lower()
        if not resize and _match_ext(full, enc):
            data = Path(full).read_bytes()  # ReadFileToDatum: the file as it is
        else:
            data = _encode(image, enc, full)
        return caffe_pb2.Datum(data=data, label=label, encoded=True)
    c, h, w = image.shape
    # CVMatToDatum sets encoded = false explicitly: it is serialised, as in Caffe.
    return caffe_pb2.Datum(
        channels=c, height=h, width=w, data=image.tobytes(), label=label, encoded=False
    )


def _match_ext(name: str, enc: str) -> bool:
    """Caffe's ``matchExt``: the file's extension is the encoding (``jpeg`` for ``jpg``)."""
    ext = name.rsplit(".", 1)[-1].lower()
    return ext == enc or (enc == "jpg" and ext == "jpeg")


def _encode(image: np.ndarray, enc: str, name: str) -> bytes:
    """A (C, H, W) BGR or grey image encoded as ``enc`` (Pillow for ``cv::imencode``)."""
    from PIL import Image

    if enc not in PIL_FORMATS:
        raise InputError(f"{name}: cannot encode as {enc!r} (use one of {', '.join(PIL_FORMATS)})")
    pixels = image[0] if image.shape[0] == 1 else image[::-1].transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format=PIL_FORMATS[enc])
    return buf.getvalue()


# -- shared ---------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    """A file's bytes, gunzipped when its name ends in ``.gz``."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None


def _source_dir(source: str | Path) -> Path:
    path = Path(source)
    if not path.exists():
        raise InputError(f"--from {path}: no such file or directory")
    return path


def _download(base: str, sums: Mapping[str, str], names: list[str], log: Log) -> list[Path]:
    """Each file ``base/<name>`` from the cache or the network, checked against ``sums``."""
    missing = [n for n in names if n not in sums]
    if missing:
        raise InputError(f"no SHA-256 given for {', '.join(missing)}")
    return [fetch(join_url(base, n), sums[n], name=n, log=log) for n in names]
