"""The GEMM backends Barista trains with, chosen by name.

* ``cpu``: float32 numpy, Caffe's arithmetic (:class:`caffe_bridge.backend.CpuBackend`);
* ``golden``: the bit-exact model of the hardware arithmetic (:mod:`.hardware`);
* ``rtl``: the generated accelerator, Verilated (:mod:`.rtl`);
* ``board``: the accelerator on an FPGA over its UART link (:mod:`.board`).

Every hardware backend quantises, scales and seeds the same way, so they return the
same bits; only where an integer GEMM runs differs.
"""

from __future__ import annotations

from typing import Any

from barista_base.errors import InputError
from caffe_bridge.backend import BackendFactory, CpuBackend, GemmBackend

#: Every backend by name, with what it computes on (the ``--backend`` help is made from it).
BACKEND_HELP: dict[str, str] = {
    "cpu": "float32",
    "golden": "the bit-exact hardware model",
    "rtl": "the Verilated accelerator",
    "board": "an FPGA over its UART",
}
BACKENDS = tuple(BACKEND_HELP)
#: ``barista train --backend device``: not a GEMM backend but a solver whose whole
#: iteration runs on the device model (:mod:`.device`).
DEVICE = "device"
DEVICE_HELP = "the whole iteration on the device model, tensors in device memory"
#: ``barista train --backend device-rtl``: the device solver's iterations on the Verilated
#: device top (:mod:`.device_rtl`), the program compiled as ``device --rtl-top`` does.
DEVICE_RTL = "device-rtl"
DEVICE_RTL_HELP = "the whole iteration on the Verilated device top"
#: The backends that are solvers running whole iterations, with their help.
SOLVER_HELP = {DEVICE: DEVICE_HELP, DEVICE_RTL: DEVICE_RTL_HELP}


def _backend_class(name: str) -> type[GemmBackend]:
    # Imported on demand: the rtl backend pulls in the Verilator driver, board the link.
    if name == "cpu":
        return CpuBackend
    if name == "golden":
        from .hardware import GoldenBackend

        return GoldenBackend
    if name == "rtl":
        from .rtl import RtlBackend

        return RtlBackend
    if name == "board":
        from .board import BoardBackend

        return BoardBackend
    raise InputError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


def get_backend(name: str, **options: Any) -> GemmBackend:
    """A backend by name (:data:`BACKENDS`) with its keyword options; ``golden`` with a
    minifloat or MX ``fmt`` is :class:`.formats.FormatBackend`."""
    cls = _backend_class(name)
    if name == "rtl":
        from .rtl_formats import RtlFormatBackend, is_minifloat_accelerator

        if is_minifloat_accelerator(options.get("accelerator")):
            cls = RtlFormatBackend
    if name == "golden":
        from .formats import FormatBackend, is_float_format

        if is_float_format(options.get("fmt")):
            cls = FormatBackend
    try:
        return cls(**options)
    except TypeError as exc:  # an option this backend does not take
        raise InputError(f"backend {name!r}: {exc}") from None


def backend_factory(name: str, **options: Any) -> BackendFactory:
    """Makes one backend per net (what a solver takes); the first is made now, so bad
    options fail before any net is built."""
    first = [get_backend(name, **options)]

    def make() -> GemmBackend:
        return first.pop() if first else get_backend(name, **options)

    return make


__all__ = [
    "BACKENDS",
    "BACKEND_HELP",
    "DEVICE",
    "DEVICE_HELP",
    "DEVICE_RTL",
    "DEVICE_RTL_HELP",
    "SOLVER_HELP",
    "backend_factory",
    "get_backend",
]
