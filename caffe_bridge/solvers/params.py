"""Reading and checking a ``SolverParameter``, and Caffe's learning-rate policies.

The checks are the ones Caffe makes (``CHECK`` in solver.cpp, sgd_solver.cpp and
the per-type solvers), made up front so that a bad solver file fails with one
readable line before any net is built. Messages name the solver file, the line
of the offending field where it can be found, and the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from barista_base.errors import InputError

from ..proto import caffe_pb2

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
# SolverParameter.SolverType (the legacy enum) -> the `type` string (UpgradeSolverType).
LEGACY_SOLVER_TYPES = {
    0: "SGD",
    1: "Nesterov",
    2: "AdaGrad",
    3: "RMSProp",
    4: "AdaDelta",
    5: "Adam",
}
TRAIN_NET_FIELDS = ("net", "net_param", "train_net", "train_net_param")


class SolverFile:
    """Locates fields of a solver file for error messages (``file:line: field: ...``)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, text: str = "") -> None:
        self.path = os.fspath(path) if path is not None else ""
        self.lines = text.splitlines()

    def where(self, field: str | None = None) -> str:
        """``path:line`` of the first line setting ``field`` (or just ``path``)."""
        name = self.path or "solver parameter"
        if field:
            pattern = re.compile(rf"^\s*{re.escape(field)}\s*[:{{]")
            for no, line in enumerate(self.lines, 1):
                if pattern.match(line):
                    return f"{name}:{no}"
        return name

    def error(self, field: str | None, message: str) -> InputError:
        prefix = f"{field}: " if field else ""
        return InputError(f"{self.where(field)}: {prefix}{message}")


def read_solver_param(path: str | os.PathLike[str]) -> tuple[caffe_pb2.SolverParameter, SolverFile]:
    """Parse a solver ``.prototxt`` as Caffe's ReadSolverParamsFromTextFileOrDie does.

    The legacy ``solver_type`` enum is upgraded to ``type``, and a missing
    ``snapshot_prefix`` defaults to the solver file's path without extension (a
    prefix naming a directory gets the solver file's stem appended), as newer
    Caffe does (UpgradeSnapshotPrefixProperty).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: solver file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read solver file: {exc}") from None
    src = SolverFile(path, text)
    param = caffe_pb2.SolverParameter()
    try:
        text_format.Parse(text, param)
    except text_format.ParseError as exc:
        # ParseError messages start with "line:column : ".
        raise InputError(f"{path}:{exc}") from None
    upgrade_solver_param(param, src)
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = str(p.with_suffix(""))
    elif os.path.isdir(param.snapshot_prefix):
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, p.stem)
    return param, src


def upgrade_solver_param(param: caffe_pb2.SolverParameter, src: SolverFile) -> None:
    """Caffe's UpgradeSolverType: the legacy ``solver_type`` enum becomes ``type``."""
    if param.HasField("solver_type"):
        if param.HasField("type"):
            raise src.error(
                "solver_type",
                "the old solver_type field (enum) and the new type field (string) "
                "cannot both be given",
            )
        param.type = LEGACY_SOLVER_TYPES[int(param.solver_type)]
        param.ClearField("solver_type")


