"""Solvers: Caffe's update rules, learning-rate policies, snapshots and determinism.

The update tests follow the idea of Caffe's test_gradient_based_solver.cpp: a
least-squares InnerProduct net whose gradient is known in closed form, so the
expected parameters after each step are computed here, independently, in
float64 numpy from the batch the net actually saw.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from barista_base.errors import InputError
from caffe_bridge.proto import caffe_pb2
from caffe_bridge.solvers import (
    RESUME_FIELD,
    SOLVER_CLASSES,
    AdamSolver,
    SGDSolver,
    TrainingDiverged,
    get_solver,
    learning_rate,
    read_solver_param,
)
from caffe_bridge.solvers.snapshot import decode_resume_field

N, D = 4, 3  # batch, input features

DUMMY_DATA = f"""
layer {{
  name: "data" type: "DummyData" top: "data" top: "targets"
  dummy_data_param {{
    shape {{ dim: {N} dim: {D} }} shape {{ dim: {N} dim: 1 }}
    data_filler {{ type: "gaussian" std: 1.0 }}
  }}
}}
"""


def _model(bottom: str = "data") -> str:
    return f"""
layer {{
  name: "ip" type: "InnerProduct" bottom: "{bottom}" top: "ip"
  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
  inner_product_param {{
    num_output: 1
    weight_filler {{ type: "gaussian" std: 1.0 }}
    bias_filler {{ type: "gaussian" std: 1.0 }}
  }}
}}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "targets" top: "loss" }}
"""


LSQ_NET = 'name: "LeastSquares"\n' + DUMMY_DATA + _model()


def _solver_param(net: str = LSQ_NET, **fields: object) -> caffe_pb2.SolverParameter:
    p = caffe_pb2.SolverParameter()
    text_format.Parse(net, p.net_param)
    p.base_lr = 0.01
    p.lr_policy = "fixed"
    p.max_iter = 100
    p.random_seed = 1701
    p.snapshot_after_train = False
    for k, v in fields.items():
        if isinstance(v, list):
            getattr(p, k).extend(v)
        else:
            setattr(p, k, v)
    return p


def _weights(solver) -> tuple[np.ndarray, np.ndarray]:
    w, b = solver.net.params["ip"]
    return w.data.astype(np.float64).copy(), b.data.astype(np.float64).copy()


def _grad(solver, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form gradient of 1/(2N) sum (x.w + b - t)^2 on the batch the net just used."""
    x = solver.net.blobs["data"].data.astype(np.float64)
    t = solver.net.blobs["targets"].data.astype(np.float64)
    r = x @ w.T + b - t  # (N, 1)
    return r.T @ x / N, r.sum(axis=0) / N


