"""The solver loop (Caffe's ``Solver`` and ``SGDSolver`` minus the update rule).

:class:`Solver` builds the train and test nets from a ``SolverParameter``,
runs Caffe's ``Step``/``Solve``/``Test`` loops with Caffe's log lines, applies
the shared part of every update (learning rate, gradient clipping, iter_size
normalisation, L1/L2 weight decay) and leaves the per-parameter rule to
subclasses (:mod:`.updates`). Snapshots are Caffe's files, written atomically,
with the extra state a bit-identical resume needs (:mod:`.snapshot`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from barista_base.errors import InputError

from ..backend import BackendFactory, CpuBackend, GemmBackend
from ..proto import caffe_pb2
from . import snapshot as snap
from .params import SolverFile, check_solver_param, learning_rate, read_solver_param

if TYPE_CHECKING:
    from ..net import Net

_logger = logging.getLogger("caffe_bridge.solver")

F32 = np.float32


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN or infinite; training stopped before any snapshot of it.

    ``iteration`` is the iteration at fault, ``layer``/``top`` the first layer
    (in forward order) whose output was non-finite, when one was found.
    """

    def __init__(
        self, message: str, iteration: int, layer: str | None = None, top: str | None = None
    ) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.layer = layer
        self.top = top


def _fmt(x: float) -> str:
    """Numbers as Caffe's glog lines print them (ostream default: 6 significant digits)."""
    return f"{float(x):.6g}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    raise TypeError(f"cannot store {type(obj).__name__} in a resume record")


def read_net_file(source: SolverFile, field: str, path: str) -> tuple[caffe_pb2.NetParameter, str]:
    """The parameters of the net file a solver field names (for its ``state``), and its path."""
    if not os.path.isfile(path):
        hint = ""
        beside = Path(source.path).parent / path if source.path else None
        if beside is not None and beside.is_file():
            hint = f"; there is one at {beside}, relative to the solver file"
        raise source.error(
            field,
            f"net file {path!r} not found (paths in a solver file are relative to the "
            f"current directory, {os.getcwd()}{hint})",
        )
    from ..io import read_net

    return read_net(path), path


def train_net_source(
    param: caffe_pb2.SolverParameter, source: SolverFile
) -> tuple[caffe_pb2.NetParameter, caffe_pb2.NetState, str | None]:
    """Where a solver's training net comes from, as Caffe chooses it: (parameters, state,
    file path or None for an inline net)."""
    path = None
    if param.HasField("train_net_param"):
        net_param = param.train_net_param
    elif param.HasField("train_net"):
        net_param, path = read_net_file(source, "train_net", param.train_net)
    elif param.HasField("net_param"):
        net_param = param.net_param
    else:
        net_param, path = read_net_file(source, "net", param.net)
    # Solver default (TRAIN) < the net's own state < train_state, as in Caffe.
    state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
    state.MergeFrom(net_param.state)
    state.MergeFrom(param.train_state)
    return net_param, state, path


def build_net(
    net_param: caffe_pb2.NetParameter,
    state: caffe_pb2.NetState,
    path: str | None = None,
    *,
    backend: GemmBackend | None = None,
    seed: int | None = None,
) -> Net:
    """A net in ``state``: from its file when there is one (errors then name the file and
    line), else from the message."""
    from ..net import Net

    phase = "TRAIN" if state.phase == caffe_pb2.TRAIN else "TEST"
    # Net adds `stages` to the model's own; pass only the ones the solver adds.
    own = len(net_param.state.stage) if path is not None else 0
    if path is None:
        net_param = caffe_pb2.NetParameter.FromString(net_param.SerializeToString())
        net_param.ClearField("state")
    return Net(
        path if path is not None else net_param,
        phase,
        level=state.level,
        stages=tuple(state.stage)[own:],
        backend=backend,
        seed=seed,
    )


def train_net(param: str | os.PathLike[str]) -> Net:
    """The training net of a solver file, as the solver builds it (float32 backend, seed 0):
    for looking at the net (its layers, shapes) without training it."""
    solver_param, source = read_solver_param(param)
    net_param, state, path = train_net_source(solver_param, source)
    return build_net(net_param, state, path, seed=0)


