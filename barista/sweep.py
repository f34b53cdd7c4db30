"""Sweeps: many training runs over the cross product of a spec's axes, each persisted at once.

Researchers compare number formats, rounding modes, array shapes and seeds by
training the same net under each; :func:`train_and_test` is one such run, with
the ordinary solver, so the run is exactly what ``barista train`` would do for
the same iterations. A sweep (``barista sweep SPEC``) is a YAML or JSON spec
(:func:`load_spec`) whose axes multiply into :class:`Point` s, each named by a
hash of its settings; :func:`run_sweep` runs the points not yet finished on an
executor (Ray, or in-process for tests) and writes each result the moment it
arrives, atomically, as ``points/<id>.json`` in the output directory. A killed
sweep rerun skips what it finds there, so no finished point is lost or redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from barista_base.errors import InputError
from barista_hw.scaling import parse_scaling
from caffe_bridge.solvers import get_solver

from .backends import backend_factory


@dataclass(frozen=True)
class RunResult:
    """What one training run reached."""

    label: str
    iterations: int
    accuracy: float
    loss: float
    seconds: float

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(self.iterations, 1)


def train_and_test(
    solver_path: str | os.PathLike[str],
    *,
    iterations: int,
    backend: str = "cpu",
    backend_options: dict[str, Any] | None = None,
    test_batches: int | None = None,
    label: str | None = None,
    seed: int | None = None,
    scaling: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunResult:
    """Train ``iterations`` steps from the solver file, then test once with test net 0.

    Paths in the solver file are relative to the current directory, as in Caffe.
    Intermediate tests are skipped (they would only cost time); ``test_batches``
    overrides the solver's ``test_iter``, ``seed`` its ``random_seed`` (a run with a
    seed is repeatable to the bit), ``overrides`` other solver fields (e.g. ``base_lr``).
    ``scaling`` (``"dynamic"`` or ``"static"``) sets a hardware backend's scaling mode, as
    ``barista train --scaling`` does.
    """
    options = dict(backend_options or {})
    if scaling is not None:
        options["scaling"] = parse_scaling(scaling)
    param: Any = solver_path
    if overrides:
        from caffe_bridge.solvers import read_solver_param

        param, _ = read_solver_param(solver_path)
        apply_overrides(param, overrides, str(solver_path))
    solver = get_solver(
        param,
        backend=backend_factory(backend, **options),
        max_iter=iterations,
        random_seed=seed,
        log=lambda _line: None,
    )
    solver.param.test_interval = 0
    solver.param.snapshot = 0
    solver.param.snapshot_after_train = False
    if test_batches is not None:
        solver.param.test_iter[0] = test_batches
    start = time.perf_counter()
    solver.step(iterations)
    seconds = time.perf_counter() - start
    scores = dict(solver.test(0))
    accuracy = float(scores.get("accuracy", float("nan")))
    loss = float(solver.smoothed_loss)
    name = label or backend + "".join(f" {k}={v}" for k, v in sorted(options.items()))
    return RunResult(name, iterations, accuracy, loss, seconds)


# -- solver overrides ---------------------------------------------------------------------
#: Solver fields a sweep sets through axes of their own (``iterations``, ``seed``), or that
#: a run's settings must not change (where the net comes from, snapshots, tests).
NOT_OVERRIDABLE = (
    "max_iter",
    "random_seed",
    "net",
    "train_net",
    "test_net",
    "snapshot",
    "snapshot_prefix",
    "test_interval",
    "solver_mode",
)


def apply_overrides(param: Any, overrides: Mapping[str, Any], where: str) -> None:
    """Set scalar fields of a ``SolverParameter`` (``base_lr: 0.01``, ``type: Adam``);
    a bad name or value is an :class:`InputError` naming ``where`` and the field."""
    from google.protobuf.descriptor import FieldDescriptor

    kinds = {FieldDescriptor.TYPE_BOOL: "true or false", FieldDescriptor.TYPE_STRING: "text"}
    for name, value in overrides.items():
        fd = param.DESCRIPTOR.fields_by_name.get(name)
        if (
            fd is None
            or name in NOT_OVERRIDABLE
            or fd.type == FieldDescriptor.TYPE_MESSAGE
            or fd.is_repeated
        ):
            raise InputError(
                f"{where}: {name!r} is not a solver field a sweep can set (a scalar "
                f"SolverParameter field other than {', '.join(NOT_OVERRIDABLE)})"
            )
        try:
            if fd.type == FieldDescriptor.TYPE_ENUM:
                if not isinstance(value, str) or value not in fd.enum_type.values_by_name:
                    raise TypeError(f"expected one of {', '.join(fd.enum_type.values_by_name)}")
                value = fd.enum_type.values_by_name[value].number
            elif isinstance(value, bool) != (fd.type == FieldDescriptor.TYPE_BOOL):
                raise TypeError(f"expected {kinds.get(fd.type, 'a number')}")
            setattr(param, name, value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: {name} = {value!r}: {exc}") from None


# -- the spec --------------------------------------------------------------------------------
#: Axes that become options of a hardware backend: axis -> option name. Another backend
#: option (such as a scaling mode) becomes an axis by one entry here and one in AXIS_CHECKS.
BACKEND_AXES: dict[str, str] = {"format": "fmt", "rounding": "rounding", "scaling": "scaling"}
#: Axes that only hardware backends have: a cpu point drops them (and duplicates merge).
HARDWARE_AXES: tuple[str, ...] = (*BACKEND_AXES, "array")
#: Backends a sweep trains with (the board needs a port per point; device is not a GEMM one).
SWEEP_BACKENDS = ("cpu", "golden", "rtl")
#: Keys of a spec besides ``axes``.
SPEC_KEYS = ("solver", "axes", "test_batches", "generate", "energy", "target", "workdir")


def _check_format(value: Any) -> str:
    from barista_hw.passformats import parse_training_format

    return parse_training_format(str(value)).name


def _check_rounding(value: Any) -> str:
    from barista_hw.numfmt import Rounding

    return Rounding.parse(str(value)).label


def _check_array(value: Any) -> str:
    from barista_hw.config import EngineConfig

    rows, cols = EngineConfig.parse_array(str(value))
    EngineConfig(rows, cols)  # the range check, with its message
    return f"{rows}x{cols}"


def _check_backend(value: Any) -> str:
    if value not in SWEEP_BACKENDS:
        raise InputError(f"backend {value!r}: a sweep trains with {', '.join(SWEEP_BACKENDS)}")
    return str(value)


def _check_count(least: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{value!r} is not an integer >= {least}")
        return value

    return check


#: The named axes and how each value is checked and spelt (one spelling: one point id).
AXIS_CHECKS: dict[str, Callable[[Any], Any]] = {
    "backend": _check_backend,
    "format": _check_format,
    "rounding": _check_rounding,
    "scaling": parse_scaling,
    "array": _check_array,
    "seed": _check_count(0),
    "iterations": _check_count(1),
}


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its settings (JSON values) and the id they hash to."""

    settings: dict[str, Any]
    id: str = field(init=False)

    def __post_init__(self) -> None:
        text = json.dumps(self.settings, sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "id", hashlib.sha256(text.encode()).hexdigest()[:12])

    @property
    def hardware(self) -> bool:
        return self.settings["backend"] != "cpu"


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec: where runs happen and the points its axes multiply into."""

    path: Path
    workdir: Path
    points: tuple[Point, ...]


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read a YAML or JSON sweep spec (see ``docs/sweep.md``); errors name the file and key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the sweep spec: {exc.strerror or exc}") from None
    doc = _parse(path, text)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a sweep spec is a mapping with keys {', '.join(SPEC_KEYS)}")
    for key in doc:
        if key not in SPEC_KEYS:
            raise InputError(f"{path}: unknown key {key!r} (known: {', '.join(SPEC_KEYS)})")
    if not isinstance(doc.get("solver"), str) or not doc["solver"]:
        raise InputError(f"{path}: key 'solver': the solver .prototxt path is required")
    workdir = Path(doc.get("workdir", ".")).expanduser()
    if not isinstance(doc.get("workdir", "."), str) or not workdir.is_dir():
        raise InputError(f"{path}: key 'workdir': {doc.get('workdir')!r} is not a directory")
    if not (workdir / doc["solver"]).is_file():
        raise InputError(
            f"{path}: key 'solver': {doc['solver']!r} not found in {workdir.resolve()} "
            "(paths are relative to the workdir, as Caffe's are to the current directory)"
        )
    common: dict[str, Any] = {"solver": doc["solver"]}
    if "test_batches" in doc:
        common["test_batches"] = _checked(path, "test_batches", doc["test_batches"], 1)
    if "target" in doc:
        from barista_hw.targets import TARGETS

        if doc["target"] not in TARGETS:
            raise InputError(
                f"{path}: key 'target': {doc['target']!r} is not one of {', '.join(TARGETS)}"
            )
        common["target"] = doc["target"]
    for key in ("generate", "energy"):
        if key in doc:
            if not isinstance(doc[key], bool):
                raise InputError(f"{path}: key {key!r}: expected true or false")
            common[key] = doc[key]
    axes = _axes(path, doc.get("axes", {}))
    points = tuple(_points(common, axes))
    for point in points:
        _check_design(path, point.settings)
    return SweepSpec(path, workdir.resolve(), points)


def _check_design(path: Path, settings: dict[str, Any]) -> None:
    """A point that needs an accelerator design (rtl, ``generate``, ``energy``) needs a
    format the design exploration knows: fixed point, for now."""
    from barista_hw.numfmt import FixedFormat
    from barista_hw.passformats import parse_training_format

    fmt = settings.get("format")
    if fmt is None or isinstance(parse_training_format(fmt), FixedFormat):
        return
    needs = [k for k in ("generate", "energy") if settings.get(k)]
    needs += ["backend rtl"] if settings["backend"] == "rtl" else []
    if needs:
        raise InputError(
            f"{path}: format {settings['format']!r} with {' and '.join(needs)}: the "
            "accelerator generator has no design for it yet (fixed-point formats only); "
            "use the golden backend without generate/energy"
        )


def _parse(path: Path, text: str) -> Any:
    """JSON for ``.json`` files, YAML (a superset of JSON) for the rest."""
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise InputError(f"{where}: {getattr(exc, 'problem', None) or exc}") from None


def _checked(path: Path, key: str, value: Any, least: int) -> int:
    try:
        return _check_count(least)(value)
    except InputError as exc:
        raise InputError(f"{path}: key {key!r}: {exc}") from None


def _axes(path: Path, axes: Any) -> dict[str, list[Any]]:
    """Each axis's checked values (a single value is an axis of one); solver fields are
    checked against the solver's message now, so a typo fails before any run."""
    if not isinstance(axes, dict):
        raise InputError(f"{path}: key 'axes': expected a mapping of axis -> list of values")
    from caffe_bridge.proto import caffe_pb2

    out: dict[str, list[Any]] = {}
    for name, values in axes.items():
        where = f"{path}: key 'axes.{name}'"
        values = values if isinstance(values, list) else [values]
        if not values:
            raise InputError(f"{where}: an axis needs at least one value")
        check = AXIS_CHECKS.get(name)
        checked = []
        for value in values:
            if check is None:
                apply_overrides(caffe_pb2.SolverParameter(), {name: value}, where)
                checked.append(value)
                continue
            try:
                checked.append(check(value))
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
        if len(set(map(json.dumps, checked))) != len(checked):
            raise InputError(f"{where}: a value appears twice")
        out[name] = checked
    return out