class Reference:
    """Caffe's update rules, written from their formulas in float64."""

    def __init__(self, p: caffe_pb2.SolverParameter, shapes: list[tuple[int, ...]]) -> None:
        self.p = p
        self.h = [np.zeros(s) for s in shapes]
        self.u = [np.zeros(s) for s in shapes]  # second history (AdaDelta, Adam)

    def step(
        self,
        it: int,
        params: list[np.ndarray],
        grads: list[np.ndarray],
        lr_mults: list[float],
        decay_mults: list[float],
        rate: float,
    ) -> list[np.ndarray]:
        p = self.p
        grads = [g.copy() for g in grads]
        if p.clip_gradients >= 0:
            norm = np.sqrt(sum(float((g**2).sum()) for g in grads))
            if norm > p.clip_gradients:
                grads = [g * (p.clip_gradients / norm) for g in grads]
        out = []
        m, delta = float(np.float32(p.momentum)), float(np.float32(p.delta))
        for i, (w, g) in enumerate(zip(params, grads, strict=True)):
            decay = float(np.float32(p.weight_decay)) * decay_mults[i]
            g = g + decay * (np.sign(w) if p.regularization_type == "L1" else w)
            lr = rate * lr_mults[i]
            if p.type == "SGD":
                self.h[i] = m * self.h[i] + lr * g
                step = self.h[i]
            elif p.type == "Nesterov":
                old = self.h[i]
                self.h[i] = m * old + lr * g
                step = (1 + m) * self.h[i] - m * old
            elif p.type == "AdaGrad":
                self.h[i] = self.h[i] + g**2
                step = lr * g / (np.sqrt(self.h[i]) + delta)
            elif p.type == "RMSProp":
                d = float(np.float32(p.rms_decay))
                self.h[i] = d * self.h[i] + (1 - d) * g**2
                step = lr * g / (np.sqrt(self.h[i]) + delta)
            elif p.type == "AdaDelta":
                self.h[i] = m * self.h[i] + (1 - m) * g**2
                upd = g * np.sqrt((self.u[i] + delta) / (self.h[i] + delta))
                self.u[i] = m * self.u[i] + (1 - m) * upd**2
                step = lr * upd
            elif p.type == "Adam":
                b1, b2 = m, float(np.float32(p.momentum2))
                self.h[i] = b1 * self.h[i] + (1 - b1) * g
                self.u[i] = b2 * self.u[i] + (1 - b2) * g**2
                t = it + 1
                corr = np.sqrt(1 - b2**t) / (1 - b1**t)
                step = lr * corr * self.h[i] / (np.sqrt(self.u[i]) + delta)
            else:
                raise AssertionError(p.type)
            out.append(w - step)
        return out


def _run_and_compare(p: caffe_pb2.SolverParameter, iters: int = 4) -> None:
    solver = get_solver(p)
    assert type(solver) is SOLVER_CLASSES[p.type]
    w, b = _weights(solver)
    ref = Reference(p, [w.shape, b.shape])
    for it in range(iters):
        solver.step(1)
        gw, gb = _grad(solver, w, b)
        rate = p.base_lr * (p.gamma ** (it // p.stepsize) if p.lr_policy == "step" else 1.0)
        w, b = ref.step(it, [w, b], [gw, gb], [1.0, 2.0], [1.0, 0.0], rate)
        got_w, got_b = _weights(solver)
        np.testing.assert_allclose(got_w, w, rtol=2e-5, atol=1e-6, err_msg=f"{p.type} iter {it}")
        np.testing.assert_allclose(got_b, b, rtol=2e-5, atol=1e-6, err_msg=f"{p.type} iter {it}")
    assert solver.iter == iters


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "SGD"},
        {"type": "SGD", "momentum": 0.9},
        {"type": "SGD", "momentum": 0.9, "weight_decay": 0.1},
        {"type": "SGD", "momentum": 0.5, "weight_decay": 0.1, "regularization_type": "L1"},
        {"type": "SGD", "momentum": 0.9, "lr_policy": "step", "stepsize": 2, "gamma": 0.5},
        {"type": "Nesterov", "momentum": 0.9, "weight_decay": 0.05},
        {"type": "AdaGrad", "weight_decay": 0.1},
        {"type": "RMSProp", "rms_decay": 0.95, "weight_decay": 0.1},
        {"type": "AdaDelta", "momentum": 0.95, "delta": 1e-6, "base_lr": 1.0},
        {"type": "Adam", "momentum": 0.9, "momentum2": 0.999, "weight_decay": 0.01},
        {"type": "SGD", "momentum": 0.9, "clip_gradients": 0.1},
    ],
    ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()),
)
def test_update_matches_closed_form(fields):
    _run_and_compare(_solver_param(**fields))


def test_clip_gradients_actually_clips():
    # With a tiny threshold the step is bounded by lr * clip, whatever the gradient.
    p = _solver_param(type="SGD", clip_gradients=1e-3, base_lr=1.0)
    solver = get_solver(p)
    w0, b0 = _weights(solver)
    solver.step(1)
    w1, b1 = _weights(solver)
    moved = np.sqrt(((w1 - w0) ** 2).sum() + ((b1 - b0) ** 2 / 4).sum())  # bias lr_mult 2
    assert moved == pytest.approx(1e-3, rel=1e-4)


