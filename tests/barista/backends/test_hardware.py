"""The golden backend: float in, bit-exact engine arithmetic inside, float out."""

import contextlib

import numpy as np
import pytest

from barista.backends import get_backend
from barista.backends.hardware import GoldenBackend, operand_seed
from barista_base.errors import InputError
from barista_hw import model, native
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.numfmt import DEFAULT_FORMAT, FixedFormat, Rounding
from caffe_bridge.backend import CpuBackend


def _tensors(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((6, 10)) * 0.1).astype(np.float32)
    x = rng.standard_normal((3, 10, 7)).astype(np.float32)
    dy = (rng.standard_normal((3, 6, 7)) * 1e-3).astype(np.float32)
    return w, x, dy


def test_registered_and_configurable() -> None:
    g = get_backend("golden", fmt="fx12", rounding="stochastic", rows=2, cols=3)
    assert isinstance(g, GoldenBackend)
    assert g.cfg.fmt == FixedFormat.parse("fx12") and g.rounding is Rounding.STOCHASTIC


def test_defaults_are_the_engine_defaults() -> None:
    """The default array and format are EngineConfig's, as on the command lines."""
    g = GoldenBackend()
    assert g.cfg == EngineConfig() and g.cfg.fmt == DEFAULT_FORMAT


@pytest.mark.parametrize("rounding", ["nearest-even", "stochastic"])
def test_passes_are_the_engine_model_on_quantised_operands(rounding: str) -> None:
    """Recompute each pass with the model from the recorded command; compare every bit."""
    w, x, dy = _tensors()
    g = GoldenBackend(fmt="fx16", rounding=rounding, rows=4, cols=4)
    fmt = g.cfg.fmt
    cases = [
        (
            "forward",
            lambda: g.forward(w, x, layer="L").transpose(1, 0, 2).reshape(6, 21),
            w,
            x.transpose(1, 0, 2).reshape(10, 21),
        ),
        (
            "backward",
            lambda: g.backward_data(w, dy, layer="L").transpose(1, 0, 2).reshape(10, 21),
            w.T,
            dy.transpose(1, 0, 2).reshape(6, 21),
        ),
        ("gradient", lambda: g.weight_grad(dy, x, layer="L"), *model.weight_grad_operands(dy, x)),
    ]
    for kind, run, a_f, b_f in cases:
        for _ in range(2):  # the calibrating call and an adapted one
            got = run()
            call = g.last_call[f"L/{kind}"]
            a = fmt.quantize(a_f, call["frac_a"])
            b = fmt.quantize(b_f, call["frac_b"])
            assert call["frac_a"] + call["frac_b"] - call["shift"] == call["frac_out"]
            q = model.gemm(a, b, g.cfg, shift=call["shift"], rounding=g.rounding, seed=call["seed"])
            np.testing.assert_array_equal(fmt.dequantize(q, call["frac_out"]), got)


def test_close_to_float32_in_16_bits() -> None:
    w, x, dy = _tensors(1)
    g, c = GoldenBackend(fmt="fx16"), CpuBackend()
    for _ in range(2):  # calibrated, then adapted
        for got, want in [
            (g.forward(w, x, layer="a"), c.forward(w, x)),
            (g.backward_data(w, dy, layer="a"), c.backward_data(w, dy)),
            (g.weight_grad(dy, x, layer="a"), c.weight_grad(dy, x)),
        ]:
            assert np.abs(got - want).max() <= 2e-3 * np.abs(want).max()


def test_state_dict_makes_resumed_runs_identical() -> None:
    w, x, dy = _tensors(2)
    g = GoldenBackend(fmt="fx8", rounding="stochastic")
    g.forward(w, x, layer="c")
    state = g.state_dict()
    after = g.forward(w, x * 3, layer="c")
    h = GoldenBackend(fmt="fx8", rounding="stochastic")
    h.load_state_dict(state)
    np.testing.assert_array_equal(h.forward(w, x * 3, layer="c"), after)


def test_accelerator_schedule_is_followed() -> None:
    w, x, _ = _tensors(3)
    acc = AcceleratorConfig(
        EngineConfig(2, 2, FixedFormat(16, 8, 48), acc_depth=8), a_depth=16, b_depth=16
    )
    g = GoldenBackend(accelerator=acc, rounding="nearest-even")
    plain = GoldenBackend(config=acc.engine, rounding="nearest-even")
    # Nearest-even results do not depend on the schedule, only stochastic ones do.
    np.testing.assert_array_equal(g.forward(w, x, layer="f"), plain.forward(w, x, layer="f"))


