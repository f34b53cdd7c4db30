"""Arguments shared by the subcommands: the net's state and data shapes, the backend."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from barista_base.errors import InputError
from barista_hw.config import Pass

if TYPE_CHECKING:
    from barista_hw.plan import GemmLayer
    from caffe_bridge.net import Net

    from ..manifest import AcceleratorFiles
from barista_hw.numfmt import DEFAULT_FORMAT
from barista_hw.scaling import parse_scaling
from barista_hw.targets import DEFAULT_TARGET

from ..backends import BACKEND_HELP, DEVICE, DEVICE_RTL, SOLVER_HELP


def add_net_arguments(parser: argparse.ArgumentParser) -> None:
    """``--phase``, ``--level``, ``--stage`` and ``--data-shape``."""
    parser.add_argument(
        "--phase", choices=("TRAIN", "TEST"), default="TRAIN", help="net phase (default TRAIN)"
    )
    parser.add_argument("--level", type=int, default=0, help="net state level (default 0)")
    parser.add_argument(
        "--stage", action="append", default=[], metavar="STAGE", help="net state stage (repeat)"
    )
    add_data_shape_argument(parser)


def add_data_shape_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-shape NAME=N,C,H,W`` (repeatable), read by :func:`parse_data_shapes`."""
    parser.add_argument(
        "--data-shape",
        action="append",
        default=[],
        metavar="NAME=N,C,H,W",
        help="shape of a data layer's top; its source is then not read (repeat per top)",
    )


def parse_data_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``["data=64,1,28,28", "label=64"]`` -> ``{"data": (64, 1, 28, 28), "label": (64,)}``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.split(",") if d.strip() != "")
            if not shape or any(d <= 0 for d in shape):
                raise ValueError
        except ValueError:
            raise InputError(
                f"--data-shape {item!r}: expected NAME=N,C,H,W with positive integers"
            ) from None
        shapes[name.strip()] = shape
    return shapes


