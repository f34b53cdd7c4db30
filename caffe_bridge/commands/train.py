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
from typing import Any

from barista_hw.errors import InputError

NAME = "train"
HELP = "Train a net with a Caffe solver (.prototxt), like `caffe train`."


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
    add_backend_arguments(parser)
    parser.add_argument(
        "--iterations", type=int, metavar="N", help="train to N iterations (overrides max_iter)"
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write the loss/accuracy curves to this PNG when training ends",
    )


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--format``, ``--rounding``: shared with ``barista test``."""
    parser.add_argument(
        "--backend",
        metavar="NAME",
        help="GEMM backend: cpu (float32) or golden (bit-exact hardware model); "
        "default: golden for solver_mode FPGA, else cpu",
    )
    parser.add_argument(
        "--format",
        metavar="SPEC",
        help="number format of a hardware backend, e.g. fx16.8 (default fx16)",
    )
    parser.add_argument(
        "--rounding",
        metavar="MODE",
        help="rounding of a hardware backend: nearest-even, floor or stochastic",
    )
    parser.add_argument(
        "--accelerator",
        metavar="DIR",
        help="rtl_out/<net> written by `barista generate`: the accelerator the rtl backend "
        "simulates and whose schedule the golden backend follows",
    )
    parser.add_argument(
        "--port",
        metavar="DEV",
        help="board backend: the board's serial port (or a pyserial URL such as "
        "socket://127.0.0.1:PORT)",
    )
    parser.add_argument(
        "--rtl-layers",
        metavar="L1,L2",
        help="rtl backend: run only these layers on the RTL, the rest on the golden model",
    )
    parser.add_argument(
        "--trace",
        metavar="LAYER,PASS,ITER",
        help="rtl backend: write an FST waveform of one layer pass (forward, backward or "
        "gradient) in one iteration",
    )


def backend_options(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    """Keyword options for :func:`caffe_bridge.backend.get_backend` from the CLI flags."""
    options: dict[str, Any] = {}
    if args.format:
        options["fmt"] = args.format
    if args.rounding:
        options["rounding"] = args.rounding
    flags = ("format", "rounding", "accelerator", "rtl_layers", "trace", "port")
    given = [f"--{k.replace('_', '-')}" for k in flags if getattr(args, k, None)]
    if given and backend == "cpu":
        raise InputError(
            f"{' and '.join(given)} apply to hardware backends (e.g. --backend golden), not cpu"
        )
    accelerator = getattr(args, "accelerator", None)
    if backend == "board":
        if not (accelerator and getattr(args, "port", None)):
            raise InputError("--backend board needs --port DEV and --accelerator rtl_out/<net>")
        options["port"] = args.port
        options["manifest"] = accelerator
    elif getattr(args, "port", None):
        raise InputError("--port applies to --backend board only")
    elif accelerator:
        if backend == "rtl":
            options["rtl_dir"] = accelerator
        else:
            from barista_hw.generate import read_manifest

            options["accelerator"] = read_manifest(accelerator)[0]
    elif backend == "rtl":
        raise InputError(
            "--backend rtl needs --accelerator rtl_out/<net> (write it with "
            "`barista generate NET.prototxt -o rtl_out/<net>`)"
        )
    for flag in ("rtl_layers", "trace"):
        if getattr(args, flag, None) and backend != "rtl":
            raise InputError(f"--{flag.replace('_', '-')} applies to --backend rtl only")
    if getattr(args, "rtl_layers", None):
        options["rtl_layers"] = [name for name in args.rtl_layers.split(",") if name]
    if getattr(args, "trace", None):
        parts = args.trace.split(",")
        if len(parts) != 3 or not parts[2].isdigit():
            raise InputError(
                f"--trace {args.trace!r}: use LAYER,PASS,ITERATION e.g. conv1,forward,3"
            )
        options["trace"] = (parts[0], parts[1], int(parts[2]))
    return options


def _shown(key: str, value: Any, args: argparse.Namespace) -> Any:
    """An option as the user gave it (the accelerator by its directory, not its fields)."""
    return args.accelerator if key == "accelerator" else value


def run(args: argparse.Namespace) -> int:
    """Build the solver, train, and report; returns the exit status."""
    from tqdm import tqdm

    from ..plot import parse_log, plot_training
    from ..proto import caffe_pb2
    from ..solvers import TrainingDiverged, get_solver, read_solver_param

    param, _ = read_solver_param(args.solver)
    backend = args.backend
    if backend is None:
        backend = "golden" if param.solver_mode == caffe_pb2.SolverParameter.FPGA else "cpu"
    options = backend_options(args, backend)
    if args.iterations is not None and args.iterations < 0:
        raise InputError(f"--iterations must be >= 0, got {args.iterations}")
    weights = [w for w in (args.weights or "").split(",") if w]

    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    solver = get_solver(
        args.solver,
        backend=backend,
        backend_options=options,
        weights=weights,
        max_iter=args.iterations,
        log=log,
    )
    log(
        f"Using the {backend} backend"
        + (
            f" ({', '.join(f'{k}={_shown(k, v, args)}' for k, v in options.items())})"
            if options
            else ""
        )
    )
    engine = solver.net.backend
    if hasattr(engine, "prepare"):
        log("Building the Verilated accelerator (cached after the first run)")
        engine.prepare()
    if hasattr(engine, "begin_iteration"):
        solver.add_callback(on_start=engine.begin_iteration)

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
        if args.snapshot:
            solver.restore(args.snapshot)
            log(f"Restored solver state from {args.snapshot} at iteration {solver.iter}")
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
        if hasattr(engine, "cycle_report"):
            log(str(engine.cycle_report()))
    except TrainingDiverged as exc:
        print(f"barista train: error: {exc}", file=sys.stderr)
        status = 1
    finally:
        bar.close()
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
    return status


if __name__ == "__main__":  # ``python -m caffe_bridge.commands.train`` runs just this command
    from .. import cli

    _parser = argparse.ArgumentParser(prog="barista train", description=HELP)
    add_arguments(_parser)
    _args = _parser.parse_args()
    try:
        sys.exit(run(_args))
    except cli.InputError as _exc:
        print(f"barista train: error: {_exc}", file=sys.stderr)
        sys.exit(2)