def _points(common: dict[str, Any], axes: dict[str, list[Any]]) -> Iterator[Point]:
    """The cross product, in the spec's order, without duplicates (cpu points have no
    hardware axes, so formats multiply only the hardware backends)."""
    axes = {"backend": ["golden"], **axes}
    seen: set[str] = set()
    for combo in itertools.product(*axes.values()):
        settings = dict(common)
        overrides = {}
        for name, value in zip(axes, combo, strict=True):
            if name in AXIS_CHECKS:
                settings[name] = value
            else:
                overrides[name] = value
        if overrides:
            settings["overrides"] = overrides
        if settings["backend"] == "cpu":
            for name in (*HARDWARE_AXES, "generate", "energy", "target"):
                settings.pop(name, None)
        point = Point(settings)
        if point.id not in seen:
            seen.add(point.id)
            yield point


# -- one point ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """Work in ``path`` (Caffe's files name paths relative to the current directory)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_point(settings: dict[str, Any], workdir: str, out: str) -> dict[str, Any]:
    """Train and test one point in ``workdir``; its record (JSON values) for ``points/``.

    A hardware point also gets the design the exploration picks for its format and array
    on its target (multipliers, block RAM, LUTs, modelled images/s: the resource model's
    estimate), with ``energy`` the device model's energy per image of a training
    iteration on it; with ``generate`` (always for rtl, which runs it) the accelerator is
    written to ``out/rtl/<net>-<id>`` and trained with.
    """
    from caffe_bridge.solvers import TrainingDiverged

    point = Point(settings)
    record: dict[str, Any] = {"id": point.id, "settings": settings, "host": socket.gethostname()}
    options = {BACKEND_AXES[k]: settings[k] for k in BACKEND_AXES if k in settings}
    started = time.time()
    with _cwd(Path(workdir)):
        if point.hardware:
            hardware, accelerator = _hardware(point, Path(out))
            record["hardware"] = hardware
            if accelerator is not None:
                options = {"accelerator": accelerator, "rounding": options.get("rounding")}
                options = {k: v for k, v in options.items() if v is not None}
            elif "array" in settings:
                rows, cols = (int(n) for n in settings["array"].split("x"))
                options.update(rows=rows, cols=cols)
        try:
            result = train_and_test(
                settings["solver"],
                iterations=settings.get("iterations") or _max_iter(settings["solver"]),
                backend=settings["backend"],
                backend_options=options,
                test_batches=settings.get("test_batches"),
                seed=settings.get("seed"),
                overrides=settings.get("overrides"),
            )
            record.update(
                status="ok",
                accuracy=result.accuracy,
                loss=result.loss,
                iterations=result.iterations,
                train_seconds=round(result.seconds, 3),
            )
        except TrainingDiverged as exc:  # a result too: this setting does not train
            record.update(status="diverged", accuracy=None, loss=None, error=str(exc))
    record["seconds"] = round(time.time() - started, 3)
    return record