def derive_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed per net from the solver's ``random_seed``."""
    return int(
        np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)[0]
        >> np.uint64(1)
    )


class Solver:
    """Caffe's solver: ``net``, ``test_nets``, ``iter``, ``step``, ``solve``, ``snapshot``...

    ``param`` is a solver ``.prototxt`` path or a ``caffe_pb2.SolverParameter``.
    Options: ``backend`` (a :class:`GemmBackend` that every net shares, or a
    :data:`BackendFactory` called once per net; default :class:`CpuBackend`),
    ``weights`` (``.caffemodel`` files to fine-tune from, Caffe's ``--weights``),
    ``max_iter`` and ``random_seed`` (override the file's), and ``log`` (a callable
    taking each Caffe-style log line; by default the ``caffe_bridge.solver`` logger).
    """

    type_name: ClassVar[str] = ""
    history_sets: ClassVar[int] = 1  # AdaDelta and Adam keep two history blobs per param

    def __init__(
        self,
        param: str | os.PathLike[str] | caffe_pb2.SolverParameter,
        *,
        backend: GemmBackend | BackendFactory | None = None,
        weights: Sequence[str] = (),
        max_iter: int | None = None,
        random_seed: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(param, caffe_pb2.SolverParameter):
            from .params import upgrade_solver_param

            src = SolverFile()
            param = caffe_pb2.SolverParameter.FromString(param.SerializeToString())
            upgrade_solver_param(param, src)
        else:
            param, src = read_solver_param(param)
        if max_iter is not None:
            if max_iter < 0:
                raise InputError(f"iterations must be >= 0, got {max_iter}")
            param.max_iter = int(max_iter)
        if random_seed is not None:
            if random_seed < 0:
                raise InputError(f"random seed must be >= 0, got {random_seed}")
            param.random_seed = int(random_seed)
        check_solver_param(param, src)
        self.log: Callable[[str], None] = log or _logger.info
        if self.type_name and param.type != self.type_name:
            # pycaffe's SGDSolver(path) builds an SGD solver whatever `type` says.
            self.log(f"Solver type {param.type!r} in the solver file; using {self.type_name}")
            param.type = self.type_name
        self.param = param
        self.source = src
        self.iter = 0
        self.current_step = 0
        self.smoothed_loss = 0.0
        self._losses: list[np.float32] = []
        self._loss_start = 0  # Caffe's start_iter: indexes the smoothing window
        self._carry_smoothing = False  # set by a restore: continue the saved window
        self.test_scores: list[list[tuple[str, float]]] = []
        self._callbacks: list[tuple[Callable[[], None] | None, Callable[[], None] | None]] = []
        self.requested_early_exit = False
        self._stop_requested = False
        self.last_snapshot: str | None = None

        if param.random_seed >= 0:
            self.seed = int(param.random_seed)
        else:  # Caffe seeds from entropy; the snapshot keeps the generators' states anyway
            self.seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
        self._backend = CpuBackend if backend is None else backend

        self.net = self._init_train_net()
        self.test_nets = self._init_test_nets()
        for w in [*param.weights, *weights]:
            self._load_weights(w)
        for tn in self.test_nets:
            tn.share_weights(self.net)
        params = self.net.learnable_params
        self.history: list[np.ndarray] = [
            np.zeros(p.data.shape, np.float32) for _ in range(self.history_sets) for p in params
        ]

    # -- construction -----------------------------------------------------------------
    def _new_backend(self, test: bool = False) -> GemmBackend:
        """One backend per net: test passes then never change the train net's scale state.

        Test nets get the backend's :meth:`~GemmBackend.for_test_nets` (the RTL
        backend hands them the golden model of the same accelerator: same bits).
        """
        if isinstance(self._backend, GemmBackend):
            return self._backend
        backend = self._backend()
        return backend.for_test_nets() if test else backend

    def _read_net_file(self, field: str, path: str) -> tuple[caffe_pb2.NetParameter, str]:
        return read_net_file(self.source, field, path)

    def _make_net(
        self,
        net_param: caffe_pb2.NetParameter,
        state: caffe_pb2.NetState,
        seed: int,
        path: str | None = None,
    ) -> Any:
        phase_test = state.phase == caffe_pb2.TEST
        backend = self._new_backend(test=phase_test)
        return build_net(net_param, state, path, backend=backend, seed=seed)

    def _init_train_net(self) -> Any:
        net_param, state, path = train_net_source(self.param, self.source)
        return self._make_net(net_param, state, derive_seed(self.seed, 0), path)

    def _init_test_nets(self) -> list[Any]:
        p = self.param
        sources: list[tuple[caffe_pb2.NetParameter, str | None]] = [
            (tp, None) for tp in p.test_net_param
        ]
        sources += [self._read_net_file("test_net", f) for f in p.test_net]
        remaining = len(p.test_iter) - len(sources)
        if remaining > 0 and p.HasField("net_param"):
            sources += [(p.net_param, None)] * remaining
        elif remaining > 0 and p.HasField("net"):
            sources += [self._read_net_file("net", p.net)] * remaining
        nets = []
        for i, (net_param, path) in enumerate(sources):
            # Solver default (TEST) < the net's own state < test_state, as in Caffe.
            state = caffe_pb2.NetState(phase=caffe_pb2.TEST)
            state.MergeFrom(net_param.state)
            if len(p.test_state):
                state.MergeFrom(p.test_state[i])
            nets.append(self._make_net(net_param, state, derive_seed(self.seed, 1 + i), path))
        self.test_scores = [[] for _ in nets]
        return nets

    def _load_weights(self, path: str) -> None:
        if not os.path.isfile(path):
            raise InputError(f"{path}: weights file not found")
        self._load_model(path)
        for tn in self.test_nets:
            if path.endswith(".h5"):
                tn.share_weights(self.net)
            else:
                tn.copy_from(path)

    def request_stop(self) -> None:
        """Stop after the current iteration (safe from a signal handler); ``solve`` then
        snapshots as Caffe does on SIGINT."""
        self._stop_requested = True

    # -- pycaffe's callbacks ----------------------------------------------------------------
    def add_callback(
        self,
        on_start: Callable[[], None] | None = None,
        on_gradients_ready: Callable[[], None] | None = None,
    ) -> None:
        """Call ``on_start`` before each iteration's forward pass and ``on_gradients_ready``
        before its update (pycaffe's ``Solver.add_callback``)."""
        self._callbacks.append((on_start, on_gradients_ready))

    # -- the loops ----------------------------------------------------------------------
    def step(self, iters: int) -> None:
        """Run ``iters`` iterations (Caffe's ``Step``): test, forward/backward, update, snapshot.

        Raises :class:`TrainingDiverged` when the loss or a weight becomes
        non-finite; nothing is snapshotted from that iteration on.
        """
        p = self.param
        stop_iter = self.iter + int(iters)
        if self._carry_smoothing:
            # Resumed: continue the interrupted run's window, so the displayed loss is
            # the one the uninterrupted run shows (Caffe restarts it at every Step).
            self._carry_smoothing = False
        else:
            self._loss_start = self.iter
            self._losses = []
            self.smoothed_loss = 0.0
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if (
                p.test_interval
                and self.iter % p.test_interval == 0
                and (self.iter > 0 or p.test_initialization)
            ):
                self.test_all()
            for on_start, _ in self._callbacks:
                if on_start:
                    on_start()
            display = bool(p.display) and self.iter % p.display == 0
            loss = F32(0)
            for _ in range(p.iter_size):
                loss += self._forward_backward()
            loss /= F32(p.iter_size)
            self._update_smoothed_loss(loss)
            if display:
                self.log(f"Iteration {self.iter}, loss = {_fmt(self.smoothed_loss)}")
                self._log_outputs("Train", self._output_scores(self.net))
            for _, on_ready in self._callbacks:
                if on_ready:
                    on_ready()
            self.apply_update()
            # iter counts the updates applied so far, as in Caffe.
            self.iter += 1
            self._check_weights()
            if p.snapshot and self.iter % p.snapshot == 0:
                self.snapshot()
            if self._stop_requested:
                self.requested_early_exit = True
                break

    def solve(self, resume_file: str | os.PathLike[str] | None = None) -> None:
        """Train to ``max_iter`` (Caffe's ``Solve``), optionally resuming from a solver state."""
        p = self.param
        self.requested_early_exit = False
        self._stop_requested = False
        self.log(f"Solving {self._net_name(self.net)}")
        self.log(f"Learning Rate Policy: {p.lr_policy}")
        if resume_file is not None:
            self.log(f"Restoring previous solver status from {os.fspath(resume_file)}")
            self.restore(resume_file)
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            self.log("Optimization stopped early.")
            return
        # A forward-only pass to show the final loss, and a final test, as Caffe does.
        if p.display and self.iter % p.display == 0:
            self._forward_pass(self.net)
            loss = F32(self._net_loss(self.net))
            self._update_smoothed_loss(loss)
            self.log(f"Iteration {self.iter}, loss = {_fmt(self.smoothed_loss)}")
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        self.log("Optimization Done.")

    def test_all(self) -> None:
        """Run every test net (Caffe's ``TestAll``)."""
        for k in range(len(self.test_nets)):
            self.test(k)

    def test(self, k: int = 0) -> list[tuple[str, float]]:
        """Run test net ``k`` for its ``test_iter`` batches; returns and logs the mean outputs."""
        p = self.param
        self.log(f"Iteration {self.iter}, Testing net (#{k})")
        net = self.test_nets[k]
        net.share_weights(self.net)
        n_iter = p.test_iter[k]
        sums: np.ndarray | None = None
        names: list[tuple[str, float]] = []
        loss = F32(0)
        for i in range(n_iter):
            self._forward_pass(net)
            if p.test_compute_loss:
                loss += F32(self._net_loss(net))
            scores = self._output_scores(net)
            values = np.array([v for _, _, v in scores], dtype=np.float32)
            if i == 0:
                names = [(name, w) for name, w, _ in scores]
                sums = values
            else:
                sums += values  # Caffe accumulates test scores in Dtype (float32)
        if p.test_compute_loss and n_iter:
            self.log(f"Test loss: {_fmt(loss / F32(n_iter))}")
        means = [] if sums is None else list(sums / F32(n_iter))
        result = [(name, w, float(m)) for (name, w), m in zip(names, means, strict=True)]
        self._log_outputs("Test", result)
        self.test_scores[k] = [(name, m) for name, _, m in result]
        return self.test_scores[k]

    # -- one iteration's pieces ---------------------------------------------------------
    def _forward_pass(self, net: Net) -> None:
        """A forward pass outside training (a test batch, the final loss): a backend that
        computes elsewhere overrides it."""
        net.forward()

    def _forward_backward(self) -> np.float32:
        self.net.forward()
        loss = F32(self._net_loss(self.net))
        if not np.isfinite(loss):
            raise self._diverged(loss)
        self.net.backward()
        return loss

    def _update_smoothed_loss(self, loss: np.float32) -> None:
        """Caffe's UpdateSmoothedLoss: the mean of the last ``average_loss`` losses."""
        n = self.param.average_loss
        if len(self._losses) < n:
            self._losses.append(F32(loss))
            size = len(self._losses)
            self.smoothed_loss = float((F32(self.smoothed_loss) * F32(size - 1) + loss) / F32(size))
        else:
            idx = (self.iter - self._loss_start) % n
            self.smoothed_loss = float(
                F32(self.smoothed_loss) + (loss - self._losses[idx]) / F32(n)
            )
            self._losses[idx] = F32(loss)

    def get_learning_rate(self) -> np.float32:
        """The rate for the current iteration (advances ``current_step`` as Caffe does)."""
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        return rate

    def apply_update(self) -> None:
        """Caffe's SGDSolver::ApplyUpdate: rate, clip, then per parameter normalise,
        regularise and compute the step; finally ``data -= diff``."""
        p = self.param
        rate = self.get_learning_rate()
        if p.display and self.iter % p.display == 0:
            self.log(f"Iteration {self.iter}, lr = {_fmt(rate)}")
        self.clip_gradients()
        params = self.net.learnable_params
        for i in range(len(params)):
            self.normalize(i)
            self.regularize(i)
            self.compute_update_value(i, rate)
        for blob in params:
            np.subtract(blob.data, blob.diff, out=blob.data)

    def clip_gradients(self) -> None:
        """Scale all diffs down so their global L2 norm is at most ``clip_gradients``."""
        clip = F32(self.param.clip_gradients)
        if clip < 0:
            return
        params = self.net.learnable_params
        sumsq = F32(sum(float(np.dot(b.diff.ravel(), b.diff.ravel())) for b in params))
        l2norm = F32(np.sqrt(sumsq))
        if l2norm > clip:
            scale = F32(clip / l2norm)
            self.log(
                f"Gradient clipping: scaling down gradients (L2 norm {_fmt(l2norm)} > "
                f"{_fmt(clip)}) by scale factor {_fmt(scale)}"
            )
            for b in params:
                b.diff *= scale

    def normalize(self, i: int) -> None:
        """Divide the accumulated gradient by ``iter_size``."""
        n = self.param.iter_size
        if n != 1:
            self.net.learnable_params[i].diff *= F32(1) / F32(n)

    def regularize(self, i: int) -> None:
        """Add the weight-decay gradient: ``decay * w`` (L2) or ``decay * sign(w)`` (L1)."""
        blob = self.net.learnable_params[i]
        local_decay = F32(self.param.weight_decay) * F32(self.net.params_weight_decay[i])
        if not local_decay:
            return
        if self.param.regularization_type == "L2":
            blob.diff += local_decay * blob.data
        else:
            blob.diff += local_decay * np.sign(blob.data)

    def compute_update_value(self, i: int, rate: np.float32) -> None:
        """Turn param ``i``'s gradient into the step subtracted from its data (per solver type)."""
        raise NotImplementedError(f"{type(self).__name__}.compute_update_value")

    # -- logging of outputs -----------------------------------------------------------------
    @staticmethod
    def _net_name(net: Net) -> str:
        return net.name or "net"

    @staticmethod
    def _net_loss(net: Net) -> float:
        return float(net.loss)

    @staticmethod
    def _output_scores(net: Net) -> list[tuple[str, float, float]]:
        """(blob name, loss weight, value) for every element of every net output, in order."""
        weights = net.blob_loss_weights
        out = []
        for name in net.outputs:
            w = float(weights.get(name, 0.0))
            for v in np.asarray(net.blobs[name].data, dtype=np.float32).ravel():
                out.append((name, w, float(v)))
        return out

    def _log_outputs(self, kind: str, scores: list[tuple[str, float, float]]) -> None:
        for idx, (name, w, v) in enumerate(scores):
            extra = f" (* {_fmt(w)} = {_fmt(F32(w) * F32(v))} loss)" if w else ""
            self.log(f"    {kind} net output #{idx}: {name} = {_fmt(v)}{extra}")

    # -- divergence ------------------------------------------------------------------------
    def _diverged(self, loss: float) -> TrainingDiverged:
        layer, top = self._first_nonfinite_top(self.net)
        where = (
            f"; first non-finite output: layer '{layer}' top '{top}'"
            if layer
            else "; no layer output was non-finite"
        )
        return TrainingDiverged(
            f"iteration {self.iter}: loss is {loss}{where}; training stopped"
            f"{self._last_snapshot_note()}",
            self.iter,
            layer,
            top,
        )

    @staticmethod
    def _first_nonfinite_top(net: Any) -> tuple[str | None, str | None]:
        """The first layer, in forward order, with a non-finite top.

        In-place layers overwrite their bottom, so after a full pass a blob shows
        only its last writer. The layers are therefore run once more one at a
        time, on the same batch (data layers, which have no bottoms, are not run
        again), checking each one's tops as it goes.
        """
        names = net.layer_names
        bottoms, tops = net.bottom_names, net.top_names

        def bad_top(name: str) -> str | None:
            for t in tops[name]:
                if t in net.blobs and not np.isfinite(net.blobs[t].data).all():
                    return t
            return None

        for i, name in enumerate(names):
            if bottoms[name]:
                with np.errstate(all="ignore"):
                    net.forward_from_to(i, i)
            top = bad_top(name)
            if top is not None:
                return name, top
        return None, None

    def _check_weights(self) -> None:
        """A non-finite weight after an update stops training before it reaches a snapshot."""
        for i, blob in enumerate(self.net.learnable_params):
            if not np.isfinite(blob.data).all():
                owner = self._param_owner(i)
                raise TrainingDiverged(
                    f"iteration {self.iter - 1}: the update made parameter {owner} non-finite; "
                    f"training stopped{self._last_snapshot_note()}",
                    self.iter - 1,
                    owner.split("[")[0].strip("'"),
                    None,
                )

    def _param_owner(self, i: int) -> str:
        target = self.net.learnable_params[i]
        for lname, blobs in self.net.params.items():
            for j, b in enumerate(blobs):
                if b is target or b.data is target.data:
                    return f"'{lname}'[{j}]"
        return f"#{i}"

    def _last_snapshot_note(self) -> str:
        last = self.last_snapshot
        return f" (last snapshot: {last})" if last else " (no snapshot was written)"

    # -- snapshots -----------------------------------------------------------------------
    def snapshot_filename(self, extension: str) -> str:
        """``<snapshot_prefix>_iter_<iter><extension>``, Caffe's SnapshotFilename."""
        return f"{self.param.snapshot_prefix}_iter_{self.iter}{extension}"

    def snapshot(self) -> str:
        """Write the model then the solver state, each atomically; return the state's path.

        The model goes first, so a solver state on disk always has its model.
        ``snapshot_format: HDF5`` writes Caffe's ``.caffemodel.h5`` /
        ``.solverstate.h5`` instead of the binary protos.
        """
        hdf5 = self.param.snapshot_format == caffe_pb2.SolverParameter.HDF5
        model = self.snapshot_filename(".caffemodel.h5" if hdf5 else ".caffemodel")
        kind = "HDF5 file" if hdf5 else "binary proto file"
        self.log(f"Snapshotting to {kind} {model}")
        try:
            if hdf5:
                snap.write_caffemodel_h5(model, self._owned_params())
            else:
                snap.atomic_write(model, self._save_net)
            state_file = self.snapshot_filename(".solverstate.h5" if hdf5 else ".solverstate")
            self.log(f"Snapshotting solver state to {kind} {state_file}")
            write = snap.write_solverstate_h5 if hdf5 else snap.write_solverstate
            write(
                state_file,
                iteration=self.iter,
                learned_net=model,
                current_step=self.current_step,
                history=self.history,
                resume=self.runtime_state(),
            )
        except OSError as exc:
            raise InputError(
                f"cannot write snapshot with prefix '{self.param.snapshot_prefix}': {exc}"
            ) from None
        self.last_snapshot = state_file
        return state_file

    def _save_net(self, path: str) -> None:
        from ..io import write_message

        write_message(path, self.net.to_proto(write_diff=self.param.snapshot_diff))

    def _owned_params(self) -> dict[str, list[np.ndarray]]:
        """Layer name -> parameter data, each shared blob under its first (owning) layer
        only, as Caffe's Net::ToHDF5 writes them."""
        seen: set[int] = set()
        out: dict[str, list[np.ndarray]] = {}
        for lname, blobs in self.net.params.items():
            own = []
            for b in blobs:
                if id(b.data) in seen:
                    break
                seen.add(id(b.data))
                own.append(b.data)
            out[lname] = own
        return out

    def _load_model(self, path: str) -> None:
        if not path.endswith(".h5"):
            self.net.copy_from(path)
            return
        saved = snap.read_caffemodel_h5(path)
        for lname, blobs in self.net.params.items():
            for b, a in zip(blobs, saved.get(lname, []), strict=False):
                if a.size != b.data.size:
                    raise InputError(
                        f"{path}: layer '{lname}' parameter of shape {a.shape}, "
                        f"the net has {b.data.shape}"
                    )
                b.data[...] = a.reshape(b.data.shape)

    def restore(self, path: str | os.PathLike[str]) -> None:
        """Resume from a ``.solverstate`` (Caffe's or ours): iteration, weights, history, and
        (ours) the random and data state that makes the rest of the run bit-identical."""
        path = os.fspath(path)
        state, record = snap.read_solverstate(path)
        if state.learned_net:
            model = state.learned_net
            if not os.path.isfile(model):
                # Caffe opens learned_net relative to the current directory; also look
                # beside the state file, so a snapshot directory can be moved.
                beside = os.path.join(os.path.dirname(path), os.path.basename(model))
                if not os.path.isfile(beside):
                    raise InputError(f"{path}: learned_net {model!r} not found")
                model = beside
            self._load_model(model)
        if len(state.history) != len(self.history):
            raise InputError(
                f"{path}: {len(state.history)} history blobs, but a {self.param.type} solver "
                f"for this net keeps {len(self.history)}"
            )
        for i, (bp, h) in enumerate(zip(state.history, self.history, strict=True)):
            try:
                arr = snap.blobproto_to_array(bp)
            except ValueError as exc:
                raise InputError(f"{path}: history blob {i}: {exc}") from None
            if arr.size != h.size:
                raise InputError(
                    f"{path}: history blob {i} has shape {arr.shape}, expected {h.shape}"
                )
            h[...] = arr.reshape(h.shape)
        self.iter = int(state.iter)
        self.current_step = int(state.current_step)
        if record is not None:
            self.load_runtime_state(record)
        for tn in self.test_nets:
            tn.share_weights(self.net)
        self.last_snapshot = path

    # -- the resume record ------------------------------------------------------------------
    def runtime_state(self) -> dict[str, Any]:
        """What Caffe's SolverState lacks for an identical continuation (JSON-able)."""
        import json

        state = {
            "seed": self.seed,
            "smoothing": {
                "losses": [float(x) for x in self._losses],
                "smoothed": float(self.smoothed_loss),
                "start": self._loss_start,
            },
            "train": _net_runtime_state(self.net),
            "test": [_net_runtime_state(t) for t in self.test_nets],
        }
        # Round trip through JSON here so that a bad value fails before any file is touched.
        return json.loads(json.dumps(state, default=_json_default))

    def load_runtime_state(self, record: dict[str, Any]) -> None:
        """Restore :meth:`runtime_state`'s output."""
        self.seed = int(record.get("seed", self.seed))
        if "smoothing" in record:
            sm = record["smoothing"]
            self._losses = [F32(x) for x in sm["losses"]]
            self.smoothed_loss = float(sm["smoothed"])
            self._loss_start = int(sm["start"])
            self._carry_smoothing = True
        _load_net_runtime_state(self.net, record.get("train", {}))
        tests = record.get("test", [])
        if tests and len(tests) != len(self.test_nets):
            raise InputError(
                f"resume record has {len(tests)} test net states, this solver has "
                f"{len(self.test_nets)} test nets"
            )
        for tn, st in zip(self.test_nets, tests, strict=False):
            _load_net_runtime_state(tn, st)


def _net_runtime_state(net: Net) -> dict[str, Any]:
    """The net's random generator, every stateful layer's state, and the backend's."""
    state: dict[str, Any] = {"rng": net.rng.bit_generator.state}
    layers = {}
    for name, layer in zip(net.layer_names, net.layers, strict=True):
        st = _layer_state(layer)
        if st is not None:
            layers[name] = st
    state["layers"] = layers
    backend = net.backend.state_dict()
    if backend:
        state["backend"] = backend
    return state


def _load_net_runtime_state(net: Net, state: dict[str, Any]) -> None:
    # Layers first: reloading a data file may draw from the generator (a shuffle),
    # which is then put back to the saved state.
    saved = state.get("layers", {})
    for name, layer in zip(net.layer_names, net.layers, strict=True):
        if name in saved:
            _load_layer_state(layer, saved[name])
    if "rng" in state:
        net.rng.bit_generator.state = state["rng"]
    if "backend" in state:
        net.backend.load_state_dict(state["backend"])


def _layer_state(layer: Any) -> dict[str, Any] | None:
    state = layer.state_dict()
    return None if state is None else dict(state)


def _load_layer_state(layer: Any, state: dict[str, Any]) -> None:
    layer.load_state_dict(state)
