"""Write statistics as the model's :func:`~barista_hw.device.machine.written_stats` takes
them: the peak magnitude of the elements written and how many sit on the format's rails.

:func:`watch` adds registers that follow a stream of words of signed elements: cleared by
``clear``, updated from the lanes ``lanes_on`` marks in a cycle ``enable`` is high.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, Value

__all__ = ["PEAK_BITS", "watch"]

PEAK_BITS = 32  # the statistics' counters (vector.STATS_LAYOUT's)


def watch(
    m: Module,
    lanes: list[Value],
    lanes_on: Value,
    *,
    enable: Value,
    clear: Value,
    name: str,
) -> tuple[Signal, Signal]:
    """Registers ``(peak, rails)`` over the signed ``lanes`` (all of one width) written in
    cycles ``enable`` is high, lane ``j`` counted while bit ``j`` of ``lanes_on`` is set;
    ``clear`` starts them again (the statistics of one instruction)."""
    peak = Signal(PEAK_BITS, name=f"{name}_peak")
    rails = Signal(PEAK_BITS, name=f"{name}_rails")
    new_peak, new_rails = peak, rails
    for j, v in enumerate(lanes):
        bits = len(v)
        on = lanes_on[j]
        mag = Signal(bits + 1, name=f"{name}_mag{j}")
        m.d.comb += mag.eq(Mux(v < 0, -v, v))
        top = (v == -(1 << (bits - 1))) | (v == (1 << (bits - 1)) - 1)
        new_peak = Mux(on & (mag > new_peak), mag, new_peak)
        new_rails = new_rails + (on & top)
    with m.If(clear):
        m.d.sync += [peak.eq(0), rails.eq(0)]
    with m.Elif(enable):
        m.d.sync += [peak.eq(new_peak), rails.eq(new_rails)]
    return peak, rails
