"""The device tests' case: a tiny net on a small device, every DRAM tensor random.

A padded 3 x 3 convolution, 2 x 2 max pooling, ReLU and an inner product (batch 2,
stochastic rounding) compiled for a 4 x 3 fx16 engine with 3 vector lanes; every DRAM
tensor gets random integers (an eighth of each width's range; masks: window offsets),
each iteration's host random inputs. The model runs :data:`ITERATIONS` iterations back to
back (forward, the logits to the host, their gradient back, backward, SGD, SCALE) and
records the ``prog`` writes the host sends: the exponent file once, each iteration's
register writes and its records' fetch (:func:`sim.device_run.iterations_case`). The decoder is
sized for the net (:func:`~barista_hw.device.rtl.decode.decoder_sizes`). The cocotb
bench (``sim.device_test``), the C++ host (:mod:`sim.device_verilator`) and
``bench/bench_device_rtl.py`` run the same case.

:func:`lenet_program`: LeNet's layers for the RTL top's LeNet design
(:data:`~barista_hw.device.rtl.design.LENET_CONFIG`: the units as the RTL builds them,
``memory.RTL_UNITS``), for the same :func:`random_iteration` cases.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.compiler import compile_net
from barista_hw.device.geometry import ConvGeometry, PoolGeometry
from barista_hw.device.isa import WIRE8, Op, Program
from barista_hw.device.layers import Conv, Pool, Relu
from barista_hw.device.machine import Machine
from barista_hw.device.memory import RTL_UNITS, DeviceConfig
from barista_hw.device.rtl.decode import decoder_sizes
from barista_hw.device.rtl.design import LENET_CONFIG
from barista_hw.numfmt import Rounding

from .device_run import IterationCase, RecordingHost, iterations_case

__all__ = [
    "CONFIG",
    "ITERATION",
    "ITERATIONS",
    "MODES",
    "bench_iterations",
    "iteration",
    "lenet_layers",
    "lenet_program",
    "program",
    "random_inputs",
    "random_iteration",
    "scalars",
    "setup",
]

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=32, acc_depth=16)
CONFIG = DeviceConfig.for_accelerator(
    ACC, target="ulx3s-85f", c_depth=64, v_depth=64, vector_lanes=3, **RTL_UNITS
)
IMAGE = (2, 6, 6)
ITERATION = 3  # the model's iteration counter at the first (the seeds depend on it)
ITERATIONS = 2  # run back to back, SCALE between
SCALARS = {"momentum": 0.9}
MODES = {"plain": 0.0, "stalled": 0.3}


@functools.cache
def program() -> Program:
    """conv (3 x 3, pad 1, no bias) -> max pool 2 x 2 -> ReLU -> ip (no bias)."""
    conv = Conv("conv", "data", "c", 3, geom=ConvGeometry(*IMAGE, (3, 3), (1, 1), (1, 1)))
    conv = Conv("conv", "data", "c", 3, geom=conv.geom, bias=False, backward_data=False)
    pool = Pool("pool", "c", "p", PoolGeometry(3, 6, 6, (2, 2), (2, 2)))
    relu = Relu("relu", "p", "r", pool.out_shape)
    ip = Conv("ip", "r", "out", 3, inputs=math.prod(pool.out_shape), bias=False)
    return compile_net(
        [conv, pool, relu, ip],
        CONFIG,
        batch=2,
        inputs={"data": IMAGE},
        output="out",
        rounding=Rounding.STOCHASTIC,
        share=False,  # dram_image needs every tensor in memory of its own
    ).program


def lenet_layers() -> list:
    """examples/mnist/lenet_train_test.prototxt's layers as the device sees them."""
    conv1 = Conv(
        "conv1", "data", "conv1", 20, geom=ConvGeometry(1, 28, 28, (5, 5)), backward_data=False
    )
    pool1 = Pool("pool1", "conv1", "pool1", PoolGeometry(20, 24, 24, (2, 2), (2, 2)))
    conv2 = Conv("conv2", "pool1", "conv2", 50, geom=ConvGeometry(20, 12, 12, (5, 5)))
    pool2 = Pool("pool2", "conv2", "pool2", PoolGeometry(50, 8, 8, (2, 2), (2, 2)))
    ip1 = Conv("ip1", "pool2", "ip1", 500, inputs=800)
    relu1 = Relu("relu1", "ip1", "ip1", (500,))
    ip2 = Conv("ip2", "ip1", "ip2", 10, inputs=500)
    return [conv1, pool1, conv2, pool2, ip1, relu1, ip2]


