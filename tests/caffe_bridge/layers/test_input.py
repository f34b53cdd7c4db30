"""Input and DummyData layers: shapes (incl. Caffe's legacy 4-D fields), fillers, errors."""

import numpy as np
import pytest

from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerError
from caffe_bridge.testing import make_layer as make


def setup(layer, n_top: int) -> list[Blob]:
    top = [Blob() for _ in range(n_top)]
    layer.check_blob_counts([], top)
    layer.setup([], top)
    layer.reshape([], top)
    return top


def test_input_shape_once_applies_to_every_top():
    layer = make(
        'name: "in" type: "Input" input_param { shape { dim: 64 dim: 1 dim: 28 dim: 28 } }'
    )
    top = setup(layer, 2)
    assert [t.shape for t in top] == [(64, 1, 28, 28)] * 2


def test_input_shape_per_top_and_data_left_alone():
    layer = make(
        'name: "in" type: "Input" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } }'
    )
    top = setup(layer, 2)
    assert top[0].shape == (2, 3) and top[1].shape == (2,)
    top[0].data[...] = 7
    layer.reshape([], top)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, 7)


def test_input_without_shape_keeps_caller_shape():
    layer = make('name: "in" type: "Input"')
    top = [Blob((5, 4))]
    layer.setup([], top)
    layer.reshape([], top)
    assert top[0].shape == (5, 4)


def test_input_errors():
    layer = make('name: "in" type: "Input" input_param { shape { dim: 1 } shape { dim: 2 } }')
    with pytest.raises(LayerError, match=r"layer 'in' \(Input\).*2 shapes"):
        setup(layer, 3)
    with pytest.raises(LayerError, match="exactly 0 bottom"):
        make('name: "in" type: "Input"').check_blob_counts([Blob((1,))], [Blob()])


def test_dummy_data_constant_filled_once_at_setup():
    layer = make(
        'name: "d" type: "DummyData" dummy_data_param { '
        'data_filler { type: "constant" value: 3 } shape { dim: 2 dim: 4 } }'
    )
    top = setup(layer, 1)
    assert top[0].shape == (2, 4)
    np.testing.assert_array_equal(top[0].data, 3)
    top[0].data[...] = 9  # Caffe never refills a constant top
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, 9)


def test_dummy_data_default_filler_is_zero_and_legacy_dims():
    layer = make(
        'name: "d" type: "DummyData" dummy_data_param { '
        "num: 5 num: 6 channels: 2 height: 3 width: 4 }"
    )
    top = setup(layer, 2)
    assert top[0].shape == (5, 2, 3, 4) and top[1].shape == (6, 2, 3, 4)
    for t in top:
        np.testing.assert_array_equal(t.data, 0)


def test_dummy_data_random_fillers_refill_every_forward():
    layer = make(
        'name: "d" type: "DummyData" dummy_data_param { '
        'data_filler { type: "gaussian" std: 2 } data_filler { type: "constant" value: 1 } '
        "shape { dim: 100 dim: 10 } shape { dim: 3 } }"
    )
    top = setup(layer, 2)
    layer.forward([], top)
    first = top[0].data.copy()
    assert abs(first.std() - 2) < 0.2
    layer.forward([], top)
    assert not np.array_equal(first, top[0].data)
    np.testing.assert_array_equal(top[1].data, 1)


@pytest.mark.parametrize(
    "body,match",
    [
        ("shape { dim: 1 } num: 1 channels: 1 height: 1 width: 1", "both 'shape' and the legacy"),
        ("num: 1 num: 2 num: 3 channels: 1 height: 1 width: 1", "num must be given once"),
        ("shape { dim: 1 } shape { dim: 1 } shape { dim: 1 }", "shape must be given once"),
        (
            'data_filler { type: "constant" } data_filler { type: "constant" } '
            'data_filler { type: "constant" } shape { dim: 1 }',
            "data_filler must be given 0, 1 or 2",
        ),
        ('data_filler { type: "zeros" } shape { dim: 1 }', "unknown filler type 'zeros'"),
        ("shape { dim: -1 }", "negative blob dimension"),
    ],
)
def test_dummy_data_errors(body, match):
    layer = make(f'name: "dd" type: "DummyData" dummy_data_param {{ {body} }}')
    with pytest.raises(LayerError, match=rf"layer 'dd' \(DummyData\).*{match}"):
        setup(layer, 2)
