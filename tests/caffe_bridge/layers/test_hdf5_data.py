"""HDF5Data (file list, order, wrap, shuffle, errors at setup) and HDF5Output."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from google.protobuf import text_format

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerContext, LayerError
from caffe_bridge.layers.hdf5_data import HDF5DataLayer, HDF5OutputLayer
from caffe_bridge.proto import caffe_pb2


def make(cls, text: str, seed: int = 0):
    param = text_format.Parse(text, caffe_pb2.LayerParameter())
    return cls(param, LayerContext(rng=np.random.default_rng(seed)))


def hdf5_data(source: Path, batch: int, shuffle: bool = False, tops=("data", "label"), seed=0):
    tops_text = " ".join(f'top: "{t}"' for t in tops)
    text = (
        f'name: "h5" type: "HDF5Data" {tops_text} hdf5_data_param {{ source: "{source}" '
        f"batch_size: {batch} shuffle: {'true' if shuffle else 'false'} }}"
    )
    return make(HDF5DataLayer, text, seed)


def write_h5(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for name, arr in datasets.items():
            f.create_dataset(name, data=arr)
    return path


def setup(layer, n_top: int = 2) -> list[Blob]:
    top = [Blob() for _ in range(n_top)]
    layer.check_blob_counts([], top)
    layer.setup([], top)
    layer.reshape([], top)
    return top


@pytest.fixture
def two_files(tmp_path):
    """Rows numbered 0..7 over two files (5 + 3 rows); data row k is filled with k."""
    rows = np.arange(8, dtype=np.float64)
    data = np.broadcast_to(rows[:, None, None], (8, 2, 3)).copy()
    f1 = write_h5(tmp_path / "a.h5", data=data[:5], label=rows[:5])
    f2 = write_h5(tmp_path / "b.h5", data=data[5:], label=rows[5:])
    source = tmp_path / "list.txt"
    source.write_text(f"{f1}\n\n  {f2}  \n")
    return source


def served_rows(layer, top, n_batches: int) -> list[float]:
    out = []
    for _ in range(n_batches):
        layer.forward([], top)
        # Every element of a data row equals its label: the tops stay in step.
        np.testing.assert_array_equal(top[0].data, top[1].data[:, None, None] * np.ones((2, 3)))
        out += top[1].data.tolist()
    return out


def test_rows_in_file_order_wrapping_around(two_files):
    layer = hdf5_data(two_files, batch=3)
    top = setup(layer)
    assert top[0].shape == (3, 2, 3) and top[1].shape == (3,)
    assert top[0].data.dtype == np.float32
    # 4 batches of 3 cross the file boundary mid-batch and wrap to the first file.
    assert served_rows(layer, top, 4) == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]


def test_single_file_wraps(tmp_path):
    f = write_h5(tmp_path / "one.h5", data=np.arange(5.0).reshape(5, 1), label=np.arange(5))
    (tmp_path / "list.txt").write_text(str(f))
    layer = hdf5_data(tmp_path / "list.txt", batch=4)
    top = setup(layer)
    assert top[0].shape == (4, 1)
    got = []
    for _ in range(3):
        layer.forward([], top)
        got += top[0].data[:, 0].tolist()
    assert got == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_shuffle_serves_every_row_once_per_epoch(two_files):
    layer = hdf5_data(two_files, batch=8, shuffle=True, seed=11)
    top = setup(layer)
    epochs = [served_rows(layer, top, 1) for _ in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(8))
        # Shuffling permutes rows within each file, files as wholes.
        a_first = (set(e[:5]), set(e[5:])) == ({0, 1, 2, 3, 4}, {5, 6, 7})
        b_first = (set(e[:3]), set(e[3:])) == ({5, 6, 7}, {0, 1, 2, 3, 4})
        assert a_first or b_first, e
    assert any(e != list(range(8)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1


def test_relative_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    write_h5(tmp_path / "d" / "x.h5", data=np.ones((2, 3), np.int16))
    (tmp_path / "d" / "list.txt").write_text("d/x.h5\n")
    monkeypatch.chdir(tmp_path)
    layer = hdf5_data(Path("d/list.txt"), batch=2, tops=("data",))
    top = setup(layer, 1)
    layer.forward([], top)
    assert top[0].data.dtype == np.float32
    np.testing.assert_array_equal(top[0].data, np.ones((2, 3)))


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("no_source_file", r"'h5'.*source '.*missing\.txt': cannot read"),
        ("empty_list", r"'h5'.*no HDF5 file names listed"),
        ("missing_h5", r"'h5'.*cannot open HDF5 file '.*nope\.h5' \(listed at .*list\.txt:2\)"),
        ("missing_dataset", r"'h5'.*a\.h5.*has no dataset 'label'.*\(datasets: data\)"),
        ("rows_disagree", r"'h5'.*disagree on the number of rows \('data': 4, 'label': 3\)"),
        ("row_shape_changes", r"'h5'.*dataset 'data' in '.*b\.h5'.*\(2, 2\).*\(2, 3\)"),
        ("no_rows", r"'h5'.*have no rows"),
        ("strings", r"'h5'.*dataset 'label'.*only integer and floating-point"),
    ],
)
def test_bad_files_fail_at_setup_naming_layer_and_path(tmp_path, case, pattern):
    source = tmp_path / "list.txt"
    good = write_h5(tmp_path / "a.h5", data=np.zeros((4, 2, 3)), label=np.zeros(4))
    if case == "no_source_file":
        source = tmp_path / "missing.txt"
    elif case == "empty_list":
        source.write_text("\n  \n")
    elif case == "missing_h5":
        source.write_text(f"{good}\n{tmp_path / 'nope.h5'}\n")
    elif case == "missing_dataset":
        write_h5(good, data=np.zeros((4, 2, 3)))
        source.write_text(str(good))
    elif case == "rows_disagree":
        write_h5(good, data=np.zeros((4, 2, 3)), label=np.zeros(3))
        source.write_text(str(good))
    elif case == "row_shape_changes":
        other = write_h5(tmp_path / "b.h5", data=np.zeros((4, 2, 2)), label=np.zeros(4))
        source.write_text(f"{good}\n{other}\n")
    elif case == "no_rows":
        write_h5(good, data=np.zeros((0, 2, 3)), label=np.zeros(0))
        source.write_text(str(good))
    elif case == "strings":
        write_h5(good, data=np.zeros((2, 1)), label=np.array([b"a", b"b"]))
        source.write_text(str(good))
    layer = hdf5_data(source, batch=2)
    with pytest.raises(LayerError, match=pattern):
        setup(layer)


def test_parameter_errors(two_files):
    with pytest.raises(LayerError, match="batch_size must be positive"):
        setup(hdf5_data(two_files, batch=0))
    text = (
        f'name: "h5" type: "HDF5Data" top: "data" top: "label" transform_param {{ scale: 2 }} '
        f'hdf5_data_param {{ source: "{two_files}" batch_size: 2 }}'
    )
    with pytest.raises(LayerError, match="does not transform"):
        setup(make(HDF5DataLayer, text))
    with pytest.raises(LayerError, match="source is not set"):
        setup(
            make(
                HDF5DataLayer,
                'name: "h5" type: "HDF5Data" top: "data" hdf5_data_param { batch_size: 2 }',
            ),
            1,
        )


def test_hdf5_output_appends_4d_float_and_round_trips(tmp_path):
    out = tmp_path / "out.h5"
    write_h5(out, junk=np.zeros(3))  # truncated at setup, as in Caffe
    layer = make(
        HDF5OutputLayer,
        f'name: "o" type: "HDF5Output" bottom: "d" bottom: "l" '
        f'hdf5_output_param {{ file_name: "{out}" }}',
    )
    rng = np.random.default_rng(0)
    bottom = [Blob((2, 3, 4)), Blob((2,))]
    layer.check_blob_counts(bottom, [])
    layer.setup(bottom, [])
    with h5py.File(out, "r") as f:
        assert list(f) == []
    batches = []
    for _ in range(2):
        bottom[0].data[...] = rng.standard_normal((2, 3, 4))
        bottom[1].data[...] = rng.integers(0, 10, 2)
        batches.append((bottom[0].data.copy(), bottom[1].data.copy()))
        layer.reshape(bottom, [])
        layer.forward(bottom, [])
    with h5py.File(out, "r") as f:
        assert f["data"].shape == (4, 3, 4, 1) and f["label"].shape == (4, 1, 1, 1)
        assert f["data"].dtype == np.float32
        np.testing.assert_array_equal(
            f["data"][()][..., 0], np.concatenate([b[0] for b in batches])
        )
        np.testing.assert_array_equal(
            f["label"][()].ravel(), np.concatenate([b[1] for b in batches])
        )
    # What HDF5Output writes, HDF5Data reads back.
    (tmp_path / "list.txt").write_text(str(out))
    reader = hdf5_data(tmp_path / "list.txt", batch=4)
    top = setup(reader)
    reader.forward([], top)
    np.testing.assert_array_equal(top[0].data[..., 0], np.concatenate([b[0] for b in batches]))


def test_hdf5_output_rejects_mismatched_bottoms(tmp_path):
    layer = make(
        HDF5OutputLayer,
        f'name: "o" type: "HDF5Output" hdf5_output_param {{ file_name: "{tmp_path / "o.h5"}" }}',
    )
    bottom = [Blob((3, 2)), Blob((2,))]
    layer.setup(bottom, [])
    with pytest.raises(LayerError, match="'o'.*batch size"):
        layer.reshape(bottom, [])
    with pytest.raises(LayerError, match="file_name is not set"):
        make(HDF5OutputLayer, 'name: "o" type: "HDF5Output"').setup(bottom, [])


def test_hdf5_data_feeds_a_net(two_files, tmp_path):
    from caffe_bridge.net import Net

    proto = tmp_path / "h5.prototxt"
    proto.write_text(
        f'name: "h" layer {{ name: "h5" type: "HDF5Data" top: "data" top: "label" '
        f'hdf5_data_param {{ source: "{two_files}" batch_size: 4 }} }} '
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
        'inner_product_param { num_output: 8 weight_filler { type: "gaussian" std: 0.1 } } } '
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }'
    )
    net = Net(proto, "TRAIN", seed=0)
    assert net.blobs["data"].data.shape == (4, 2, 3) and net.blobs["label"].data.shape == (4,)
    labels = []
    for _ in range(3):
        net.forward()
        labels += net.blobs["label"].data.tolist()
    assert labels == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]
    assert np.isfinite(net.blobs["loss"].data).all()
