"""The built-in digits dataset: Caffe-format LMDBs of Datum records, split, layout, safety."""

import gc
from pathlib import Path

import lmdb
import numpy as np
import pytest

from barista_base.errors import InputError
from caffe_bridge import datasets
from caffe_bridge.net import Net
from caffe_bridge.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[2]


def read_lmdb(path: Path) -> tuple[list[bytes], list[caffe_pb2.Datum]]:
    """Every (key, Datum) of an LMDB, in key order, read with the lmdb package."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            items = list(txn.cursor())
    finally:
        env.close()
    return [k for k, _ in items], [caffe_pb2.Datum.FromString(v) for _, v in items]


def as_arrays(data: list[caffe_pb2.Datum]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.frombuffer(d.data, np.uint8) for d in data])
    return images.reshape(len(data), 1, 28, 28), np.array([d.label for d in data])


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datasets.DigitsResult]:
    out = tmp_path_factory.mktemp("digits")
    return out, datasets.write_digits(out)


@pytest.fixture(scope="module")
def originals() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def test_layout_is_caffe_root(digits_dir):
    out, result = digits_dir
    mnist = out / "examples" / "mnist"
    assert result.train.path == mnist / "mnist_train_lmdb"
    assert result.test.path == mnist / "mnist_test_lmdb"
    for name in ("mnist_train_lmdb", "mnist_test_lmdb"):
        assert (mnist / name / "data.mdb").is_file()
    # No temporary build directory is left behind.
    assert sorted(p.name for p in mnist.iterdir()) == sorted(
        ["mnist_train_lmdb", "mnist_test_lmdb", *datasets.LENET_PROTOTXTS]
    )


def test_records_are_mnist_shaped_datums(digits_dir, originals):
    out, result = digits_dir
    total = 0
    for split in (result.train, result.test):
        keys, data = read_lmdb(split.path)
        assert keys == [b"%08d" % i for i in range(len(keys))]  # convert_mnist_data's keys
        assert len(data) == split.count
        for d in data:
            assert (d.channels, d.height, d.width) == (1, 28, 28)
            assert len(d.data) == 28 * 28 and not d.encoded and len(d.float_data) == 0
        images, labels = as_arrays(data)
        assert set(labels.tolist()) == set(range(10))
        assert tuple(np.bincount(labels, minlength=10)) == split.per_label
        # MNIST's look: a 20x20 box centred in 28x28, full 0..255 range inside.
        assert images.dtype == np.uint8 and images.max() == 255 and images.min() == 0
        border = np.ones((28, 28), bool)
        border[4:24, 4:24] = False
        assert not images[:, 0, border].any()
        total += len(data)
    assert total == len(originals[1]) == 1797


def test_split_is_stratified_and_balanced(digits_dir, originals):
    _, result = digits_dir
    per_class = np.bincount(originals[1], minlength=10)
    test = np.array(result.test.per_label)
    np.testing.assert_array_equal(test, np.rint(0.2 * per_class).astype(int))
    np.testing.assert_array_equal(np.array(result.train.per_label) + test, per_class)


def test_every_record_is_an_upscaled_original_with_its_label(digits_dir, originals):
    _, result = digits_dir
    images8, labels8 = originals
    expected = {}
    for img, lab in zip(datasets.mnist_like(images8, 16.0), labels8, strict=True):
        expected.setdefault(img.tobytes(), set()).add(int(lab))
    seen = 0
    for split in (result.train, result.test):
        _, data = read_lmdb(split.path)
        for d in data:
            assert d.label in expected[d.data]  # the image exists, with this label
            seen += 1
    assert seen == len(labels8)


def test_upscaling_is_bilinear_with_pixel_centres():
    # Reference by the textbook formula, one pixel at a time (tests may loop).
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 16, size=(8, 8))
    ref = np.zeros((20, 20))
    for oy in range(20):
        for ox in range(20):
            sy = min(max((oy + 0.5) * 8 / 20 - 0.5, 0), 7)
            sx = min(max((ox + 0.5) * 8 / 20 - 0.5, 0), 7)
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, 7), min(x0 + 1, 7)
            fy, fx = sy - y0, sx - x0
            ref[oy, ox] = (
                img[y0, x0] * (1 - fy) * (1 - fx)
                + img[y0, x1] * (1 - fy) * fx
                + img[y1, x0] * fy * (1 - fx)
                + img[y1, x1] * fy * fx
            )
    got = datasets.mnist_like(img[None], 16.0)[0]
    want = np.clip(np.rint(ref * 255 / 16), 0, 255)
    np.testing.assert_array_equal(got[4:24, 4:24], want)
    assert got.sum() == want.sum()  # nothing outside the box


def test_same_seed_same_records_other_seed_other_order(tmp_path):
    a = datasets.write_digits(tmp_path / "a", seed=5)
    b = datasets.write_digits(tmp_path / "b", seed=5)
    c = datasets.write_digits(tmp_path / "c", seed=6, test_fraction=0.3)
    for sa, sb in ((a.train, b.train), (a.test, b.test)):
        assert read_lmdb(sa.path) == read_lmdb(sb.path)
    _, da = read_lmdb(a.train.path)
    _, dc = read_lmdb(c.train.path)
    assert [d.data for d in da] != [d.data for d in dc[: len(da)]]
    assert c.test.count > a.test.count and c.test.count + c.train.count == 1797


def test_refuses_to_overwrite_without_force(tmp_path):
    first = datasets.write_digits(tmp_path, seed=1)
    before = read_lmdb(first.train.path)
    with pytest.raises(InputError, match="mnist_train_lmdb.*--force"):
        datasets.write_digits(tmp_path, seed=2)
    assert read_lmdb(first.train.path) == before  # untouched
    again = datasets.write_digits(tmp_path, seed=2, force=True)
    assert read_lmdb(again.train.path) != before
    assert read_lmdb(again.train.path) == read_lmdb(
        datasets.write_digits(tmp_path / "fresh", seed=2).train.path
    )
    leftovers = [p.name for p in (tmp_path / "examples" / "mnist").iterdir()]
    assert not [n for n in leftovers if n.startswith(".")]


def test_empty_existing_lmdb_directory_is_replaced(tmp_path):
    (tmp_path / "examples" / "mnist" / "mnist_test_lmdb").mkdir(parents=True)
    result = datasets.write_digits(tmp_path)
    assert len(read_lmdb(result.test.path)[1]) == result.test.count


def test_bad_test_fraction_fails_before_writing(tmp_path):
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(InputError, match="test fraction"):
            datasets.write_digits(tmp_path / "x", test_fraction=bad)
    assert not (tmp_path / "x").exists()


def test_prototxts_copied_byte_for_byte_and_edits_kept(tmp_path):
    result = datasets.write_digits(tmp_path)
    mnist = tmp_path / "examples" / "mnist"
    assert sorted(result.copied) == sorted(mnist / n for n in datasets.LENET_PROTOTXTS)
    for name in datasets.LENET_PROTOTXTS:
        assert (mnist / name).read_bytes() == (REPO / "examples" / "mnist" / name).read_bytes()
    solver = mnist / "lenet_solver.prototxt"
    solver.write_text(solver.read_text().replace("max_iter: 10000", "max_iter: 20"))
    # Rerun over emptied LMDB directories: without force the edit survives.
    for lmdb_dir in ("mnist_train_lmdb", "mnist_test_lmdb"):
        for f in (mnist / lmdb_dir).iterdir():
            f.unlink()
    result = datasets.write_digits(tmp_path)
    assert result.kept == [solver] and "max_iter: 20" in solver.read_text()
    result = datasets.write_digits(tmp_path, force=True)
    assert result.kept == [] and "max_iter: 10000" in solver.read_text()


@pytest.mark.parametrize(
    "phase, batch, lmdb_name", [("TRAIN", 64, "mnist_train_lmdb"), ("TEST", 100, "mnist_test_lmdb")]
)
def test_unmodified_lenet_runs_from_the_digits_directory(
    digits_dir, monkeypatch, phase, batch, lmdb_name
):
    out, _ = digits_dir
    # Read first: the lmdb package refuses a second open of an environment in one process.
    _, records = read_lmdb(out / "examples" / "mnist" / lmdb_name)
    monkeypatch.chdir(out)  # the prototxt's sources are relative, as in Caffe
    net = Net("examples/mnist/lenet_train_test.prototxt", phase, seed=0)
    try:
        assert net.blobs["data"].data.shape == (batch, 1, 28, 28)
        net.forward()
        # Caffe's Data layer serves records in key order: the first batch is records 0..batch-1.
        images, labels = as_arrays(records[:batch])
        want = images.astype(np.float32) * np.float32(0.00390625)
        np.testing.assert_array_equal(net.blobs["data"].data, want)
        np.testing.assert_array_equal(net.blobs["label"].data.ravel(), labels)
        assert np.isfinite(net.blobs["loss"].data).all()
    finally:
        del net  # closes the LMDB, so other tests of this module may open it again
        gc.collect()


# -- the colour digits (a CIFAR-10 stand-in) ------------------------------------------------


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> datasets.ColourDigitsResult:
    return datasets.write_colour_digits(tmp_path_factory.mktemp("colour"))


def colour_arrays(data: list[caffe_pb2.Datum]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.frombuffer(d.data, np.uint8) for d in data])
    return images.reshape(len(data), 3, 32, 32), np.array([d.label for d in data])


def test_colour_records_are_cifar_shaped_datums_split_as_the_digits(colour_dir, originals):
    cifar = colour_dir.out_dir / "examples" / "cifar10"
    assert sorted(p.name for p in cifar.iterdir()) == sorted(
        ["cifar10_train_lmdb", "cifar10_test_lmdb", "mean.binaryproto"]
    )
    images8, labels8 = originals
    # write_digits' split (seed 0), record for record; each image the tinted original.
    parts = datasets.stratified_split(labels8, 0.2, 0)
    tinted = datasets.colour_digits(images8, 16.0, seed=0)
    for split, idx in zip((colour_dir.train, colour_dir.test), parts, strict=True):
        assert split.path == cifar / split.name
        keys, data = read_lmdb(split.path)
        assert keys == [b"%08d" % i for i in range(len(keys))]
        for d in data:
            assert (d.channels, d.height, d.width) == (3, 32, 32) and len(d.data) == 3 * 32 * 32
        images, labels = colour_arrays(data)
        np.testing.assert_array_equal(labels, labels8[idx])
        np.testing.assert_array_equal(images, tinted[idx])
        assert split.count == len(idx)
        assert split.per_label == tuple(np.bincount(labels8[idx], minlength=10))


def test_mean_file_is_compute_image_means_blob(colour_dir):
    blob = caffe_pb2.BlobProto.FromString(colour_dir.mean.read_bytes())
    assert not blob.HasField("shape")  # the legacy 4-d fields, as compute_image_mean writes
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 32, 32)
    images, _ = colour_arrays(read_lmdb(colour_dir.train.path)[1])
    want = (images.astype(np.float64).sum(axis=0) / len(images)).astype(np.float32)
    np.testing.assert_array_equal(np.array(blob.data, np.float32).reshape(3, 32, 32), want)


def test_colour_digits_tint_digit_and_background_apart():
    full, half, empty = (np.full((40, 8, 8), v) for v in (16.0, 8.0, 0.0))
    box = np.zeros((32, 32), bool)
    box[4:28, 4:28] = True
    ink = datasets.colour_digits(full, 16.0, seed=7).astype(int)
    digit, background = ink[:, :, 16, 16], ink[:, :, 0, 0]
    # A full digit fills the 24x24 box with its colour; the rest is background.
    np.testing.assert_array_equal(ink[:, :, box], np.repeat(digit[:, :, None], box.sum(), 2))
    np.testing.assert_array_equal(
        ink[:, :, ~box], np.repeat(background[:, :, None], (~box).sum(), 2)
    )
    assert (abs(digit - background) >= datasets.MIN_CONTRAST).all()
    assert len({tuple(c) for c in digit}) > 30  # colours differ from image to image
    mid = datasets.colour_digits(half, 16.0, seed=7).astype(int)[:, :, 16, 16]
    np.testing.assert_array_equal(mid, np.rint((digit + background) / 2))
    blank = datasets.colour_digits(empty, 16.0, seed=7)
    np.testing.assert_array_equal(blank, np.broadcast_to(background[:, :, None, None], blank.shape))


def test_unmodified_cifar10_quick_runs_from_the_colour_directory(colour_dir, monkeypatch):
    _, records = read_lmdb(colour_dir.train.path)
    monkeypatch.chdir(colour_dir.out_dir)
    net = Net(str(REPO / "examples" / "cifar10" / "cifar10_quick_train_test.prototxt"), "TRAIN")
    try:
        net.forward()
        images, labels = colour_arrays(records[:100])
        mean = np.array(caffe_pb2.BlobProto.FromString(colour_dir.mean.read_bytes()).data)
        want = images.astype(np.float32) - mean.astype(np.float32).reshape(3, 32, 32)
        np.testing.assert_array_equal(net.blobs["data"].data, want)
        np.testing.assert_array_equal(net.blobs["label"].data.ravel(), labels)
        assert np.isfinite(net.blobs["loss"].data).all()
    finally:
        del net
        gc.collect()
