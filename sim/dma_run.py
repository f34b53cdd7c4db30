"""The DMA engine's simulation: its test harness, its build, and runs of DMA cases.

* :class:`DmaHarness` is the simulated top: a :class:`~barista_hw.device.rtl.dma.DmaEngine`
  and the :class:`~barista_hw.device.rtl.scratchpad.Scratchpad` it fills, with a second
  scratchpad port (``x_*``) through which the test bench preloads words (for a STORE)
  and reads them back (after a LOAD) while the DMA is idle; the DMA's elements reach
  the memory port of :data:`BUS_BITS` words packed
  (:class:`~barista_hw.device.rtl.packed.PackedPort`; 16-bit elements from bit 0 are
  the unpacked layout, one a word);
* :func:`build` elaborates it (memories read ``x`` on a collision, as
  :func:`sim.runner.engine_verilog`) and compiles it for Icarus or Verilator, cached
  like the engines' builds;
* :func:`run_cases` runs :class:`DmaCase` s back to back in one simulation of
  :mod:`sim.dma_test`, the memory side played by :class:`sim.port_model.PortMemory`.

Nothing is compared here: the tests compare with the device model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from barista_hw.device.memory import PortConfig
from barista_hw.device.rtl.dma import ACC_DEPTH, DmaEngine, command_layout, pack_command
from barista_hw.device.rtl.packed import PackedPort
from barista_hw.device.rtl.port import ADDR_BITS, LEN_BITS, port_signature
from barista_hw.device.rtl.scratchpad import Scratchpad, SpadGeometry

from .runner import component_build, run_json_module

CASES_ENV = "BARISTA_DMA_CASES"  # read by sim.dma_test
RESULTS_ENV = "BARISTA_DMA_RESULTS"
TEST_MODULE = "sim.dma_test"
BUS_BITS = PortConfig.bits  # the memory port's word


class DmaHarness(wiring.Component):
    """A DMA engine with its scratchpad, and a test port into the scratchpad."""

    def __init__(
        self, geom: SpadGeometry, *, max_burst: int = 16, acc_depth: int, stage_depth: int = 0
    ) -> None:
        self.geom, self.max_burst, self.acc_depth = geom, max_burst, acc_depth
        self.stage_depth = stage_depth
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(geom.addr_bits))),
                "port": Out(port_signature(BUS_BITS, ADDR_BITS, LEN_BITS)),
                "busy": Out(1),
                "x_w_addr": In(geom.addr_bits),
                "x_w_data": In(geom.word_bits),
                "x_w_en": In(1),
                "x_r_addr": In(geom.addr_bits),
                "x_r_data": Out(geom.word_bits),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        dma = DmaEngine(
            self.geom,
            max_burst=self.max_burst,
            acc_depth=self.acc_depth,
            stage_depth=self.stage_depth,
        )
        m.submodules.dma = dma
        m.submodules.packed = packed = PackedPort(
            self.geom.bits, bus_bits=BUS_BITS, max_elements=self.max_burst
        )
        m.submodules.spad = spad = Scratchpad(self.geom)
        wiring.connect(m, wiring.flipped(self.cmd), dma.cmd)
        wiring.connect(m, dma.port, packed.up)
        wiring.connect(m, packed.port, wiring.flipped(self.port))
        m.d.comb += [
            packed.first_bit.eq(dma.first_bit),
            self.busy.eq(dma.busy | packed.busy),
            dma.s_r_data.eq(spad.r_data),
            self.x_r_data.eq(spad.r_data),
            spad.r_addr.eq(self.x_r_addr),
            spad.w_addr.eq(self.x_w_addr),
            spad.w_data.eq(self.x_w_data),
            spad.w_en.eq(self.x_w_en),
        ]
        with m.If(dma.busy):
            m.d.comb += spad.r_addr.eq(dma.s_r_addr)
        with m.If(dma.s_w_en):
            m.d.comb += [
                spad.w_addr.eq(dma.s_w_addr),
                spad.w_data.eq(dma.s_w_data),
                spad.w_en.eq(1),
            ]
        return m


@dataclass(frozen=True)
class DmaDesign:
    """A built harness: its geometry, simulator and build directory."""

    geom: SpadGeometry
    sim: str
    top: str
    build_dir: Path
    max_burst: int


def _top(geom: SpadGeometry, max_burst: int, stage_depth: int) -> str:
    return f"dma_{geom.lanes}x{geom.bits}_d{geom.depth}_b{max_burst}_s{stage_depth}"


def build(
    sim: str,
    geom: SpadGeometry,
    *,
    max_burst: int = 16,
    acc_depth: int = ACC_DEPTH,
    stage_depth: int = 0,
) -> DmaDesign:
    """Elaborate and compile the harness of ``geom`` for ``sim`` (cached; race-safe);
    ``acc_depth`` 0: no col2im accumulator; ``stage_depth`` 0: no im2col stage buffer."""
    top = _top(geom, max_burst, stage_depth)
    unit = component_build(
        lambda: DmaHarness(geom, max_burst=max_burst, acc_depth=acc_depth, stage_depth=stage_depth),
        top,
        f"{geom!r} acc {acc_depth} stage {stage_depth}",
        sim,
    )
    return DmaDesign(geom, sim, top, unit.build_dir, max_burst)


@dataclass
class DmaCase:
    """One DMA command run on a memory of bus words (``memory``, the model's slots as
    signed integers) with scratchpad words ``preload`` (a STORE's tile) at ``spad``.

    ``words``: the scratchpad words the command fills (read back after a LOAD);
    ``stall``: the probability of a random gap on every stream, both sides of the
    port; ``latency``: the memory's read latency in cycles.
    """

    name: str
    command: dict
    memory: np.ndarray
    spad: int
    words: int
    preload: list[int] = field(default_factory=list)
    stall: float = 0.0
    latency: int = 2


@dataclass
class DmaResult:
    """What a case left: the scratchpad words read back, the memory, the cycles taken."""

    case: DmaCase
    spad_words: list[int]
    memory: np.ndarray  # signed, as the case's memory
    cycles: int
    lengths: list[int]  # of the burst commands the memory took


def _unsigned(values: np.ndarray, bits: int) -> list[int]:
    return [int(v) & ((1 << bits) - 1) for v in np.asarray(values).ravel()]


def _signed(words: Sequence[int], bits: int) -> np.ndarray:
    w = np.asarray(words, dtype=np.int64)
    return np.where(w >= 1 << (bits - 1), w - (1 << bits), w)


def run_cases(design: DmaDesign, cases: Sequence[DmaCase], *, seed: int = 0) -> list[DmaResult]:
    """Run ``cases`` back to back in one simulation; results in case order."""
    geom = design.geom
    header = {
        "lanes": geom.lanes,
        "bits": BUS_BITS,
        "addr_bits": ADDR_BITS,
        "len_bits": LEN_BITS,
        "seed": seed,
        "cases": [
            {
                "command": str(pack_command(c.command, geom)),
                "memory": _unsigned(c.memory, BUS_BITS),
                "spad": c.spad,
                "words": c.words,
                "preload": c.preload,
                "stall": c.stall,
                "latency": c.latency,
                # Each element waits at most the latency and its stalls (a col2im STORE
                # also reads and writes its footprint); generous.
                "max_cycles": int(
                    64
                    + 8
                    * (c.words * geom.lanes + 4 * c.command.get("acc_len", 0) + 1)
                    * (c.latency + 2)
                )
                * int(1 + 10 * c.stall),
            }
            for c in cases
        ],
    }
    out = run_json_module(
        design, TEST_MODULE, header, (CASES_ENV, RESULTS_ENV), f"DMA {design.top} on {design.sim}"
    )
    results = [
        DmaResult(c, r["spad_words"], _signed(r["memory"], BUS_BITS), r["cycles"], r["lengths"])
        for c, r in zip(cases, out["cases"], strict=True)
    ]
    return results
