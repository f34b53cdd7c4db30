"""The golden backend with minifloat and MX formats: the exact model's values, per-tensor
power-of-two scales, and the CLI's format names."""

import math

import numpy as np
import pytest

from barista.backends import get_backend
from barista.backends.formats import FormatBackend, tensor_scale
from barista.backends.hardware import GoldenBackend
from barista_base.errors import InputError
from barista_hw import fpgemm
from barista_hw.minifloat import PRESETS as MF
from barista_hw.mx import PRESETS as MX


def _tensors(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((6, 40)) * 0.1).astype(np.float32)
    x = rng.standard_normal((3, 40, 7)).astype(np.float32)
    dy = (rng.standard_normal((3, 6, 7)) * 1e-3).astype(np.float32)
    return w, x, dy


def test_golden_picks_the_format_backend() -> None:
    assert isinstance(get_backend("golden", fmt="fx12"), GoldenBackend)
    b = get_backend("golden", fmt="E4M3", rounding="stochastic")
    assert isinstance(b, FormatBackend) and b.fmt is MF["e4m3"]
    assert get_backend("golden", fmt="mxfp8").fmt is MX["mxfp8_e4m3"]
    with pytest.raises(InputError, match="nearest-even or stochastic"):
        get_backend("golden", fmt="e4m3", rounding="floor")
    with pytest.raises(InputError, match="backend 'golden'.*rows"):
        get_backend("golden", fmt="e4m3", rows=2)


def test_tensor_scale_uses_the_top_of_the_range_without_saturating() -> None:
    e4m3 = MF["e4m3"]
    for peak in (448.0, 449.0, 1.0, 3e-5, 224.0, 224.0001):
        s = tensor_scale(peak, e4m3)
        assert peak / 2.0**s <= 448.0 < 2 * peak / 2.0**s, peak
    assert tensor_scale(448.0, e4m3) == 0 and tensor_scale(449.0, e4m3) == 1
    assert tensor_scale(0.0, e4m3) == 0


def test_e4m3_forward_is_the_exact_model_rounded_once() -> None:
    w, x, _ = _tensors()
    b = get_backend("golden", fmt="e4m3")
    y = b.forward(w, x, layer="ip")
    e4m3 = MF["e4m3"]
    xt = x.transpose(0, 2, 1).reshape(-1, 40)
    sw, sx = tensor_scale(np.abs(w).max(), e4m3), tensor_scale(np.abs(xt).max(), e4m3)
    assert (b.last_scale["ip/forward/a"], b.last_scale["ip/forward/b"]) == (sw, sx)
    cw = e4m3.encode(np.ldexp(w, -sw), saturate=True)
    cx = e4m3.encode(np.ldexp(xt, -sx), saturate=True)
    acc, exp = fpgemm.minifloat_gemm(cw, e4m3, cx.T.copy(), e4m3)
    want = fpgemm.to_odd_float(acc, exp + sw + sx).astype(np.float32)
    np.testing.assert_array_equal(y, want.reshape(6, 3, 7).transpose(1, 0, 2))


def test_mx_passes_are_the_exact_model_with_padding_to_blocks() -> None:
    """K = 40 is padded to 64 with zeros; the reduction of each pass is blocked along K."""
    w, x, dy = _tensors(1)
    f = MX["mxfp8_e4m3"]
    b = get_backend("golden", fmt="mxfp8_e4m3")

    def exact(a: np.ndarray, bt: np.ndarray) -> np.ndarray:
        pad = -a.shape[1] % 32
        a, bt = np.pad(a, ((0, 0), (0, pad))), np.pad(bt, ((0, 0), (0, pad)))
        acc, exp, nan = fpgemm.mx_gemm(f.encode(a), f, f.encode(bt), f)
        return fpgemm.to_odd_float(acc, exp, nan).astype(np.float32)

    y = b.forward(w, x)
    np.testing.assert_array_equal(
        y, exact(w, x.transpose(0, 2, 1).reshape(-1, 40)).reshape(6, 3, 7).transpose(1, 0, 2)
    )
    dx = b.backward_data(w, dy)
    want = exact(w.T.copy(), dy.transpose(0, 2, 1).reshape(-1, 6))
    np.testing.assert_array_equal(dx, want.reshape(40, 3, 7).transpose(1, 0, 2))
    dw = b.weight_grad(dy, x)
    a, bt = dy.transpose(1, 0, 2).reshape(6, -1), x.transpose(1, 0, 2).reshape(40, -1)
    np.testing.assert_array_equal(dw, exact(a, bt))


def test_stochastic_rounding_is_seeded_per_call() -> None:
    w, x, _ = _tensors(2)
    one, two = (get_backend("golden", fmt="e5m2", rounding="sr") for _ in range(2))
    first = one.forward(w, x, layer="c")
    np.testing.assert_array_equal(first, two.forward(w, x, layer="c"))  # same call, same bits
    assert not np.array_equal(first, one.forward(w, x, layer="c"))  # the next call draws anew
    nearest = get_backend("golden", fmt="e5m2").forward(w, x, layer="c")
    assert not np.array_equal(first, nearest)
    assert np.abs(first - nearest).max() < 0.25 * np.abs(nearest).max()


def test_non_finite_operands_give_nan() -> None:
    w, x, _ = _tensors()
    w[0, 0] = math.inf
    for fmt in ("e4m3", "mxfp4"):
        y = get_backend("golden", fmt=fmt).forward(w, x)
        assert np.isnan(y[:, 0]).all()


def test_static_scaling_is_for_fixed_point_formats() -> None:
    with pytest.raises(InputError, match="static scaling uses a fixed-point format"):
        get_backend("golden", fmt="e4m3", scaling="static")
