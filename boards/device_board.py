"""The ULX3S board top of the device accelerator: PLL, UART, host link, device, SDRAM.

:class:`DeviceBoardTop` is what ``barista build --device`` builds:

* the ``sync`` domain from :class:`~boards.clocks.PllDomain` (the board's 25 MHz to the
  design's clock, default :data:`DEVICE_MHZ`); everything, the SDRAM controller included,
  runs on it (the time model's separate 100 MHz SDRAM domain behind clock-crossing FIFOs
  is not built yet);
* :class:`~boards.device_link.LinkedDevice` on the UART pins: the host link of
  :mod:`boards.device_protocol` and the :class:`~barista_hw.device.rtl.device.Device`,
  sharing the memory port through a round-robin arbiter (the link's DRAM reads and
  writes are a master beside the device's, so the host can load weights, the program
  image and a dataset while nothing runs, and read results back);
* :class:`~barista_hw.device.rtl.sdram.SdramPort` on that port, its timings computed at
  the design's clock, on amaranth-boards' ``sdram`` resource. The controller's pins map
  to the resource's (``clk_en`` <- ``cke``; ``cs``, ``ras``, ``cas``, ``we`` are
  active-low ``PinsN``, so they take the inverted ``*_n``; ``dqm`` is the pin level;
  ``dq`` a tristate buffer of ``dq_o``/``dq_oe``/``dq_i``);
* LED 0 lit while the device runs or the link is busy, LED 1 once the SDRAM is
  initialised.

**SDRAM clock.** The chip's clock pin (F19) is driven by an ``ODDRX1F`` (Amaranth's
``io.DDRBuffer``) outputting 1 then 0 each cycle: a copy of ``sync`` delayed only by the
output buffer, in phase with the controller. This keeps the controller's read capture
as the chip model checks it: the command is sampled at the chip's next edge and word 0
is registered into ``dq_i`` CAS latency edges later. At 50 MHz the read window has about
T - tAC (6 ns) - the pad delays of margin; the hold time of the command pins rests on
the clock's output delay being no longer than the command's, which a hardware run must
confirm (the knob is a phase-shifted PLL output for the clock pin). Not yet tried on
a board.
"""

from __future__ import annotations

from dataclasses import replace

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from barista_hw.device.memory import DeviceConfig, DramConfig
from barista_hw.device.rtl.device import Device
from barista_hw.device.rtl.sdram import SdramPort, pins_signature

from . import device_protocol as D
from .clocks import PllDomain
from .device_link import LinkedDevice
from .platforms import BoardSpec, uart_divisor
from .protocol import DEFAULT_BAUD

#: The device design's clock on the board (the DRAM's default clock, the decoder's and
#: the vector unit's timing as designed).
DEVICE_MHZ = 50.0


def make_device(config: DeviceConfig, tensors: int, registers: int) -> Device:
    """The device top as the board builds it (the simulators' sizes: window 64, depth 4)."""
    return Device(config, bus_bits=D.BUS_BITS, tensors=tensors, registers=registers)


def board_core(
    config: DeviceConfig,
    tensors: int,
    registers: int,
    geo: D.DeviceGeometry,
    divisor: int,
    dram: DramConfig,
) -> DeviceBoardCore:
    """The board's core for ``config`` (its decoder sized ``tensors`` / ``registers``)."""
    ident = D.ident_payload(config, tensors, registers, geo)
    device = make_device(config, tensors, registers)
    return DeviceBoardCore(LinkedDevice(device, geo, ident, divisor), dram)


