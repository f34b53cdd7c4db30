"""barista_hw.device.memory: SDRAM transfer times on hand-computed cases, the link, the device,
the packed bit stream."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.device import dma
from barista_hw.device.memory import (
    RTL_UNITS,
    ULX3S_SDRAM,
    DeviceConfig,
    LinkConfig,
    PortConfig,
    ScratchpadConfig,
    pack_stream,
    unpack_stream,
)
from barista_hw.targets import TARGETS

# At the default 50 MHz: tRP, tRCD 15 ns -> 1 cycle each; tRC, tRFC 60 ns -> 3; write
# recovery max(14 ns -> 1, 2 clocks) = 2; CAS latency 2; a refresh every
# floor(7812.5 ns x 50 MHz) = 390 cycles.
DRAM = ULX3S_SDRAM


def test_cycle_conversions_of_the_default_sdram() -> None:
    assert (DRAM.cycles(DRAM.t_rp_ns), DRAM.cycles(DRAM.t_rcd_ns)) == (1, 1)
    assert (DRAM.cycles(DRAM.t_rc_ns), DRAM.cycles(DRAM.t_rfc_ns)) == (3, 3)
    assert DRAM.write_recovery_cycles == 2
    assert DRAM.refresh_interval_cycles == 390
    assert DRAM.cycles(15.0) == 1 and DRAM.cycles(20.0) == 1 and DRAM.cycles(20.5) == 2


def test_timing_cycles_at_the_rated_clock() -> None:
    """The controller's and chip model's cycles: 100 MHz, 10 ns a cycle, rounded up."""
    t = replace(ULX3S_SDRAM, clock_mhz=100.0).timing_cycles()
    assert (t.cas_latency, t.burst_length, t.rcd, t.rp, t.ras, t.rc) == (2, 8, 2, 2, 4, 6)
    assert (t.wr, t.rfc, t.rrd, t.mrd, t.refi, t.init) == (2, 6, 2, 2, 781, 20_000)
    with pytest.raises(InputError, match="t_mrd_clocks"):
        replace(ULX3S_SDRAM, t_mrd_clocks=0)


def test_one_burst_read() -> None:
    # 8 beats + tRP + tRCD (2) + CAS latency 2 = 12; refresh ceil(12 x 3 / 390) = 1.
    assert DRAM.transfer_cycles(bursts=1, rows_opened=1, write=False) == 13


def test_bursts_in_one_row() -> None:
    # 64 bursts (a whole 1 KiB row): 512 + 2 + 2 = 516; refresh ceil(1548 / 390) = 4.
    assert DRAM.transfer_cycles(bursts=64, rows_opened=1, write=False) == 520
    # An open row: no precharge or activate, one stream: 16 + 2 = 18, + 1 refresh.
    assert DRAM.transfer_cycles(bursts=2, rows_opened=0, write=False) == 19


def test_row_changes_and_writes() -> None:
    # 128 bursts over 2 rows, read: 1024 + 2 x 2 + 2 x CL 2 = 1032; ceil(3096 / 390) = 8.
    assert DRAM.transfer_cycles(bursts=128, rows_opened=2, write=False) == 1040
    # 4 bursts over 2 rows, write: 32 + 4 + 2 x recovery 2 = 40; ceil(120 / 390) = 1.
    assert DRAM.transfer_cycles(bursts=4, rows_opened=2, write=True) == 41


def test_activates_are_at_least_trc_apart() -> None:
    # At 100 MHz with tRC 150 ns (15 cycles): 8 + (2 + 2) + 2 = 14 < 15, so 15;
    # refresh ceil(15 x 6 / 781) = 1.
    dram = replace(DRAM, clock_mhz=100.0, t_rc_ns=150.0)
    assert dram.refresh_interval_cycles == 781
    assert dram.transfer_cycles(bursts=1, rows_opened=1, write=False) == 16


def test_refresh_overhead_is_trfc_over_trefi() -> None:
    # 8192 bursts in open rows: 65536 + 2 = 65538; ceil(65538 x 3 / 390) = 505.
    cycles = DRAM.transfer_cycles(bursts=8192, rows_opened=0, write=False)
    assert cycles == 66043
    assert (cycles - 65538) / 65538 == pytest.approx(3 / 390, abs=1 / 65538)  # rounded up


def test_transfer_argument_checks() -> None:
    assert DRAM.transfer_cycles(bursts=0, rows_opened=0, write=True) == 0
    with pytest.raises(ValueError):
        DRAM.transfer_cycles(bursts=1, rows_opened=2, write=False)
    with pytest.raises(ValueError):
        DRAM.transfer_cycles(bursts=-1, rows_opened=0, write=False)


def test_peak_bandwidth_is_bus_bytes_times_clock() -> None:
    assert DRAM.peak_bytes_per_s == 2 * 50e6
    assert replace(DRAM, clock_mhz=100.0).peak_bytes_per_s == 2 * 100e6
    assert DRAM.burst_bytes == 16
    assert DRAM.size_bytes == DRAM.banks * 8192 * DRAM.row_bytes


def test_dram_config_invariants() -> None:
    assert DRAM.source and DRAM.part == "IS42S16160G-7TL"
    for bad in ({"bus_bits": 12}, {"clock_mhz": 120.0}, {"row_bytes": 1000}, {"banks": 0}):
        with pytest.raises(InputError):
            replace(DRAM, **bad)


def test_link_seconds() -> None:
    link = LinkConfig()
    assert (link.baud, link.bits_per_byte) == (3_000_000, 10)
    assert link.seconds(300_000) == pytest.approx(1.0)  # 300 kB/s
    assert LinkConfig(baud=1_000_000).seconds(100_000) == pytest.approx(1.0)
    with pytest.raises(InputError):
        LinkConfig(baud=0)


def test_device_for_the_ulx3s_85f() -> None:
    preset = TARGETS["ulx3s-85f"].preset  # 12 x 12, 16-bit, 50 MHz
    dev = DeviceConfig.for_accelerator(preset)
    assert dev.target == "ulx3s-85f"
    assert dev.dram == replace(ULX3S_SDRAM, clock_mhz=100.0)  # its CL2 rating
    assert dev.link == LinkConfig()
    assert dev.scratchpads == ScratchpadConfig(c_depth=1024, v_depth=1024, vector_lanes=12)
    # C: 1024 x 192 bits -> 11 DP16KD of 1024 x 18; V: 1024 x 384 bits -> 22.
    assert dev.scratchpad_brams() == {"scratch_c": 11, "scratch_v": 22}


def test_device_overrides_and_clock() -> None:
    preset = TARGETS["ulx3s-85f"].preset
    dev = DeviceConfig.for_accelerator(preset, v_depth=512, link=LinkConfig(baud=1_000_000))
    assert dev.scratchpads.v_depth == 512 and dev.link.baud == 1_000_000
    # The SDRAM runs at its CL2 rating in its own clock domain, whatever the design's clock.
    fast = DeviceConfig.for_accelerator(preset.derive(clock_mhz=75.0))
    assert fast.dram.clock_mhz == 100.0
    assert fast.device_cycles(100) == 75 and fast.device_cycles(101) == 76
    with pytest.raises(InputError, match="rating"):
        replace(ULX3S_SDRAM, clock_mhz=150.0)
    with pytest.raises(InputError, match="unknown setting"):
        DeviceConfig.for_accelerator(preset, depth=3)


def test_a_target_without_dram_needs_one_given() -> None:
    preset = TARGETS["icebreaker"].preset  # 2 x 1, 24 MHz
    with pytest.raises(InputError, match="icebreaker has no DRAM"):
        DeviceConfig.for_accelerator(preset)
    dev = DeviceConfig.for_accelerator(preset, dram=replace(ULX3S_SDRAM, clock_mhz=24.0))
    assert dev.target == "icebreaker"
    # C: 256 x 16 bits -> one 256 x 16 EBR; V: 256 x 32 bits -> two.
    assert dev.scratchpad_brams() == {"scratch_c": 1, "scratch_v": 2}


def test_the_units_capacities() -> None:
    """The modelled device fuses epilogues and bounds no col2im footprint or ring; the
    RTL's units (``RTL_UNITS``) have no epilogue, a 1024-element accumulator and rings of
    512; bad sizes are refused."""
    preset = TARGETS["ulx3s-85f"].preset
    units = DeviceConfig.for_accelerator(preset).scratchpads
    assert (units.epilogues, units.col2im_elements, units.vec_ring) == (True, None, None)
    rtl = DeviceConfig.for_accelerator(preset, **RTL_UNITS).scratchpads
    assert (rtl.epilogues, rtl.col2im_elements, rtl.vec_ring) == (False, 1024, 512)
    with pytest.raises(InputError, match="vec_ring = 500 must be a power of two"):
        ScratchpadConfig(vec_ring=500)
    with pytest.raises(InputError, match="col2im_elements = 0 must be positive"):
        ScratchpadConfig(col2im_elements=0)
    assert (units.im2col_stage, ScratchpadConfig(im2col_stage=0).im2col_stage) == (1024, 0)
    with pytest.raises(InputError, match="im2col_stage = -1 must not be negative"):
        ScratchpadConfig(im2col_stage=-1)


def test_json_round_trip() -> None:
    for name in ("ulx3s-85f", "ulx3s-25f"):
        dev = DeviceConfig.for_accelerator(TARGETS[name].preset, c_depth=2048, **RTL_UNITS)
        again = DeviceConfig.from_dict(json.loads(json.dumps(dev.to_dict())))
        assert again == dev
    with pytest.raises(InputError):
        DeviceConfig.from_dict({**dev.to_dict(), "target": "nosuchboard"})
    port = PortConfig(vec_stages=7)
    dev = DeviceConfig.for_accelerator(TARGETS["ulx3s-85f"].preset, port=port)
    assert DeviceConfig.from_dict(json.loads(json.dumps(dev.to_dict()))).port == port
    old = {k: v for k, v in dev.to_dict().items() if k != "port"}  # saved before the port
    assert DeviceConfig.from_dict(old).port == PortConfig()


def test_the_port_and_its_read_latency() -> None:
    dev = DeviceConfig.for_accelerator(TARGETS["ulx3s-85f"].preset)
    # tRCD 15 ns and CAS latency 2 at 100 MHz: 4 SDRAM cycles, 2 of the 50 MHz device.
    assert dev.read_latency == 2 and dev.port.bits == dev.dram.bus_bits == 16
    with pytest.raises(InputError, match="bits"):
        PortConfig(bits=0)
    with pytest.raises(InputError, match="write_gap"):
        PortConfig(write_gap=-1)


def _stream_reference(values: list[int], bits: int, bus_bits: int, first_bit: int) -> list[int]:
    """The bus words of a bit stream, from one Python integer (least significant bit first)."""
    whole = sum((v & ((1 << bits) - 1)) << (first_bit + e * bits) for e, v in enumerate(values))
    first, end = first_bit // bus_bits, -(-(first_bit + len(values) * bits) // bus_bits)
    return [(whole >> (w * bus_bits)) & ((1 << bus_bits) - 1) for w in range(first, end)]


@pytest.mark.parametrize(
    ("bits", "bus_bits", "first_bit"),
    [(32, 16, 0), (16, 16, 32), (18, 16, 8), (3, 16, 21), (1, 8, 5), (8, 16, 8), (13, 32, 7)],
)
def test_pack_stream_is_the_models_bit_stream(bits: int, bus_bits: int, first_bit: int) -> None:
    """Element e at bits [first_bit + e bits, ...): the words of one Python integer, and
    as many as the traffic model's ``transfer`` counts for the whole tensor."""
    rng = np.random.default_rng(bits * 1000 + first_bit)
    lim = 1 << (bits - 1)
    values = rng.integers(-lim, lim, size=37)
    words = pack_stream(values, bits, bus_bits, first_bit)
    assert words.tolist() == _stream_reference(values.tolist(), bits, bus_bits, first_bit)
    tr = dma.transfer(
        np.arange(values.size), 0, burst_words=1, row_words=1, bits=bits,
        bus_bits=bus_bits, first_bit=first_bit,
    )  # fmt: skip
    assert tr.words == words.size
    image = np.concatenate([np.zeros(first_bit // bus_bits, np.uint64), words])
    np.testing.assert_array_equal(
        unpack_stream(image, bits, values.size, bus_bits, first_bit), values
    )


def test_unpack_stream_refuses_a_short_image() -> None:
    with pytest.raises(InputError, match="run past 2 words"):
        unpack_stream(np.zeros(2, np.uint64), 16, 3, 16)
    with pytest.raises(InputError, match="widths 1..63"):
        pack_stream(np.zeros(2, np.int64), 64, 16)
