"""The LMDB Data layer and Caffe's DataTransformer."""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from barista_base.errors import InputError
from caffe_bridge import Net, write_binaryproto


def data_net(
    tmp_path,
    transform: str = "",
    batch: int = 4,
    tops: str = 'top: "data" top: "label"',
    backend: str = "LMDB",
    source: str = "db",
) -> Path:
    text = f"""\
    layer {{
      name: "src"
      type: "Data"
      {tops}
      transform_param {{ {transform} }}
      data_param {{ source: "{source}" batch_size: {batch} backend: {backend} }}
    }}
    """
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 3, 6, 8), dtype=np.uint8)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sources are relative to the current directory
    return tmp_path


def test_records_in_key_order_with_wrap_around(root, datum_lmdb, images):
    datum_lmdb(root / "db", images, np.arange(5) + 10)
    net = Net(data_net(root), "TRAIN")
    assert net.blobs["data"].shape == (4, 3, 6, 8) and net.blobs["label"].shape == (4,)
    out = net.forward()
    np.testing.assert_array_equal(out["data"], images[:4].astype(np.float32))
    np.testing.assert_array_equal(out["label"], [10, 11, 12, 13])
    out = net.forward()
    np.testing.assert_array_equal(out["data"], images[[4, 0, 1, 2]].astype(np.float32))
    np.testing.assert_array_equal(out["label"], [14, 10, 11, 12])


def test_single_top_and_float_data(root, datum_lmdb):
    floats = np.random.default_rng(1).standard_normal((3, 2, 2, 2)).astype(np.float32)
    datum_lmdb(root / "db", floats)
    net = Net(data_net(root, batch=3, tops='top: "data"', transform="scale: 2"), "TEST")
    np.testing.assert_allclose(net.forward()["data"], 2 * floats, rtol=1e-6)


def test_scale_and_mean_values(root, datum_lmdb, images):
    datum_lmdb(root / "db", images)
    net = Net(data_net(root, "scale: 0.5 mean_value: 10"), "TEST")
    np.testing.assert_allclose(net.forward()["data"], (images[:4] - 10.0) * 0.5)
    net = Net(data_net(root, "mean_value: 1 mean_value: 2 mean_value: 3"), "TEST")
    mean = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(net.forward()["data"], images[:4] - mean)
    with pytest.raises(
        InputError, match=r"layer 'src'.*mean_value must be given once or once per channel \(3\)"
    ):
        Net(data_net(root, "mean_value: 1 mean_value: 2"), "TEST")


def test_mean_file_and_centre_crop_in_test(root, datum_lmdb, images):
    datum_lmdb(root / "db", images)
    mean = np.random.default_rng(2).uniform(0, 255, (1, 3, 6, 8)).astype(np.float32)
    write_binaryproto(root / "mean.binaryproto", mean)
    net = Net(data_net(root, 'mean_file: "mean.binaryproto" crop_size: 4'), "TEST")
    assert net.blobs["data"].shape == (4, 3, 4, 4)
    expected = (images[:4] - mean)[:, :, 1:5, 2:6]  # offsets (6-4)//2, (8-4)//2
    np.testing.assert_allclose(net.forward()["data"], expected, rtol=1e-6)
    write_binaryproto(root / "small.binaryproto", mean[:, :, :4])
    with pytest.raises(InputError, match=r"layer 'src'.*small\.binaryproto has shape \(3, 4, 8\)"):
        Net(data_net(root, 'mean_file: "small.binaryproto"'), "TEST")
    with pytest.raises(
        InputError, match=r"layer 'src'.*mean_file.*nothere\.binaryproto: no such file"
    ):
        Net(data_net(root, 'mean_file: "nothere.binaryproto"'), "TEST")


def test_random_crop_in_train_and_mirror_in_both_phases(root, datum_lmdb, images):
    datum_lmdb(root / "db", images[:1].repeat(4, axis=0))
    net = Net(data_net(root, "crop_size: 3 mirror: true", batch=64), "TRAIN", seed=3)
    out = net.forward()["data"]
    img = images[0].astype(np.float32)
    crops = {
        (h, w, m): (img[:, h : h + 3, w : w + 3][:, :, ::-1] if m else img[:, h : h + 3, w : w + 3])
        for h in range(4)
        for w in range(6)
        for m in (0, 1)
    }
    found = set()
    for sample in out:
        hits = [k for k, c in crops.items() if np.array_equal(c, sample)]
        assert hits, "a TRAIN sample is not a (mirrored) crop of the record"
        found.update(hits)
    assert len({(h, w) for h, w, _ in found}) > 5  # offsets vary
    assert {m for _, _, m in found} == {0, 1}  # some mirrored, some not
    # TEST: always the centre crop; mirrored at random, as Caffe's DataTransformer does.
    test = Net(data_net(root, "crop_size: 3 mirror: true", batch=16), "TEST", seed=3).forward()
    centre = img[:, 1:4, 2:5]
    flips = []
    for sample in test["data"]:
        flips.append(not np.array_equal(sample, centre))
        np.testing.assert_array_equal(sample, centre[:, :, ::-1] if flips[-1] else centre)
    assert any(flips) and not all(flips)


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # Caffe's records are BGR: store an RGB image whose BGR view is ``img``.
    Image.fromarray(img[::-1].transpose(1, 2, 0)).save(buf, format="PNG")
    return buf.getvalue()