@pytest.mark.parametrize("legacy, name", [(1, "Nesterov"), (5, "Adam"), (3, "RMSProp")])
def test_legacy_solver_type_enum(tmp_path, legacy, name):
    f = tmp_path / "s.prototxt"
    f.write_text(f'net: "x.prototxt"\nsolver_type: {legacy}\nlr_policy: "fixed"\n')
    param, _ = read_solver_param(f)
    assert param.type == name and not param.HasField("solver_type")


def test_solver_type_and_type_both_rejected(tmp_path):
    f = tmp_path / "s.prototxt"
    f.write_text('net: "x"\nlr_policy: "fixed"\n\ntype: "Adam"\nsolver_type: ADAM\n')
    with pytest.raises(InputError, match=r"s\.prototxt:5: solver_type:"):
        read_solver_param(f)


def test_class_constructor_overrides_type():
    solver = AdamSolver(_solver_param(type="SGD", momentum=0.9))
    assert isinstance(solver, AdamSolver) and solver.param.type == "Adam"
    assert len(solver.history) == 2 * len(solver.net.learnable_params)


# -- learning-rate policies ---------------------------------------------------------


def _lr_param(**fields: object) -> caffe_pb2.SolverParameter:
    p = caffe_pb2.SolverParameter(base_lr=0.1, max_iter=1000)
    for k, v in fields.items():
        if isinstance(v, list):
            getattr(p, k).extend(v)
        else:
            setattr(p, k, v)
    return p


ITERS = [0, 1, 7, 100, 499, 500, 999]


def f32(x: float) -> float:
    """A proto float field's value (float32) as a Python float."""
    return float(np.float32(x))


@pytest.mark.parametrize(
    "fields, formula",
    [
        ({"lr_policy": "fixed"}, lambda it: f32(0.1)),
        (
            {"lr_policy": "step", "gamma": 0.5, "stepsize": 100},
            lambda it: f32(0.1) * 0.5 ** (it // 100),
        ),
        ({"lr_policy": "exp", "gamma": 0.99}, lambda it: f32(0.1) * f32(0.99) ** it),
        (
            {"lr_policy": "inv", "gamma": 1e-4, "power": 0.75},
            lambda it: f32(0.1) * (1 + f32(1e-4) * it) ** -0.75,
        ),
        ({"lr_policy": "poly", "power": 2.0}, lambda it: f32(0.1) * (1 - it / 1000) ** 2),
        (
            {"lr_policy": "sigmoid", "gamma": 0.01, "stepsize": 500},
            lambda it: f32(0.1) / (1 + np.exp(-f32(0.01) * (it - 500))),
        ),
    ],
    ids=lambda v: v.get("lr_policy") if isinstance(v, dict) else "",
)
def test_lr_policy_formula(fields, formula):
    p = _lr_param(**fields)
    for it in ITERS:
        rate, _ = learning_rate(p, it, 0)
        assert rate.dtype == np.float32  # Caffe's Dtype
        assert float(rate) == pytest.approx(formula(it), rel=1e-6), it


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"lr_policy": "sigmoid", "gamma": -0.01, "stepsize": 500}, "gamma"),
        ({"lr_policy": "step", "gamma": 0.1}, "stepsize"),
        ({"lr_policy": "poly", "power": 1.0, "max_iter": 0}, "max_iter"),
        ({}, "lr_policy"),
    ],
)
def test_lr_policy_checks(fields, field):
    from caffe_bridge.solvers.params import SolverFile, check_solver_param

    p = _lr_param(**fields)
    p.net = "x"
    with pytest.raises(InputError, match=f"{field}:"):
        check_solver_param(p, SolverFile())


def test_lr_policy_multistep_advances_one_step_per_call():
    p = _lr_param(lr_policy="multistep", gamma=0.1, stepvalue=[3, 5, 9])
    step = 0
    for it in range(12):
        rate, step = learning_rate(p, it, step)
        expected = 0.1 * 0.1 ** sum(it >= s for s in (3, 5, 9))
        assert float(rate) == pytest.approx(expected, rel=1e-6), it


