"""``barista data``: digits (output, next command, refusal to overwrite, bad arguments);
mnist, cifar10 and images end to end on files generated here, downloads from a local
HTTP server."""

import gzip
import hashlib
import http.server
import shlex
import struct
import threading

import lmdb
import numpy as np
import pytest
from PIL import Image

from barista import cli
from barista.commands import data


@pytest.fixture
def barista(monkeypatch):
    """The real ``cli.main``, with only the data subcommand registered."""
    monkeypatch.setattr(cli, "SUBCOMMANDS", (data,))
    return cli.main


def count(path) -> int:
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def test_digits_writes_and_prints_counts_paths_and_next_command(barista, tmp_path, capsys):
    out = tmp_path / "my digits"
    status = barista(
        ["data", "digits", "--out", str(out), "--test-fraction", "0.25", "--seed", "3"]
    )
    printed = capsys.readouterr().out
    mnist = out / "examples" / "mnist"
    n_train, n_test = count(mnist / "mnist_train_lmdb"), count(mnist / "mnist_test_lmdb")
    assert status == 0
    assert n_train + n_test == 1797 and 0.24 < n_test / 1797 < 0.26
    assert f"wrote {n_train} training and {n_test} test images" in printed
    assert f"{mnist / 'mnist_train_lmdb'}  {n_train} records" in printed
    assert f"{mnist / 'mnist_test_lmdb'}  {n_test} records" in printed
    assert str(mnist / "lenet_solver.prototxt") in printed
    next_cmd = printed.strip().splitlines()[-1].strip()
    assert next_cmd == (
        f"cd {shlex.quote(str(out))} && barista train --solver examples/mnist/lenet_solver.prototxt"
    )
    assert (mnist / "lenet_train_test.prototxt").is_file()


def test_second_run_refuses_then_force_replaces(barista, tmp_path, capsys):
    assert barista(["data", "digits", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert barista(["data", "digits", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "barista data: error:" in err and "--force" in err
    assert barista(["data", "digits", "--out", str(tmp_path), "--force", "--seed", "1"]) == 0


@pytest.mark.parametrize("fraction", ["0", "1", "-0.5", "2"])
def test_bad_test_fraction_is_a_one_line_error(barista, tmp_path, capsys, fraction):
    status = barista(["data", "digits", "--out", str(tmp_path / "x"), "--test-fraction", fraction])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--test-fraction" in err
    assert not (tmp_path / "x").exists()


def test_out_is_a_file_is_an_error(barista, tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert barista(["data", "digits", "--out", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_missing_arguments_exit_2(barista, capsys):
    for argv in (
        ["data"],
        ["data", "digits"],
        ["data", "imagenet", "--out", "x"],
        ["data", "images", "list.txt", "--out", "db"],
        ["data", "mnist", "--out", "x", "--from", "d", "--url", "http://127.0.0.1/"],
    ):
        with pytest.raises(SystemExit) as exc:
            barista(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def idx(magic: int, array: np.ndarray) -> bytes:
    """An IDX file: magic, dimensions (big-endian), then the uint8 values."""
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def mnist_dir(path, n_train: int = 3, n_test: int = 2) -> None:
    """Gzipped MNIST files of random images, as the MNIST site serves them."""
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(2051, images)))
        (path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(2049, labels)))


def test_mnist_from_a_directory(barista, tmp_path, capsys):
    mnist_dir(tmp_path / "src")
    assert (
        barista(["data", "mnist", "--out", str(tmp_path / "out"), "--from", str(tmp_path / "src")])
        == 0
    )
    printed = capsys.readouterr().out
    lmdbs = tmp_path / "out" / "examples" / "mnist"
    assert count(lmdbs / "mnist_train_lmdb") == 3 and count(lmdbs / "mnist_test_lmdb") == 2
    assert "wrote 5 mnist images:" in printed
    assert f"{lmdbs / 'mnist_train_lmdb'}  3 records" in printed


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A directory served over HTTP on 127.0.0.1 (in a thread), and a private cache."""
    root = tmp_path / "www"
    root.mkdir()
    monkeypatch.setenv("BARISTA_CACHE", str(tmp_path / "cache"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_mnist_download_with_a_checksum_file(barista, tmp_path, served, capsys):
    root, url = served
    mnist_dir(root)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(
        "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n" for f in root.iterdir())
    )
    out = tmp_path / "out"
    argv = ["data", "mnist", "--out", str(out), "--url", url, "--sha256sums", str(sums)]
    assert barista(argv) == 0
    printed = capsys.readouterr().out
    assert f"downloading {url}train-images-idx3-ubyte.gz" in printed
    assert count(out / "examples" / "mnist" / "mnist_train_lmdb") == 3


def test_bad_checksum_is_one_line_naming_file_and_hashes_and_writes_nothing(
    barista, tmp_path, served, capsys
):
    """Generated files are not the real MNIST: Barista's own sums refuse them."""
    from caffe_bridge.converters import MNIST_SHA256

    root, url = served
    mnist_dir(root)
    got = hashlib.sha256((root / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    out = tmp_path / "out"
    assert barista(["data", "mnist", "--out", str(out), "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train-images-idx3-ubyte.gz: SHA-256" in err
    assert got in err and MNIST_SHA256["train-images-idx3-ubyte.gz"] in err
    assert not out.exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_cifar10_from_the_archive_directory_writes_the_mean(barista, tmp_path, capsys):
    import io
    import tarfile

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            records = rng.integers(0, 256, (2, 3073), dtype=np.uint8)
            records[:, 0] %= 10
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = records.nbytes
            tar.addfile(info, io.BytesIO(records.tobytes()))
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(buf.getvalue())
    out = tmp_path / "out"
    assert barista(["data", "cifar10", "--out", str(out), "--from", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    cifar = out / "examples" / "cifar10"
    assert count(cifar / "cifar10_train_lmdb") == 10 and count(cifar / "cifar10_test_lmdb") == 2
    assert f"{cifar / 'mean.binaryproto'}  (mean of the training images)" in printed


def test_images_with_caffes_flag_spellings(barista, tmp_path, capsys):
    rng = np.random.default_rng(3)
    for name in ("x.png", "y.png"):
        Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "list.txt").write_text("x.png 0\ny.png 1\nz.png 2\n")
    db = tmp_path / "db"
    argv = ["data", "images", str(tmp_path / "list.txt"), f"{tmp_path}/", "--out", str(db)]
    assert barista([*argv, "--resize_height", "4", "--resize_width", "3", "--gray"]) == 0
    printed = capsys.readouterr().out
    assert (
        f"skipped (cannot read the image): {tmp_path / 'list.txt'}:3: {tmp_path}/z.png" in printed
    )
    assert f"wrote 2 records to {db}" in printed
    env = lmdb.open(str(db), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            first = txn.get(b"00000000_x.png")
    finally:
        env.close()
    from caffe_bridge.proto import caffe_pb2

    datum = caffe_pb2.Datum.FromString(first)
    assert (datum.channels, datum.height, datum.width, datum.label) == (1, 4, 3, 0)
    assert barista([*argv, "--encode-type", "tiff"]) == 2
    assert "--encode-type 'tiff'" in capsys.readouterr().err
