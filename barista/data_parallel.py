"""Data-parallel training: every GEMM of a net shared among N devices, bit-identical to one.

``barista train --devices N`` trains with :class:`DataParallelBackend`. The host does
what only the host does, exactly as a one-device hardware backend: it quantises each
whole operand at the batch-wide peak, picks the shift from the scale history, draws the
seeds, and adapts the scales from the peak of the whole result. Each device is a Ray
actor (:class:`GemmDevice`) owning a backend of its own (a golden model, its own
Verilated simulator, a board on its own port) and computes its share of the output
blocks of the accelerator's schedule (:func:`barista_hw.schedule.share_blocks`); all
shares run at once (one ``ray.get`` on the list), and the host puts the blocks together.

Why the result is the one device's, bit for bit: an output block is one engine GEMM
over the whole reduction, at full accumulator width, requantised once with its own seed
(:func:`barista_hw.schedule.block_seed`) in its own beat order; the block numbers (so the
seeds and the rounding words) are those of the whole GEMM, whichever device runs them.
For the forward and backward-data passes (``N = images * pixels``) the shares are runs
of blocks of consecutive images: the batch split at block boundaries. A weight gradient
(reduction over images x pixels) is shared either the same way, by output tiles of dW,
or by images: each device takes a run of images and reads out its accumulators at full
width (the engine's ``raw`` command), the host adds them (int64, modulo the accumulator
width as the accumulator itself wraps) and requantises the sum once with the model's
requantiser, each block of the whole GEMM's schedule with its seed and beat order
(:func:`barista_hw.model.requantize_on_accelerator`): the bits one device draws. Which
of the two is chosen per GEMM by the cycle model (:func:`barista_hw.plan.batch_split`),
or fixed by ``split``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.command import GemmCommand
from barista_hw.config import Pass
from barista_hw.plan import batch_split
from barista_hw.schedule import share_blocks, share_images, tiling
from caffe_bridge.backend import BackendFactory, GemmBackend

from .backends import get_backend
from .backends.hardware import GoldenBackend, HardwareBackend, check_same_design
from .manifest import AcceleratorFiles

#: The backends whose GEMMs can be shared among devices.
DEVICE_BACKENDS = ("golden", "rtl", "board")
#: How a weight gradient is shared (``--split-gradient``): by the cycle model's choice
#: (:func:`barista_hw.plan.batch_split`), always by images, or always by output blocks.
GRADIENT_SPLITS = ("auto", "images", "blocks")
# Options the host keeps for itself (quantisation); the rest configure each device.
_HOST_OPTIONS = ("rounding", "scaling", "accelerator")


_Runs = tuple[tuple[int, int], ...]  # runs of images [i0, i1), one per device
_Operands = tuple[np.ndarray, np.ndarray]


class GemmDevice:
    """One device of a data-parallel run, in a Ray actor: a backend of its own built from
    ``backend`` and ``options`` (:func:`barista.backends.get_backend`)."""

    def __init__(self, backend: str, options: dict[str, Any]) -> None:
        self.backend = get_backend(backend, **options)

    def prepare(self) -> list[str]:
        """Build or connect what the first GEMM would; the lines it would log."""
        lines: list[str] = []
        self.backend.prepare(lines.append)
        return lines

    def begin_iteration(self, iteration: int | None) -> None:
        self.backend.begin_iteration(iteration)

    def run_blocks(
        self,
        kind: Pass,
        layer: str,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        blocks: list[int],
    ) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """This device's share of one GEMM (:meth:`HardwareBackend.run_blocks`)."""
        assert isinstance(self.backend, HardwareBackend)
        return self.backend.run_blocks(kind, layer, a, b, cmd, blocks)

    def cycles(self) -> int | None:
        """Accelerator cycles of the last iteration (rtl: simulated; board: counted), or
        None for the golden model."""
        records = getattr(self.backend, "records", None)
        if records is not None:
            return sum(r.last_cycles for r in records.values())
        counted = getattr(self.backend, "cycles", None)
        return sum(counted.values()) if isinstance(counted, dict) else None

    def close(self) -> None:
        self.backend.close()


