"""The protobuf schema: generated module up to date, wire compatibility with Caffe."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest
from google.protobuf import text_format

from caffe_bridge.proto import caffe_pb2

PROTO_DIR = Path(__file__).resolve().parents[2] / "caffe_bridge" / "proto"


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools is not installed"
)
def test_regenerating_gives_the_committed_module(tmp_path):
    from caffe_bridge.proto.regenerate import generate

    fresh = generate(tmp_path)
    assert fresh.read_bytes() == (PROTO_DIR / "caffe_pb2.py").read_bytes(), (
        "caffe_pb2.py is stale: run python -m caffe_bridge.proto.regenerate"
    )


def test_field_numbers_match_caffe_on_the_wire():
    # Tags written by hand from Caffe's caffe.proto: LayerParameter.convolution_param = 106,
    # ConvolutionParameter.num_output = 1, LayerParameter.name = 1.
    layer = caffe_pb2.LayerParameter(name="c")
    layer.convolution_param.num_output = 7
    assert layer.SerializeToString() == b"\x0a\x01c" + b"\xd2\x06\x02\x08\x07"
    # BlobProto.data = 5, packed floats.
    blob = caffe_pb2.BlobProto(data=[1.0, 2.0])
    assert blob.SerializeToString() == b"\x2a\x08" + struct.pack("<2f", 1.0, 2.0)
    numbers = {
        ("NetParameter", "layer"): 100,
        ("NetParameter", "layers"): 2,
        ("LayerParameter", "transform_param"): 100,
        ("LayerParameter", "data_param"): 107,
        ("LayerParameter", "inner_product_param"): 117,
        ("LayerParameter", "batch_norm_param"): 139,
        ("LayerParameter", "input_param"): 143,
        ("SolverParameter", "momentum2"): 39,
        ("SolverParameter", "iter_size"): 36,
        ("SolverParameter", "type"): 40,
        ("V1LayerParameter", "blobs_lr"): 7,
        ("Datum", "encoded"): 7,
        # The parameters of the layers of issue 19 (item 12), as Caffe numbers them.
        ("LayerParameter", "contrastive_loss_param"): 105,
        ("LayerParameter", "image_data_param"): 115,
        ("LayerParameter", "infogain_loss_param"): 116,
        ("LayerParameter", "threshold_param"): 128,
        ("LayerParameter", "spp_param"): 132,
        ("LayerParameter", "reduction_param"): 136,
        ("LayerParameter", "embed_param"): 137,
        ("LayerParameter", "tile_param"): 138,
        ("LayerParameter", "elu_param"): 140,
        ("LayerParameter", "crop_param"): 144,
        ("ImageDataParameter", "root_folder"): 12,
        ("ImageDataParameter", "is_color"): 11,
        ("ContrastiveLossParameter", "legacy_version"): 2,
        ("SPPParameter", "pyramid_height"): 1,
    }
    for (msg, field), number in numbers.items():
        assert getattr(caffe_pb2, msg).DESCRIPTOR.fields_by_name[field].number == number


def test_defaults_and_enums():
    s = caffe_pb2.SolverParameter()
    assert (s.type, s.solver_mode, s.random_seed, s.average_loss) == ("SGD", s.GPU, -1, 1)
    assert s.delta == pytest.approx(1e-8) and s.momentum2 == pytest.approx(0.999)
    text_format.Parse("solver_mode: FPGA", s)
    assert s.solver_mode == 2
    assert caffe_pb2.TRAIN == 0 and caffe_pb2.TEST == 1
    assert caffe_pb2.NetState().phase == caffe_pb2.TEST
    assert caffe_pb2.PoolingParameter().stride == 1
    assert caffe_pb2.FillerParameter().type == "constant"
    assert caffe_pb2.DataParameter().backend == caffe_pb2.DataParameter.LEVELDB


def test_example_solver_files_parse():
    from caffe_bridge.datasets import example_dir
    from caffe_bridge.io import read_solver

    files = sorted(example_dir("mnist").parent.glob("*/*solver*.prototxt"))
    assert files
    for path in files:
        solver = read_solver(path)
        assert solver.base_lr > 0, path