def add_backend_arguments(
    parser: argparse.ArgumentParser,
    *,
    default: str = "cpu",
    trace: bool = True,
    device: bool = False,
) -> None:
    """``--backend`` (any of :data:`barista.backends.BACKENDS`, and with ``device`` the
    device model, which runs whole iterations; ``default`` says what is taken without
    it) and the hardware backends' options; ``trace``: ``--trace`` too."""
    helps = dict(BACKEND_HELP, **(SOLVER_HELP if device else {}))
    names = [f"{name} ({what})" for name, what in helps.items()]
    parser.add_argument(
        "--backend",
        metavar="NAME",
        choices=tuple(helps),
        help=f"GEMM backend: {', '.join(names[:-1])} or {names[-1]}; default: {default}",
    )
    parser.add_argument(
        "--format",
        metavar="SPEC",
        help="number format of a hardware backend, e.g. fx16.8 (default "
        f"{DEFAULT_FORMAT.name}); golden also takes minifloat and MX formats (e4m3, e5m2, "
        "mxfp8_e4m3, mxfp4, ...) and formats per pass (fwd=e4m3,grad=e5m2: weights and "
        "activations in E4M3, gradients in E5M2)",
    )
    parser.add_argument(
        "--rounding",
        metavar="MODE",
        help="rounding of a hardware backend: nearest-even, floor or stochastic",
    )
    parser.add_argument(
        "--scaling",
        metavar="MODE",
        help="scaling of a hardware backend: dynamic (per-tensor power-of-two scales, the "
        "default) or static (every tensor with the format's fraction bits, e.g. 12 in fx16.12)",
    )
    parser.add_argument(
        "--accelerator",
        metavar="DIR",
        help="rtl_out/<net> written by `barista generate` (or a `barista build` directory): "
        "the accelerator the rtl and board backends run and whose schedule golden follows; "
        "without it, rtl and board run the design `barista generate` would choose",
    )
    parser.add_argument(
        "--target",
        metavar="BOARD",
        help="rtl, board and device backends without --accelerator: the board target the "
        "design is chosen for (default: barista generate's); device: also its memory",
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
    if device:
        parser.add_argument(
            "--preload",
            action="store_true",
            help="device backend: load the training images into the device's DRAM once, so "
            "that no batch crosses the link",
        )
        parser.add_argument(
            "--rtl-top",
            action="store_true",
            help="device backend: compile the program device-rtl runs (the RTL top's units, "
            "inputs as 16-bit words; without --accelerator its fx16 design), for bit-exact "
            "comparisons with --backend device-rtl",
        )
    if trace:
        parser.add_argument(
            "--trace",
            metavar="LAYER,PASS,ITER",
            help="rtl backend: write an FST waveform of one layer pass (forward, backward or "
            "gradient) in one iteration, counted from 0 as in the log",
        )


def backend_options(
    args: argparse.Namespace,
    backend: str,
    net: Callable[[], tuple[str, list[GemmLayer]]] | None = None,
    log: Callable[[str], None] = print,
    train: Callable[[], Net] | None = None,
) -> dict[str, Any]:
    """Keyword options for :func:`barista.backends.get_backend` from the CLI flags.

    ``--accelerator`` is read here, once (:func:`barista.manifest.load_accelerator`),
    and every hardware backend gets the same :class:`~barista.manifest.AcceleratorFiles`.
    Without it, the rtl and board backends run the accelerator ``barista generate``
    would write for the net (``net()``: its name and GEMM layers) on ``--target``,
    generated once into the cache (:func:`barista.manifest.cached_rtl_dir`); the device
    backend the design the device trains the net on (``train()``: the solver's TRAIN net,
    :func:`barista.device_net.device_design`); ``log`` says where.
    """
    options: dict[str, Any] = {}
    if args.format:
        options["fmt"] = args.format
    if args.rounding:
        options["rounding"] = args.rounding
    if getattr(args, "scaling", None):
        if backend in SOLVER_HELP:
            raise InputError("--scaling applies to the golden, rtl and board backends")
        options["scaling"] = parse_scaling(args.scaling)
    flags = ("format", "rounding", "scaling", "accelerator", "rtl_layers", "trace", "port")
    given = [f"--{k.replace('_', '-')}" for k in flags if getattr(args, k, None)]
    if given and backend == "cpu":
        verb = "applies" if len(given) == 1 else "apply"
        raise InputError(
            f"{' and '.join(given)} {verb} to hardware backends (e.g. --backend golden), not cpu"
        )
    accelerator = getattr(args, "accelerator", None)
    port = getattr(args, "port", None)
    if backend == "board":
        if not port:
            raise InputError("--backend board needs --port DEV (and the board's --accelerator)")
        options["port"] = port
    elif port:
        raise InputError("--port applies to --backend board only")
    target = getattr(args, "target", None)
    rtl_top = backend == DEVICE_RTL or getattr(args, "rtl_top", False)
    if getattr(args, "rtl_top", False):
        if backend != DEVICE:
            raise InputError("--rtl-top applies to --backend device only (device-rtl implies it)")
        options["rtl_top"] = True
    if rtl_top and options.get("fmt"):
        raise InputError(
            f"--format applies to the device top through --accelerator only (its design "
            f"without one is fx16), not {options['fmt']}"
        )
    if backend in SOLVER_HELP:
        options["target"] = target
    elif target and (accelerator or backend not in ("rtl", "board")):
        raise InputError("--target applies to the rtl and board backends without --accelerator")
    if accelerator:
        from ..manifest import load_accelerator

        options["accelerator"] = load_accelerator(accelerator)
    elif backend == DEVICE and train is not None and not rtl_top:
        # (the device top's design, without --accelerator, the solver picks for the net)
        options["accelerator"] = _device_generated(train, target, options.pop("fmt", None), log)
    elif backend in ("rtl", "board") and net is not None:
        options["accelerator"] = _generated(net, target, options.pop("fmt", None), log)
    if getattr(args, "preload", False):
        if backend != DEVICE:
            raise InputError("--preload applies to --backend device only")
        options["preload"] = True
    for flag in ("rtl_layers", "trace"):
        if getattr(args, flag, None) and backend != "rtl":
            raise InputError(f"--{flag.replace('_', '-')} applies to --backend rtl only")
    if getattr(args, "rtl_layers", None):
        options["rtl_layers"] = [name for name in args.rtl_layers.split(",") if name]
    if getattr(args, "trace", None):
        parts = args.trace.split(",")
        passes = tuple(p.value for p in Pass)
        if len(parts) != 3 or not parts[2].isdigit() or parts[1] not in passes:
            raise InputError(
                f"--trace {args.trace!r}: use LAYER,PASS,ITERATION with PASS one of "
                f"{', '.join(passes)} and ITERATION counted from 0, e.g. conv1,forward,0"
            )
        options["trace"] = (parts[0], parts[1], int(parts[2]))
    return options


def _generated(
    net: Callable[[], tuple[str, list[GemmLayer]]],
    target: str | None,
    fmt: str | None,
    log: Callable[[str], None],
) -> AcceleratorFiles:
    """The accelerator ``barista generate`` would write for the net, from the cache."""
    from ..manifest import cached_rtl_dir

    name, layers = net()
    target = target or DEFAULT_TARGET
    files, made = cached_rtl_dir(layers, name=name, target=target, fmt=_engine_format(fmt))
    _log_generated(files, made, f"for {name} on {target}", log)
    return files


def _device_generated(
    train: Callable[[], Net], target: str | None, fmt: str | None, log: Callable[[str], None]
) -> AcceleratorFiles:
    """The design the device trains the net on, from the cache."""
    from ..device_net import device_design

    net = train()
    target = target or DEFAULT_TARGET
    files, made = device_design(net, target=target, fmt=_engine_format(fmt))
    _log_generated(files, made, f"for {net.name or 'net'} on {target}", log)
    return files


def _engine_format(fmt: str | None) -> str | None:
    """The engine's format of ``--format`` (a float format trains in fmt: float32 results)."""
    from ..backends.formats import is_float_format
    from ..backends.rtl_formats import rtl_engine_format

    return rtl_engine_format(fmt).name if fmt is not None and is_float_format(fmt) else fmt


def _log_generated(
    files: AcceleratorFiles, made: bool, where: str, log: Callable[[str], None]
) -> None:
    if made:
        log(f"Generated the accelerator {where} into {files.path.parent}")
    else:
        log(f"Using the accelerator generated earlier {where}: {files.path.parent}")
