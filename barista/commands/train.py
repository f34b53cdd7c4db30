"""``barista train``: train with a Caffe solver file, like ``caffe train``.

Caffe-style lines (``Iteration N, loss = X``, ``Test net output #0: ...``) go
to stdout through ``tqdm.write`` so they stay readable under the progress bar,
which goes to stderr (and only to a terminal). ``solver_mode: FPGA`` selects
the bit-exact ``golden`` backend unless ``--backend`` says otherwise. The
first Ctrl-C stops after the current iteration and snapshots (Caffe's
``sigint_effect=stop`` with ``snapshot_after_train``); a second one aborts.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

from barista_base.errors import InputError

from .args import add_backend_arguments, backend_options

if TYPE_CHECKING:
    from barista.backends.rtl import RtlBackend
    from caffe_bridge.backend import GemmBackend
    from caffe_bridge.net import Net
    from caffe_bridge.solvers import Solver

NAME = "train"
HELP = "train a net with a Caffe solver (.prototxt), like `caffe train`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``barista train`` options."""
    parser.add_argument(
        "--solver",
        required=True,
        metavar="SOLVER.prototxt",
        help="Caffe solver file (paths inside it are relative to the current "
        "directory, as in Caffe)",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--weights",
        metavar="W.caffemodel[,W2...]",
        help="fine-tune from these weights (comma-separated list)",
    )
    start.add_argument(
        "--snapshot", metavar="S.solverstate", help="resume training from a solver state"
    )
    add_backend_arguments(parser, default="golden for solver_mode FPGA, else cpu", device=True)
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="share every GEMM among N devices (golden, rtl or board backend; Ray actors), "
        "bit-identical to one; board: one --port per device, comma-separated (default 1)",
    )
    parser.add_argument(
        "--split-gradient",
        choices=("auto", "images", "blocks"),
        default="auto",
        help="with --devices: share weight gradients by images (partial sums read out at full "
        "width and summed on the host), by output blocks, or as the cycle model finds "
        "faster (default auto)",
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="with --devices: join the Ray cluster at this address (default: a local Ray)",
    )
    parser.add_argument(
        "--iterations", type=int, metavar="N", help="train to N iterations (overrides max_iter)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="random seed (overrides random_seed; a seeded run repeats to the bit)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write the loss/accuracy curves to this PNG when training ends",
    )


def _shown(key: str, value: Any, args: argparse.Namespace) -> Any:
    """An option as the user gave it (the accelerator by its directory, not its fields;
    ``--trace`` and ``--rtl-layers`` as typed)."""
    if key == "accelerator":
        return args.accelerator or value.path.parent
    return getattr(args, key) if key in ("trace", "rtl_layers") else value


def _traced(engine: GemmBackend) -> RtlBackend:
    """The backend ``--trace`` was given to (only the rtl backend takes it)."""
    from barista.backends.rtl import RtlBackend

    assert isinstance(engine, RtlBackend)
    return engine


def _check_trace(engine: GemmBackend, solver: Solver) -> None:
    """Reject ``--trace`` before training when its layer pass or iteration is not run."""
    from barista.backends.plan import gemm_layers

    passes = [
        (w.layer.split(":")[0], w.kind)  # "ip:1" is ip's second bottom, the same layer
        for layer in gemm_layers(solver.net)
        for w in layer.workloads()
    ]
    _traced(engine).check_trace(passes, range(solver.iter, solver.param.max_iter))


def _factory(args: argparse.Namespace, backend: str, options: dict[str, Any]) -> Any:
    """The solver's backend factory: one device, or ``--devices N`` of them."""
    from barista.backends import backend_factory

    if args.devices == 1:
        return backend_factory(backend, **options)
    from barista.data_parallel import data_parallel_factory

    return data_parallel_factory(
        backend, args.devices, address=args.address, split=args.split_gradient, **options
    )


