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


# -- formats per pass: E4M3 weights and activations, E5M2 gradients ------------------------


def _exact(a: np.ndarray, fa: str, bt: np.ndarray, fb: str) -> tuple[np.ndarray, tuple[int, int]]:
    """``A @ Bt.T`` from the exact model: each operand on its own tensor scale in its own
    format, the exact sum rounded once to float32; and the two scales."""
    ma, mb = MF[fa], MF[fb]
    sa, sb = tensor_scale(np.abs(a).max(), ma), tensor_scale(np.abs(bt).max(), mb)
    ca = ma.encode(np.ldexp(a.astype(np.float64), -sa), saturate=True)
    cb = mb.encode(np.ldexp(bt.astype(np.float64), -sb), saturate=True)
    acc, exp = fpgemm.minifloat_gemm(ca, ma, cb.T.copy(), mb)
    return fpgemm.to_odd_float(acc, exp + sa + sb).astype(np.float32), (sa, sb)


def test_each_pass_rounds_its_operands_to_their_formats_bit_for_bit() -> None:
    """Forward E4M3 x E4M3, backward-data W (E4M3) x dY (E5M2), weight gradient dY (E5M2)
    x X (E4M3): every result bit against the exact model with those formats, and not
    the bits one format for all would give."""
    w, x, dy = _tensors(3)
    b = get_backend("golden", fmt="e4m3,grad=e5m2")
    one = get_backend("golden", fmt="e4m3")
    xt = x.transpose(0, 2, 1).reshape(-1, 40)
    dyt = dy.transpose(0, 2, 1).reshape(-1, 6)
    dy2, x2 = dy.transpose(1, 0, 2).reshape(6, -1), x.transpose(1, 0, 2).reshape(40, -1)
    cases = [
        ("forward", b.forward(w, x, layer="ip"), one.forward(w, x), (w, "e4m3", xt, "e4m3")),
        ("backward", b.backward_data(w, dy, layer="ip"), one.backward_data(w, dy),
         (w.T.copy(), "e4m3", dyt, "e5m2")),
        ("gradient", b.weight_grad(dy, x, layer="ip"), one.weight_grad(dy, x),
         (dy2, "e5m2", x2, "e4m3")),
    ]  # fmt: skip
    for name, got, all_e4m3, (a, fa, bt, fb) in cases:
        want, scales = _exact(a, fa, bt, fb)
        assert (b.last_scale[f"ip/{name}/a"], b.last_scale[f"ip/{name}/b"]) == scales
        flat = got if name == "gradient" else got.transpose(1, 0, 2).reshape(got.shape[1], -1)
        np.testing.assert_array_equal(flat, want.reshape(flat.shape), err_msg=name)
        assert np.array_equal(got, all_e4m3) == (name == "forward"), name


def test_one_format_per_pass_is_that_format_to_the_bit() -> None:
    w, x, dy = _tensors(4)
    per_pass = get_backend("golden", fmt="fwd=e5m2,grad=e5m2", rounding="stochastic")
    one = get_backend("golden", fmt="e5m2", rounding="stochastic")
    assert per_pass.fmt is MF["e5m2"]
    for _ in range(2):  # the second call draws new words in both
        np.testing.assert_array_equal(per_pass.forward(w, x), one.forward(w, x))
        np.testing.assert_array_equal(per_pass.backward_data(w, dy), one.backward_data(w, dy))
        np.testing.assert_array_equal(per_pass.weight_grad(dy, x), one.weight_grad(dy, x))


def test_mx_formats_per_pass_round_gradients_to_the_gradient_format() -> None:
    w, x, dy = _tensors(5)
    b = get_backend("golden", fmt="fwd=mxfp8_e4m3,grad=mxfp8_e5m2")
    fwd, grad = MX["mxfp8_e4m3"], MX["mxfp8_e5m2"]
    a, bt = w.T.copy(), dy.transpose(0, 2, 1).reshape(-1, 6)
    pad = -6 % 32
    a, bt = np.pad(a, ((0, 0), (0, pad))), np.pad(bt, ((0, 0), (0, pad)))
    acc, exp, nan = fpgemm.mx_gemm(fwd.encode(a), fwd, grad.encode(bt), grad)
    want = fpgemm.to_odd_float(acc, exp, nan).astype(np.float32)
    np.testing.assert_array_equal(b.backward_data(w, dy), want.reshape(40, 3, 7).transpose(1, 0, 2))


def test_rtl_trains_minifloat_formats_per_pass_on_a_per_pass_engine() -> None:
    from barista.backends.rtl_formats import rtl_engine_format

    assert rtl_engine_format("e4m3,grad=e5m2").name == "fwd=e4m3_fp32,grad=e5m2_fp32_nosat"
    with pytest.raises(InputError, match="MX formats per pass run on golden only"):
        rtl_engine_format("fwd=mxfp8_e4m3,grad=mxfp8_e5m2")
    with pytest.raises(InputError, match="format 'e4m3,grad=fx16': grad: fx16.* is fixed"):
        get_backend("golden", fmt="e4m3,grad=fx16")
