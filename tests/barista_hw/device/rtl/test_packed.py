"""barista_hw.device.rtl.packed: the packed-element adapter's Verilog and its limits.

Its behaviour is proven behind the DMA (``test_dma.py``: fx16 and fx12 tensors of a
compiled program packed on the 16-bit bus, the DRAM image compared bit for bit).
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from barista_base.errors import InputError
from barista_hw.device.rtl.packed import PackedPort
from barista_hw.rtl import to_verilog
from sim.lint import lint


@pytest.mark.parametrize("bits", [12, 16, 32])
def test_packed_port_verilog_is_lint_clean(bits: int, tmp_path: Path) -> None:
    """``verilator --lint-only -Wall`` with the project's waivers."""
    path = tmp_path / "packed.v"
    path.write_text(to_verilog(PackedPort(bits), "packed"))
    assert lint(path, "packed") == []


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_packed_port_limits() -> None:
    with pytest.raises(InputError, match="a power of two"):
        PackedPort(12, bus_bits=12)
    with pytest.raises(InputError, match="1 to four bus words"):
        PackedPort(65)
    with pytest.raises(InputError, match="a command moves 1 to 255"):
        PackedPort(32, max_elements=200)
    gc.collect()  # the refused objects' warnings, here where they are ignored
