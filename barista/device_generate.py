"""``barista generate --device``: the device accelerator for a net, its manifest and program.

:func:`generate_device` is the Python API beside :func:`barista_hw.generate.generate`::

    from barista.device_generate import generate_device, write_device_dir
    dd = generate_device(net, target="ulx3s-85f")   # net: caffe_bridge Net, TRAIN phase
    write_device_dir(dd, "rtl_out/lenet_device")    # device.v, device_manifest.json,
                                                    # program.bin, program.txt

The design and the program are the ones ``--backend device-rtl`` trains with
(:func:`barista.device_top.compile_for_top`: the RTL's LeNet design with the engine
columns dividing every convolution's output pixels per image, refusals named by layer and
pass before anything is elaborated); the decoder is sized for the program
(:func:`~barista_hw.device.rtl.decode.decoder_sizes`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from barista_base.errors import InputError

if TYPE_CHECKING:
    from caffe_bridge.net import Net

    from .device_net import DeviceCompilation

#: Version of ``device_manifest.json``; bump on any change of its meaning.
DEVICE_MANIFEST_VERSION = 1
DEVICE_VERILOG, DEVICE_MANIFEST = "device.v", "device_manifest.json"
PROGRAM_BIN, PROGRAM_TXT = "program.bin", "program.txt"


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


def generate_device(net: Net, *, target: str | None = None, name: str = "net") -> DeviceDesign:
    """Compile ``net``'s TRAIN iteration for the RTL top on ``target``
    (:func:`~.device_top.compile_for_top`) and elaborate the top, its decoder sized for
    the program.

    Raises :class:`InputError` as the compiler does, or naming what the top refuses."""
    from barista_hw.device.rtl.decode import decoder_sizes
    from barista_hw.generate import module_name
    from barista_hw.rtl import to_verilog
    from sim.device_run import device_top
    from sim.gemm_path_run import BUS_BITS

    from .device_top import compile_for_top

    dc = compile_for_top(net, target=target)
    program = dc.compiled.program
    size = decoder_sizes(program)
    _, make, _ = device_top(dc.config, **size)
    top = f"{module_name(name)}_device"
    verilog = to_verilog(make(), top)
    return DeviceDesign(name, top, dc, size["tensors"], size["registers"], BUS_BITS, verilog)


def device_manifest(dd: DeviceDesign) -> dict:
    """The JSON-able manifest of ``dd``: the device (accelerator, scratchpads, DRAM, link),
    the program's memory map, the design, the program and the resource estimate."""
    import hashlib

    from barista_hw.device.isa import count_ops
    from barista_hw.targets import get_target

    from .device_top import top_resources
    from .manifest import tool_versions

    cfg, compiled = dd.compilation.config, dd.compilation.compiled
    program, e = compiled.program, cfg.accelerator.engine
    budget = get_target(cfg.target).budget
    resources = top_resources(cfg, program)  # the decoder sized as ``dd``'s: the program's
    keys = ("name", "role", "shape", "bits", "addr")
    return {
        "version": DEVICE_MANIFEST_VERSION,
        "name": dd.name,
        "top": dd.top,
        "verilog": DEVICE_VERILOG,
        "target": cfg.target,
        "device": cfg.to_dict(),
        "memory": {
            "dram_bytes": compiled.dram_bytes,
            "dram_size_bytes": cfg.dram.size_bytes,
            "tensors": [{k: t[k] for k in keys} for t in program.tensors],
        },
        "design": {
            "rows": e.rows,
            "cols": e.cols,
            "format": e.fmt.name,
            "bus_bits": dd.bus_bits,
            "vector_lanes": cfg.scratchpads.vector_lanes,
            "decoder": {"tensors": dd.tensors, "registers": dd.registers},
        },
        "program": {
            "file": PROGRAM_BIN,
            "sha256": hashlib.sha256(program.to_bytes()).hexdigest(),
            "batch": dd.compilation.net.batch,
            "instructions": len(program.instructions),
            "ops": count_ops(program.instructions),
            "scalars": list(program.scalars),
        },
        "resources": resources.to_dict(budget),
        "tools": tool_versions(),
    }


def write_device_dir(dd: DeviceDesign, out: str | Path) -> dict:
    """Write ``device.v``, ``device_manifest.json``, ``program.bin`` and ``program.txt``
    into ``out``, all or nothing; an existing ``out`` is replaced only if it is an earlier
    output (:func:`~barista.manifest.check_replaceable`). Returns the manifest."""
    from barista_base.cache import atomic_directory

    from .manifest import check_replaceable

    out = check_replaceable(out, DEVICE_MANIFEST)
    manifest = device_manifest(dd)
    program = dd.compilation.compiled.program
    with atomic_directory(out, replace=True) as tmp:
        (tmp / DEVICE_VERILOG).write_text(dd.verilog)
        (tmp / DEVICE_MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        (tmp / PROGRAM_BIN).write_bytes(program.to_bytes())
        (tmp / PROGRAM_TXT).write_text(program.listing())
    return manifest


def read_device_manifest(path: str | Path) -> dict:
    """The manifest at ``path`` (the file or its directory); refuses another version."""
    path = Path(path)
    path = path / DEVICE_MANIFEST if path.is_dir() else path
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: no readable device manifest ({exc})") from None
    if manifest.get("version") != DEVICE_MANIFEST_VERSION:
        raise InputError(
            f"{path}: device manifest version {manifest.get('version')}, expected "
            f"{DEVICE_MANIFEST_VERSION}"
        )
    return manifest
