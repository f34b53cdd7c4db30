"""A cycle-level model of an SDR SDRAM chip (the ULX3S's IS42S16160G) that checks every rule.

:class:`SdramChip` is plain Python, stepped once per clock with the pins the chip samples
at that rising edge; it returns the word it drives on DQ for that edge (or ``None``). The
cocotb bench (:mod:`sim.sdram_test`) calls it at each falling edge, and unit tests can call
it directly. It models the commands (NOP/INHIBIT, ACTIVE, READ, WRITE, PRECHARGE with
A10 for all banks, AUTO REFRESH, LOAD MODE REGISTER), four banks with their open rows,
burst length and CAS latency from the mode register, the CAS latency pipeline of read
data, DQM byte masks on writes, and the memory itself.

Every timing rule of :class:`~barista_hw.device.memory.SdramCycles` is checked (tINIT,
tRCD, tRP, tRAS, tRC, tRRD, tWR, tRFC, tMRD), as are the state rules (no ACTIVE to an
open bank, no READ/WRITE to a closed one, REFRESH and LOAD MODE REGISTER with all banks
closed, the initialisation sequence) and the DQ bus (write data driven, no contention
with read data). A violation raises :class:`SdramViolation` naming the rule, the cycle
and the command. Refresh: two AUTO REFRESH commands may be at most tREFI apart once the
chip is initialised (the distributed refresh that keeps every row within 64 ms); a late
one marks the data of every bank lost and raises.

Not modelled (raise as violations): bursts interrupted by another READ/WRITE or a
PRECHARGE, auto-precharge, BURST TERMINATE, full-page and interleaved bursts,
single-location write bursts, power-down and self refresh (CKE low after the first
command). Words never written read as :func:`power_up_word` of their location.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from barista_hw.device.memory import DramConfig

COMMANDS = {
    0b0111: "NOP",
    0b0011: "ACTIVE",
    0b0101: "READ",
    0b0100: "WRITE",
    0b0010: "PRECHARGE",
    0b0001: "AUTO REFRESH",
    0b0000: "LOAD MODE REGISTER",
    0b0110: "BURST TERMINATE",
}
_BURSTS = {0: 1, 1: 2, 2: 4, 3: 8}
NEVER = -(10**12)


class SdramViolation(AssertionError):
    """The controller broke a rule of the SDRAM: ``rule``, at ``cycle``, by ``command``."""

    def __init__(self, rule: str, cycle: int, command: str) -> None:
        super().__init__(f"SDRAM violation at cycle {cycle}, {command}: {rule}")
        self.rule, self.cycle, self.command = rule, cycle, command


def power_up_word(bank: int, row: int, col: int) -> int:
    """What a word never written reads as: a fixed scramble of its location."""
    return (bank * 0x9E37 + row * 0x7F4B + col * 0x3C6F + 0x1234) & 0xFFFF


@dataclass
class _Bank:
    row: int | None = None
    act_at: int = NEVER
    pre_at: int = NEVER
    read_at: int = NEVER
    write_at: int = NEVER


@dataclass
class Counts:
    """Commands the chip received, and the cycles it ran."""

    cycles: int = 0
    commands: dict[str, int] = field(default_factory=dict)


class SdramChip:
    """The chip; see the module docstring. ``dram`` gives the geometry and the timings.

    ``record``: note each violation in :attr:`violations` and go on (so one run can show
    several rules broken) instead of raising at the first; a command that cannot be
    carried out at all (a closed bank's READ, say) still raises.
    """

    def __init__(self, dram: DramConfig, *, record: bool = False) -> None:
        self.dram = dram
        self.record = record
        self.violations: list[SdramViolation] = []
        self.t = dram.timing_cycles()
        self.columns = dram.row_bytes // (dram.bus_bits // 8)
        self.rows = dram.size_bytes // (dram.banks * dram.row_bytes)
        self.mask = (1 << dram.bus_bits) - 1
        self.banks = [_Bank() for _ in range(dram.banks)]
        self.mem: dict[tuple[int, int, int], int] = {}
        self.lost: set[int] = set()
        self.cycle = -1
        self.first_command_at: int | None = None
        self.init_precharged = False
        self.init_refreshes = 0
        self.burst_length: int | None = None  # from the mode register
        self.cas_latency: int | None = None
        self.last_act = NEVER
        self.last_ref = NEVER
        self.last_mode = NEVER
        self.burst_end = NEVER  # first cycle after the current burst's last column
        self.reads: dict[int, int] = {}  # cycle -> word the chip drives at that edge
        self.writes: dict[int, tuple[int, int, int]] = {}  # cycle -> location written
        self.counts = Counts()

    # -- helpers ---------------------------------------------------------------------

    def _fail(self, rule: str, command: str, *, fatal: bool = False) -> None:
        """Raise the violation; with ``record``, note it and go on unless it is ``fatal``
        (the command cannot be carried out at all)."""
        exc = SdramViolation(rule, self.cycle, command)
        if fatal or not self.record:
            raise exc
        self.violations.append(exc)

    def _since(self, then: int, need: int, rule: str, what: str, command: str) -> None:
        gap = self.cycle - then
        if gap < need:
            self._fail(f"{rule}: {gap} cycles after {what}, needs {need}", command)

    @property
    def initialised(self) -> bool:
        return self.burst_length is not None

    def _columns(self, col: int) -> list[int]:
        """A sequential burst's columns from ``col`` (wrapping within the burst)."""
        bl = self.burst_length or 1
        base = col & ~(bl - 1)
        return [base | ((col + i) & (bl - 1)) for i in range(bl)]

    # -- the clock edge --------------------------------------------------------------

    def step(
        self,
        *,
        cke: int,
        cs_n: int,
        ras_n: int,
        cas_n: int,
        we_n: int,
        ba: int,
        a: int,
        dqm: int,
        dq_o: int,
        dq_oe: int,
    ) -> int | None:
        """One rising edge with these pin values; returns the word the chip drives, if any."""
        self.cycle += 1
        self.counts.cycles += 1
        n = self.cycle
        code = 0b1111 if cs_n else (cs_n << 3 | ras_n << 2 | cas_n << 1 | we_n)
        name = COMMANDS.get(code, "INHIBIT")
        if name not in ("NOP", "INHIBIT"):
            self.counts.commands[name] = self.counts.commands.get(name, 0) + 1
        label = f"{name} bank {ba} A={a:#x}" if name not in ("NOP", "INHIBIT") else name
        if not cke:
            if self.first_command_at is not None:
                self._fail("CKE low: power-down and self refresh are not modelled", label)
            return None
        self._check_refresh(label)
        drive = self.reads.pop(n, None)
        if drive is not None and dq_oe:
            self._fail("DQ contention: the controller drives DQ during read data", label)
        if name not in ("NOP", "INHIBIT"):
            self._command(name, ba, a, label)
        if n in self.writes:  # a WRITE takes its first word at its own edge
            self._write_data(self.writes.pop(n), dqm, dq_o, dq_oe, label)
        return drive

    def _check_refresh(self, label: str) -> None:
        if not self.initialised or self.lost:
            return
        if self.cycle - self.last_ref > self.t.refi:
            self.lost = set(range(len(self.banks)))
            self._fail(
                f"tREFI: no AUTO REFRESH for {self.cycle - self.last_ref} cycles (at most "
                f"{self.t.refi}): the data of banks 0-{len(self.banks) - 1} is lost",
                label,
            )

    def _write_data(
        self, loc: tuple[int, int, int], dqm: int, dq: int, oe: int, label: str
    ) -> None:
        if not oe:
            self._fail("write data: DQ not driven (dq_oe low) in a write burst", label)
        old = self.mem.get(loc, power_up_word(*loc))
        keep = 0
        for byte in range(self.dram.bus_bits // 8):
            if dqm >> byte & 1:
                keep |= 0xFF << (8 * byte)
        self.mem[loc] = (old & keep) | (dq & self.mask & ~keep)

    # -- commands --------------------------------------------------------------------

    def _command(self, name: str, ba: int, a: int, label: str) -> None:
        t, n = self.t, self.cycle
        if self.first_command_at is None:
            self.first_command_at = n
            if n < t.init:
                self._fail(f"tINIT: first command at cycle {n}, needs {t.init} of NOPs", label)
        self._since(self.last_ref, t.rfc, "tRFC", "AUTO REFRESH", label)
        self._since(self.last_mode, t.mrd, "tMRD", "LOAD MODE REGISTER", label)
        if ba >= len(self.banks):
            self._fail(f"bank {ba} does not exist", label, fatal=True)
        handler = {
            "ACTIVE": self._activate,
            "READ": self._read_write,
            "WRITE": self._read_write,
            "PRECHARGE": self._precharge,
            "AUTO REFRESH": self._refresh,
            "LOAD MODE REGISTER": self._mode,
        }.get(name)
        if handler is None:
            self._fail(f"{name} is not modelled", label, fatal=True)
        handler(name, ba, a, label)

    def _all_closed(self, label: str) -> None:
        for i, b in enumerate(self.banks):
            if b.row is not None:
                self._fail(f"bank {i} has row {b.row} open (all banks must be precharged)", label)
            self._since(b.pre_at, self.t.rp, "tRP", f"PRECHARGE of bank {i}", label)

    def _activate(self, name: str, ba: int, a: int, label: str) -> None:
        b = self.banks[ba]
        if not self.initialised:
            self._fail(
                "initialisation incomplete (PRECHARGE ALL, 2 AUTO REFRESH, LMR)", label, fatal=True
            )
        if b.row is not None:
            self._fail(f"bank {ba} already has row {b.row} open", label)
        if a >= self.rows:
            self._fail(f"row {a} out of range ({self.rows} rows)", label)
        self._since(b.pre_at, self.t.rp, "tRP", f"PRECHARGE of bank {ba}", label)
        self._since(b.act_at, self.t.rc, "tRC", f"ACTIVE of bank {ba}", label)
        self._since(self.last_act, self.t.rrd, "tRRD", "the last ACTIVE", label)
        b.row, b.act_at = a, self.cycle
        self.last_act = self.cycle

    def _read_write(self, name: str, ba: int, a: int, label: str) -> None:
        b, n = self.banks[ba], self.cycle
        if not self.initialised:
            self._fail(
                "initialisation incomplete (PRECHARGE ALL, 2 AUTO REFRESH, LMR)", label, fatal=True
            )
        if b.row is None:
            self._fail(f"bank {ba} has no open row", label, fatal=True)
        if a >> 10 & 1:
            self._fail("auto-precharge (A10 high) is not modelled", label)
        col = a & ((1 << 10) - 1)
        if col >= self.columns:
            self._fail(f"column {col} out of range ({self.columns} columns)", label)
        self._since(b.act_at, self.t.rcd, "tRCD", f"ACTIVE of bank {ba}", label)
        if n < self.burst_end:
            self._fail("burst interrupted before its last column (not modelled)", label)
        assert self.burst_length is not None and self.cas_latency is not None
        bl, cl = self.burst_length, self.cas_latency
        cols = self._columns(col)
        if name == "READ":
            if ba in self.lost:
                self._fail(f"read of bank {ba}, whose data was lost (refresh late)", label)
            for i, c in enumerate(cols):
                self.reads[n + cl + i] = self.mem.get((ba, b.row, c), power_up_word(ba, b.row, c))
            b.read_at = n
        else:
            last_read = max((k for k in self.reads), default=NEVER)
            if last_read >= n:
                self._fail(
                    f"DQ contention: write data from cycle {n} while read data is out "
                    f"until cycle {last_read}",
                    label,
                )
            for i, c in enumerate(cols):
                self.writes[n + i] = (ba, b.row, c)
            b.write_at = n
        self.burst_end = n + bl

    def _precharge(self, name: str, ba: int, a: int, label: str) -> None:
        which = range(len(self.banks)) if a >> 10 & 1 else [ba]
        bl = self.burst_length or 1
        for i in which:
            b = self.banks[i]
            if b.row is None:
                continue  # a precharge of an idle bank is a NOP for it
            self._since(b.act_at, self.t.ras, "tRAS", f"ACTIVE of bank {i}", label)
            self._since(b.read_at, bl, "read burst", f"READ of bank {i} (cut short)", label)
            # tWR (tDPL) counts from the last word written.
            self._since(
                b.write_at + bl - 1, self.t.wr, "tWR", f"last write data to bank {i}", label
            )
            b.row, b.pre_at = None, self.cycle
        if not self.initialised and a >> 10 & 1:
            self.init_precharged = True

    def _refresh(self, name: str, ba: int, a: int, label: str) -> None:
        self._all_closed(label)
        for i, b in enumerate(self.banks):
            self._since(b.act_at, self.t.rc, "tRC", f"ACTIVE of bank {i}", label)
        if not self.initialised:
            if not self.init_precharged:
                self._fail("initialisation: AUTO REFRESH before PRECHARGE ALL", label)
            self.init_refreshes += 1
        self.last_ref = self.cycle

    def _mode(self, name: str, ba: int, a: int, label: str) -> None:
        self._all_closed(label)
        if not self.initialised and self.init_refreshes < 2:
            self._fail(
                f"initialisation: LOAD MODE REGISTER after {self.init_refreshes} AUTO "
                "REFRESH, needs 2",
                label,
            )
        code, interleaved, cl = a & 7, a >> 3 & 1, a >> 4 & 7
        if code not in _BURSTS:
            self._fail(f"burst length code {code} (full page) is not modelled", label, fatal=True)
        if interleaved or a >> 7 & 3 or a >> 9 & 1:
            self._fail("only sequential, programmed-length bursts are modelled", label)
        if cl not in (2, 3) or cl < self.dram.cas_latency:
            self._fail(
                f"CAS latency {cl}: the part needs {self.dram.cas_latency} or more at "
                f"{self.dram.clock_mhz} MHz (2 or 3)",
                label,
            )
        self.burst_length, self.cas_latency = _BURSTS[code], cl
        self.last_mode = self.cycle

    # -- inspection ------------------------------------------------------------------

    def word(self, bank: int, row: int, col: int) -> int:
        """The stored word (what a READ would return)."""
        return self.mem.get((bank, row, col), power_up_word(bank, row, col))