def test_encoded_datums(root, datum_lmdb, images):
    pytest.importorskip("PIL")
    datum_lmdb(root / "db", images, encode=_png)
    net = Net(data_net(root), "TEST")
    np.testing.assert_array_equal(net.forward()["data"], images[:4].astype(np.float32))


def test_encoded_datums_without_pillow(root, datum_lmdb, images, monkeypatch):
    pytest.importorskip("PIL")
    datum_lmdb(root / "db", images, encode=_png)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(
        InputError, match=r"layer 'src' \(Data\).*source db: records are encoded.*Pillow"
    ):
        Net(data_net(root), "TEST")


def test_source_errors_at_construction(root, datum_lmdb, images):
    path = data_net(root, source="missing_lmdb")
    with pytest.raises(
        InputError,
        match=r"net\.prototxt:1: layer 'src' \(Data\): "
        r"data_param\.source missing_lmdb: no such LMDB",
    ):
        Net(path, "TRAIN")
    datum_lmdb(root / "empty", images[:0])
    with pytest.raises(InputError, match=r"layer 'src'.*source empty: the LMDB is empty"):
        Net(data_net(root, source="empty"), "TRAIN")
    (root / "junk").mkdir()
    (root / "junk" / "data.mdb").write_bytes(b"not an lmdb" * 100)
    with pytest.raises(InputError, match=r"layer 'src'.*source junk: cannot open as LMDB"):
        Net(data_net(root, source="junk"), "TRAIN")
    with pytest.raises(InputError, match=r"layer 'src'.*LEVELDB.*not supported"):
        Net(data_net(root, backend="LEVELDB"), "TRAIN")


def test_inconsistent_record_shapes(root, datum_lmdb, images):
    import lmdb

    datum_lmdb(root / "db", images)
    odd = np.zeros((1, 3, 5, 8), np.uint8)
    env = lmdb.open(str(root / "db"))
    from caffe_bridge import caffe_pb2

    d = caffe_pb2.Datum(channels=3, height=5, width=8, data=odd.tobytes())
    with env.begin(write=True) as txn:
        txn.put(b"00000003", d.SerializeToString())
    env.close()
    with pytest.raises(
        InputError,
        match=r"layer 'src'.*source db: record b'00000003': shape \(3, 5, 8\) differs from "
        r"the first record's \(3, 6, 8\)",
    ):
        Net(data_net(root), "TRAIN")


def test_state_dict_resumes_at_the_same_record(root, datum_lmdb, images):
    datum_lmdb(root / "db", images[:5])
    first = Net(data_net(root, "", batch=3), "TRAIN", seed=1)
    first.forward()
    state = first.layer_dict["src"].state_dict()
    expected = first.forward()["data"].copy()  # records 3, 4, 0 (wrapped)
    second = Net(data_net(root, "", batch=3), "TRAIN", seed=1)
    second.layer_dict["src"].load_state_dict(state)
    np.testing.assert_array_equal(second.forward()["data"], expected)


def test_records_and_position_follow_the_batches(root, datum_lmdb, images):
    """``records()``: every record as stored, in the order batches read them; ``position``:
    the next record's index, wrapping, and restored with the state."""
    datum_lmdb(root / "db", images, np.arange(5) + 10)
    net = Net(data_net(root, "scale: 0.5", batch=3), "TRAIN")
    layer = net.layer_dict["src"]
    stored, labels = layer.records()
    np.testing.assert_array_equal(stored, images)
    np.testing.assert_array_equal(labels, np.arange(5) + 10)
    assert (layer.entries, layer.position) == (5, 0)
    net.forward()
    assert layer.position == 3
    state = layer.state_dict()
    net.forward()  # records 3, 4, 0
    assert layer.position == 1
    layer.load_state_dict(state)
    assert layer.position == 3