def test_solver_uses_lr_policy_and_keeps_current_step(tmp_path):
    p = _solver_param(type="SGD", lr_policy="multistep", gamma=0.5, stepvalue=[1, 2])
    p.snapshot_prefix = str(tmp_path / "ms")
    solver = get_solver(p)
    w, b = _weights(solver)
    solver.step(3)
    assert solver.current_step == 2
    state_file = solver.snapshot()
    state = caffe_pb2.SolverState.FromString(Path(state_file).read_bytes())
    assert state.current_step == 2 and state.iter == 3


# -- iter_size ------------------------------------------------------------------------

DATA_LAYER_MODULE = '''
import json
import numpy as np
import caffe


class FixedBatches(caffe.Layer):
    """Serves rows of a fixed random data set in order, wrapping around."""

    def setup(self, bottom, top):
        p = json.loads(self.param_str)
        rng = np.random.default_rng(p["seed"])
        self.x = rng.standard_normal((p["rows"], p["dim"])).astype(np.float32)
        self.t = rng.standard_normal((p["rows"], 1)).astype(np.float32)
        self.batch = p["batch"]
        self.pos = 0

    def reshape(self, bottom, top):
        top[0].reshape(self.batch, self.x.shape[1])
        top[1].reshape(self.batch, 1)

    def forward(self, bottom, top):
        idx = (self.pos + np.arange(self.batch)) % len(self.x)
        top[0].data[...] = self.x[idx]
        top[1].data[...] = self.t[idx]
        self.pos = (self.pos + self.batch) % len(self.x)

    def backward(self, top, propagate_down, bottom):
        pass
'''


def _fixed_batch_net(batch: int) -> str:
    args = f'{{"seed": 5, "rows": 8, "dim": {D}, "batch": {batch}}}'
    data = (
        'layer { name: "data" type: "Python" top: "data" top: "targets" '
        'python_param { module: "barista_fixed_batches" layer: "FixedBatches" '
        f"param_str: '{args}' }} }}"
    )
    return data + _model()


