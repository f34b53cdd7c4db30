"""The memory port's signature: its streams, their directions and record widths."""

from __future__ import annotations

import pytest
from amaranth.lib import wiring

from barista_hw.device.rtl.port import command_layout, max_length, port_signature


def test_the_master_drives_commands_and_write_data_and_takes_read_data() -> None:
    sig = port_signature(16, addr_bits=20, len_bits=5)
    members = sig.members
    assert set(members) == {"cmd", "w", "r"}
    assert members["cmd"].flow == wiring.Out and members["w"].flow == wiring.Out
    assert members["r"].flow == wiring.In
    layout = members["cmd"].signature.members["payload"].shape
    assert layout == command_layout(20, 5)
    assert [(n, f.width) for n, f in layout] == [
        ("addr", 20),
        ("length", 5),
        ("write", 1),
    ]
    assert members["w"].signature.members["payload"].shape == 16
    # The memory side is the flip: it takes commands and drives read data.
    memory = sig.flip().members
    assert memory["cmd"].flow == wiring.In and memory["r"].flow == wiring.Out


def test_bursts_and_bad_widths() -> None:
    assert max_length(8) == 255 and max_length(1) == 1
    with pytest.raises(ValueError, match="must be >= 1"):
        port_signature(0)
