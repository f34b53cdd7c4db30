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
of blocks of consecutive images: the batch split at block boundaries. For the weight
gradient (reduction over images x pixels) the shares are output tiles of dW, not images:
the accelerator requantises a block when its reduction ends and has no way to return a
full-width partial sum, so splitting that reduction across devices would need a result
port the RTL does not have.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw.command import GemmCommand
from barista_hw.config import Pass
from barista_hw.schedule import share_blocks, tiling
from caffe_bridge.backend import BackendFactory, GemmBackend

from .backends import get_backend
from .backends.hardware import GoldenBackend, HardwareBackend, check_same_design
from .manifest import AcceleratorFiles

#: The backends whose GEMMs can be shared among devices.
DEVICE_BACKENDS = ("golden", "rtl", "board")
# Options the host keeps for itself (quantisation); the rest configure each device.
_HOST_OPTIONS = ("rounding", "scaling", "accelerator")


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
    arguments it takes after the backend's name and options.
    """

    name = "data-parallel"

    def __init__(
        self,
        backend: str,
        devices: int,
        *,
        address: str | None = None,
        device: tuple[type[GemmDevice], tuple[Any, ...]] = (GemmDevice, ()),
        **options: Any,
    ) -> None:
        check_devices(backend, devices, options)
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

        assert self.accelerator is not None and blocks is None
        m, kt, n = a.shape[0], a.shape[1], b.shape[1]
        t = tiling(self.accelerator, m, kt // cmd.images, n, cmd.images)
        # The operands go into Ray's object store once; every device reads them there.
        a_ref, b_ref = ray.put(a), ray.put(b)
        shares = share_blocks(t, len(self.devices))
        pending = [
            dev.run_blocks.remote(kind, layer, a_ref, b_ref, cmd, share)
            for dev, share in zip(self.devices, shares, strict=True)
            if share
        ]
        out: np.ndarray | None = None
        for part in ray.get(pending):  # all devices at once
            for (m0, m1, n0, n1), q in part:
                if out is None:
                    out = np.empty((m, n), dtype=q.dtype)
                out[m0:m1, n0:n1] = q
        assert out is not None
        return out

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
        log(f"Sharing every GEMM among {len(self.devices)} {self.backend} devices (Ray actors)")

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


def check_devices(backend: str, devices: int, options: dict[str, Any] | None = None) -> None:
    """Reject a ``--devices`` request the backend cannot serve, naming the option; without
    ``options`` (the backend's, before they are made) only the count and the backend."""
    if devices < 1:
        raise InputError(f"--devices must be at least 1, got {devices}")
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


def data_parallel_factory(
    backend: str, devices: int, *, address: str | None = None, **options: Any
) -> BackendFactory:
    """The backend factory of a solver training on ``devices`` devices: the training net
    gets the :class:`DataParallelBackend` (made now, so bad options fail before any net is
    built); test nets, its :meth:`~DataParallelBackend.for_test_nets`."""
    first = DataParallelBackend(backend, devices, address=address, **options)
    made = [False]

    def make() -> GemmBackend:
        if made[0]:
            return first.for_test_nets()
        made[0] = True
        return first

    return make


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
    "DataParallelBackend",
    "GemmDevice",
    "check_devices",
    "data_parallel_factory",
]
