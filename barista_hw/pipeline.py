"""Pipeline registers: one helper for every fixed delay line in the RTL."""

from __future__ import annotations

from amaranth import Module, Signal, Value


def delay(m: Module, value: Value, cycles: int, name: str, data: bool = False) -> Value:
    """``value`` delayed by ``cycles`` registers (0: the value itself).

    ``data``: the registers have no reset (their value matters only when a flag that
    travels beside them says so), which keeps them off the reset net.
    """
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i}", reset_less=data)
        m.d.sync += reg.eq(value)
        value = reg
    return value
