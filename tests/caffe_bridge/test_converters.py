"""Caffe's dataset tools: MNIST IDX and CIFAR-10 binary batches to LMDBs, the mean file,
convert_imageset, and the download path against a local HTTP server.

Every source file is generated here in its exact format (IDX headers with magic
2051/2049, 3073-byte CIFAR records); the LMDBs are read back by the project's Data
layer and compared element by element, and records byte by byte with Caffe's
serialisation written out by hand.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import http.server
import io
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import lmdb
import numpy as np
import pytest
from PIL import Image

from barista_base.errors import InputError
from caffe_bridge import converters
from caffe_bridge.net import Net
from caffe_bridge.proto import caffe_pb2

# -- the source formats, written by hand ------------------------------------------------------


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">4I", 2051, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">2I", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def cifar_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """3073-byte records: the label, then 1024 R, 1024 G and 1024 B bytes."""
    records = zip(images, labels, strict=True)
    return b"".join(bytes([int(lab)]) + img.tobytes() for img, lab in records)


def varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def datum_bytes(c: int, h: int, w: int, data: bytes, label: int) -> bytes:
    """A Datum as Caffe's C++ serialises it: channels, height, width, data, label."""
    return (
        b"\x08" + varint(c) + b"\x10" + varint(h) + b"\x18" + varint(w)
        + b"\x22" + varint(len(data)) + data + b"\x28" + varint(label)
    )  # fmt: skip


def read_records(path: Path) -> list[tuple[bytes, bytes]]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor()]
    finally:
        env.close()


def data_layer_batch(
    path: Path, n: int, mean_file: Path | None = None, force_color: bool = False
) -> tuple[np.ndarray, ...]:
    """The first ``n`` records as the project's Data layer serves them (data, labels)."""
    param = caffe_pb2.NetParameter()
    layer = param.layer.add(name="data", type="Data", top=["data", "label"])
    layer.data_param.source = str(path)
    layer.data_param.batch_size = n
    layer.data_param.backend = caffe_pb2.DataParameter.LMDB
    layer.data_param.force_encoded_color = force_color
    if mean_file is not None:
        layer.transform_param.mean_file = str(mean_file)
    net = Net(param, "TEST")
    try:
        net.forward()
        return net.blobs["data"].data.copy(), net.blobs["label"].data.copy()
    finally:
        del net  # closes the LMDB
        gc.collect()


# -- MNIST ---------------------------------------------------------------------------------


@pytest.fixture
def mnist_files(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A directory of generated MNIST files (train gzipped, test plain, as users have both)."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    want = {}
    for lmdb_name, (images_name, labels_name), n, gz in (
        ("mnist_train_lmdb", converters.MNIST_SPLITS["mnist_train_lmdb"], 7, True),
        ("mnist_test_lmdb", converters.MNIST_SPLITS["mnist_test_lmdb"], 5, False),
    ):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for name, data in ((images_name, idx_images(images)), (labels_name, idx_labels(labels))):
            if gz:
                (src / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (src / name).write_bytes(data)
        want[lmdb_name] = (images, labels)
    return src, want


def check_mnist(out: Path, want: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for name, (images, labels) in want.items():
        path = out / "examples" / "mnist" / name
        records = read_records(path)
        assert [k for k, _ in records] == [b"%08d" % i for i in range(len(images))]
        for (_, value), image, label in zip(records, images, labels, strict=True):
            assert value == datum_bytes(1, 28, 28, image.tobytes(), int(label))
        data, got_labels = data_layer_batch(path, len(images))
        np.testing.assert_array_equal(data, images[:, None].astype(np.float32))
        np.testing.assert_array_equal(got_labels, labels.astype(np.float32))


def test_mnist_from_idx_files_is_convert_mnist_data(tmp_path, mnist_files):
    src, want = mnist_files
    result = converters.write_mnist(tmp_path / "out", source=src)
    check_mnist(tmp_path / "out", want)
    assert [(s.name, s.count) for s in result.splits] == [
        ("mnist_train_lmdb", 7),
        ("mnist_test_lmdb", 5),
    ]
    assert result.splits[0].per_label == tuple(np.bincount(want["mnist_train_lmdb"][1], None, 10))
    # Only the two LMDBs, no temporary directory left behind.
    assert sorted(p.name for p in (tmp_path / "out" / "examples" / "mnist").iterdir()) == [
        "mnist_test_lmdb",
        "mnist_train_lmdb",
    ]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: struct.pack(">I", 2049) + d[4:], r"IDX magic number 2049, expected 2051"),
        (lambda d: d[:-1], r"783 data bytes after the header, expected 784"),
        (lambda d: d[:10], r"10 bytes, too short for an IDX header"),
    ],
)
def test_bad_idx_files_are_input_errors_and_nothing_is_written(tmp_path, damage, message):
    src = tmp_path / "src"
    src.mkdir()
    images, labels = np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8)
    for images_name, labels_name in converters.MNIST_SPLITS.values():
        (src / images_name).write_bytes(idx_images(images))
        (src / labels_name).write_bytes(idx_labels(labels))
    bad = src / "t10k-images-idx3-ubyte"
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(InputError, match=f"t10k-images-idx3-ubyte: {message}"):
        converters.write_mnist(tmp_path / "out", source=src)
    assert not (tmp_path / "out").exists()


