"""LeNet on the device top: its program fits the RTL's units and decoder, and (with
``BARISTA_FULL=1``) a training iteration at batch 2 on the Verilated top with its C++ host
is the model's, bit for bit.

The program is :func:`sim.device_cases.lenet_program` for
:data:`barista_hw.device.rtl.design.LENET_CONFIG` (8 x 4 fx16, the RTL's units: no epilogue on C,
so bias and ReLU run as VECs from memory; col2im STOREs cut to the DMA's accumulator;
512-element vector rings, conv1's bias gradient cut into rows of one channel). The
default form checks that every instruction decodes (the host's static command and the
model's reference command) with the decoder sized for the program. The Verilated run
builds its own executable (about 2 minutes) and simulates 15 M cycles (about 3 minutes),
hence ``BARISTA_FULL``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.device.isa import ON_C, Op, View
from barista_hw.device.machine import Machine
from barista_hw.device.rtl.decode import decoder_sizes, static_command
from barista_hw.device.rtl.design import LENET_CONFIG
from barista_hw.device.rtl.device import Device, command
from barista_hw.device.traffic import tile_index
from sim.device_cases import lenet_program, random_inputs, scalars
from sim.device_run import RecordingHost
from sim.tools import SimulatorNotFound, simulator_version

FULL = os.environ.get("BARISTA_FULL") == "1"
FUSING = dataclasses.replace(LENET_CONFIG.scratchpads, epilogues=True)


def test_lenet_fits_the_rtl_units_and_decodes() -> None:
    """No epilogue on C, every col2im footprint within the DMA's accumulator, the decoder's
    sizes those of the program, and every instruction's static command and its command in
    the model's state (run instruction by instruction) built without a refusal."""
    prog = lenet_program(2)
    units = LENET_CONFIG.scratchpads
    assert not any(i.op is Op.VEC and i["desc"] == ON_C for i in prog.instructions)
    col2im = [i for i in prog.instructions if i.op is Op.STORE and i.sub == View.IM2COL]
    assert col2im
    for inst in col2im:
        index = tile_index(inst, prog)
        valid = index[index >= 0]
        assert valid.max() - valid.min() < units.col2im_elements, inst.text()
    assert decoder_sizes(prog) == {"tensors": 48, "registers": 549}
    m = Machine(prog, LENET_CONFIG)
    m.host = RecordingHost(random_inputs(prog, np.random.default_rng(0)))
    m.scalars = scalars(prog)
    for inst in prog.instructions:
        static_command(inst, prog, LENET_CONFIG)
        command(inst, m)
        m.execute(inst)


def test_the_device_top_refuses_a_config_with_epilogues() -> None:
    with pytest.raises(InputError, match="no epilogue on C"):
        Device(dataclasses.replace(LENET_CONFIG, scratchpads=FUSING))


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="a 2.5-minute build and millions of cycles: BARISTA_FULL=1")
def test_lenet_iterations_on_the_verilated_device_are_the_model_bit_for_bit() -> None:
    """LeNet batch 2, two iterations back to back (SCALE moving the exponents between):
    the DRAM at each SCALE and at the end, and every word sent to the host in each
    iteration, equal to the model's (about 15 M cycles, 3 minutes of simulation; it
    caught the ring-limit bug of VecMem's fetcher with 2-bit max-pool masks)."""
    try:
        simulator_version("verilator")
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))
    from sim.device_cases import random_iteration
    from sim.device_verilator import run, simulator

    prog = lenet_program(2)
    case = random_iteration("lenet", prog, LENET_CONFIG, iterations=2)
    got = run(simulator(LENET_CONFIG, **decoder_sizes(prog)), case, max_cycles=60_000_000)
    assert got.scales == 2 == len(got.snapshots)
    for i, (words, want) in enumerate(zip(got.snapshots, case.afters, strict=True)):
        differ = np.flatnonzero(words != want)
        assert not differ.size, f"iteration {i}: {differ.size} DRAM words differ, {differ[:8]}"
    assert np.array_equal(got.memory, case.after)
    assert got.host_out == case.host_out and got.host_out
    assert got.outs == case.outs and len(set(got.outs)) == 2
