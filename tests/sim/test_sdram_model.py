"""The SDRAM chip model on its own: commands stepped by hand, every rule made to fail."""

from __future__ import annotations

from dataclasses import replace

import pytest

from barista_hw.device.memory import ULX3S_SDRAM, DramConfig
from barista_hw.device.rtl.sdram import (
    ACTIVE,
    MODE,
    NOP,
    PRECHARGE,
    READ,
    REFRESH,
    WRITE,
    mode_register,
)
from sim.sdram_model import SdramChip, SdramViolation, power_up_word

DRAM = replace(ULX3S_SDRAM, clock_mhz=100.0, t_init_us=0.1, t_refi_ns=2000.0)
T = DRAM.timing_cycles()  # CL 2, BL 8, tRCD = tRP = 2, tRAS 4, tRC 6, tWR 2, tRFC 6


class Driver:
    """Steps a chip with one command (or NOPs) a cycle; records what it drives."""

    def __init__(self, record: bool = False, dram: DramConfig = DRAM) -> None:
        self.chip = SdramChip(dram, record=record)
        self.out: dict[int, int] = {}

    def cmd(self, code: int = NOP, *, ba: int = 0, a: int = 0, dq: int | None = None, dqm=0):  # noqa: ANN001, ANN201
        bits = {k: code >> s & 1 for k, s in (("cs_n", 3), ("ras_n", 2), ("cas_n", 1), ("we_n", 0))}
        drive = self.chip.step(
            cke=1, **bits, ba=ba, a=a, dqm=dqm, dq_o=dq or 0, dq_oe=int(dq is not None)
        )
        if drive is not None:
            self.out[self.chip.cycle] = drive
        return self

    def nops(self, n: int) -> Driver:
        for _ in range(n):
            self.cmd()
        return self

    def init(self) -> Driver:
        """The power-up sequence at the datasheet's minimum spacing."""
        self.nops(T.init).cmd(PRECHARGE, a=1 << 10).nops(T.rp - 1)
        self.cmd(REFRESH).nops(T.rfc - 1).cmd(REFRESH).nops(T.rfc - 1)
        return self.cmd(MODE, a=mode_register(DRAM)).nops(T.mrd - 1)


def _fails(rule: str, steps) -> SdramViolation:  # noqa: ANN001
    with pytest.raises(SdramViolation) as info:
        steps()
    assert info.value.rule.startswith(rule), info.value
    return info.value


def test_write_then_read_with_cas_latency_and_dqm() -> None:
    d = Driver().init()
    d.cmd(ACTIVE, ba=2, a=77).nops(T.rcd - 1)
    words = [0x1000 + i for i in range(8)]
    d.cmd(WRITE, ba=2, a=16, dq=words[0])
    for i, w in enumerate(words[1:], 1):
        d.cmd(dq=w, dqm=0b10 if i == 3 else 0)  # word 3: upper byte masked
    d.nops(T.wr)  # write recovery before a read is not needed; it keeps the bus quiet
    read_at = d.chip.cycle + 1
    d.cmd(READ, ba=2, a=16).nops(T.cas_latency + 8)
    got = [d.out[read_at + T.cas_latency + i] for i in range(8)]
    old3 = power_up_word(2, 77, 19)
    assert got == words[:3] + [(old3 & 0xFF00) | (words[3] & 0xFF)] + words[4:]
    assert not any(read_at <= c < read_at + T.cas_latency for c in d.out)  # CL pipeline
    assert d.chip.word(2, 77, 20) == words[4]


def test_power_up_rules() -> None:
    _fails("tINIT", lambda: Driver().nops(T.init - 1).cmd(PRECHARGE, a=1 << 10))
    early = Driver().nops(T.init).cmd(PRECHARGE, a=1 << 10).nops(T.rp - 1)
    _fails("initialisation: LOAD MODE", lambda: early.cmd(REFRESH).nops(T.rfc - 1).cmd(MODE))
    _fails("initialisation incomplete", lambda: Driver().nops(T.init).cmd(ACTIVE))


def test_tmrd_and_trfc() -> None:
    d = Driver().nops(T.init).cmd(PRECHARGE, a=1 << 10).nops(T.rp - 1)
    d.cmd(REFRESH).nops(T.rfc - 1).cmd(REFRESH).nops(T.rfc - 1).cmd(MODE, a=mode_register(DRAM))
    _fails("tMRD", lambda: d.cmd(ACTIVE))
    d = Driver().nops(T.init).cmd(PRECHARGE, a=1 << 10).nops(T.rp - 1).cmd(REFRESH)
    _fails("tRFC", lambda: d.nops(T.rfc - 2).cmd(REFRESH))