def test_iter_size_accumulates_and_normalises(tmp_path, monkeypatch):
    (tmp_path / "barista_fixed_batches.py").write_text(DATA_LAYER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    big = get_solver(_solver_param(_fixed_batch_net(4), type="SGD", momentum=0.9))
    acc = get_solver(_solver_param(_fixed_batch_net(2), type="SGD", momentum=0.9, iter_size=2))
    # Same seed, same fillers: identical starting weights.
    for a, b in zip(_weights(big), _weights(acc), strict=True):
        np.testing.assert_array_equal(a, b)
    # Independent expectation: full-batch gradient over the rows each iteration saw.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, D)).astype(np.float32).astype(np.float64)
    t = rng.standard_normal((8, 1)).astype(np.float32).astype(np.float64)
    w, b = _weights(big)
    ref = Reference(big.param, [w.shape, b.shape])
    for it in range(3):
        big.step(1)
        acc.step(1)
        rows = (4 * it + np.arange(4)) % 8
        r = x[rows] @ w.T + b - t[rows]
        gw, gb = r.T @ x[rows] / 4, r.sum(axis=0) / 4
        w, b = ref.step(it, [w, b], [gw, gb], [1.0, 2.0], [1.0, 0.0], 0.01)
        for got in (_weights(big), _weights(acc)):
            np.testing.assert_allclose(got[0], w, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(got[1], b, rtol=1e-5, atol=1e-7)


# -- snapshots, restore, determinism -----------------------------------------------------


@pytest.mark.parametrize("kind", ["SGD", "Adam", "AdaDelta"])
def test_snapshot_restore_round_trip_is_bit_identical(tmp_path, kind):
    p = _solver_param(type=kind, momentum=0.9, snapshot=2, snapshot_prefix=str(tmp_path / "lsq"))
    full = get_solver(p)
    full.step(5)
    state_file = tmp_path / "lsq_iter_2.solverstate"
    model_file = tmp_path / "lsq_iter_2.caffemodel"
    assert state_file.is_file() and model_file.is_file()
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"lsq_iter_{i}.{ext}" for i in (2, 4) for ext in ("caffemodel", "solverstate")
    )  # no temporary files left behind

    # Caffe's view of the files: a SolverState and a NetParameter with the weights.
    state = caffe_pb2.SolverState.FromString(state_file.read_bytes())
    assert state.iter == 2 and state.learned_net == str(model_file)
    assert len(state.history) == full.history_sets * 2
    assert list(state.history[0].shape.dim) == [1, D]
    model = caffe_pb2.NetParameter.FromString(model_file.read_bytes())
    ip = [layer for layer in model.layer if layer.name == "ip"][0]
    assert len(ip.blobs) == 2

    resumed = get_solver(p)
    resumed.restore(state_file)
    assert resumed.iter == 2
    resumed.step(3)
    _assert_same_state(full, resumed)


def _assert_same_state(a, b) -> None:
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert len(a.history) == len(b.history)
    for x, y in zip(a.history, b.history, strict=True):
        np.testing.assert_array_equal(x, y)


def test_hdf5_snapshot_round_trip(tmp_path):
    import h5py

    p = _solver_param(
        type="Adam",
        momentum=0.9,
        snapshot=3,
        snapshot_prefix=str(tmp_path / "h"),
        snapshot_format=caffe_pb2.SolverParameter.HDF5,
    )
    full = get_solver(p)
    full.step(5)
    state_file = tmp_path / "h_iter_3.solverstate.h5"
    with h5py.File(tmp_path / "h_iter_3.caffemodel.h5") as f:  # Caffe's Net::ToHDF5 layout
        assert f["data/ip/0"].shape == (1, D) and f["data/ip/1"].shape == (1,)
    with h5py.File(state_file) as f:
        assert int(f["iter"][()]) == 3 and len(f["history"]) == 4
    resumed = get_solver(p)
    resumed.restore(state_file)
    resumed.step(2)
    _assert_same_state(full, resumed)


def test_restore_caffe_state_without_resume_record(tmp_path):
    """A .solverstate as Caffe writes it (no Barista record) restores weights and history."""
    p = _solver_param(type="SGD", momentum=0.9, snapshot_prefix=str(tmp_path / "c"))
    a = get_solver(p)
    a.step(2)
    path = a.snapshot()
    raw = Path(path).read_bytes()
    state = caffe_pb2.SolverState.FromString(raw)
    assert decode_resume_field(raw)["train"]  # our record travels as an unknown field...
    caffe_only = tmp_path / "caffe.solverstate"
    caffe_only.write_bytes(
        caffe_pb2.SolverState(
            iter=state.iter,
            learned_net=state.learned_net,
            history=state.history,
            current_step=state.current_step,
        ).SerializeToString()
    )
    b = get_solver(p)
    b.restore(caffe_only)
    assert b.iter == 2
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.history, b.history, strict=True):
        np.testing.assert_array_equal(x, y)
    assert decode_resume_field(caffe_only.read_bytes()) is None
    # ...which protobuf keeps on a parse/serialize round trip, as Caffe's C++ parser does.
    assert caffe_pb2.SolverState.FromString(raw).SerializeToString() == raw
    assert RESUME_FIELD > 4


def test_restore_rejects_mismatched_history(tmp_path):
    p = _solver_param(type="Adam", momentum=0.9, snapshot_prefix=str(tmp_path / "a"))
    path = get_solver(p).snapshot()
    with pytest.raises(InputError, match="history blobs"):
        SGDSolver(_solver_param(type="SGD")).restore(path)


def test_random_seed_gives_identical_runs():
    runs = [get_solver(_solver_param(type="SGD", momentum=0.9, random_seed=s)) for s in (3, 3, 4)]
    for r in runs:
        r.step(3)
    a, b, c = (_weights(r) for r in runs)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


# -- divergence ------------------------------------------------------------------------


