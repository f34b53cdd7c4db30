"""The device's memories: on-board SDRAM, the host link, and the on-chip scratchpads.

:class:`DeviceConfig` is what the compiler, the device model, the traffic/time model
and the energy model read: the accelerator (engine and operand buffers A and B), the
result and vector scratchpads C and V, the board's SDRAM (:class:`DramConfig`, with
the datasheet timings of the part and a transfer-time model) and the host link
(:class:`LinkConfig`). Defaults are the ULX3S's: its SDRAM and its FT231X USB UART.
Boards without SDRAM (iCEBreaker) cannot hold the device's tensors: asking for their
defaults is an error unless a :class:`DramConfig` is given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from barista_base.errors import InputError

from ..config import AcceleratorConfig
from ..resources import memory_blocks
from ..targets import DEFAULT_TARGET, TARGETS, get_target


@dataclass(frozen=True)
class DramConfig:
    """An SDR SDRAM and the clock its controller runs it at.

    The defaults are the SDRAM of the ULX3S v3.0.8 (the board's largest production
    run, 1000 boards: ``emard/ulx3s`` README, production table): ISSI IS42S16160G-7TL,
    256 Mbit as 4 banks x 8192 rows x 512 columns x 16 bits (32 MiB, 1 KiB rows),
    speed grade -7 (143 MHz at CAS latency 3, 100 MHz at CAS latency 2). Other
    ULX3S runs carry MT48LC16M16A2 (same organisation) or AS4C32M16SB (64 MiB).
    ``clock_mhz`` is the SDRAM's own clock; :meth:`DeviceConfig.for_accelerator` runs
    it at the part's rating at CAS latency 2 (100 MHz), in its own clock domain: the
    DMA reaches it through clock-crossing FIFOs, as SDRAM controllers on ECP5 boards
    commonly do, so the accelerator's clock does not limit the memory's bandwidth. The
    timings are the -7 grade's of ISSI's SDR family (as in the IS42S16800A -7 AC table:
    tRCD = tRP = 15 ns, tRAS 37 ns, tDPL 2 clocks, REF-to-REF = tRC; tRC 60 ns as
    SpinalHDL's IS42x320D grade 7).
    """

    size_bytes: int = 32 * 1024 * 1024
    bus_bits: int = 16
    clock_mhz: float = 50.0
    burst_length: int = 8  # of 1, 2, 4, 8 (full page is not used)
    banks: int = 4
    row_bytes: int = 1024  # 512 columns of 16 bits
    cas_latency: int = 2
    t_rcd_ns: float = 15.0  # ACT to READ/WRITE
    t_rp_ns: float = 15.0  # PRE to ACT
    t_ras_ns: float = 37.0  # ACT to PRE, minimum
    t_rc_ns: float = 60.0  # ACT to ACT, same bank
    # Write recovery (ISSI's tDPL, input data to precharge): 2 clocks; as time, 2 x 7 ns.
    t_wr_ns: float = 14.0
    t_wr_clocks: int = 2
    t_refi_ns: float = 64e6 / 8192  # 8192 refresh commands every 64 ms
    t_rfc_ns: float = 60.0  # ISSI: auto refresh takes tRC
    # The controller's further rules (same -7 grade tables; Micron MT48LC16M16A2-7E, the
    # other part fitted, has the same values): ACT to ACT of different banks (tRRD),
    # mode register set to the next command (tMRD, 2 clocks), and the power-up wait
    # before the first command: 200 us (ISSI's; Micron asks for 100 us).
    t_rrd_ns: float = 14.0
    t_mrd_clocks: int = 2
    t_init_us: float = 200.0
    max_clock_mhz: float = 100.0  # the part's rating at this CAS latency (-7: CL2 100 MHz)
    part: str = "IS42S16160G-7TL"
    source: str = (
        "ISSI IS42S83200G/IS42S16160G datasheet (42-45S83200G-16160G): key timing "
        "parameters (-7) and AC characteristics; ULX3S v3.0.8 BOM (emard/ulx3s README)"
    )

    def __post_init__(self) -> None:
        for name in ("size_bytes", "bus_bits", "burst_length", "banks", "row_bytes"):
            if getattr(self, name) <= 0:
                raise InputError(f"DRAM {name} = {getattr(self, name)} must be positive")
        if self.bus_bits % 8:
            raise InputError(f"DRAM bus_bits = {self.bus_bits} must be whole bytes")
        if self.row_bytes % self.burst_bytes:
            raise InputError(
                f"DRAM row_bytes = {self.row_bytes} must hold whole bursts "
                f"of {self.burst_bytes} bytes"
            )
        if self.size_bytes % (self.banks * self.row_bytes):
            raise InputError(f"DRAM size_bytes = {self.size_bytes} is not banks x rows x row")
        if not 0 < self.clock_mhz <= self.max_clock_mhz:
            raise InputError(
                f"DRAM clock {self.clock_mhz} MHz outside (0, {self.max_clock_mhz}] MHz, "
                f"the {self.part}'s rating at CAS latency {self.cas_latency}"
            )
        if self.cas_latency < 1 or self.t_wr_clocks < 0:
            raise InputError("DRAM cas_latency must be >= 1 and t_wr_clocks >= 0")
        if self.t_rrd_ns < 0 or self.t_mrd_clocks < 1 or self.t_init_us < 0:
            raise InputError("DRAM t_rrd_ns, t_init_us must be >= 0 and t_mrd_clocks >= 1")
        if self.t_refi_ns <= self.t_rfc_ns:
            raise InputError("DRAM refresh interval must exceed the refresh cycle time")

    def cycles(self, ns: float) -> int:
        """``ns`` in clock cycles, rounded up (a timing minimum is met, never shaved)."""
        # The rounding to 9 places keeps 15 ns at 200 MHz at 3 cycles, not 4.
        return math.ceil(round(ns * self.clock_mhz / 1000, 9))

    def timing_cycles(self) -> SdramCycles:
        """The datasheet timings in clock cycles at :attr:`clock_mhz` (each a minimum).

        The one conversion that the SDRAM controller and the chip model both read.
        """
        return SdramCycles(
            cas_latency=self.cas_latency,
            burst_length=self.burst_length,
            rcd=self.cycles(self.t_rcd_ns),
            rp=self.cycles(self.t_rp_ns),
            ras=self.cycles(self.t_ras_ns),
            rc=self.cycles(self.t_rc_ns),
            wr=self.write_recovery_cycles,
            rfc=self.cycles(self.t_rfc_ns),
            rrd=self.cycles(self.t_rrd_ns),
            mrd=self.t_mrd_clocks,
            refi=self.refresh_interval_cycles,
            init=self.cycles(self.t_init_us * 1000),
        )

    @property
    def burst_bytes(self) -> int:
        return self.bus_bits // 8 * self.burst_length

    @property
    def peak_bytes_per_s(self) -> float:
        """The bus width times the clock: one beat a cycle, no overheads."""
        return self.bus_bits / 8 * self.clock_mhz * 1e6

    @property
    def write_recovery_cycles(self) -> int:
        return max(self.cycles(self.t_wr_ns), self.t_wr_clocks)

    @property
    def refresh_interval_cycles(self) -> int:
        """Cycles between refresh commands (rounded down: refresh is never late)."""
        return math.floor(round(self.t_refi_ns * self.clock_mhz / 1000, 9))

    def transfer_cycles(self, *, bursts: int, rows_opened: int, write: bool) -> int:
        """Clock cycles of a DMA transfer of ``bursts`` bursts that opens ``rows_opened`` rows.

        The model (conservative: one bank open at a time, no bank interleaving, so no
        row opening is hidden behind another bank's data):

        * each opened row costs a precharge and an activate, ``tRP + tRCD``;
        * each burst is ``burst_length`` beats, one a cycle; bursts within a row are
          issued back to back, so a row's bursts form one stream;
        * a read stream pays the CAS latency once (the first data after the READ); a
          write stream pays the write recovery once (before the precharge that
          closes its row). Every opened row starts a new stream; a transfer that
          opens none (its row is already open) is one stream;
        * consecutive activates are at least ``tRC`` apart (which also covers
          ``tRAS``, as ``tRC >= tRAS + tRP``): the total is at least
          ``rows_opened x tRC``;
        * refresh: every :attr:`refresh_interval_cycles` the controller stalls for
          ``tRFC``; the transfer pays that fraction of its own time, rounded up.
        """
        if bursts < 0 or rows_opened < 0:
            raise ValueError(f"bursts {bursts} and rows_opened {rows_opened} must be >= 0")
        if rows_opened > bursts:
            raise ValueError(f"{rows_opened} rows opened for {bursts} bursts")
        if bursts == 0:
            return 0
        streams = max(1, rows_opened)
        tail = self.write_recovery_cycles if write else self.cas_latency
        base = (
            bursts * self.burst_length
            + rows_opened * (self.cycles(self.t_rp_ns) + self.cycles(self.t_rcd_ns))
            + streams * tail
        )
        base = max(base, rows_opened * self.cycles(self.t_rc_ns))
        refresh = math.ceil(base * self.cycles(self.t_rfc_ns) / self.refresh_interval_cycles)
        return base + refresh

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DramConfig:
        return cls(**d)


@dataclass(frozen=True)
class SdramCycles:
    """An SDRAM's timing rules in clock cycles (:meth:`DramConfig.timing_cycles`).

    ``wr`` counts from the last write data in to the PRECHARGE (ISSI's tDPL);
    ``refi`` is the largest interval between refreshes (rounded down), ``init`` the
    power-up wait before the first command other than NOP.
    """

    cas_latency: int
    burst_length: int
    rcd: int
    rp: int
    ras: int
    rc: int
    wr: int
    rfc: int
    rrd: int
    mrd: int
    refi: int
    init: int


def packed_bytes(elements: int, bits: int) -> int:
    """Bytes ``elements`` values of ``bits`` bits take in DRAM and on the link, packed (a
    bit stream)."""
    if not 1 <= bits <= 32:
        raise InputError(f"a {bits}-bit value has no DRAM format (1..32 bits)")
    return -(-elements * bits // 8)


def _check_stream(bits: int, bus_bits: int, first_bit: int) -> None:
    if not 1 <= bits <= 63 or not 1 <= bus_bits <= 63 or first_bit < 0:
        raise InputError(
            f"a bit stream of {bits}-bit elements on a {bus_bits}-bit bus from bit "
            f"{first_bit}: widths 1..63, start >= 0"
        )


def pack_stream(values: np.ndarray, bits: int, bus_bits: int, first_bit: int = 0) -> np.ndarray:
    """The bus words holding ``values`` packed at ``bits`` bits from DRAM bit ``first_bit``.

    Element ``e`` is bits ``[first_bit + e bits, first_bit + (e+1) bits)`` of the stream,
    least significant bit first; bus word ``w`` is stream bits ``[w bus_bits, (w+1)
    bus_bits)``. Returns the unsigned words ``first_bit // bus_bits`` up to the one
    holding the last bit (the bits of those words outside the elements are 0), as
    uint64. Values are taken modulo ``2**bits`` (two's complement).
    """
    _check_stream(bits, bus_bits, first_bit)
    v = np.asarray(values, dtype=np.int64).ravel().view(np.uint64)
    lead = first_bit % bus_bits
    stream = (v[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
    flat = np.concatenate([np.zeros(lead, np.uint64), stream.ravel()])
    flat = np.concatenate([flat, np.zeros(-flat.size % bus_bits, np.uint64)])
    weights = np.uint64(1) << np.arange(bus_bits, dtype=np.uint64)
    return (flat.reshape(-1, bus_bits) * weights).sum(axis=1, dtype=np.uint64)


def unpack_stream(
    words: np.ndarray, bits: int, count: int, bus_bits: int, first_bit: int = 0
) -> np.ndarray:
    """The ``count`` signed ``bits``-bit elements packed from bit ``first_bit`` of the bus
    words ``words`` (word 0 is DRAM word 0): the inverse of :func:`pack_stream`."""
    _check_stream(bits, bus_bits, first_bit)
    w = np.asarray(words).astype(np.uint64).ravel()
    if (first_bit + count * bits + bus_bits - 1) // bus_bits > w.size:
        raise InputError(
            f"{count} elements of {bits} bits from bit {first_bit} run past "
            f"{w.size} words of {bus_bits} bits"
        )
    flat = ((w[:, None] >> np.arange(bus_bits, dtype=np.uint64)) & np.uint64(1)).ravel()
    stream = flat[first_bit : first_bit + count * bits].reshape(count, bits)
    u = (stream << np.arange(bits, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    u = u.astype(np.int64)
    return np.where(u >= 1 << (bits - 1), u - (1 << bits), u)


#: The ULX3S's SDRAM (every ULX3S target).
ULX3S_SDRAM = DramConfig()
#: The SDRAM on each board that has one, by target name; boards not listed have none.
BOARD_DRAM: dict[str, DramConfig] = {
    name: ULX3S_SDRAM for name in TARGETS if name.startswith("ulx3s-")
}


@dataclass(frozen=True)
class LinkConfig:
    """The host link: a UART through the board's USB bridge (ULX3S: FTDI FT231X)."""

    baud: int = 3_000_000  # the FT231X's maximum
    bits_per_byte: int = 10  # 8N1: start, 8 data, stop
    source: str = "FTDI FT231X datasheet (FT_000565): data transfer rates from 300 baud to 3 Mbaud"

    def __post_init__(self) -> None:
        if self.baud <= 0 or self.bits_per_byte < 8:
            raise InputError(
                f"link baud {self.baud} must be positive and bits_per_byte "
                f"{self.bits_per_byte} at least 8"
            )

    def seconds(self, nbytes: int) -> float:
        """Time to move ``nbytes`` one way over the line."""
        return nbytes * self.bits_per_byte / self.baud

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LinkConfig:
        return cls(**d)


COL2IM_ELEMENTS = 1024  # the DMA's col2im accumulator, elements (ScratchpadConfig)
VEC_RING = 512  # a staging ring of the vector unit on memory, elements (ScratchpadConfig)
IM2COL_STAGE = 1024  # the B DMA's im2col stage buffer, elements (ScratchpadConfig)


@dataclass(frozen=True)
class ScratchpadConfig:
    """The on-chip scratchpads besides the engine's operand buffers A and B.

    C holds GEMM results, requantised to the operand format: ``c_depth`` words of the
    engine's ``cols`` lanes of ``fmt.width`` bits. V is the vector unit's:
    ``v_depth`` words of ``vector_lanes`` lanes of ``v_lane_bits`` bits (32: it holds
    the SGD's master weights and momentum).

    The units' capacities, one definition for the compiler (which emits a program that
    fits them), the model and the RTL (built from them): ``epilogues``, whether the GEMM
    unit applies a layer's bias and ReLU to each result block in C (``isa.ON_C``; else
    the compiler emits VECs from memory; the RTL has no epilogue yet, :data:`RTL_UNITS`);
    ``col2im_elements``, the DMA's col2im accumulator (a col2im STORE's footprint, first
    to last DRAM element it adds into, at most this: the compiler cuts the STOREs; None:
    unbounded, the model's device, whose RTL builds :data:`COL2IM_ELEMENTS`);
    ``vec_ring``, the elements of each staging ring of the vector unit that runs VECs
    from memory (a power of two; its fetch order must fit it: the compiler cuts a
    ``BIAS_GRAD`` into rows of ``vector_lanes`` channels when a row's gradients would not
    fit; None: unbounded, whose RTL builds :data:`VEC_RING`); ``im2col_stage``, the
    elements of the stage buffer of the DMA that LOADs into B (one copy a lane): an
    im2col LOAD whose input footprint fits it reads the footprint once and makes a
    scratchpad word a cycle from it (:func:`~barista_hw.device.traffic.stage_plan`; 0:
    none, every im2col LOAD fetches each tile element).
    """

    c_depth: int = 1024
    v_depth: int = 1024
    vector_lanes: int = 4
    v_lane_bits: int = 32
    epilogues: bool = True
    col2im_elements: int | None = None
    vec_ring: int | None = None
    im2col_stage: int = IM2COL_STAGE

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name == "im2col_stage" else 1
            if f.name != "epilogues" and value is not None and value < least:
                must = "must be positive" if least else "must not be negative"
                raise InputError(f"scratchpad {f.name} = {value} {must}")
        if self.vec_ring is not None and self.vec_ring & (self.vec_ring - 1):
            raise InputError(f"scratchpad vec_ring = {self.vec_ring} must be a power of two")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScratchpadConfig:
        return cls(**d)


#: The capacities of the device's units as the RTL builds them today (no epilogue on C),
#: the :class:`ScratchpadConfig` settings of a device program the RTL top can run.
RTL_UNITS: dict[str, Any] = {
    "epilogues": False,
    "col2im_elements": COL2IM_ELEMENTS,
    "vec_ring": VEC_RING,
}


@dataclass(frozen=True)
class PortConfig:
    """The units' memory port as the RTL builds it, and what a DMA or VEC instruction pays
    on it besides its words: the time model's per-instruction constants, read off the RTL's
    registers and checked against its cycles (docs/device.md, "The time model charges the
    port"; ``tests/barista_hw/device/rtl/test_dma.py`` and ``test_vecmem.py`` hold them to 5%).

    * ``bits``: the port's word, one a cycle of the accelerator's clock (``rtl/port.py``;
      the DMA, ``PackedPort`` and VecMem move one 16-bit SDRAM word a beat), so an
      instruction's port words are a floor on its cycles whatever the SDRAM's clock;
    * ``dma_burst``: elements the DMA merges into one port command (``DmaEngine``'s
      ``max_burst``): a run of consecutive addresses longer than this is cut;
    * ``write_gap``: port cycles a write command takes besides its words (``PackedPort``'s
      write side takes the next command one cycle after the current one's last word);
    * ``old_wait``: cycles a write command whose first word is part-covered (packed
      elements that straddle words, fx12) waits after the previous command's last word
      before it starts: the memory reads that word after the writes before it, in command
      order (a cycle), and ``PackedPort``'s old-word FIFO holds it a cycle;
    * ``load_stages``: registers a LOAD's last word crosses besides the memory's read
      latency: the command register, the burst merger's pending command, ``PackedPort``'s
      command register, the scratchpad write, the done flag;
    * ``store_stages``: a STORE's: the command register, the scratchpad read and its
      prefetch register, the burst merger's pending command, ``PackedPort``'s command and
      data registers (the memory takes the last word without a latency);
    * ``col2im_stages``: a col2im STORE's besides the read latency: the command register,
      pass 1's read-modify-write pipeline (two stages), pass 2's first command, the sum's
      register, the last word out;
    * ``stage_fetch``: cycles before a staged im2col LOAD's first footprint element can be
      read from its stage buffer, besides the read latency (``DmaEngine._staged``): the
      command register and ``PackedPort``'s command register before the first read goes
      out; ``stage_stages``: cycles after its last word is made: the stage buffer's read,
      the scratchpad write, the done flag and the busy flag the harness reads (both fitted
      together with the lanes' stepping, one a cycle from the start: exact on all 39
      staged LOADs of the DMA bench at read latencies 1, 3 and 7);
    * ``vec_stages``: a VEC's (VecMem) besides the read latency and its port words: the
      command, the two cycles that register its products and the fetcher's first command
      (the writer queues each burst's command while the previous burst's words go out, so
      reads and write bursts follow back to back; measured on RELU, RELU_BACK,
      MAXPOOL_BACK, CONVERT and SGD: exact);
    * ``vec_drain``: a reduction's (fewer results than operand elements: MAXPOOL,
      BIAS_GRAD) besides: the writer has no backlog when the reads end, so the last
      results cross the fetcher's queue, unpacker and ring, the reader, the unit, the
      packer and the writer's command after the port moved everything else (measured:
      21 and 25 cycles; a term of the port's words, which the unit's cycles overlap).
    """

    bits: int = 16
    dma_burst: int = 16
    write_gap: int = 1
    old_wait: int = 2
    load_stages: int = 5
    store_stages: int = 6
    col2im_stages: int = 6
    stage_fetch: int = 2
    stage_stages: int = 6
    vec_stages: int = 5
    vec_drain: int = 22

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < (1 if f.name in ("bits", "dma_burst") else 0):
                raise InputError(f"memory port {f.name} = {getattr(self, f.name)} is out of range")


#: Scratchpad depths by FPGA family when none are given: iCE40's block RAMs are 4 kbit.
DEFAULT_SCRATCH_DEPTH = {"ecp5": 1024, "ice40": 256}


@dataclass(frozen=True)
class DeviceConfig:
    """The whole device: accelerator, scratchpads, SDRAM, host link, and its board."""

    accelerator: AcceleratorConfig
    scratchpads: ScratchpadConfig
    dram: DramConfig
    link: LinkConfig
    target: str
    port: PortConfig = PortConfig()

    def __post_init__(self) -> None:
        get_target(self.target)  # an unknown target is an InputError naming the known ones

    @classmethod
    def for_accelerator(
        cls, acc: AcceleratorConfig, *, target: str | None = None, **overrides: Any
    ) -> DeviceConfig:
        """The device around ``acc`` on ``target`` (default: ``acc.target``, or
        :data:`~barista_hw.targets.DEFAULT_TARGET` for a generic accelerator).

        ``overrides``: ``dram``, ``link``, ``scratchpads``, ``port`` (whole configurations) or
        the :class:`ScratchpadConfig` fields. Without ``dram`` the board's SDRAM is
        used, at its rated clock (:class:`DramConfig`).
        """
        name = target or (acc.target if acc.target in TARGETS else DEFAULT_TARGET)
        board = get_target(name)
        scratch_keys = {f.name for f in fields(ScratchpadConfig)}
        unknown = set(overrides) - scratch_keys - {"dram", "link", "scratchpads", "port"}
        if unknown:
            raise InputError(f"device config: unknown setting(s) {', '.join(sorted(unknown))}")
        dram = overrides.get("dram")
        if dram is None:
            if board.name not in BOARD_DRAM:
                raise InputError(
                    f"target {board.name} has no DRAM: the device keeps its tensors in "
                    "DRAM, so give a DramConfig for it or choose a board with SDRAM "
                    f"({', '.join(BOARD_DRAM)})"
                )
            rated = BOARD_DRAM[board.name]
            dram = replace(rated, clock_mhz=rated.max_clock_mhz)
        depth = DEFAULT_SCRATCH_DEPTH[board.family]
        scratch = overrides.get("scratchpads") or ScratchpadConfig(
            c_depth=depth, v_depth=depth, vector_lanes=acc.engine.cols
        )
        scratch = replace(scratch, **{k: v for k, v in overrides.items() if k in scratch_keys})
        link = overrides.get("link") or LinkConfig()
        return cls(acc, scratch, dram, link, board.name, overrides.get("port") or PortConfig())

    @property
    def read_latency(self) -> int:
        """Accelerator cycles from a read command on the port to its first word: a row
        opening and the CAS latency at the SDRAM's clock (at least one)."""
        d = self.dram
        return max(1, self.device_cycles(d.cycles(d.t_rcd_ns) + d.cas_latency))

    def device_cycles(self, dram_cycles: int) -> int:
        """``dram_cycles`` of the SDRAM's clock in the accelerator's cycles (rounded up)."""
        return math.ceil(dram_cycles * self.accelerator.clock_mhz / self.dram.clock_mhz)

    def scratchpad_brams(self) -> dict[str, int]:
        """Block RAMs of the target's kind that scratchpads C and V take."""
        aspects = get_target(self.target).budget.bram_aspects
        e = self.accelerator.engine
        s = self.scratchpads
        return {
            "scratch_c": memory_blocks(s.c_depth, e.cols * e.fmt.width, aspects),
            "scratch_v": memory_blocks(s.v_depth, s.vector_lanes * s.v_lane_bits, aspects),
        }

    def to_dict(self) -> dict:
        return {
            "accelerator": self.accelerator.to_dict(),
            "scratchpads": self.scratchpads.to_dict(),
            "dram": self.dram.to_dict(),
            "link": self.link.to_dict(),
            "target": self.target,
            "port": asdict(self.port),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DeviceConfig:
        return cls(
            accelerator=AcceleratorConfig.from_dict(d["accelerator"]),
            scratchpads=ScratchpadConfig.from_dict(d["scratchpads"]),
            dram=DramConfig.from_dict(d["dram"]),
            link=LinkConfig.from_dict(d["link"]),
            target=d["target"],
            port=PortConfig(**d.get("port", {})),
        )
