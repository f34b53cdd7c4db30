"""The rtl backend: layer passes on the Verilated accelerator, bit for bit the golden model.

Uses the small accelerator of tests/sim/test_verilator_driver.py (same build, cached).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from barista.backends import get_backend
from barista.backends.hardware import GoldenBackend
from barista.backends.rtl import RtlBackend
from barista.manifest import load_accelerator
from barista_base.errors import InputError
from barista_hw import plan
from barista_hw.config import AcceleratorConfig, EngineConfig, Pass
from barista_hw.numfmt import FixedFormat
from barista_hw.schedule import schedule_gemm
from caffe_bridge.blob import Blob
from caffe_bridge.layers import LAYER_TYPES, LayerContext
from caffe_bridge.proto import caffe_pb2
from sim import verilator_driver as vd
from sim.tools import SimulatorNotFound, simulator_version

FMT = FixedFormat(8, 4, 24)
CFG = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=16, b_depth=16)

CONV = """
name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } }
"""
IP = """
name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.3 } }
"""


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    try:
        simulator_version("verilator")
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))
    vd.simulator(CFG)  # build once (cached on disk) before the timed tests


def _layer(text: str, backend) -> object:  # noqa: ANN001 - any GemmBackend
    param = text_format.Parse(text, caffe_pb2.LayerParameter())
    return LAYER_TYPES[param.type](
        param, LayerContext(backend=backend, rng=np.random.default_rng(1))
    )


def _blob(a: np.ndarray) -> Blob:
    b = Blob(a.shape)
    b.data[...] = a
    return b


def _train_step(layers: list, x: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Forward through ``layers``, backward from a random top diff; every output and gradient."""
    bottoms = [_blob(x)]
    tops = []
    for layer in layers:
        top = [Blob()]
        layer.setup(bottoms, top)
        layer.reshape(bottoms, top)
        layer.forward(bottoms, top)
        tops.append((layer, bottoms, top))
        bottoms = top
    tops[-1][2][0].diff[...] = rng.standard_normal(tops[-1][2][0].shape).astype(np.float32)
    for layer in layers:
        layer.blobs[0].diff[...] = 0
    for layer, bottom, top in reversed(tops):
        layer.backward(top, [True], bottom)
    out = [t[2][0].data.copy() for t in tops] + [tops[0][1][0].diff.copy()]
    return out + [layer.blobs[0].diff.copy() for layer in layers]


def _compare(rtl: RtlBackend, golden: GoldenBackend, texts: list[str], steps: int = 2) -> None:
    a_layers = [_layer(t, rtl) for t in texts]
    b_layers = [_layer(t, golden) for t in texts]
    for step in range(steps):  # the calibrating call, then adapted shifts
        x = np.random.default_rng(step).standard_normal((2, 2, 5, 5)).astype(np.float32)
        got = _train_step(a_layers, x, np.random.default_rng(10 + step))
        want = _train_step(b_layers, x, np.random.default_rng(10 + step))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
            assert np.abs(w).max() > 0


@pytest.mark.parametrize("rounding", ["nearest-even", "floor", "stochastic"])
def test_three_passes_of_a_conv_layer_equal_golden(rounding: str) -> None:
    rtl = RtlBackend(rounding, accelerator=CFG)
    _compare(rtl, GoldenBackend(rounding=rounding, accelerator=CFG), [CONV])
    assert {r.kind for r in rtl.records.values()} == set(Pass)
    assert all(r.source == "rtl" and r.wall_seconds > 0 for r in rtl.records.values())


def test_static_scaling_on_the_rtl_equals_golden() -> None:
    """--scaling static reaches the RTL's commands: shifts of the format's FL, same bits."""
    rtl = RtlBackend("stochastic", accelerator=CFG, scaling="static")
    golden = GoldenBackend(rounding="stochastic", accelerator=CFG, scaling="static")
    _compare(rtl, golden, [CONV, IP])
    assert {c["shift"] for c in rtl.last_call.values()} == {FMT.frac}


def test_rtl_layers_routes_the_others_to_the_model() -> None:
    rtl = RtlBackend("stochastic", accelerator=CFG, rtl_layers={"ip1"})
    _compare(rtl, GoldenBackend(rounding="stochastic", accelerator=CFG), [CONV, IP])
    rec = rtl.records
    assert {k for k, r in rec.items() if r.source == "rtl"} == {
        "ip1/forward",
        "ip1/backward",
        "ip1/gradient",
    }
    assert rec["conv1/forward"].source == "model" and rec["conv1/forward"].wall_seconds == 0


def test_cycle_report_counts_the_last_iteration() -> None:
    rtl = RtlBackend("nearest-even", accelerator=CFG)
    _compare(rtl, GoldenBackend(accelerator=CFG), [CONV], steps=3)
    assert rtl.iteration == 2
    report = rtl.cycle_report()
    fwd = rtl.records["conv1/forward"]
    # conv1 forward: M = 3 outputs, K = 2*3*3, N = batch 2 x 3*3 pixels.
    predicted = plan.simulate_chunks(CFG, schedule_gemm(CFG, 3, 18, 18))["cycles"]
    assert fwd.calls == 3 and fwd.last_cycles == predicted
    assert fwd.total_cycles == 3 * predicted and fwd.last_macs == 3 * 18 * 18
    assert report.cycles_per_iteration == sum(r.last_cycles for r in rtl.records.values())
    util = report.utilisation(fwd)
    assert util == pytest.approx(3 * 18 * 18 / (6 * predicted)) and 0 < util < 1
    assert report.seconds_per_iteration == pytest.approx(
        report.cycles_per_iteration / (CFG.clock_mhz * 1e6)
    )
    text = str(report)
    assert "conv1" in text and "gradient" in text and "iteration" in text
    assert "end to end over the UART host link" in text
    assert report.link_seconds_per_iteration() > report.seconds_per_iteration