def test_nan_loss_names_iteration_and_first_layer(tmp_path):
    net = (
        DUMMY_DATA
        + 'layer { name: "log" type: "Log" bottom: "data" top: "logdata" }\n'
        + 'layer { name: "relu" type: "ReLU" bottom: "logdata" top: "logdata" }\n'
        + _model("logdata")
    )
    p = _solver_param(net, type="SGD", snapshot=1, snapshot_prefix=str(tmp_path / "nan"))
    solver = get_solver(p)
    with pytest.raises(TrainingDiverged) as info:
        solver.step(3)
    # log of gaussian data is NaN at iteration 0; the in-place ReLU must not hide it.
    assert info.value.iteration == 0
    assert info.value.layer == "log" and info.value.top == "logdata"
    assert "iteration 0" in str(info.value) and "'log'" in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_divergence_keeps_last_good_snapshot(tmp_path):
    # An exploding learning rate: the weights overflow after a few updates.
    p = _solver_param(
        type="SGD",
        lr_policy="exp",
        gamma=1e6,
        base_lr=1e-3,
        snapshot=1,
        snapshot_prefix=str(tmp_path / "div"),
    )
    solver = get_solver(p)
    with pytest.raises(TrainingDiverged) as info:
        solver.step(50)
    bad = info.value.iteration
    assert bad >= 1
    states = sorted(tmp_path.glob("*.solverstate"), key=lambda f: int(f.stem.rsplit("_", 1)[1]))
    assert states and all(f.suffix != ".tmp" for f in tmp_path.iterdir())
    last = states[-1]
    assert int(last.stem.rsplit("_", 1)[1]) <= bad
    assert str(last) in str(info.value)
    # The last snapshot is complete and finite: a fresh solver restores it.
    fresh = get_solver(p)
    fresh.restore(last)
    for arr in _weights(fresh):
        assert np.isfinite(arr).all()


# -- solver files ------------------------------------------------------------------------


def test_bad_solver_fields_name_file_and_line(tmp_path):
    f = tmp_path / "bad.prototxt"
    f.write_text('net: "n.prototxt"\nbase_lr: 0.1\nlr_policy: "stepwise"\n')
    with pytest.raises(InputError, match=r"bad\.prototxt:3: lr_policy: unknown .*'stepwise'"):
        get_solver(f)
    f.write_text('net: "n.prototxt"\nbase_lr: 0.1\nlr_polcy: "step"\n')
    with pytest.raises(InputError, match=r"bad\.prototxt:3:"):
        get_solver(f)
    with pytest.raises(InputError, match="solver file not found"):
        get_solver(tmp_path / "missing.prototxt")


def test_net_path_is_relative_to_current_directory(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "net.prototxt").write_text(LSQ_NET)
    solver_file = tmp_path / "sub" / "solver.prototxt"
    solver_file.write_text('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        InputError,
        match=r"solver\.prototxt:1: net: net file 'net.prototxt' not "
        r"found.*relative to the solver file",
    ):
        get_solver(solver_file)
    monkeypatch.chdir(tmp_path / "sub")
    solver = get_solver("solver.prototxt")
    assert solver.param.snapshot_prefix == "solver"  # Caffe's default: the solver file's stem


@pytest.mark.parametrize(
    "name",
    [
        "mnist/lenet_solver.prototxt",
        "mnist/lenet_solver_adam.prototxt",
        "mnist/lenet_solver_rmsprop.prototxt",
        "mnist/lenet_multistep_solver.prototxt",
        "cifar10/cifar10_quick_solver.prototxt",
        "cifar10/cifar10_full_solver.prototxt",
        "bvlc_alexnet/solver.prototxt",
        "bvlc_reference_caffenet/solver.prototxt",
    ],
)
def test_reference_solver_files_parse_and_check(name):
    from caffe_bridge.datasets import example_dir
    from caffe_bridge.solvers.params import check_solver_param

    model, file = name.split("/")
    param, src = read_solver_param(example_dir(model) / file)
    check_solver_param(param, src)
    assert param.type in SOLVER_CLASSES