def test_mnist_counts_must_agree_and_files_must_exist(tmp_path, mnist_files):
    src, _ = mnist_files
    (src / "t10k-labels-idx1-ubyte").write_bytes(idx_labels(np.zeros(4, np.uint8)))
    with pytest.raises(InputError, match="holds 5 images but .* 4 labels"):
        converters.write_mnist(tmp_path / "out", source=src)
    (src / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(InputError, match="neither t10k-labels-idx1-ubyte nor .*\\.gz"):
        converters.write_mnist(tmp_path / "out", source=src)
    assert not (tmp_path / "out").exists()


# -- CIFAR-10 ------------------------------------------------------------------------------


@pytest.fixture
def cifar_files(tmp_path: Path) -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, ...]]]:
    """Generated batch files (2 records each, test 3) and the arrays they hold."""
    rng = np.random.default_rng(1)
    files, parts = {}, {}
    for name in (*converters.CIFAR10_SPLITS["cifar10_train_lmdb"], "test_batch.bin"):
        n = 3 if name == "test_batch.bin" else 2
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        files[name] = cifar_batch(images, labels)
        parts[name] = (images, labels)
    train = [parts[n] for n in converters.CIFAR10_SPLITS["cifar10_train_lmdb"]]
    joined = (np.concatenate([p[0] for p in train]), np.concatenate([p[1] for p in train]))
    want = {"cifar10_train_lmdb": joined, "cifar10_test_lmdb": parts["test_batch.bin"]}
    return files, want


def cifar_archive(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def check_cifar(out: Path, want: dict[str, tuple[np.ndarray, ...]]) -> None:
    cifar = out / "examples" / "cifar10"
    for name, (images, labels) in want.items():
        records = read_records(cifar / name)
        assert [k for k, _ in records] == [b"%05d" % i for i in range(len(images))]
        for (_, value), image, label in zip(records, images, labels, strict=True):
            assert value == datum_bytes(3, 32, 32, image.tobytes(), int(label))
        data, got = data_layer_batch(cifar / name, len(images))
        np.testing.assert_array_equal(data, images.astype(np.float32))
        np.testing.assert_array_equal(got, labels.astype(np.float32))
    # compute_image_mean: float32 sums in record order, divided by the count in float32.
    train = want["cifar10_train_lmdb"][0]
    total = np.zeros((3, 32, 32), np.float32)
    for image in train:
        total += image.astype(np.float32)
    mean = total / np.float32(len(train))
    blob = caffe_pb2.BlobProto.FromString((cifar / "mean.binaryproto").read_bytes())
    assert not blob.HasField("shape")
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 32, 32)
    assert np.array(blob.data, np.float32).tobytes() == mean.tobytes()
    # The mean file as the Data layer's transform reads it.
    data, _ = data_layer_batch(cifar / "cifar10_test_lmdb", 3, cifar / "mean.binaryproto")
    np.testing.assert_array_equal(data, want["cifar10_test_lmdb"][0].astype(np.float32) - mean)


