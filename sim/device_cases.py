"""The device tests' iteration: a tiny net on a small device, every DRAM tensor random.

A padded 3 x 3 convolution, 2 x 2 max pooling, ReLU and an inner product (batch 2,
stochastic rounding) compiled for a 4 x 3 fx16 engine with 3 vector lanes; every DRAM
tensor gets random integers (an eighth of each width's range; masks: window offsets).
The model runs the iteration (forward, the logits to the host, their gradient back,
backward, SGD, SCALE) and pre-decodes each instruction from its state before it runs
(:func:`sim.device_run.iteration_case`). The cocotb bench (``sim.device_test``) and the
C++ host (:mod:`sim.device_verilator`) run the same case.
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
from barista_hw.device.memory import DeviceConfig
from barista_hw.numfmt import Rounding

from .device_run import IterationCase, RecordingHost, iteration_case

__all__ = [
    "CONFIG",
    "MODES",
    "iteration",
    "program",
    "random_inputs",
    "random_iteration",
    "scalars",
]

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=32, acc_depth=16)
CONFIG = DeviceConfig.for_accelerator(
    ACC, target="ulx3s-85f", c_depth=64, v_depth=64, vector_lanes=3
)
IMAGE = (2, 6, 6)
ITERATION = 3
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


def iteration(stall: float) -> IterationCase:
    """The case, with ``stall`` as its stall probability (``name``: plain or stalled)."""
    return random_iteration("stalled" if stall else "plain", program(), CONFIG, stall)


def random_iteration(
    name: str, prog: Program, config: DeviceConfig, stall: float = 0.0, *, seed: int = 4
) -> IterationCase:
    """One iteration of ``prog`` on the model from random DRAM tensors and host inputs
    (:func:`random_inputs`), pre-decoded for the RTL."""
    m = Machine(prog, config)
    m.iteration = ITERATION
    rng = np.random.default_rng(seed)
    for t in prog.tensors:  # an eighth of each width's range; masks: window offsets
        lim = 1 << max(1, t["bits"] - 3)
        low = 0 if t["role"] == "mask" else -lim
        frac = 10 if t["bits"] == 16 else 0
        m.write(t["name"], rng.integers(low, lim, t["shape"]), frac)
    host = RecordingHost(random_inputs(prog, rng))
    case = iteration_case(name, m, host, scalars(prog))
    case.stall = stall
    return case


def scalars(prog: Program) -> dict[str, float]:
    """The host's scalars for ``prog``: momentum 0.9, weight decays 0.0005, rates 0.01."""
    out = dict(SCALARS)
    for n in prog.scalars:
        out[n] = 0.0005 if n.startswith("decay") else 0.01
    return out


def random_inputs(prog: Program, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, int]]:
    """What the host sends for each HOST_IN of ``prog``: (integers, frac); images on a
    byte-a-value link are bytes."""
    inputs = {}
    for inst in prog.instructions:
        if inst.op is Op.HOST_IN:
            t = prog.tensors[inst["tensor"]]
            if inst.sub & WIRE8:
                inputs[t["name"]] = (rng.integers(0, 256, t["shape"]), 8)
            else:
                inputs[t["name"]] = (rng.integers(-2000, 2000, t["shape"]), 10)
    return inputs