def test_registered_and_options_checked(tmp_path: Path) -> None:
    backend = get_backend("rtl", accelerator=CFG, rounding="floor", fmt=FMT.name)
    assert isinstance(backend, RtlBackend)
    with pytest.raises(InputError, match="accelerator"):
        RtlBackend()
    with pytest.raises(InputError, match="format"):
        RtlBackend(accelerator=CFG, fmt="fx16")
    with pytest.raises(InputError, match="rows"):
        RtlBackend(accelerator=CFG, rows=4)
    with pytest.raises(InputError, match="manifest"):
        RtlBackend(accelerator=load_accelerator(tmp_path))


@pytest.mark.slow
def test_trace_of_one_layer_pass_and_iteration(tmp_path: Path) -> None:
    rtl = RtlBackend(accelerator=CFG, trace=("conv1", "backward", 1), trace_dir=tmp_path)
    lines: list[str] = []
    rtl.prepare(lines.append)
    _compare(rtl, GoldenBackend(accelerator=CFG), [CONV])
    assert rtl.trace_files == [tmp_path / "conv1-backward-it1.fst"]
    assert rtl.trace_files[0].stat().st_size > 100
    assert rtl.missing_trace() is None
    wrote = f"Wrote the waveform of layer conv1, backward pass, iteration 1: {rtl.trace_files[0]}"
    assert lines[-1] == wrote


def test_prepare_says_building_only_when_it_builds(tmp_path: Path) -> None:
    first: list[str] = []
    RtlBackend(accelerator=CFG, cache_dir=tmp_path).prepare(first.append)
    assert len(first) == 1 and first[0].startswith("Building the Verilated accelerator")
    assert str(tmp_path) in first[0]  # where it is cached
    again: list[str] = []
    RtlBackend(accelerator=CFG, cache_dir=tmp_path).prepare(again.append)
    assert len(again) == 1 and again[0].startswith("Using the cached build of the Verilated")
    assert "Building" not in again[0] and str(tmp_path) in again[0]


def test_iterations_are_numbered_from_0_as_the_solver_does() -> None:
    rtl = RtlBackend(accelerator=CFG, trace=("conv1", "forward", 5))
    layers = [_layer(CONV, rtl)]
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    rtl.begin_iteration()  # the first iteration, unnumbered: 0, as in Caffe's log
    _train_step(layers, x, np.random.default_rng(1))
    assert rtl.iteration == 0 and rtl.records["conv1/forward"].iteration == 0
    rtl.begin_iteration()
    _train_step(layers, x, np.random.default_rng(2))
    assert rtl.records["conv1/forward"].iteration == 1
    rtl.begin_iteration(7)  # the solver's number, e.g. after resuming from a snapshot
    _train_step(layers, x, np.random.default_rng(3))
    assert rtl.records["conv1/gradient"].iteration == 7
    # Iteration 5 was skipped, so its waveform was never written, and the backend says why.
    assert rtl.trace_files == []
    assert rtl.missing_trace() == "iteration 5 never ran"
    early = RtlBackend(accelerator=CFG, trace=("conv1", "forward", 5))
    assert early.missing_trace() == "no iteration ran"
    early.begin_iteration(2)
    _train_step([_layer(CONV, early)], x, np.random.default_rng(1))
    assert early.missing_trace() == "iteration 5 never ran (the last was 2)"
    assert RtlBackend(accelerator=CFG).missing_trace() is None  # no trace asked


def test_a_trace_that_cannot_happen_is_rejected() -> None:
    passes = [("conv1", Pass.FORWARD), ("conv1", Pass.WEIGHT_GRAD), ("ip1", Pass.FORWARD)]
    passes += [("ip1", Pass.BACKWARD_DATA), ("ip1", Pass.WEIGHT_GRAD)]
    ok = RtlBackend(accelerator=CFG, trace=("ip1", "backward", 0))
    ok.check_trace(passes, range(0, 3))
    cases = [
        (("ip2", "forward", 0), range(3), r"trace ip2,forward,0: the net has no .* 'ip2' \(it"),
        (("conv1", "backward", 0), range(3), r"'conv1' has no backward pass .* needs no gradient"),
        (("ip1", "forward", 3), range(3), r"iteration 3 is not run .* iterations 0 to 2"),
        (("ip1", "forward", 0), range(5, 9), r"iteration 0 is not run .* iterations 5 to 8"),
    ]
    for trace, iterations, message in cases:
        with pytest.raises(InputError, match=message):
            RtlBackend(accelerator=CFG, trace=trace).check_trace(passes, iterations)
    with pytest.raises(InputError, match=r"pass 'fwd' is not one of forward, backward, gradient"):
        RtlBackend(accelerator=CFG, trace=("ip1", "fwd", 0))
    with pytest.raises(InputError, match=r"layer 'conv1' is not one of the layers run on the RTL"):
        RtlBackend(accelerator=CFG, rtl_layers={"ip1"}, trace=("conv1", "forward", 0))