@pytest.mark.parametrize("layout", ["batches-dir", "flat", "archive-in-dir", "archive"])
def test_cifar10_is_convert_cifar_data_and_compute_image_mean(tmp_path, cifar_files, layout):
    files, want = cifar_files
    src = tmp_path / "src"
    folder = src / "cifar-10-batches-bin" if layout == "batches-dir" else src
    folder.mkdir(parents=True)
    if layout.startswith("archive"):
        (src / "cifar-10-binary.tar.gz").write_bytes(cifar_archive(files))
    else:
        for name, data in files.items():
            (folder / name).write_bytes(data)
    source = src / "cifar-10-binary.tar.gz" if layout == "archive" else src
    result = converters.write_cifar10(tmp_path / "out", source=source)
    check_cifar(tmp_path / "out", want)
    assert [s.count for s in result.splits] == [10, 3]
    assert result.mean == tmp_path / "out" / "examples" / "cifar10" / "mean.binaryproto"


def test_bad_cifar_batches_are_input_errors(tmp_path, cifar_files):
    files, _ = cifar_files
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    (src / "data_batch_3.bin").write_bytes(files["data_batch_3.bin"][:-1])
    with pytest.raises(InputError, match=r"data_batch_3\.bin: 6145 bytes is not a whole number"):
        converters.write_cifar10(tmp_path / "out", source=src)
    bad = bytearray(files["data_batch_3.bin"])
    bad[3073] = 10
    (src / "data_batch_3.bin").write_bytes(bytes(bad))
    with pytest.raises(InputError, match=r"data_batch_3\.bin: record 1 has label 10"):
        converters.write_cifar10(tmp_path / "out", source=src)
    (src / "test_batch.bin").unlink()
    with pytest.raises(InputError, match="has neither cifar-10-binary.tar.gz"):
        converters.write_cifar10(tmp_path / "out", source=src)
    assert not (tmp_path / "out").exists()


# -- downloads from a local HTTP server ------------------------------------------------------


class Server:
    """An HTTP server on 127.0.0.1 in a thread, serving a directory; counts requests."""

    def __init__(self, root: Path) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802 - the http.server API
                server.paths.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, Path]]:
    """A server of ``tmp_path/www/data/``, and a private Barista cache."""
    www = tmp_path / "www"
    (www / "data").mkdir(parents=True)
    monkeypatch.setenv("BARISTA_CACHE", str(tmp_path / "cache"))
    s = Server(www)
    yield s, www / "data"
    s.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_mnist_download_checks_sums_and_caches(tmp_path, server, mnist_files):
    http_server, served = server
    src, want = mnist_files
    sums = {}
    for name in converters.MNIST_SHA256:  # serve every file gzipped, as the MNIST site does
        plain = src / name.removesuffix(".gz")
        data = (
            (src / name).read_bytes()
            if (src / name).exists()
            else gzip.compress(plain.read_bytes())
        )
        (served / name).write_bytes(data)
        sums[name] = sha(data)
    lines: list[str] = []
    result = converters.write_mnist(
        tmp_path / "out", url=http_server.url, sha256=sums, log=lines.append
    )
    check_mnist(tmp_path / "out", want)
    assert sorted(http_server.paths) == sorted(f"/data/{n}" for n in sums)
    assert lines == [f"downloading {http_server.url}{n}" for n in converters.MNIST_SHA256]
    for path in result.downloaded or []:
        assert path == tmp_path / "cache" / "downloads" / sums[path.name] / path.name
    # Cached: a second run asks the server nothing; a damaged cache file is fetched again.
    converters.write_mnist(tmp_path / "again", url=http_server.url, sha256=sums)
    assert len(http_server.paths) == 4
    (result.downloaded or [])[0].write_bytes(b"rot")
    converters.write_mnist(tmp_path / "again", url=http_server.url, sha256=sums, force=True)
    assert len(http_server.paths) == 5


