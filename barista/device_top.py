"""What the RTL device top (:class:`~barista_hw.device.rtl.device.Device`) runs: its design
for a net, its units, and the check that a compiled program fits it.

The top takes fx16 engines whose columns divide every convolution's output pixels per
image (so no C strip of a col2im STORE spans two images), the units as the RTL builds them
(:data:`~barista_hw.device.memory.RTL_UNITS`: no epilogue on C, VECs from memory), inputs
as 16-bit bus words (no ``WIRE8`` bytes) and no ``FETCH`` (no preloaded dataset).
"""

from __future__ import annotations

from typing import Any

from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig
from barista_hw.device.isa import Program
from barista_hw.device.layers import Conv
from barista_hw.device.memory import RTL_UNITS, DeviceConfig
from barista_hw.device.rtl.decode import decoder_sizes, static_command
from barista_hw.device.rtl.design import LENET_ACC, LENET_CONFIG
from barista_hw.device.traffic import section_names
from barista_hw.numfmt import Rounding
from barista_hw.resources import Resources
from barista_hw.targets import get_target
from caffe_bridge.net import Net
from sim.gemm_path_run import BUS_BITS

from .device_net import DeviceCompilation, compile_device, device_net

#: The engine columns the top's design tries, widest first.
COLUMNS = (8, 4, 2, 1)
#: The unit settings of the top's LeNet design, for :func:`~.device_net.compile_device`.
TOP_UNITS: dict[str, Any] = {
    **RTL_UNITS,
    "vector_lanes": LENET_CONFIG.scratchpads.vector_lanes,
}


def conv_pixels(net: Net) -> dict[str, int]:
    """The output pixels per image of each convolution of ``net``, by layer: the engine's
    columns must divide them (so no C strip of a col2im STORE spans two images)."""
    return {
        layer.name: layer.geom.out_height * layer.geom.out_width
        for layer in device_net(net).layers
        if isinstance(layer, Conv) and layer.geom is not None
    }


def top_engines(net: Net) -> list[AcceleratorConfig]:
    """The engines the top's design tries for ``net``, the fastest first: the RTL's LeNet
    engine (:data:`~barista_hw.device.rtl.design.LENET_ACC`: 8 rows, fx16) with each of
    :data:`COLUMNS` that divides :func:`conv_pixels`."""
    pixels = conv_pixels(net).values()
    return [LENET_ACC.derive(cols=c) for c in COLUMNS if all(p % c == 0 for p in pixels)]


def top_accelerator(net: Net, target: str | None = None) -> AcceleratorConfig:
    """The engine of ``net``'s top design on ``target``: the first of :func:`top_engines`
    whose top fits (:func:`compile_for_top`)."""
    return compile_for_top(net, target=target).config.accelerator


def top_resources(config: DeviceConfig, program: Program) -> Resources:
    """The resource estimate of the top of ``config`` that runs ``program``, its decoder
    sized for the program, on its target's budget."""
    from barista_hw.device.rtl.resources import estimate_device

    budget = get_target(config.target).budget
    sizes = decoder_sizes(program)
    return estimate_device(config, bus_bits=BUS_BITS, budget=budget, **sizes)


def check_columns(net: Net, accelerator: AcceleratorConfig) -> None:
    """Refuse an engine whose columns do not divide a convolution's output pixels per
    image (:func:`conv_pixels`), naming the layer."""
    cols = accelerator.engine.cols
    for name, pixels in conv_pixels(net).items():
        if pixels % cols:
            raise InputError(
                f"layer {name!r}: the engine's {cols} columns do not divide its {pixels} "
                f"output pixels per image; the device top needs columns that do (no C strip "
                f"of a col2im STORE may span two images), e.g. "
                f"{top_engines(net)[0].engine.cols}"
            )


def check_top(program: Program, config: DeviceConfig) -> None:
    """Refuse what the top cannot run, naming the reason: a format other than fx16 (its
    col2im accumulators and HOST_IN statistics take 16-bit elements), then every
    instruction's static command built as the host does (epilogues on C, ``WIRE8`` byte
    inputs, ``FETCH``: named with the layer and pass)."""
    fmt = config.accelerator.engine.fmt
    if fmt.width != BUS_BITS:
        raise InputError(
            f"the device top runs {BUS_BITS}-bit formats only (its col2im accumulators and "
            f"HOST_IN statistics take bus-word elements), not {fmt.name}"
        )
    sections = section_names(program)
    for n, inst in enumerate(program.instructions):
        try:
            static_command(inst, program, config, BUS_BITS)
        except InputError as exc:
            raise InputError(
                f"{sections[n]} (instruction {n}): the device top cannot run it: {exc}"
            ) from None


def compile_for_top(
    net: Net,
    accelerator: AcceleratorConfig | None = None,
    *,
    target: str | None = None,
    rounding: Rounding | None = None,
) -> DeviceCompilation:
    """``net``'s program as the top runs it (what ``--backend device-rtl``, ``--backend device
    --rtl-top`` and ``barista generate --device`` share): on ``accelerator`` (a given one
    must pass :func:`check_columns`; default: the first of :func:`top_engines` whose top
    fits ``target``'s budget by :func:`top_resources`, else the last, the smallest), with
    :data:`TOP_UNITS`, inputs as bus words and every tensor in memory of its own (the host
    builds the DRAM image per tensor); checked by :func:`check_top`. Each engine tried is
    compiled once; only the one returned is checked (its static commands built)."""
    if accelerator is not None:
        check_columns(net, accelerator)
        dc = _compile(net, accelerator, target, rounding)
    else:
        for acc in top_engines(net):
            dc = _compile(net, acc, target, rounding)
            budget = get_target(dc.config.target).budget
            if top_resources(dc.config, dc.compiled.program).fits(budget):
                break
    check_top(dc.compiled.program, dc.config)
    return dc


def _compile(
    net: Net, accelerator: AcceleratorConfig, target: str | None, rounding: Rounding | None
) -> DeviceCompilation:
    return compile_device(
        net,
        accelerator,
        target=target,
        rounding=rounding,
        units=TOP_UNITS,
        wire8=False,
        share=False,
    )
