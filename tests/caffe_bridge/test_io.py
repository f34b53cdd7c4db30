"""Reading and writing Caffe files: caffemodels, binaryprotos, text errors."""

from __future__ import annotations

import struct
import textwrap

import numpy as np
import pytest

from barista_base.errors import InputError
from caffe_bridge import Net, caffe_pb2
from caffe_bridge.io import (
    array_to_blobproto,
    blobproto_to_array,
    layer_blocks,
    read_binaryproto,
    read_caffemodel,
    read_net,
    write_binaryproto,
    write_caffemodel,
)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _vfield(number: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return _varint(number << 3) + _varint(value)


IP_NET = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        inner_product_param { num_output: 2 bias_term: false } }
"""


def _ip_net(tmp_path):
    path = tmp_path / "ip.prototxt"
    path.write_text(IP_NET)
    return Net(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_hand_built_caffemodel_loads(tmp_path, legacy):
    weights = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    data = _field(5, struct.pack("<6f", *weights.ravel()))
    if legacy:
        # Old caffemodels: num/channels/height/width = 1, 1, 2, 3 (fields 1-4).
        shape = _vfield(1, 1) + _vfield(2, 1) + _vfield(3, 2) + _vfield(4, 3)
    else:
        shape = _field(7, _field(1, _varint(2) + _varint(3)))  # shape { dim: [2, 3] packed }
    blob = _field(7, shape + data)
    layer = _field(100, _field(1, b"ip") + _field(2, b"InnerProduct") + blob)
    ignored = _field(100, _field(1, b"not_in_net") + _field(2, b"ReLU"))
    path = tmp_path / "hand.caffemodel"
    path.write_bytes(_field(1, b"hand") + ignored + layer)

    param = read_caffemodel(path)
    assert param.name == "hand" and param.layer[1].name == "ip"
    np.testing.assert_array_equal(
        blobproto_to_array(param.layer[1].blobs[0]).reshape(2, 3), weights
    )
    net = _ip_net(tmp_path)
    net.copy_from(path)
    np.testing.assert_array_equal(net.params["ip"][0].data, weights)
    out = net.forward(x=np.array([[1.0, 2.0, 3.0]], np.float32))
    np.testing.assert_allclose(out["y"], [[-2.5 - 3.0 - 1.5, 0.5 + 3.0 + 7.5]])


def test_caffemodel_round_trip_is_identical(tmp_path):
    net = _ip_net(tmp_path)
    net.params["ip"][0].data[...] = np.random.default_rng(0).standard_normal((2, 3))
    first = tmp_path / "a.caffemodel"
    net.save(first)
    param = read_caffemodel(first)
    second = tmp_path / "b.caffemodel"
    write_caffemodel(second, param)
    assert first.read_bytes() == second.read_bytes()
    back = _ip_net(tmp_path)
    back.copy_from(second)
    np.testing.assert_array_equal(back.params["ip"][0].data, net.params["ip"][0].data)
    # Saved layers keep their definitions, as Caffe's snapshots do.
    assert [lp.type for lp in param.layer] == ["Input", "InnerProduct"]
    assert list(param.layer[1].blobs[0].shape.dim) == [2, 3]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file


def test_truncated_and_missing_caffemodel(tmp_path):
    net = _ip_net(tmp_path)
    path = tmp_path / "w.caffemodel"
    net.save(path)
    data = path.read_bytes()
    bad = tmp_path / "truncated.caffemodel"
    bad.write_bytes(data[: len(data) - 9])
    with pytest.raises(InputError, match=r"truncated\.caffemodel: not a valid binary caffemodel"):
        read_caffemodel(bad)
    with pytest.raises(InputError, match=r"truncated\.caffemodel"):
        net.copy_from(bad)
    with pytest.raises(InputError, match=r"nothere\.caffemodel: no such file"):
        read_caffemodel(tmp_path / "nothere.caffemodel")
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_caffemodel(empty)


def test_blobproto_forms(tmp_path):
    a = np.random.default_rng(1).standard_normal((1, 3, 4, 5)).astype(np.float32)
    path = tmp_path / "mean.binaryproto"
    write_binaryproto(path, a)
    blob = caffe_pb2.BlobProto.FromString(path.read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 4, 5)
    assert not blob.HasField("shape")
    np.testing.assert_array_equal(read_binaryproto(path), a)
    shaped = array_to_blobproto(a[0, 0])
    assert list(shaped.shape.dim) == [4, 5]
    np.testing.assert_array_equal(blobproto_to_array(shaped), a[0, 0])
    double = array_to_blobproto(a[0], double=True)
    assert len(double.double_data) == 60 and not len(double.data)
    np.testing.assert_array_equal(blobproto_to_array(double), a[0])
    with_diff = array_to_blobproto(a[0], a[0] * 2)
    np.testing.assert_array_equal(blobproto_to_array(with_diff, diff=True), 2 * a[0])
    broken = caffe_pb2.BlobProto(data=[1.0, 2.0])
    broken.shape.dim.extend([3])
    with pytest.raises(InputError, match=r"shape \(3,\) holds 2 data values"):
        blobproto_to_array(broken)


def test_text_errors_name_file_line_and_layer(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text(
        textwrap.dedent(
            """\
            name: "bad"
            layer {
              name: "conv"
              type: "Convolution"
              convolution_param { num_outptu: 3 }
            }
            """
        )
    )
    with pytest.raises(InputError) as exc:
        read_net(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:5:") and "num_outptu" in msg and "(in layer 'conv')" in msg


def test_layer_blocks_locator():
    text = textwrap.dedent(
        """\
        # layer { name: "commented" }
        name: "n"
        layer {
          name: "a"  # comment with } brace
          type: "X" param { name: "inner" }
        }
        layers { type: RELU name: "b" }
        layer { name: 'c\\'q' }
        """
    )
    assert layer_blocks(text) == [("a", 3), ("b", 7), ("c'q", 8)]
