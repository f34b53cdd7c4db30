"""Buildable boards, one per record of :data:`barista_hw.targets.TARGETS`, and the board top.

A :class:`BoardSpec` is a :class:`~barista_hw.targets.Target` (which names the
amaranth-boards platform, the FPGA family, the board clock the PLL starts from, the
synthesis options the family needs, e.g. iCE40's ``-dsp`` so that multipliers become
SB_MAC16, and the resource budget and default clock) plus what only the board flow
needs: the device's DSP sites for the floorplan (:data:`boards.floorplan.DSP_GRIDS`)
and whether ``b`` takes the DSP shift chain. :data:`BOARDS` has one per target.

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
from barista_hw.targets import LINK_RESULT_DEPTH, TARGETS, Target

from .clocks import PllDomain
from .floorplan import DSP_GRIDS, DspGrid
from .link import LinkedAccelerator
from .protocol import DEFAULT_BAUD


@dataclass(frozen=True)
class BoardSpec:
    """One buildable board: its target record, and the board flow's own choices."""

    target: Target
    # With a DSP grid, pass b down the array columns on the DSP shift chain. Off by
    # default: it saves flip-flops but did not raise Fmax, and made routing less
    # certain (docs/boards.md).
    b_chain: bool = False

    @property
    def name(self) -> str:
        """The target's name (also the board's)."""
        return self.target.name

    @property
    def platform(self) -> str:
        """The amaranth-boards platform class, ``"module:Class"``."""
        return self.target.platform

    @property
    def family(self) -> str:
        return self.target.family

    @property
    def clk(self) -> str:
        """The board clock resource."""
        return self.target.clk

    @property
    def clk_mhz(self) -> float:
        return self.target.clk_mhz

    @property
    def synth_opts(self) -> str:
        return self.target.synth_opts

    @property
    def pnr_opts(self) -> str:
        return self.target.pnr_opts

    @property
    def bitstream(self) -> str:
        return self.target.bitstream

    @property
    def dsp_grid(self) -> DspGrid | None:
        """The device's multiplier sites, when known: the board flow then pins each PE's
        multiplier (see :mod:`boards.floorplan`)."""
        return DSP_GRIDS.get(self.target.device)

    def make_platform(self) -> object:
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


#: One board per target, by name.
BOARDS: dict[str, BoardSpec] = {name: BoardSpec(t) for name, t in TARGETS.items()}


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
        result_depth: int = LINK_RESULT_DEPTH,
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
