"""Fillers: Caffe's statistics checks (test_filler.cpp), sparse gaussian, bilinear, errors."""

import numpy as np
import pytest
from google.protobuf import text_format

from barista_base.errors import InputError
from caffe_bridge.blob import Blob
from caffe_bridge.fillers import fill
from caffe_bridge.proto import caffe_pb2


def filler(text: str) -> caffe_pb2.FillerParameter:
    return text_format.Parse(text, caffe_pb2.FillerParameter())


def filled(text: str, shape=(2, 3, 4, 5), seed: int = 1701) -> np.ndarray:
    blob = Blob(shape)
    fill(blob, filler(text), np.random.default_rng(seed))
    assert blob.data.dtype == np.float32
    return blob.data


def test_constant():
    data = filled('type: "constant" value: 10')
    np.testing.assert_array_equal(data, 10)


def test_default_filler_is_constant_zero():
    blob = Blob((3, 4))
    blob.data[...] = 5
    fill(blob, caffe_pb2.FillerParameter(), np.random.default_rng(0))
    np.testing.assert_array_equal(blob.data, 0)


def test_uniform_stays_in_range():
    data = filled('type: "uniform" min: 1 max: 2')
    assert data.min() >= 1 and data.max() <= 2
    assert data.std() > 0.1  # not a constant


def test_positive_unitball_rows_sum_to_one():
    data = filled('type: "positive_unitball"')
    assert data.min() >= 0 and data.max() <= 1
    sums = data.reshape(2, -1).sum(axis=1)
    assert np.all((sums >= 0.999) & (sums <= 1.001))


def test_gaussian_statistics():
    data = filled('type: "gaussian" mean: 10 std: 0.1').astype(np.float64)
    # Caffe's (very loose) bounds, plus a tighter one that a wrong std would fail.
    assert 10 - 0.5 <= data.mean() <= 10 + 0.5
    var = ((data - 10) ** 2).mean()
    assert 0.01 / 5 <= var <= 0.01 * 5
    assert abs(data.std() - 0.1) < 0.02


def test_gaussian_sparse_keeps_sparse_over_num_outputs():
    # Caffe keeps each weight with probability sparse / shape[0].
    data = filled('type: "gaussian" sparse: 5', shape=(20, 2000))
    frac = np.count_nonzero(data) / data.size
    assert abs(frac - 5 / 20) < 0.01
    nonzero = data[data != 0]
    assert abs(nonzero.std() - 1.0) < 0.05


@pytest.mark.parametrize("kind", ["xavier", "msra"])
@pytest.mark.parametrize(
    "norm,n",
    [("FAN_IN", 2 * 4 * 5), ("FAN_OUT", 1000 * 4 * 5), ("AVERAGE", (2 * 4 * 5 + 1000 * 4 * 5) / 2)],
)
def test_variance_scaled_fillers(kind, norm, n):
    data = filled(f'type: "{kind}" variance_norm: {norm}', shape=(1000, 2, 4, 5))
    data = data.astype(np.float64)
    # Caffe's test: mean ~ 0 and std ~ sqrt(2/n) (within 0.1) for both fillers.
    assert abs(data.mean()) < 0.1
    target = np.sqrt(2.0 / n)
    assert abs(data.std() - target) < 0.1
    if kind == "xavier":
        # Uniform on [-sqrt(3/n), sqrt(3/n)]: std sqrt(1/n), bound sqrt(3/n).
        assert np.abs(data).max() <= np.sqrt(3.0 / n) * (1 + 1e-6)
        assert abs(data.std() - np.sqrt(1.0 / n)) < 0.02 * np.sqrt(1.0 / n) + 1e-4
    else:
        assert abs(data.std() - target) < 0.02 * target + 1e-4


def test_fans_for_inner_product_weights():
    # A 2-D (num_output, K) weight: fan_in = K, fan_out = num_output.
    data = filled('type: "msra" variance_norm: FAN_OUT', shape=(50, 4000)).astype(np.float64)
    assert abs(data.std() - np.sqrt(2.0 / 50)) < 0.01
    data = filled('type: "msra"', shape=(50, 4000)).astype(np.float64)
    assert abs(data.std() - np.sqrt(2.0 / 4000)) < 0.001


@pytest.mark.parametrize("n", [6, 7])
def test_bilinear_matches_caffe_formula(n):
    data = filled('type: "bilinear"', shape=(10, 2, n, n))
    f = np.ceil(n / 2.0)
    c = (n - 1) / (2.0 * f)
    x = np.arange(n)
    expected = np.outer(1 - np.abs(x / f - c), 1 - np.abs(x / f - c))
    np.testing.assert_allclose(data, np.broadcast_to(expected, data.shape), atol=1e-6)


def test_bilinear_factor_two_kernel():
    # The 4x4 kernel of 2x upsampling: the 1-D profile is [1/4, 3/4, 3/4, 1/4].
    data = filled('type: "bilinear"', shape=(1, 1, 4, 4))[0, 0]
    p = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(data, np.outer(p, p), atol=1e-7)


def test_fill_accepts_a_plain_array_and_is_seeded():
    a = np.zeros((4, 5), dtype=np.float32)
    fill(a, filler('type: "gaussian"'), np.random.default_rng(7))
    b = np.zeros((4, 5), dtype=np.float32)
    fill(b, filler('type: "gaussian"'), np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.std() > 0


def test_errors_name_the_filler():
    with pytest.raises(InputError, match="unknown filler type 'gausian'"):
        filled('type: "gausian"')
    with pytest.raises(InputError, match="'constant'.*sparse"):
        filled('type: "constant" sparse: 3')
    with pytest.raises(InputError, match="'uniform'.*min 2.0 is greater than max 1.0"):
        filled('type: "uniform" min: 2 max: 1')
    with pytest.raises(InputError, match="'bilinear'.*4-d"):
        filled('type: "bilinear"', shape=(3, 3))
    with pytest.raises(InputError, match="'bilinear'.*square"):
        filled('type: "bilinear"', shape=(1, 1, 3, 4))