@functools.cache
def lenet_program(batch: int = 2) -> Program:
    """LeNet's training iteration at ``batch`` for
    :data:`~barista_hw.device.rtl.design.LENET_CONFIG` (nearest-even,
    tensors unshared: the DRAM image is built per tensor)."""
    return compile_net(
        lenet_layers(),
        LENET_CONFIG,
        batch=batch,
        inputs={"data": (1, 28, 28)},
        output="ip2",
        share=False,
    ).program


def iteration(stall: float, iterations: int = ITERATIONS) -> IterationCase:
    """The test net's case of ``iterations`` iterations, with ``stall`` as its stall
    probability (``name``: plain or stalled)."""
    name = "stalled" if stall else "plain"
    return random_iteration(name, program(), CONFIG, stall, iterations=iterations)


def bench_iterations(sim: str, full: bool = False) -> int:
    """The iterations of the test net the cocotb bench runs on ``sim``: Icarus simulates
    the top at about 130 cycles/s (some 31,000 cycles an iteration), so one there unless
    ``full``; Verilator runs :data:`ITERATIONS` (the second's seeds and host exponents
    written after a SCALE)."""
    return ITERATIONS if full or sim != "icarus" else 1


def random_iteration(
    name: str,
    prog: Program,
    config: DeviceConfig,
    stall: float = 0.0,
    *,
    iterations: int = 1,
    seed: int = 4,
) -> IterationCase:
    """``iterations`` iterations of ``prog`` on the model from :func:`setup`, the writes
    for a decoder sized for ``prog`` (:func:`~sim.device_run.iterations_case`'s)."""
    m, hosts, host_scalars = setup(prog, config, iterations, seed=seed)
    sizes = decoder_sizes(prog)
    case = iterations_case(name, m, hosts, host_scalars, **sizes)
    case.stall = stall
    return case


def setup(
    prog: Program, config: DeviceConfig, iterations: int, *, seed: int = 4
) -> tuple[Machine, list[RecordingHost], dict[str, float]]:
    """The model of ``prog`` at iteration :data:`ITERATION` with random DRAM tensors, a
    host an iteration (:func:`random_inputs`; iteration ``i`` sends at ``frac`` 10 - i,
    so the host's exponent registers change), and the host's scalars."""
    m = Machine(prog, config)
    m.iteration = ITERATION
    rng = np.random.default_rng(seed)
    for t in prog.tensors:  # an eighth of each width's range; masks: window offsets
        lim = 1 << max(1, t["bits"] - 3)
        low = 0 if t["role"] == "mask" else -lim
        frac = 10 if t["bits"] == 16 else 0
        m.write(t["name"], rng.integers(low, lim, t["shape"]), frac)
    hosts = [RecordingHost(random_inputs(prog, rng, 10 - i)) for i in range(iterations)]
    return m, hosts, scalars(prog)


def scalars(prog: Program) -> dict[str, float]:
    """The host's scalars for ``prog``: momentum 0.9, weight decays 0.0005, rates 0.01."""
    out = dict(SCALARS)
    for n in prog.scalars:
        out[n] = 0.0005 if n.startswith("decay") else 0.01
    return out


def random_inputs(
    prog: Program, rng: np.random.Generator, frac: int = 10
) -> dict[str, tuple[np.ndarray, int]]:
    """What the host sends for each HOST_IN of ``prog``: (integers, frac); images on a
    byte-a-value link are bytes (frac 8)."""
    inputs = {}
    for inst in prog.instructions:
        if inst.op is Op.HOST_IN:
            t = prog.tensors[inst["tensor"]]
            if inst.sub & WIRE8:
                inputs[t["name"]] = (rng.integers(0, 256, t["shape"]), 8)
            else:
                inputs[t["name"]] = (rng.integers(-2000, 2000, t["shape"]), frac)
    return inputs