def _max_iter(solver: str) -> int:
    from caffe_bridge.solvers import read_solver_param

    return int(read_solver_param(solver)[0].max_iter)


def _hardware(point: Point, out: Path) -> tuple[dict[str, Any], Any]:
    """The estimate of the point's design, and its accelerator files if it is generated."""
    from barista_hw.config import EngineConfig
    from barista_hw.dse import explore
    from barista_hw.generate import generate, module_name
    from barista_hw.numfmt import FixedFormat
    from barista_hw.passformats import parse_training_format
    from barista_hw.targets import DEFAULT_TARGET, get_target
    from caffe_bridge.solvers import train_net

    from .backends.plan import gemm_layers
    from .manifest import load_accelerator, write_rtl_dir

    s = point.settings
    net = train_net(s["solver"])
    name, layers = net.name or "net", gemm_layers(net)
    target = s.get("target", DEFAULT_TARGET)
    fmt = parse_training_format(s["format"]) if "format" in s else None
    if fmt is not None and not isinstance(fmt, FixedFormat):
        return {}, None  # the exploration knows fixed-point arrays only (load_spec checks)
    array = EngineConfig.parse_array(s["array"]) if "array" in s else None
    accelerator = None
    if s.get("generate") or s["backend"] == "rtl":
        design = generate(layers, target=target, fmt=fmt, array=array, name=name)
        rtl = out / "rtl" / f"{module_name(name)}-{point.id}"
        write_rtl_dir(design, rtl)
        accelerator = load_accelerator(rtl)
        best = design.dse.best if design.dse is not None else None
    else:
        best = explore(layers, get_target(target).budget, fmt=fmt, array=array, name=name).best
    if best is None:
        return {}, accelerator
    r = best.resources
    hardware = {
        "design": best.label,
        "target": target,
        "mults": r.mults,
        "bram_blocks": r.bram_blocks,
        "luts": r.luts,
        "images_per_second": round(best.images_per_second, 3),
        "config": best.config.to_dict(),  # the whole design, to rebuild it
    }
    if s.get("energy"):
        key = (os.getcwd(), s["solver"], target, best.config, s.get("rounding"))
        if key not in _ENERGY:
            _ENERGY[key] = _energy(net, best.config, target, s.get("rounding"))
        hardware["energy_mj_per_image"] = _ENERGY[key]
    if accelerator is not None:
        hardware["rtl"] = str(accelerator.path.parent)
    return hardware, accelerator