class DeviceBoardCore(wiring.Component):
    """The board top without its platform: the linked device and the SDRAM controller
    (what the top instantiates and the simulation of the whole board runs).

    Ports: ``rx`` / ``tx`` (the UART lines), ``idle`` (:class:`LinkedDevice`'s),
    ``mem_ready`` (the SDRAM is initialised), ``pins`` (the controller's SDRAM pins,
    :func:`~barista_hw.device.rtl.sdram.pins_signature`).
    """

    def __init__(self, linked: LinkedDevice, dram: DramConfig) -> None:
        self.linked, self.dram = linked, dram
        super().__init__(
            {
                "rx": In(1, init=1),
                "tx": Out(1, init=1),
                "idle": Out(1),
                "mem_ready": Out(1),
                "pins": Out(pins_signature(dram)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.linked = linked = self.linked
        m.submodules.sdram = sdram = SdramPort(self.dram)
        for name in ("cmd", "w", "r"):  # the memory side of the port
            wiring.connect(m, getattr(linked.port, name), getattr(sdram, name))
        wiring.connect(m, sdram.pins, wiring.flipped(self.pins))
        m.d.comb += [
            linked.mem_ready.eq(sdram.ready),
            self.mem_ready.eq(sdram.ready),
            linked.rx.eq(self.rx),
            self.tx.eq(linked.tx),
            self.idle.eq(linked.idle),
        ]
        return m


class DeviceBoardTop(Elaboratable):
    """Clock, UART pins, the linked device and the SDRAM (see the module docstring)."""

    def __init__(
        self,
        config: DeviceConfig,
        board: BoardSpec,
        *,
        tensors: int,
        registers: int,
        mhz: float = DEVICE_MHZ,
        baud: int = DEFAULT_BAUD,
        geometry: D.DeviceGeometry | None = None,
    ) -> None:
        self.config, self.board = config, board
        self.tensors, self.registers = tensors, registers
        self.clock = PllDomain(board.family, board.clk, board.clk_mhz, mhz)
        self.baud = baud
        self.divisor = uart_divisor(self.clock.mhz, baud)
        self.geo = geometry or D.DeviceGeometry.of(config)
        self.dram = replace(config.dram, clock_mhz=self.clock.mhz)

    def core(self) -> DeviceBoardCore:
        """The linked device and the SDRAM controller of this top."""
        return board_core(
            self.config, self.tensors, self.registers, self.geo, self.divisor, self.dram
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.clock = self.clock
        m.submodules.core = core = self.core()
        req = platform.request  # type: ignore[attr-defined]
        uart = req("uart", 0, dir="-")
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        for i, value in enumerate((~core.idle, core.mem_ready)):
            m.submodules[f"led{i}"] = led = io.Buffer("o", req("led", i, dir="-"))
            m.d.comb += led.o.eq(value)
        sdram_pins(m, req("sdram", 0, dir="-"), core.pins)
        return m


def sdram_pins(m: Module, res: object, pins: object) -> None:
    """The controller's ``pins`` on the board's SDRAM resource ``res`` (module docstring)."""
    r, p = res, pins
    m.submodules.sdram_clk = clk = io.DDRBuffer("o", r.clk)  # type: ignore[attr-defined]
    m.d.comb += [clk.o[0].eq(1), clk.o[1].eq(0)]
    outs = {
        "clk_en": p.cke,  # type: ignore[attr-defined]
        "cs": ~p.cs_n,  # type: ignore[attr-defined]
        "ras": ~p.ras_n,  # type: ignore[attr-defined]
        "cas": ~p.cas_n,  # type: ignore[attr-defined]
        "we": ~p.we_n,  # type: ignore[attr-defined]
        "ba": p.ba,  # type: ignore[attr-defined]
        "a": p.a,  # type: ignore[attr-defined]
        "dqm": p.dqm,  # type: ignore[attr-defined]
    }
    for name, value in outs.items():
        m.submodules[f"sdram_{name}"] = buf = io.Buffer("o", getattr(r, name))
        m.d.comb += buf.o.eq(value)
    m.submodules.sdram_dq = dq = io.Buffer("io", r.dq)  # type: ignore[attr-defined]
    m.d.comb += [dq.o.eq(p.dq_o), dq.oe.eq(p.dq_oe), p.dq_i.eq(dq.i)]  # type: ignore[attr-defined]
