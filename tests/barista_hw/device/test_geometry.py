"""barista_hw.device.geometry: Caffe's output sizes, checked against the Caffe runtime."""

from __future__ import annotations

import itertools

import pytest

from barista_base.errors import InputError
from barista_hw.device.geometry import ConvGeometry, PoolGeometry
from caffe_bridge.im2col import conv_output_size
from caffe_bridge.layers import LayerError
from caffe_bridge.testing import make_layer


def test_conv_output_matches_the_runtime() -> None:
    for size, k, pad, stride, dil in itertools.product(
        (5, 8, 13), (1, 3), (0, 1, 2), (1, 2, 3), (1, 2)
    ):
        if dil * (k - 1) + 1 > size + 2 * pad:
            continue
        g = ConvGeometry(2, size, size, (k, k), (stride, stride), (pad, pad), (dil, dil))
        assert g.out_height == conv_output_size(size, k, pad, stride, dil)


def test_pool_output_matches_caffes_pooling_layer() -> None:
    from caffe_bridge.blob import Blob

    for size, k, stride, pad in itertools.product((5, 6, 7, 12), (2, 3), (1, 2, 3), (0, 1)):
        if pad >= k:
            continue
        layer = make_layer(
            f'type: "Pooling" pooling_param {{ pool: MAX kernel_size: {k} stride: {stride} '
            f"pad: {pad} }}"
        )
        bottom, top = [Blob((1, 3, size, size))], [Blob()]
        layer.setup(bottom, top)
        try:
            layer.reshape(bottom, top)
        except LayerError:  # a last window outside the input: refused by both
            with pytest.raises(InputError, match="outside"):
                PoolGeometry(3, size, size, (k, k), (stride, stride), (pad, pad))
            continue
        g = PoolGeometry(3, size, size, (k, k), (stride, stride), (pad, pad))
        assert top[0].shape == (1, 3, g.out_height, g.out_width), (size, k, stride, pad)


def test_bad_geometries_are_named() -> None:
    with pytest.raises(InputError, match="groups"):
        ConvGeometry(3, 8, 8, (3, 3), group=2)
    with pytest.raises(InputError, match="does not fit"):
        ConvGeometry(1, 2, 2, (5, 5))
    with pytest.raises(InputError, match="padding"):
        PoolGeometry(1, 8, 8, (2, 2), pad=(2, 2))
