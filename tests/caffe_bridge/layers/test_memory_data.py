"""MemoryData: pycaffe's set_input_arrays, Caffe's AddMatVector transform, batching, errors."""

import numpy as np
import pytest
from google.protobuf import text_format

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerContext, LayerError
from caffe_bridge.layers.memory_data import MemoryDataLayer
from caffe_bridge.proto import caffe_pb2

PARAM = "memory_data_param { batch_size: 2 channels: 3 height: 2 width: 4 }"


def make(extra: str = "", param: str = PARAM) -> tuple[MemoryDataLayer, list[Blob]]:
    text = f'name: "mem" type: "MemoryData" top: "data" top: "label" {param} {extra}'
    layer = MemoryDataLayer(text_format.Parse(text, caffe_pb2.LayerParameter()), LayerContext())
    top = [Blob(), Blob()]
    layer.check_blob_counts([], top)
    layer.setup([], top)
    layer.reshape([], top)
    return layer, top


def test_tops_shaped_from_param():
    _, top = make()
    assert top[0].shape == (2, 3, 2, 4) and top[1].shape == (2,)


def test_set_input_arrays_serves_batches_in_order_and_wraps():
    layer, top = make()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((6, 3, 2, 4)).astype(np.float32)
    labels = np.arange(6, dtype=np.float32)
    layer.set_input_arrays(data, labels)
    for start in (0, 2, 4, 0, 2):
        layer.forward([], top)
        np.testing.assert_array_equal(top[0].data, data[start : start + 2])
        np.testing.assert_array_equal(top[1].data, labels[start : start + 2])
    # The layer took a copy: later changes to the caller's array do not leak in.
    data[:] = 0
    layer.forward([], top)
    assert np.abs(top[0].data).sum() > 0


def test_set_input_arrays_accepts_pycaffe_label_shape_and_other_dtypes():
    layer, top = make()
    data = np.arange(2 * 24, dtype=np.float64).reshape(2, 3, 2, 4)
    layer.set_input_arrays(data, np.array([[[[3]]], [[[7]]]], dtype=np.int32))
    layer.forward([], top)
    assert top[0].data.dtype == np.float32 and top[1].data.tolist() == [3.0, 7.0]
    np.testing.assert_array_equal(top[0].data, data)


def test_set_input_arrays_does_not_transform_and_warns_like_caffe():
    layer, top = make("transform_param { scale: 0.5 mean_value: 1 }")
    data = np.full((2, 3, 2, 4), 5.0, np.float32)
    with pytest.warns(UserWarning, match="does not apply transform_param"):
        layer.set_input_arrays(data, np.zeros(2))
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, 5.0)


def test_add_images_applies_mean_value_then_scale():
    layer, top = make(
        "transform_param { scale: 0.00390625 mean_value: 10 mean_value: 20 mean_value: 30 }"
    )
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 3, 2, 4), dtype=np.uint8)
    layer.add_images(images, [1, 2, 3, 4])
    want = (images.astype(np.float64) - np.array([10, 20, 30])[None, :, None, None]) / 256
    layer.forward([], top)
    np.testing.assert_allclose(top[0].data, want[:2], rtol=1e-6)
    assert top[1].data.tolist() == [1.0, 2.0]
    # Caffe: new images only after the previous ones were all consumed.
    with pytest.raises(LayerError, match="'mem'.*not all been served"):
        layer.add_images(images, [0, 0, 0, 0])
    layer.forward([], top)
    np.testing.assert_allclose(top[0].data, want[2:], rtol=1e-6)
    layer.add_images(images[:2], [9, 9])  # now accepted
    layer.forward([], top)
    assert top[1].data.tolist() == [9.0, 9.0]


def test_add_images_single_mean_value_applies_to_every_channel():
    layer, top = make("transform_param { scale: 2 mean_value: 1 }")
    layer.add_images(np.full((2, 3, 2, 4), 4, np.uint8), [0, 1])
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, 6.0)


