"""Caffe's protobuf schema (wire-compatible subset) and its generated module.

Use ``from caffe_bridge.proto import caffe_pb2``.  The module is generated from
``caffe.proto`` by ``python -m caffe_bridge.proto.regenerate`` and committed; it
is not imported here so that regeneration works even when it is stale.
"""