class DataParallelBackend(HardwareBackend):
    """The host of ``devices`` devices of backend ``backend`` (see the module docstring).

    ``options`` are the backend's (:func:`barista.backends.get_backend`); ``accelerator``
    is required (its schedule's blocks are what the devices share). A board backend takes
    one ``port`` per device (a list, or a comma-separated string). ``address``: the Ray
    cluster to join (default: a local Ray, started here and stopped by :meth:`close`).
    ``device``: the actor class (:class:`GemmDevice`, or a subclass of it) and any extra
    arguments it takes after the backend's name and options. ``split``: how weight
    gradients are shared (:data:`GRADIENT_SPLITS`).
    """

    name = "data-parallel"

    def __init__(
        self,
        backend: str,
        devices: int,
        *,
        address: str | None = None,
        device: tuple[type[GemmDevice], tuple[Any, ...]] = (GemmDevice, ()),
        split: str = "auto",
        **options: Any,
    ) -> None:
        check_devices(backend, devices, options, split)
        accelerator = options["accelerator"]
        if isinstance(accelerator, AcceleratorFiles):  # devices may run in another directory
            accelerator = dataclasses.replace(accelerator, path=accelerator.path.resolve())
        config = accelerator.config if isinstance(accelerator, AcceleratorFiles) else accelerator
        who = f"{backend} backend"
        check_same_design(config, who, options.get("fmt"), options.get("rows"), options.get("cols"))
        host = {k: options[k] for k in _HOST_OPTIONS if k in options}
        host["accelerator"] = accelerator
        super().__init__(**host)
        self.backend = backend
        self.split = split
        self._options = dict(options, accelerator=accelerator)
        ports = _ports(options.get("port"), devices) if backend == "board" else None
        import ray

        from .ray_cluster import join_ray

        self._started = join_ray(address, num_cpus=max(devices, os.cpu_count() or 1))
        actor = ray.remote(num_cpus=1)(device[0]).options(scheduling_strategy="SPREAD")
        self.devices = [
            actor.remote(
                backend,
                self._options if ports is None else dict(self._options, port=ports[i]),
                *device[1],
            )
            for i in range(devices)
        ]

    # -- HardwareBackend -----------------------------------------------------------------
    def run(
        self,
        kind: Pass,
        layer: str,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        blocks: Collection[int] | None = None,
    ) -> np.ndarray:
        import ray

        accel = self.accelerator
        assert accel is not None and blocks is None
        m, kt, n = a.shape[0], a.shape[1], b.shape[1]
        k = kt // cmd.images
        runs = self._gradient_runs(m, k, n, cmd.images) if kind is Pass.WEIGHT_GRAD else None
        if runs is not None:
            return self._run_batch_split(layer, (a, b), cmd, runs)
        # The operands go into Ray's object store once; every device reads them there.
        a_ref, b_ref = ray.put(a), ray.put(b)
        shares = share_blocks(tiling(accel, m, k, n, cmd.images), len(self.devices))
        pending = [
            dev.run_blocks.remote(kind, layer, a_ref, b_ref, cmd, share)
            for dev, share in zip(self.devices, shares, strict=True)
            if share
        ]
        out: np.ndarray | None = None
        for part in ray.get(pending):  # all devices at once
            if out is None:
                out = np.empty((m, n), dtype=part[0][1].dtype)
            _place(out, part)
        assert out is not None
        return out

    def _gradient_runs(self, m: int, k: int, n: int, images: int) -> _Runs | None:
        """The devices' runs of images of a weight gradient, or None to share its blocks."""
        assert self.accelerator is not None
        if self.split == "blocks" or images < 2:
            return None
        if self.split == "images":
            return tuple(share_images(images, len(self.devices)))
        return batch_split(self.accelerator, m, k, n, images, len(self.devices))

    def _run_batch_split(
        self, layer: str, ab: _Operands, cmd: GemmCommand, runs: _Runs
    ) -> np.ndarray:
        """A weight gradient of ``layer`` with its batch split: device ``d`` reads out the
        accumulators of images ``runs[d]`` (all its blocks, ``raw``), the host adds them at
        full width and requantises the sum once, each block with its seed and beat order."""
        import ray

        accel = self.accelerator
        assert accel is not None
        kind, (a, b) = Pass.WEIGHT_GRAD, ab
        m, n, k = a.shape[0], b.shape[1], a.shape[1] // cmd.images
        pending = []
        for dev, (i0, i1) in zip(self.devices, runs, strict=False):
            part = dataclasses.replace(cmd, images=i1 - i0, raw=True)
            t = tiling(accel, m, k, n, i1 - i0)
            every = list(range(t.blocks_m * t.blocks_n))
            cols = slice(i0 * k, i1 * k)
            pending.append(dev.run_blocks.remote(kind, layer, a[:, cols], b[cols], part, every))
        total = np.zeros((m, n), dtype=np.int64)
        for part in ray.get(pending):  # all devices at once
            acc = np.empty((m, n), dtype=np.int64)
            _place(acc, part)
            total += acc  # wraps mod 2**64, a multiple of the accumulator's modulus
        return model.requantize_on_accelerator(total, accel, k, cmd)

    # -- hooks of the training loop ---------------------------------------------------------
    def for_test_nets(self) -> GemmBackend:
        """Test nets run on the host's golden model of the same accelerator: the same bits
        (as the rtl backend does), and the devices' time goes to training."""
        return GoldenBackend(
            accelerator=self.accelerator, rounding=self.rounding, scaling=self.scaling
        )

    def prepare(self, log: Callable[[str], None]) -> None:
        """Prepare the first device (a simulator build happens once, into the shared
        cache), then the others at once."""
        import ray

        first = ray.get(self.devices[0].prepare.remote())
        rest = ray.get([d.prepare.remote() for d in self.devices[1:]])
        for i, lines in enumerate([first, *rest]):
            for line in lines:
                log(f"device {i}: {line}")
        log(
            f"Sharing every GEMM among {len(self.devices)} {self.backend} devices (Ray actors); "
            f"weight gradients: {_SPLIT_TEXT[self.split]}"
        )

    def begin_iteration(self, iteration: int | None = None) -> None:
        for d in self.devices:  # a device runs its calls in the order they were made
            d.begin_iteration.remote(iteration)

    def report(self) -> str | None:
        import ray

        cycles = ray.get([d.cycles.remote() for d in self.devices])
        if all(c is None for c in cycles):
            return None
        each = ", ".join(f"{c:,}" for c in cycles if c is not None)
        return (
            f"data-parallel over {len(self.devices)} {self.backend} devices: accelerator "
            f"cycles of the last iteration per device: {each}"
        )

    def close(self) -> None:
        import ray

        if not self.devices:
            return
        try:
            ray.get([d.close.remote() for d in self.devices])
        finally:
            for d in self.devices:
                ray.kill(d)
            self.devices = []
            if self._started:
                ray.shutdown()


