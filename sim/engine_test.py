"""The cocotb test module run inside the simulator: streams a file of GEMM cases through an engine.

Input: the ``.npz`` named by the environment variable ``BARISTA_SIM_CASES``
(written by :func:`sim.runner.write_cases`): a JSON ``header`` (geometry,
command layout, per case the command, stall probability and padding seed)
and the operands ``a<i>`` (M x K*images) and ``b<i>`` (K*images x N).
Output: the ``.npz`` named by ``BARISTA_SIM_RESULTS`` with, per case, the
output beats ``out<i>`` (beats x C, signed) and ``last<i>``, the engine's
``cycles`` per case, and a JSON ``header`` with the loop's cycle count, wall
time and stream statistics.

Nothing is compared here: :mod:`sim.runner` compares against the numpy model
in the calling process, where a mismatch can be reported with its context.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import cocotb
import numpy as np

from sim.tb import EngineTB, operand_beats, pack_lanes

CASES_ENV = "BARISTA_SIM_CASES"
RESULTS_ENV = "BARISTA_SIM_RESULTS"


@cocotb.test()
async def run_cases(dut) -> None:  # noqa: ANN001 - a cocotb handle
    """All cases of the file, back to back in one simulation."""
    with np.load(os.environ[CASES_ENV]) as f:
        header = json.loads(str(f["header"]))
        arrays = {k: f[k] for k in f.files if k != "header"}
    rows, cols, width = header["rows"], header["cols"], header["width"]
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    commands, a_words, b_words, stalls = [], [], [], []
    for i, case in enumerate(header["cases"]):
        pad = np.random.default_rng(case["pad_seed"])
        a_beats, b_beats = operand_beats(
            arrays[f"a{i}"], arrays[f"b{i}"], rows, cols, pad=pad, pad_range=(lo, hi)
        )
        commands.append(case["command"])
        a_words.append(pack_lanes(a_beats, width))
        b_words.append(pack_lanes(b_beats, width))
        stalls.append(float(case["stall"]))

    tb = EngineTB(
        dut,
        header["cmd_fields"],
        cols=cols,
        out_width=header["out_width"],
        out_signed=header["out_signed"],
        seed=header["tb_seed"],
    )
    await tb.start()
    run = await tb.run(commands, a_words, b_words, stalls, max_cycles=header["max_cycles"])

    out: dict[str, np.ndarray] = {"cycles": np.array(run.cycles, dtype=np.int64)}
    for i, words in enumerate(run.outputs):
        out[f"out{i}"], out[f"last{i}"] = tb.unpack_outputs(words)
    info = {
        "sim_cycles": run.sim_cycles,
        "wall_seconds": run.wall_seconds,
        "stats": {k: asdict(v) for k, v in run.stats.items()},
    }
    out["header"] = np.array(json.dumps(info))
    path = os.environ[RESULTS_ENV]
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path)
