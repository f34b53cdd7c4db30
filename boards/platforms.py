"""Board targets: amaranth-boards platforms tied to :mod:`barista_hw.targets`, and the board top.

Each :class:`BoardSpec` names the amaranth-boards platform, its FPGA family, the
board clock the PLL starts from, the UART resource of its USB-UART bridge and the
synthesis options the family needs (iCE40: ``-dsp`` so multipliers become SB_MAC16).
Its resource budget and default clock are those of the target of the same name in
:data:`barista_hw.targets.TARGETS`.

:class:`BoardTop` is what is built: the ``sync`` domain from :class:`~boards.clocks.PllDomain`,
a :class:`~boards.link.LinkedAccelerator` on the UART pins, LED 0 lit while the
accelerator or the link is busy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.lib import io

from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig
from barista_hw.targets import Target, get_target

from .clocks import PllDomain
from .floorplan import ECP5_85F, DspGrid
from .link import LinkedAccelerator

DEFAULT_BAUD = 1_000_000
DEFAULT_RESULT_DEPTH = 256


@dataclass(frozen=True)
class BoardSpec:
    """One buildable board."""

    name: str  # also the barista_hw target name
    platform: str  # "module:Class" in amaranth_boards
    family: str  # "ecp5" or "ice40"
    clk: str  # board clock resource
    clk_mhz: float
    synth_opts: str = ""
    pnr_opts: str = ""  # extra nextpnr options
    bitstream: str = "top.bit"
    # The device's multiplier sites, when known: the board flow then pins each PE's
    # multiplier (see boards.floorplan).
    dsp_grid: DspGrid | None = None
    # With a grid, pass b down the array columns on the DSP shift chain. Off by
    # default: on LeNet's 10x15 (router1, asked 75 MHz) it saved 2,000 flip-flops but
    # reached the same 101.4 MHz, and a build asked 100 MHz with it did not finish
    # routing (README, "Board builds today").
    b_chain: bool = False

    @property
    def target(self) -> Target:
        return get_target(self.name)

    def make_platform(self) -> object:
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


def _ulx3s(size: str, dsp_grid: DspGrid | None = None) -> BoardSpec:
    """ULX3S (ECP5, 25 MHz oscillator). nextpnr's default router (router1): it routes
    LeNet's 10x15 accelerator in about 20 minutes at 101 MHz, where router2 stalled on
    the congestion beside the DSP rows or, with the DSP b chain, routed at 57 MHz."""
    return BoardSpec(
        f"ulx3s-{size}",
        f"amaranth_boards.ulx3s:ULX3S_{size.upper()}_Platform",
        "ecp5",
        "clk25",
        25.0,
        dsp_grid=dsp_grid,
    )


BOARDS: dict[str, BoardSpec] = {
    b.name: b
    for b in (
        _ulx3s("85f", ECP5_85F),
        _ulx3s("45f"),
        _ulx3s("25f"),
        BoardSpec(
            "icebreaker",
            "amaranth_boards.icebreaker:ICEBreakerPlatform",
            "ice40",
            "clk12",
            12.0,
            synth_opts="-dsp",
            bitstream="top.bin",
        ),
    )
}


def get_board(name: str) -> BoardSpec:
    """The board called ``name``, or an error listing the known ones."""
    key = name.strip().lower()
    if key not in BOARDS:
        raise InputError(f"unknown board {name!r} (use {', '.join(BOARDS)})")
    return BOARDS[key]


def uart_divisor(mhz: float, baud: int) -> int:
    """Clock cycles per UART bit; an error when the rate is off by more than 2%."""
    if baud <= 0:
        raise InputError(f"baud rate {baud} must be positive")
    div = round(mhz * 1e6 / baud)
    if div < 4 or abs(mhz * 1e6 / div - baud) > 0.02 * baud:
        raise InputError(f"{baud} baud cannot be made from {mhz:g} MHz (divisor {div})")
    return div


class BoardTop(Elaboratable):
    """Clock, UART pins and the linked accelerator (see the module docstring)."""

    def __init__(
        self,
        cfg: AcceleratorConfig,
        board: BoardSpec,
        *,
        mhz: float | None = None,
        baud: int = DEFAULT_BAUD,
        result_depth: int = DEFAULT_RESULT_DEPTH,
    ) -> None:
        self.cfg = cfg
        self.board = board
        self.clock = PllDomain(board.family, board.clk, board.clk_mhz, mhz or cfg.clock_mhz)
        self.baud = baud
        self.divisor = uart_divisor(self.clock.mhz, baud)
        self.result_depth = result_depth
        self.link = LinkedAccelerator(cfg, self.divisor, result_depth)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.clock = self.clock
        m.submodules.link = link = self.link
        uart = platform.request("uart", 0, dir="-")  # type: ignore[attr-defined]
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        led = platform.request("led", 0, dir="-")  # type: ignore[attr-defined]
        m.submodules.led_buf = led_buf = io.Buffer("o", led)
        m.d.comb += [link.rx.eq(rx.i), tx.o.eq(link.tx), led_buf.o.eq(~link.idle)]
        return m
