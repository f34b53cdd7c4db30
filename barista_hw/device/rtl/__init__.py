"""The device's RTL (Amaranth 0.5): memory port, scratchpads, DMA engine, GEMM unit,
vector unit, sequencer; the GEMM path (DMA + GEMM unit) as a proof top.

Each unit is a :class:`amaranth.lib.wiring.Component` whose streams are
:mod:`amaranth.lib.stream` ports; the device model (:mod:`barista_hw.device`) defines
what each computes, and the cocotb suites under ``tests/barista_hw/device/rtl`` prove
it bit for bit.
"""
