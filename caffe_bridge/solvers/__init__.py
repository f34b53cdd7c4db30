"""Caffe's solvers with pycaffe's API: ``get_solver(path)``, ``SGDSolver(path)``, ...

>>> solver = get_solver("lenet_solver.prototxt")      # doctest: +SKIP
>>> solver.step(100); solver.net.blobs["loss"].data   # doctest: +SKIP

The solver class comes from the file's ``type`` (or the legacy ``solver_type``
enum); constructing a class directly uses that class, as pycaffe does.
"""

from __future__ import annotations

import os
from typing import Any

from ..proto import caffe_pb2
from .params import LR_POLICIES, SOLVER_TYPES, learning_rate, read_solver_param
from .snapshot import RESUME_FIELD
from .solver import Solver, TrainingDiverged, train_net
from .updates import (
    SOLVER_CLASSES,
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
)

__all__ = [
    "LR_POLICIES",
    "RESUME_FIELD",
    "SOLVER_CLASSES",
    "SOLVER_TYPES",
    "AdaDeltaSolver",
    "AdaGradSolver",
    "AdamSolver",
    "NesterovSolver",
    "RMSPropSolver",
    "SGDSolver",
    "Solver",
    "TrainingDiverged",
    "get_solver",
    "learning_rate",
    "read_solver_param",
    "train_net",
]


def get_solver(param: str | os.PathLike[str] | caffe_pb2.SolverParameter, **options: Any) -> Solver:
    """Build the solver the file's ``type`` names (pycaffe's ``caffe.get_solver``).

    ``options`` are :class:`Solver`'s keyword options (``backend``,
    ``weights``, ``max_iter``, ``random_seed``, ``log``).
    """
    if isinstance(param, caffe_pb2.SolverParameter):
        from .params import SolverFile, upgrade_solver_param

        copy = caffe_pb2.SolverParameter.FromString(param.SerializeToString())
        upgrade_solver_param(copy, SolverFile())
        kind = copy.type
    else:
        kind = read_solver_param(param)[0].type
    cls = SOLVER_CLASSES.get(kind, Solver)  # an unknown type is reported by Solver's checks
    return cls(param, **options)
