"""``barista generate --device``: the device accelerator for a net, its manifest and program.

:func:`generate_device` is the Python API beside :func:`barista_hw.generate.generate`::

    from barista.device_generate import generate_device, write_device_dir
    dd = generate_device(net, target="ulx3s-85f")   # net: caffe_bridge Net, TRAIN phase
    write_device_dir(dd, "rtl_out/lenet")           # device.v, device_manifest.json,
                                                    # program.bin, program.txt

The design is one the RTL top runs (:data:`~barista_hw.device.memory.RTL_UNITS`): fx16
operands (the col2im accumulators hold whole 16-bit elements and HOST_IN moves bus
words; the DSE's fx18 design does not run on the top) and engine columns that divide
every convolution's output pixels per image (no C strip of a col2im STORE spans two
images). The decoder is sized for the program (tensors, host registers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from barista_base.errors import InputError

if TYPE_CHECKING:
    from barista_hw.config import AcceleratorConfig
    from caffe_bridge.net import Net

    from .device_net import DeviceCompilation

#: Version of ``device_manifest.json``; bump on any change of its meaning.
DEVICE_MANIFEST_VERSION = 1
ROWS, COLUMNS, DEPTH, ACC_DEPTH = 8, (8, 4, 2, 1), 1024, 64


@dataclass(frozen=True)
class DeviceDesign:
    """A net's device accelerator: the compilation, the top's Verilog and its sizes."""

    name: str
    top: str
    compilation: DeviceCompilation
    tensors: int
    registers: int
    bus_bits: int
    verilog: str


def device_accelerator(net: Net) -> AcceleratorConfig:
    """The fx16 8-row engine whose columns (8, 4, 2 or 1, the widest) divide the output
    pixels per image of every convolution of ``net``: what the RTL top runs."""
    from barista_hw.config import DEFAULT_ACCELERATOR, parse_engine_format

    from .device_net import device_net

    pixels = [
        layer.geom.out_height * layer.geom.out_width
        for layer in device_net(net).layers
        if getattr(layer, "geom", None) is not None and hasattr(layer.geom, "out_height")
    ]
    cols = next(c for c in COLUMNS if all(p % c == 0 for p in pixels))
    return DEFAULT_ACCELERATOR.derive(
        rows=ROWS,
        cols=cols,
        depth=DEPTH,
        acc_depth=ACC_DEPTH,
        fmt=parse_engine_format("fx16"),
    )


def generate_device(net: Net, *, target: str | None = None, name: str = "net") -> DeviceDesign:
    """Compile ``net``'s TRAIN iteration for the device the RTL top builds on ``target`` and
    elaborate the top, its decoder sized for the program.

    Raises :class:`InputError` as the compiler does, or when the RTL top refuses."""
    from barista_hw.device.memory import RTL_UNITS
    from barista_hw.device.rtl.decode import RegisterMap, check_fits
    from barista_hw.device.rtl.device import Device
    from barista_hw.generate import module_name
    from barista_hw.rtl import to_verilog
    from sim.gemm_path_run import BUS_BITS

    from .device_net import compile_device

    dc = compile_device(net, device_accelerator(net), target=target, units=RTL_UNITS)
    program = dc.compiled.program
    tensors, registers = len(program.tensors), RegisterMap.of(program).size
    check_fits(program, tensors, registers)
    top = f"{module_name(name)}_device"
    device = Device(dc.config, bus_bits=BUS_BITS, tensors=tensors, registers=registers)
    verilog = to_verilog(device, top)
    return DeviceDesign(name, top, dc, tensors, registers, BUS_BITS, verilog)


def device_manifest(dd: DeviceDesign) -> dict:
    """The JSON-able manifest of ``dd``: memory, design, program."""
    from barista_hw.device.isa import count_ops

    cfg, program = dd.compilation.config, dd.compilation.compiled.program
    e = cfg.accelerator.engine
    tensors = program.tensors
    return {
        "version": DEVICE_MANIFEST_VERSION,
        "name": dd.name,
        "top": dd.top,
        "target": cfg.target,
        "memory": {"device": repr(cfg)},
        "design": {
            "rows": e.rows,
            "cols": e.cols,
            "format": e.fmt.name,
            "bus_bits": dd.bus_bits,
            "vector_lanes": cfg.scratchpads.vector_lanes,
        },
        "program": {
            "instructions": len(program.instructions),
            "ops": count_ops(program.instructions),
            "tensors": len(tensors),
            "tensor_names": [t["name"] for t in tensors],
            "decoder": {"tensors": dd.tensors, "registers": dd.registers},
        },
    }


def write_device_dir(dd: DeviceDesign, out: str | Path) -> dict:
    """Write ``device.v``, ``device_manifest.json``, ``program.bin`` and ``program.txt``
    into ``out`` (all or nothing); the manifest."""
    from barista_base.cache import atomic_directory

    manifest = device_manifest(dd)
    program = dd.compilation.compiled.program
    with atomic_directory(Path(out), replace=True) as tmp:
        (tmp / "device.v").write_text(dd.verilog)
        (tmp / "device_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / "program.bin").write_bytes(program.to_bytes())
        (tmp / "program.txt").write_text(program.listing())
    return manifest


def read_device_manifest(path: str | Path) -> dict:
    """The manifest at ``path``; refuses another version."""
    manifest = json.loads(Path(path).read_text())
    if manifest.get("version") != DEVICE_MANIFEST_VERSION:
        raise InputError(
            f"{path}: device manifest version {manifest.get('version')}, expected "
            f"{DEVICE_MANIFEST_VERSION}"
        )
    return manifest