DECONV_NET = """
name: "up" force_backward: true
layer { name: "in" type: "Input" top: "data" top: "target"
  input_param { shape { dim: 2 dim: 6 dim: 5 dim: 4 } shape { dim: 2 dim: 4 dim: 11 dim: 9 } } }
layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"
  convolution_param { num_output: 4 kernel_size: 3 stride: 2 group: 2
    weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "up" bottom: "target" top: "loss" }
"""


class _RecordingGolden(GoldenBackend):
    """The golden backend, recording every engine GEMM's operand shapes (its engine hook,
    :meth:`~barista.backends.hardware.HardwareBackend.run_dequantized`)."""

    def __init__(self) -> None:
        super().__init__(fmt="fx16", rows=4, cols=4)
        self.gemms: list[tuple[str, str, tuple, tuple, int]] = []

    def run_dequantized(self, kind, layer, a, b, cmd, frac):  # noqa: ANN001, ANN201 - the base's
        self.gemms.append((layer, kind.value, a.shape, b.shape, cmd.images))
        return super().run_dequantized(kind, layer, a, b, cmd, frac)


def test_deconvolution_runs_on_the_engines_as_its_plan_says() -> None:
    """A Deconvolution's three GEMMs reach the engine model; their shapes are the plan's."""
    from google.protobuf import text_format

    from barista.backends.plan import gemm_layers
    from caffe_bridge.net import Net
    from caffe_bridge.proto import caffe_pb2

    param = text_format.Parse(DECONV_NET, caffe_pb2.NetParameter())
    golden = _RecordingGolden()
    net = Net(param, "TRAIN", backend=golden, seed=3)
    cpu = Net(param, "TRAIN", backend=CpuBackend(), seed=3)
    rng = np.random.default_rng(0)
    inputs = {
        "data": rng.standard_normal((2, 6, 5, 4)).astype(np.float32),
        "target": rng.standard_normal((2, 4, 11, 9)).astype(np.float32),
    }
    for n in (net, cpu):
        n.forward(**inputs)
        n.backward()
    (layer,) = gemm_layers(net)
    want = sorted(
        (w.layer, w.kind.value, (w.m, w.kt), (w.kt, w.n), w.images)
        for w in layer.workloads()
        for _ in range(w.groups)
    )
    assert sorted(golden.gemms) == want
    # 16-bit fixed point stays close to float32 in every pass.
    np.testing.assert_allclose(net.blobs["up"].data, cpu.blobs["up"].data, atol=2e-3)
    np.testing.assert_allclose(net.blobs["data"].diff, cpu.blobs["data"].diff, atol=2e-3)
    np.testing.assert_allclose(
        net.params["up"][0].diff, cpu.params["up"][0].diff, rtol=2e-2, atol=2e-2
    )


@pytest.mark.parametrize("rounding", ["nearest-even", "floor", "stochastic"])
def test_compiled_and_numpy_passes_train_alike(rounding: str) -> None:
    """Two golden backends, one on the compiled passes and one on numpy's, through
    calibrating and adapted calls of every pass: the same bits and the same scales."""
    w, x, dy = _tensors(4)
    fused, plain = GoldenBackend(rounding=rounding), GoldenBackend(rounding=rounding)
    for step in range(3):
        for backend, ctx in ((fused, contextlib.nullcontext()), (plain, native.disabled())):
            with ctx:
                got = [
                    backend.forward(w, x * (step + 1), layer="c"),
                    backend.backward_data(w, dy, layer="c"),
                    backend.weight_grad(dy, x, layer="c"),
                ]
            if backend is fused:
                want = got
        for g, f in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, f)
        assert fused.state_dict() == plain.state_dict()


def test_non_finite_operands_give_nan() -> None:
    """A non-finite operand has no fixed-point value: the pass returns NaN of the right
    shape (the solver's divergence check then stops training), not an error."""
    w, x, dy = _tensors(5)
    g = GoldenBackend()
    x[1, 2, 3] = np.inf
    dy[0, 0, 0] = np.nan
    assert np.isnan(g.forward(w, x, layer="f")).all() and g.forward(w, x).shape == (3, 6, 7)
    dx = g.backward_data(w, dy, layer="b")
    assert dx.shape == (3, 10, 7) and np.isnan(dx).all()
    dw = g.weight_grad(dy, x, layer="g")
    assert dw.shape == (6, 10) and np.isnan(dw).all()
    assert g.state_dict()["scales"]["calls"] == {}