#: Energy per image by (directory, solver, target, design, rounding): seeds and solver
#: settings share it, and counting a program takes seconds.
_ENERGY: dict[tuple[Any, ...], float | None] = {}


def _energy(net: Any, config: Any, target: str, rounding: str | None) -> float | None:
    """mJ per image of one training iteration of ``net`` compiled for the device, or None
    when the device cannot run the net (the compiler says why; the point still trains)."""
    from barista_hw.numfmt import Rounding

    from .device_net import compile_device

    try:
        dc = compile_device(
            net, config, target=target, rounding=Rounding.parse(rounding) if rounding else None
        )
        return round(dc.cost.mj_per_image, 6)
    except InputError:
        return None


# -- executors ---------------------------------------------------------------------------------
Job = tuple[dict[str, Any], str, str]  # run_point's arguments


class Executor(Protocol):
    """Runs :func:`run_point` on jobs; yields each record as it finishes (any order)."""

    def run(self, jobs: list[Job]) -> Iterator[dict[str, Any]]: ...


class InlineExecutor:
    """Every point in this process, one after another (tests; no Ray)."""

    def __init__(self, fn: Callable[..., dict[str, Any]] = run_point) -> None:
        self.fn = fn

    def run(self, jobs: list[Job]) -> Iterator[dict[str, Any]]:
        for job in jobs:
            yield dict(guarded(self.fn, *job), node="local", pid=os.getpid())


