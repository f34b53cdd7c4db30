"""Caffe, read and run in Python: nets, layers, solvers and file formats.

The pycaffe-like entry points::

    from caffe_bridge import Net, TRAIN, TEST
    net = Net("lenet_train_test.prototxt", TRAIN, seed=1)
    out = net.forward()
"""

from .io import (
    array_to_blobproto,
    blobproto_to_array,
    read_binaryproto,
    read_caffemodel,
    read_net,
    read_solver,
    write_binaryproto,
    write_caffemodel,
)
from .net import TEST, TRAIN, Net
from .proto import caffe_pb2

__all__ = [
    "Net",
    "TRAIN",
    "TEST",
    "caffe_pb2",
    "array_to_blobproto",
    "blobproto_to_array",
    "read_binaryproto",
    "read_caffemodel",
    "read_net",
    "read_solver",
    "write_binaryproto",
    "write_caffemodel",
]
