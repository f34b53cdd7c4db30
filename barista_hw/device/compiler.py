"""The compiler: a net's layers -> a device program of one training iteration.

:func:`compile_net` allocates every tensor in DRAM (operand copies and gradients in the
format's width, master weights, momentum and col2im accumulators in 32 bits; tensors
never live together share memory, :mod:`~barista_hw.device.allocation`) and emits
the iteration: the input batch in, forward, the logits out, their gradient in,
backward, the SGD update, the end-of-iteration SCALE. Layers the device cannot run
(:class:`~barista_hw.device.layers.HostLayer`) split the net into device segments: the
tensors crossing a boundary go out to the host and come back over the link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from barista_base.errors import InputError
from barista_hw.numfmt import Rounding

from .allocation import Placement, plan, reserved_bytes, sequential
from .emit import Builder
from .isa import Op, Program
from .layers import Conv, HostLayer, Layer, Pool, Relu
from .lowering import Lowering
from .memory import DeviceConfig


@dataclass
class Compiled:
    """A compiled net: the program and what the compiler found out about the net."""

    program: Program
    segments: list[list[str]]  # device layers of each device segment, in order
    host_layers: list[str]  # the layers between segments, run by the host
    dram_slots: int  # the model's, tensors sharing where their lives allow
    dram_bytes: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{len(self.program.instructions)} instructions, {len(self.program.tensors)} "
            f"tensors, DRAM {self.dram_bytes / 2**20:.2f} MiB",
        ]
        for i, seg in enumerate(self.segments):
            lines.append(f"device segment {i}: {', '.join(seg)}")
        if self.host_layers:
            lines.append(f"run by the host between segments: {', '.join(self.host_layers)}")
        return "\n".join(lines + self.notes)


def compile_net(
    layers: Sequence[Layer],
    config: DeviceConfig,
    *,
    batch: int,
    inputs: dict[str, tuple[int, ...]],
    output: str,
    rounding: Rounding = Rounding.NEAREST_EVEN,
    wire8: Iterable[str] = (),
    means: Iterable[str] = (),
    preload: Mapping[str, int] | None = None,
    share: bool = True,
) -> Compiled:
    """Compile one training iteration of ``layers`` (net order, from the ``inputs`` blobs,
    shapes of one image, to the ``output`` blob the host's loss reads). The inputs in
    ``wire8`` are 8-bit unsigned values (images) the host sends a byte each; from those
    in ``means`` the device subtracts a mean image (the data layer's). ``preload``: the
    ``wire8`` inputs whose dataset (that many records) the host loads into DRAM once;
    each iteration then fetches its batch there instead of receiving it over the link.
    Tensors never live together share DRAM unless ``share`` is false.

    Raises :class:`InputError` naming the layer, blob or tensor at fault: a blob read by
    two layers (its gradient would need summing), a result block that does not fit the
    C scratchpad, a working set larger than the DRAM.
    """
    if batch < 1:
        raise InputError(f"batch {batch} must be at least 1")
    _check_blobs(layers, inputs, output)
    _check_fanout(layers)
    narrow = frozenset(wire8) if config.accelerator.engine.fmt.width > 8 else frozenset()
    means = frozenset(means)
    preload = dict(preload or {})
    for name, records in preload.items():
        if name not in narrow or name not in inputs or records < 1:
            raise InputError(
                f"input {name!r}: only a batch of 8-bit images (a Data layer's bytes times "
                f"a power of two, in a format wider than 8 bits) can be preloaded, as at "
                f"least one record ({records} given)"
            )

    def lower(placement: Placement | None = None, schedules: list | None = None) -> Builder:
        b = Builder(placement, schedules)
        low = Lowering(b, config, batch, rounding, narrow)
        low.plan_fusion(layers)
        for name, shape in inputs.items():
            low.batch_input(name, shape, mean=name in means, records=preload.get(name, 0))
        for layer in layers:
            low.forward(layer)
        low.host_out(output)
        low.host_in(f"d:{output}", like=output)
        for layer in reversed(layers):
            low.backward(layer)
        for layer in layers:
            low.update(layer)
        b.emit(Op.SCALE, after_all=True, iteration=0)
        return b

    # The first lowering finds when each tensor is live; the second places them and
    # takes the first one's schedules, so it emits the program the lives were found in.
    first = lower()
    tensors = first.program.tensors
    placement = plan(tensors, first.uses) if share else sequential(tensors)
    _check_capacity(tensors, placement, config)  # before the second lowering: fail fast
    b = lower(placement, first.schedules)
    b.program.meta.update(
        batch=batch,
        inputs={k: list(v) for k, v in inputs.items()},
        output=output,
        rounding=int(rounding),
        format=config.accelerator.engine.fmt.name,
        accelerator=config.accelerator.to_dict(),
    )
    segments, host = _segments(layers)
    return Compiled(b.program, segments, host, placement.slots, placement.nbytes)


def _ends(layer: Layer) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A layer's bottom and top blobs."""
    if isinstance(layer, HostLayer):
        return layer.bottoms, layer.tops
    return (layer.bottom,), (layer.top,)


def _check_blobs(layers: Sequence[Layer], inputs: Iterable[str], output: str) -> None:
    """Every blob a layer reads, and the output, is an input or an earlier layer's top."""
    known = set(inputs)
    for layer in layers:
        bottoms, tops = _ends(layer)
        for blob in bottoms:
            if blob not in known:
                raise InputError(
                    f"layer {layer.name} reads blob {blob!r}, which neither an input nor "
                    "an earlier layer produces"
                )
        known.update(tops)
    if output not in known:
        raise InputError(
            f"the output blob {output!r} is neither an input nor a layer's top "
            f"(blobs: {', '.join(sorted(known))})"
        )


def _check_fanout(layers: Sequence[Layer]) -> None:
    """Each value of a blob has one reader (a layer computed in place makes a new value)."""
    readers: dict[str, str] = {}
    for layer in layers:
        bottoms, tops = _ends(layer)
        for blob in bottoms:
            if blob in readers:
                raise InputError(
                    f"blob {blob!r} is read by layers {readers[blob]!r} and {layer.name!r}: "
                    "the device compiler does not sum gradients of a shared blob yet"
                )
            readers[blob] = layer.name
        for blob in tops:
            readers.pop(blob, None)


def _segments(layers: Sequence[Layer]) -> tuple[list[list[str]], list[str]]:
    segments: list[list[str]] = [[]]
    host: list[str] = []
    for layer in layers:
        if isinstance(layer, HostLayer):
            host.append(f"{layer.name} ({layer.type})")
            segments.append([])
        elif isinstance(layer, (Conv, Relu, Pool)):
            segments[-1].append(layer.name)
    return [s for s in segments if s], host


def _check_capacity(tensors: Sequence[dict], placement: Placement, config: DeviceConfig) -> None:
    """Raise :class:`InputError` naming the largest of ``tensors`` (tensor-table entries)
    that ``placement`` puts past the DRAM's end and the bytes the whole working set needs."""
    capacity = config.dram.size_bytes
    if placement.nbytes <= capacity:
        return
    out = [t for t in tensors if placement.addr[t["name"]] + reserved_bytes(t) > capacity]
    t = max(out, key=reserved_bytes)
    raise InputError(
        f"tensor {t['name']!r} ({t['role']}, shape {t['shape']}) does not fit the "
        f"DRAM: the working set needs {placement.nbytes:,} bytes, the device has "
        f"{capacity:,}"
    )