@pytest.mark.parametrize("rounding", ["nearest-even", "stochastic"])
def test_weight_gradient_reuses_the_forward_pass_quantised_read_only_x(
    rounding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only X handed to forward and then to weight_grad is quantised once, with the
    bits of quantising it again; a writeable or another X is quantised afresh."""
    from barista.backends import hardware

    w, x, dy = _tensors()
    kept = x.copy()
    kept.flags.writeable = False
    fresh, reusing = (GoldenBackend(fmt="fx16", rounding=rounding) for _ in range(2))
    fresh.forward(w, x, layer="c")
    want = fresh.weight_grad(dy, x, layer="c")
    calls = []
    quantize = hardware.quantize_fitted
    monkeypatch.setattr(hardware, "quantize_fitted", lambda *a: calls.append(1) or quantize(*a))
    reusing.forward(w, kept, layer="c")
    calls.clear()
    got = reusing.weight_grad(dy, kept, layer="c")
    assert len(calls) == 1  # dY only
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    # Another read-only array with the same shape, or a writeable one: quantised again.
    other = (x * 2).astype(np.float32)
    other.flags.writeable = False
    for again in (other, kept.copy()):
        reusing.forward(w, kept, layer="c")
        calls.clear()
        reusing.weight_grad(dy, again, layer="c")
        assert len(calls) == 2


@pytest.mark.parametrize("spec", ["fx16.12", "fx16.4", "fx8.6"])
def test_static_scaling_uses_the_written_fraction_bits(spec: str) -> None:
    """Static: operands and results at the format's FL, bit for bit (to nearest even,
    saturating); nothing adapts between calls."""
    w, x, dy = _tensors(2)
    x = x * 4  # some inputs beyond fx16.12's range of 8, and beyond fx8.6's of 2
    g = GoldenBackend(fmt=spec, scaling="static", rows=4, cols=4)
    fmt = g.cfg.fmt
    frac, lo, hi = fmt.frac, fmt.min_int, fmt.max_int
    a = np.clip(np.rint(w.astype(np.float64) * 2**frac), lo, hi).astype(np.int64)
    b_f = x.transpose(1, 0, 2).reshape(10, 21).astype(np.float64)
    b = np.clip(np.rint(b_f * 2**frac), lo, hi).astype(np.int64)
    want = np.clip(np.rint((a @ b) / 2.0**frac), lo, hi)  # exact: |a @ b| < 2**53
    for _ in range(3):
        got = g.forward(w, x, layer="L").transpose(1, 0, 2).reshape(6, 21)
        np.testing.assert_array_equal(got.astype(np.float64) * 2**frac, want)
        assert g.last_call["L/forward"] | {"seed": 0} == {
            "shift": frac,
            "seed": 0,
            "frac_a": frac,
            "frac_b": frac,
            "frac_out": frac,
            "images": 1,
        }
    assert (b == hi).any() == (spec != "fx16.4")  # operands saturate where the range is small
    # Dynamic (the default) picks its own fractions for the same tensors.
    d = GoldenBackend(fmt=spec, rows=4, cols=4)
    assert d.scaling == "dynamic"
    d.forward(w, x, layer="L")
    assert d.last_call["L/forward"]["frac_a"] != frac


def test_static_stochastic_is_the_engine_model_at_the_written_fraction_bits() -> None:
    """Static and stochastic: operands rounded stochastically too (seeded per call), the
    engine's shift the format's FL; recomputed from the definition, bit for bit."""
    w, x, dy = _tensors(3)
    g = get_backend("golden", fmt="fx16.10", rounding="stochastic", scaling="static")
    fmt = g.cfg.fmt
    a_f, b_f = model.weight_grad_operands(dy, x)
    for call in range(2):
        got = g.weight_grad(dy, x, layer="L")
        a, b = (
            fmt.quantize(v, 10, Rounding.STOCHASTIC, np.random.default_rng(seed))
            for v, seed in zip(
                (a_f, b_f), (operand_seed("L/gradient", role, call) for role in "ab"), strict=True
            )
        )
        seed = g.last_call["L/gradient"]["seed"]
        q = model.gemm(a, b, g.cfg, shift=10, rounding=Rounding.STOCHASTIC, seed=seed)
        np.testing.assert_array_equal(fmt.dequantize(q, 10), got)


def test_unknown_scaling_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown scaling"):
        get_backend("golden", scaling="fixed")