def test_bad_checksum_names_the_file_and_both_hashes_and_writes_nothing(tmp_path, server):
    """The generated files are not the real MNIST: the real sums reject them."""
    http_server, served = server
    for name in converters.MNIST_SHA256:
        (served / name).write_bytes(gzip.compress(name.encode()))
    got = sha(gzip.compress(b"train-images-idx3-ubyte.gz"))
    want = converters.MNIST_SHA256["train-images-idx3-ubyte.gz"]
    with pytest.raises(InputError) as exc:
        converters.write_mnist(tmp_path / "out", url=http_server.url)
    message = str(exc.value)
    assert message.startswith("train-images-idx3-ubyte.gz: SHA-256 of the download from ")
    assert f"is {got}, expected {want}" in message
    assert not (tmp_path / "out").exists()
    # Nothing kept in the cache either: no entry, no partial file.
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_cifar10_download_and_missing_file(tmp_path, server, cifar_files):
    http_server, served = server
    files, want = cifar_files
    archive = cifar_archive(files)
    (served / "cifar-10-binary.tar.gz").write_bytes(archive)
    sums = {"cifar-10-binary.tar.gz": sha(archive)}
    converters.write_cifar10(tmp_path / "out", url=http_server.url, sha256=sums)
    check_cifar(tmp_path / "out", want)
    with pytest.raises(InputError, match=r"cifar-10-binary\.tar\.gz: cannot download: HTTP 404"):
        converters.write_cifar10(
            tmp_path / "x",
            url=http_server.url + "elsewhere/",
            sha256={"cifar-10-binary.tar.gz": "0" * 64},
        )
    assert not (tmp_path / "x").exists()


# -- convert_imageset ------------------------------------------------------------------------


@pytest.fixture
def image_tree(tmp_path: Path) -> tuple[Path, Path, list[np.ndarray]]:
    """Three 5x4 PNGs (RGB, grey, RGB) under root/, listed with labels 3, 1, 4."""
    rng = np.random.default_rng(2)
    root = tmp_path / "root"
    (root / "sub dir").mkdir(parents=True)
    pixels = [
        rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
        rng.integers(0, 256, (5, 4), dtype=np.uint8),
        rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
    ]
    for name, image in zip(IMAGE_NAMES, pixels, strict=True):
        Image.fromarray(image).save(root / name)
    listing = tmp_path / "list.txt"
    listing.write_text("a.png 3\nsub dir/b.PNG 1\n\nc.png 4\n")
    return root, listing, pixels


IMAGE_NAMES = ["a.png", "sub dir/b.PNG", "c.png"]


def bgr_chw(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))


def test_imageset_raw_records_are_bgr_datums_with_caffes_keys(tmp_path, image_tree):
    root, listing, pixels = image_tree
    db = tmp_path / "db"
    result = converters.convert_imageset(listing, f"{root}/", db)
    assert result.count == 3 and result.skipped == []
    records = read_records(db)
    assert [k for k, _ in records] == [
        b"00000000_a.png",
        b"00000001_sub dir/b.PNG",
        b"00000002_c.png",
    ]
    colour = [bgr_chw(pixels[0]), np.repeat(pixels[1][None], 3, 0), bgr_chw(pixels[2])]
    for (_, value), image, label in zip(records, colour, (3, 1, 4), strict=True):
        # CVMatToDatum sets encoded = false explicitly, so Caffe serialises field 7 too.
        assert value == datum_bytes(*image.shape, image.tobytes(), label) + b"\x38\x00"
    data, labels = data_layer_batch(db, 3)
    np.testing.assert_array_equal(data, np.stack(colour).astype(np.float32))
    np.testing.assert_array_equal(labels, [3, 1, 4])