def guarded(fn: Callable[..., dict[str, Any]], *job: Any) -> dict[str, Any]:
    """``fn(*job)``, or an ``error`` record saying why it raised: one failed point does
    not stop the others (a Ctrl-C, not an Exception, still does)."""
    try:
        return fn(*job)
    except Exception as exc:
        settings = job[0]
        return {
            "id": Point(settings).id,
            "settings": settings,
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}",
        }


def _ray_point(settings: dict[str, Any], workdir: str, out: str) -> dict[str, Any]:
    """:func:`run_point` in a Ray worker, with the node and process that ran it."""
    import ray

    record = guarded(run_point, settings, workdir, out)
    return dict(record, node=ray.get_runtime_context().get_node_id(), pid=os.getpid())


class RayExecutor:
    """Points as Ray tasks of one CPU each: a local Ray with ``num_cpus`` (default the
    machine's) on the loopback interface, or the cluster at ``address``."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus

    def run(self, jobs: list[Job]) -> Iterator[dict[str, Any]]:
        if not jobs:  # nothing left to run: no Ray to start
            return
        import ray

        from .ray_cluster import join_ray

        started = join_ray(self.address, self.num_cpus)
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(_ray_point)
            pending = [task.remote(*job) for job in jobs]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            if started:
                ray.shutdown()


# -- the sweep ----------------------------------------------------------------------------------
POINTS_DIR = "points"


def finished(out: Path) -> dict[str, dict[str, Any]]:
    """The records persisted in ``out/points`` by id (temporary files are not records)."""
    records = {}
    for path in sorted((out / POINTS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            records[record["id"]] = record
        except (ValueError, KeyError, TypeError) as exc:  # written by hand, or not by us
            raise InputError(f"{path}: not a sweep point record ({exc}); move it away") from None
    return records


def persist(out: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as ``out/points/<id>.json`` atomically: a temporary name in the same
    directory, flushed to disk, then renamed (a killed sweep leaves whole records only)."""
    folder = out / POINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{record['id']}.json"
    tmp = folder / f".{record['id']}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike[str],
    executor: Executor,
    *,
    progress: Callable[[int, int], Any] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the spec's points not yet in ``out/points``, persisting each as it finishes.

    ``progress(done, total)`` is called once before any run and after each point;
    ``on_record`` sees each new record. Returns the records, in spec order: every
    point's, except that a point whose run raised has an ``error`` record that is not
    persisted (a rerun tries it again).
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    have = finished(out)
    todo = [p for p in spec.points if p.id not in have]
    done = len(spec.points) - len(todo)
    if progress:
        progress(done, len(spec.points))
    jobs: list[Job] = [(p.settings, str(spec.workdir), str(out)) for p in todo]
    for record in executor.run(jobs):
        if record["status"] != "error":
            persist(out, record)
        have[record["id"]] = record
        done += 1
        if on_record:
            on_record(record)
        if progress:
            progress(done, len(spec.points))
    return [have[p.id] for p in spec.points]