def check_solver_param(param: caffe_pb2.SolverParameter, src: SolverFile) -> None:
    """Raise :class:`InputError` for anything Caffe would refuse (before building nets)."""
    given = [f for f in TRAIN_NET_FIELDS if param.HasField(f)]
    if not given:
        raise src.error(
            None, f"a train net must be given by one of these fields: {', '.join(TRAIN_NET_FIELDS)}"
        )
    if len(given) > 1:
        raise src.error(
            given[1],
            f"only one of {', '.join(TRAIN_NET_FIELDS)} may give the train net "
            f"(found {', '.join(given)})",
        )
    n_tests = len(param.test_net) + len(param.test_net_param)
    generic = param.HasField("net") or param.HasField("net_param")
    # With a generic `net`, extra test_iter values add more test nets built from it.
    enough = len(param.test_iter) >= n_tests if generic else len(param.test_iter) == n_tests
    if not enough:
        raise src.error(
            "test_iter",
            f"must be given once per test net ({n_tests} test net(s), "
            f"{len(param.test_iter)} test_iter value(s))",
        )
    n_instances = max(n_tests, len(param.test_iter))
    if len(param.test_state) and len(param.test_state) != n_instances:
        raise src.error(
            "test_state",
            f"must be unspecified or given once per test net ({n_instances}), "
            f"given {len(param.test_state)} times",
        )
    if n_instances and param.test_interval <= 0:
        raise src.error("test_interval", f"must be > 0 when there are test nets ({n_instances})")
    for i, n in enumerate(param.test_iter):
        if n < 0:
            raise src.error("test_iter", f"value #{i} is negative ({n})")
    if param.average_loss < 1:
        raise src.error("average_loss", f"must be >= 1, got {param.average_loss}")
    if param.iter_size < 1:
        raise src.error("iter_size", f"must be >= 1, got {param.iter_size}")
    if param.max_iter < 0:
        raise src.error("max_iter", f"must be >= 0, got {param.max_iter}")
    for name in ("display", "snapshot", "test_interval"):
        if getattr(param, name) < 0:
            raise src.error(name, f"must be >= 0, got {getattr(param, name)}")
    if param.type not in SOLVER_TYPES:
        raise src.error(
            "type", f"unknown solver type {param.type!r} (known: {', '.join(SOLVER_TYPES)})"
        )
    if param.regularization_type not in ("L1", "L2"):
        raise src.error(
            "regularization_type",
            f"unknown regularization type {param.regularization_type!r} (use L1 or L2)",
        )
    if param.type in ("AdaGrad", "RMSProp") and param.momentum != 0:
        raise src.error("momentum", f"momentum cannot be used with {param.type}")
    if param.type == "RMSProp" and not 0 <= param.rms_decay <= 1:
        raise src.error("rms_decay", f"must be in [0, 1], got {param.rms_decay}")
    _check_lr_policy(param, src)


def _check_lr_policy(param: caffe_pb2.SolverParameter, src: SolverFile) -> None:
    policy = param.lr_policy
    if policy not in LR_POLICIES:
        what = f"unknown learning rate policy {policy!r}" if policy else "lr_policy is not set"
        raise src.error("lr_policy", f"{what} (known: {', '.join(LR_POLICIES)})")
    if policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise src.error("stepsize", f"lr_policy {policy!r} needs stepsize > 0")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid") and param.gamma < 0:
        raise src.error("gamma", f"must be >= 0 for lr_policy {policy!r}, got {param.gamma}")
    if policy == "poly" and param.max_iter <= 0:
        raise src.error("max_iter", "lr_policy 'poly' needs max_iter > 0")


def learning_rate(
    param: caffe_pb2.SolverParameter, iteration: int, current_step: int
) -> tuple[np.float32, int]:
    """Caffe's SGDSolver::GetLearningRate: ``(rate, new current_step)``.

    ``current_step`` matters for ``multistep`` (advanced by at most one step per
    call, as in Caffe) and is recomputed by ``step``. The proto's float fields
    are float32; the power/exp are taken in double and the rate rounded to
    float32 (Caffe's ``Dtype``).
    """
    policy = param.lr_policy
    f64 = np.float64
    base, gamma, power = (f64(np.float32(v)) for v in (param.base_lr, param.gamma, param.power))
    it = int(iteration)
    # numpy float64 rather than Python floats: overflow gives inf and a negative
    # base to a fractional power gives nan (as in C), not an exception or a complex.
    with np.errstate(all="ignore"):
        if policy == "fixed":
            rate = base
        elif policy == "step":
            current_step = it // param.stepsize
            rate = base * np.power(gamma, current_step)
        elif policy == "exp":
            rate = base * np.power(gamma, it)
        elif policy == "inv":
            rate = base * np.power(1.0 + gamma * it, -power)
        elif policy == "multistep":
            if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
                current_step += 1
            rate = base * np.power(gamma, current_step)
        elif policy == "poly":
            rate = base * np.power(1.0 - f64(it) / param.max_iter, power)
        elif policy == "sigmoid":
            rate = base / (1.0 + np.exp(-gamma * (f64(it) - param.stepsize)))
        else:  # check_solver_param rejects these first
            raise InputError(f"unknown learning rate policy {policy!r}")
        return np.float32(rate), current_step