def test_imageset_gray_resize_shuffle_and_check_size(tmp_path, image_tree):
    from caffe_bridge.transform import resize_bilinear

    root, listing, pixels = image_tree
    grey = [np.asarray(Image.fromarray(p).convert("L"))[None] for p in pixels]
    db = tmp_path / "db"
    converters.convert_imageset(
        listing, f"{root}/", db, gray=True, resize_height=7, resize_width=2, shuffle=True, seed=5
    )
    order = np.random.default_rng(5).permutation(3)
    records = read_records(db)
    keys = [b"%08d_" % i + IMAGE_NAMES[j].encode() for i, j in enumerate(order)]
    assert [k for k, _ in records] == keys
    data, labels = data_layer_batch(db, 3)
    want = np.stack([resize_bilinear(grey[j], 7, 2) for j in order])
    np.testing.assert_array_equal(data, want.astype(np.float32))
    np.testing.assert_array_equal(labels, np.array([3, 1, 4])[order])
    Image.fromarray(pixels[0][:3]).save(root / "d.png")
    listing.write_text("a.png 3\nd.png 0\n")
    with pytest.raises(
        InputError, match=r"list\.txt:2: .*d\.png is \(3, 3, 4\), the first \(3, 5, 4\)"
    ):
        converters.convert_imageset(listing, f"{root}/", tmp_path / "sized", check_size=True)
    assert not (tmp_path / "sized").exists()


def test_imageset_encoded_keeps_files_or_reencodes(tmp_path, image_tree):
    root, listing, pixels = image_tree
    db = tmp_path / "db"
    converters.convert_imageset(listing, f"{root}/", db, encoded=True)
    records = [caffe_pb2.Datum.FromString(v) for _, v in read_records(db)]
    files = [root / name for name in IMAGE_NAMES]
    for d, f, label in zip(records, files, (3, 1, 4), strict=True):
        assert d.encoded and d.data == f.read_bytes() and d.label == label  # ReadFileToDatum
    # Decoded by the Data layer (the grey file forced to colour, as force_encoded_color does).
    colour = [bgr_chw(pixels[0]), np.repeat(pixels[1][None], 3, 0), bgr_chw(pixels[2])]
    data, _ = data_layer_batch(db, 3, force_color=True)
    np.testing.assert_array_equal(data, np.stack(colour).astype(np.float32))
    # --encode-type bmp: re-encoded (and implies --encoded); the pixels survive.
    db2 = tmp_path / "db2"
    converters.convert_imageset(listing, f"{root}/", db2, encode_type="bmp")
    first = caffe_pb2.Datum.FromString(read_records(db2)[0][1])
    assert first.encoded and first.data.startswith(b"BM")
    data, _ = data_layer_batch(db2, 3, force_color=True)
    np.testing.assert_array_equal(data, np.stack(colour).astype(np.float32))


def test_imageset_skips_unreadable_images_and_checks_its_arguments(tmp_path, image_tree):
    root, listing, _ = image_tree
    listing.write_text("a.png 3\nmissing.png 2\nc.png 4\n")
    result = converters.convert_imageset(listing, f"{root}/", tmp_path / "db")
    assert result.count == 2 and result.skipped == [f"{listing}:2: {root}/missing.png"]
    assert [k for k, _ in read_records(tmp_path / "db")] == [b"00000000_a.png", b"00000002_c.png"]
    with pytest.raises(InputError, match="use --force"):
        converters.convert_imageset(listing, f"{root}/", tmp_path / "db")
    listing.write_text("a.png three\n")
    with pytest.raises(InputError, match=r"list\.txt:1: expected '<image path> <integer label>'"):
        converters.convert_imageset(listing, f"{root}/", tmp_path / "db2")
    with pytest.raises(InputError, match="--encode-type 'gif'"):
        converters.convert_imageset(listing, f"{root}/", tmp_path / "db2", encode_type="gif")
