"""The device's RTL (Amaranth 0.5): memory port, scratchpads, DMA engine, vector unit.

Each unit is a :class:`amaranth.lib.wiring.Component` whose streams are
:mod:`amaranth.lib.stream` ports; the device model (:mod:`barista_hw.device`) defines
what each computes, and the cocotb suites under ``tests/barista_hw/device/rtl`` prove
it bit for bit.
"""
