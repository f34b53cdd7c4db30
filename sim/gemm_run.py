"""What a simulated host saw running one GEMM program (:mod:`barista_hw.host`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GemmRun:
    """One pass on a simulated accelerator (the Verilated library or the Amaranth simulator).

    Times are clock edges counted from the cycle of the first write.
    """

    result: np.ndarray  # (m, n) int64
    cycles: int  # clock edges from the first write to the last ``busy`` low
    engine_cycles: int  # sum over commands of acceptance to ``busy`` low
    chunk_accept: np.ndarray  # edge that accepted each command
    chunk_done: np.ndarray  # edge after which each command's ``busy`` was low
    write_beats: int
    out_beats: int
    wall_seconds: float  # inside the simulator
    # The engine's own ``cycles`` counter after the last command (what the cocotb suite
    # reads): from the cycle after acceptance to its last output transfer.
    last_counter: int = 0

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.wall_seconds if self.wall_seconds > 0 else 0.0