@pytest.mark.parametrize(
    ("rule", "gap"),
    [("tRCD", T.rcd - 1), ("tRAS", T.ras - 1), ("tRRD", T.rrd - 1)],
)
def test_activate_rules(rule: str, gap: int) -> None:
    d = Driver().init().cmd(ACTIVE, ba=0, a=5).nops(gap - 1)
    nxt = {
        "tRCD": lambda: d.cmd(READ, ba=0),
        "tRAS": lambda: d.cmd(PRECHARGE, ba=0),
        "tRRD": lambda: d.cmd(ACTIVE, ba=1, a=5),
    }[rule]
    v = _fails(rule, nxt)
    assert v.cycle == d.chip.cycle and v.command.split()[0] in ("READ", "PRECHARGE", "ACTIVE")


def test_precharge_and_row_cycle_rules() -> None:
    d = Driver().init().cmd(ACTIVE, ba=1, a=3).nops(T.ras - 1).cmd(PRECHARGE, ba=1)
    _fails("tRP", lambda: d.nops(T.rp - 2).cmd(ACTIVE, ba=1, a=4))
    # tRC > tRAS + tRP (80 ns here), so an ACTIVE after tRP may still be too early.
    d = Driver(dram=replace(DRAM, t_rc_ns=80.0)).init()
    d.cmd(ACTIVE, ba=1, a=3).nops(T.ras - 1).cmd(PRECHARGE, ba=1).nops(T.rp - 1)
    _fails("tRC", lambda: d.cmd(ACTIVE, ba=1, a=4))


def test_write_recovery_and_read_burst_before_precharge() -> None:
    d = Driver().init().cmd(ACTIVE).nops(T.rcd - 1).cmd(WRITE, dq=1)
    for _ in range(7):
        d.cmd(dq=2)
    _fails("tWR", lambda: d.nops(T.wr - 2).cmd(PRECHARGE))
    d = Driver().init().cmd(ACTIVE).nops(T.rcd - 1).cmd(READ)
    _fails("read burst", lambda: d.nops(6).cmd(PRECHARGE))


def test_state_and_bus_rules() -> None:
    _fails("bank 0 already has row", lambda: Driver().init().cmd(ACTIVE).nops(T.rc).cmd(ACTIVE))
    _fails("bank 3 has no open row", lambda: Driver().init().cmd(READ, ba=3))
    opened = Driver().init().cmd(ACTIVE).nops(T.rc)
    _fails("bank 0 has row", lambda: opened.cmd(REFRESH))
    d = Driver().init().cmd(ACTIVE).nops(T.rcd - 1).cmd(WRITE, dq=1)
    _fails("write data: DQ not driven", lambda: d.cmd())
    d = Driver().init().cmd(ACTIVE).nops(T.rcd - 1).cmd(READ).nops(T.cas_latency - 1)
    _fails("DQ contention", lambda: d.cmd(dq=5))
    d = Driver().init().cmd(ACTIVE).nops(T.rcd - 1).cmd(READ).nops(7)
    _fails("DQ contention", lambda: d.cmd(WRITE, dq=1))  # read data still to come
    d = Driver().init().cmd(ACTIVE).nops(T.rcd - 1).cmd(READ).nops(3)
    _fails("burst interrupted", lambda: d.cmd(READ))


def test_late_refresh_loses_the_data() -> None:
    d = Driver().init()
    d.nops(d.chip.last_ref + T.refi - d.chip.cycle)  # exactly tREFI since the last: allowed
    v = _fails("tREFI", lambda: d.nops(1))
    assert "lost" in v.rule and d.chip.lost == {0, 1, 2, 3}
    d = Driver().init()
    for _ in range(3):  # a refresh every tREFI keeps the data
        d.nops(d.chip.last_ref + T.refi - d.chip.cycle - 1).cmd(REFRESH).nops(T.rfc - 1)
    assert not d.chip.lost and d.chip.counts.commands["AUTO REFRESH"] == 5


def test_record_mode_goes_on_after_a_timing_violation() -> None:
    d = Driver(record=True).init().cmd(ACTIVE).cmd(READ)  # tRCD broken
    d.nops(T.cas_latency + 8)
    assert [v.rule.split(":")[0] for v in d.chip.violations] == ["tRCD"]
    assert len(d.out) == 8  # the read went ahead
    with pytest.raises(SdramViolation, match="no open row"):  # cannot be carried out
        d.cmd(READ, ba=2)
