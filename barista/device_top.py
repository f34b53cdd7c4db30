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
from barista_hw.device.rtl.decode import static_command
from barista_hw.device.rtl.design import LENET_ACC, LENET_CONFIG
from barista_hw.device.traffic import section_names
from barista_hw.numfmt import Rounding
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


def top_accelerator(net: Net) -> AcceleratorConfig:
    """The RTL's LeNet engine (:data:`~barista_hw.device.rtl.design.LENET_ACC`: 8 rows,
    fx16) with the widest columns of :data:`COLUMNS` dividing :func:`conv_pixels`."""
    pixels = conv_pixels(net).values()
    cols = next(c for c in COLUMNS if all(p % c == 0 for p in pixels))
    return LENET_ACC.derive(cols=cols)


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
                f"{top_accelerator(net).engine.cols}, the default design's"
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
    --rtl-top`` and ``barista generate --device`` share): on ``accelerator`` (default
    :func:`top_accelerator`; a given one must pass :func:`check_columns`), with
    :data:`TOP_UNITS`, inputs as bus words and every tensor in memory of its own (the host
    builds the DRAM image per tensor); checked by :func:`check_top`."""
    if accelerator is None:
        accelerator = top_accelerator(net)
    else:
        check_columns(net, accelerator)
    dc = compile_device(
        net,
        accelerator,
        target=target,
        rounding=rounding,
        units=TOP_UNITS,
        wire8=False,
        share=False,
    )
    check_top(dc.compiled.program, dc.config)
    return dc
