"""8N1 UART receiver and transmitter, ``divisor`` clock cycles per bit.

The receiver synchronises the line, waits half a bit after a falling edge, checks the
start bit, samples eight data bits (LSB first) and the stop bit in their middles,
and emits one ``o`` beat per good byte (``o.ready`` is ignored: a UART cannot wait).
A low stop bit (framing error, a break) drops the byte and waits for the line to
return high. The transmitter sends one ``i`` byte at a time.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

MIN_DIVISOR = 4


def _check(divisor: int) -> None:
    if divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor {divisor} is below {MIN_DIVISOR} clock cycles per bit")


class UartRx(wiring.Component):
    """Serial ``rx`` line in, bytes out (see the module docstring)."""

    def __init__(self, divisor: int) -> None:
        _check(divisor)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        d = self.divisor
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(d))
        bits = Signal(range(8))
        shreg = Signal(8)
        m.d.comb += self.o.payload.eq(shreg)
        m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(d - 1), bits.eq(0)]
                    with m.If(line):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(d - 1), shreg.eq(Cat(shreg[1:], line))]
                    m.d.sync += bits.eq(bits + 1)
                    with m.If(bits == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += self.o.valid.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Bytes in, serial ``tx`` line out (see the module docstring)."""

    def __init__(self, divisor: int) -> None:
        _check(divisor)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        d = self.divisor
        timer = Signal(range(d))
        left = Signal(range(11))
        shreg = Signal(10, init=0x3FF)
        m.d.comb += self.tx.eq(shreg[0])
        m.d.comb += self.i.ready.eq(left == 0)
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [
                    shreg.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                    left.eq(10),
                    timer.eq(d - 1),
                ]
        with m.Elif(timer == 0):
            m.d.sync += [
                shreg.eq(Cat(shreg[1:], Const(1, 1))),
                left.eq(left - 1),
                timer.eq(d - 1),
            ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