def run(args: argparse.Namespace) -> int:
    """Build the solver, train, and report; returns the exit status."""
    from tqdm import tqdm

    from barista.backends import DEVICE, DEVICE_RTL
    from barista.backends.device import DeviceSolver
    from caffe_bridge.plot import parse_log, plot_training
    from caffe_bridge.proto import caffe_pb2
    from caffe_bridge.solvers import TrainingDiverged, get_solver, read_solver_param, train_net

    from ..backends.plan import gemm_layers

    param, _ = read_solver_param(args.solver)
    backend = args.backend
    if backend is None:
        backend = "golden" if param.solver_mode == caffe_pb2.SolverParameter.FPGA else "cpu"
    if args.iterations is not None and args.iterations < 0:
        raise InputError(f"--iterations must be >= 0, got {args.iterations}")
    weights = [w for w in (args.weights or "").split(",") if w]

    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    def train() -> Net:
        return train_net(args.solver)

    def net() -> tuple[str, list]:
        train_ = train()
        return train_.name or "net", gemm_layers(train_)

    if args.address and args.devices == 1:
        raise InputError("--address applies with --devices N > 1")
    if args.split_gradient != "auto" and args.devices == 1:
        raise InputError("--split-gradient applies with --devices N > 1")
    if args.devices != 1:
        from barista.data_parallel import check_devices

        check_devices(backend, args.devices)  # before an accelerator is generated
    options = backend_options(args, backend, net, log, train)
    if args.devices != 1:
        check_devices(backend, args.devices, options, args.split_gradient)
    common = {"weights": weights, "max_iter": args.iterations, "random_seed": args.seed}
    if backend == DEVICE:
        solver: Solver = DeviceSolver(args.solver, log=log, **common, **options)
    elif backend == DEVICE_RTL:
        from barista.backends.device_rtl import RtlDeviceSolver

        solver = RtlDeviceSolver(args.solver, log=log, **common, **options)
    else:
        solver = get_solver(
            args.solver, backend=_factory(args, backend, options), log=log, **common
        )
    shown = [f"{k}={_shown(k, v, args)}" for k, v in options.items()]
    if args.devices > 1:
        shown.append(f"devices={args.devices}")
    log(f"Using the {backend} backend" + (f" ({', '.join(shown)})" if shown else ""))
    engine = solver.net.backend
    if args.snapshot:
        solver.restore(args.snapshot)
        log(f"Restored solver state from {args.snapshot} at iteration {solver.iter}")
    if args.trace:  # before the build and the training: a trace that cannot happen
        _check_trace(engine, solver)
    engine.prepare(log)
    # The backend numbers iterations as the solver and the log do (from 0, as Caffe).
    solver.add_callback(on_start=lambda: engine.begin_iteration(solver.iter))

    status = 0
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        # First Ctrl-C: finish this iteration, snapshot, stop. Second: abort.
        signal.signal(signal.SIGINT, previous)
        solver.request_stop()

    bar = tqdm(
        total=solver.param.max_iter,
        unit="iter",
        file=sys.stderr,
        disable=None,
        dynamic_ncols=True,
        desc="train",
    )
    solver.add_callback(on_gradients_ready=lambda: bar.update(1))
    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        bar.n = solver.iter
        bar.refresh()
        solver.solve()
        if solver.requested_early_exit:
            print(
                f"barista train: interrupted at iteration {solver.iter}; "
                f"{solver.last_snapshot or 'no snapshot'} written",
                file=sys.stderr,
            )
            status = 130
        report = engine.report()
        if report is not None:
            log(report)
        if isinstance(solver, DeviceSolver):
            log(solver.device_report())
    except TrainingDiverged as exc:
        print(f"barista train: error: {exc}", file=sys.stderr)
        status = 1
    finally:
        bar.close()
        engine.close()  # simulators, ports; the devices of --devices N and their Ray
        if isinstance(solver, DeviceSolver):
            solver.close()  # the Verilated device top's process
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass
        if args.plot:
            curves = parse_log(lines)
            if curves:
                plot_training(curves, args.plot, title=f"{args.solver} ({backend})")
                print(f"Wrote {args.plot}", file=sys.stderr)
            else:
                print(
                    f"barista train: no curves to plot (display: 0?); {args.plot} not written",
                    file=sys.stderr,
                )
    missing = _traced(engine).missing_trace() if args.trace else None
    if missing is not None:
        # The waveform asked for is an output of this command: without it the command did
        # not do all it was asked, so it fails (status 1) and a script can tell. What
        # training produced (the log, the snapshots) is kept.
        print(
            f"barista train: error: --trace {args.trace}: no waveform written: {missing}",
            file=sys.stderr,
        )
        status = status or 1
    return status