@pytest.mark.parametrize(
    "data_shape, labels_shape, pattern",
    [
        ((3, 3, 2, 4), (3,), r"positive multiple of memory_data_param\.batch_size \(2\)"),
        ((0, 3, 2, 4), (0,), "positive multiple"),
        ((2, 3, 2, 5), (2,), r"does not match memory_data_param \(n, 3, 2, 4\)"),
        ((2, 24), (2,), "must be 4-D"),
        ((4, 3, 2, 4), (2,), r"4 images but labels of shape \(2,\)"),
    ],
)
def test_set_input_arrays_size_errors(data_shape, labels_shape, pattern):
    layer, _ = make()
    with pytest.raises(
        LayerError, match=f"layer 'mem' \\(MemoryData\\): set_input_arrays: .*{pattern}"
    ):
        layer.set_input_arrays(np.zeros(data_shape), np.zeros(labels_shape))


def test_forward_without_input_is_an_error():
    layer, top = make()
    with pytest.raises(LayerError, match="'mem'.*no input: call set_input_arrays"):
        layer.forward([], top)


def test_add_images_crops_to_the_param_shape():
    # Caffe's MemoryData with crop_size: larger images, cropped (centrally in TEST).
    text = (
        'name: "mem" type: "MemoryData" top: "data" top: "label" include { phase: TEST } '
        "memory_data_param { batch_size: 1 channels: 1 height: 2 width: 2 } "
        "transform_param { crop_size: 2 }"
    )
    layer = MemoryDataLayer(
        text_format.Parse(text, caffe_pb2.LayerParameter()), LayerContext(phase="TEST")
    )
    top = [Blob(), Blob()]
    layer.setup([], top)
    images = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4)
    layer.add_images(images, [5])
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, images[:, :, 1:3, 1:3])
    with pytest.raises(LayerError, match=r"'mem'.*add_images.*crop_size 2 is larger"):
        layer.add_images(np.zeros((1, 1, 1, 1), np.uint8), [0])
    with pytest.raises(LayerError, match=r"'mem'.*add_images.*become \(2, 2, 2\)"):
        layer.add_images(np.zeros((1, 2, 3, 3), np.uint8), [0])


@pytest.mark.parametrize(
    "param, extra, pattern",
    [
        ("memory_data_param { batch_size: 2 channels: 3 height: 2 }", "", r"width = 0"),
        ("", "", r"batch_size = 0, channels = 0, height = 0, width = 0"),
        (PARAM, "transform_param { mean_value: 1 mean_value: 2 }", r"mean_value.*once per channel"),
        (PARAM, 'transform_param { mean_file: "m" mean_value: 2 }', r"mean_file or mean_value"),
        (PARAM, 'transform_param { mean_file: "/nonexistent/mean.binaryproto" }', r"mean_file"),
    ],
)
def test_setup_errors(param, extra, pattern):
    with pytest.raises(LayerError, match=f"'mem'.*{pattern}"):
        make(extra, param)


def test_memory_data_feeds_a_net(tmp_path):
    from caffe_bridge.net import Net

    proto = tmp_path / "mem.prototxt"
    proto.write_text(
        'name: "m" layer { name: "mem" type: "MemoryData" top: "data" top: "label" '
        "memory_data_param { batch_size: 4 channels: 1 height: 3 width: 3 } } "
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
        'inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } } '
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }'
    )
    net = Net(proto, "TRAIN", seed=0)
    assert net.blobs["data"].data.shape == (4, 1, 3, 3) and net.blobs["label"].data.shape == (4,)
    data = np.random.default_rng(0).standard_normal((8, 1, 3, 3)).astype(np.float32)
    net.set_input_arrays(data, np.array([0, 1, 0, 1, 1, 0, 1, 0]))
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[:4])
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [1, 0, 1, 0])
    assert np.isfinite(net.blobs["loss"].data).all()