_SPLIT_TEXT = {
    "auto": "the batch split when the cycle model says it pays, else the output blocks",
    "images": "the batch split, partial sums read out and summed on the host",
    "blocks": "the output blocks shared",
}


def check_devices(
    backend: str, devices: int, options: dict[str, Any] | None = None, split: str = "auto"
) -> None:
    """Reject a ``--devices`` request the backend cannot serve, naming the option; without
    ``options`` (the backend's, before they are made) only the count, the backend and
    ``split`` (``--split-gradient``)."""
    if devices < 1:
        raise InputError(f"--devices must be at least 1, got {devices}")
    if split not in GRADIENT_SPLITS:
        raise InputError(f"--split-gradient {split!r}: use one of {', '.join(GRADIENT_SPLITS)}")
    if backend not in DEVICE_BACKENDS:
        raise InputError(
            f"--devices {devices}: backend {backend!r} cannot share its GEMMs among devices "
            f"(use {', '.join(DEVICE_BACKENDS)})"
        )
    if options is None:
        return
    if options.get("accelerator") is None:
        raise InputError(
            f"--devices {devices} with --backend {backend} needs --accelerator: the devices "
            "share the output blocks of the accelerator's schedule"
        )
    if options.get("trace") is not None:
        raise InputError(f"--trace applies to one device, not to --devices {devices}")
    if backend == "board":
        _ports(options.get("port"), devices)
    accelerator = options["accelerator"]
    config = accelerator.config if isinstance(accelerator, AcceleratorFiles) else accelerator
    if split == "images" and not config.engine.readout:
        raise InputError(
            f"--split-gradient images: the accelerator's {config.engine.fmt.name} engine has no "
            "accumulator read-out (raw_readout; fixed-point accelerators generated since it "
            "exists have it): use --split-gradient blocks or regenerate the accelerator"
        )


def data_parallel_factory(
    backend: str, devices: int, *, address: str | None = None, split: str = "auto", **options: Any
) -> BackendFactory:
    """The backend factory of a solver training on ``devices`` devices: the training net
    gets the :class:`DataParallelBackend` (made now, so bad options fail before any net is
    built); test nets, its :meth:`~DataParallelBackend.for_test_nets`."""
    first = DataParallelBackend(backend, devices, address=address, split=split, **options)
    made = [False]

    def make() -> GemmBackend:
        if made[0]:
            return first.for_test_nets()
        made[0] = True
        return first

    return make


def _place(out: np.ndarray, part: list[tuple[tuple[int, int, int, int], np.ndarray]]) -> None:
    """Put one device's blocks (:meth:`GemmDevice.run_blocks`) into ``out``."""
    for (m0, m1, n0, n1), q in part:
        out[m0:m1, n0:n1] = q


def _ports(port: Any, devices: int) -> list[Any]:
    """One board port per device: ``port`` as a list or a comma-separated string."""
    ports = port.split(",") if isinstance(port, str) else list(port or [])
    if len(ports) != devices:
        raise InputError(
            f"--devices {devices} with --backend board needs one --port per board "
            f"(comma-separated), got {len(ports)}"
        )
    return ports


__all__ = [
    "DEVICE_BACKENDS",
    "GRADIENT_SPLITS",
    "DataParallelBackend",
    "GemmDevice",
    "check_devices",
    "data_parallel_factory",
]
