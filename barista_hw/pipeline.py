"""Pipeline registers: fixed delay lines, and replicated registers for wide fan-out.

A control value that reaches logic all over the die (the requantiser's shift, a
buffer's read address, the result bank's drain) is a long, slow net when one
register drives it. :func:`replicate` gives each group of consumers its own copy.
Synthesis merges registers with the same input unless told not to, so every copy's
name carries :data:`REPLICA`, and the board flow marks such registers ``keep``
(:data:`YOSYS_KEEP_REPLICAS`); simulation is unaffected. Registers that are equal by
construction but serve consumers far apart carry it too (each PE's valid/last flags,
equal along an anti-diagonal of the array).
"""

from __future__ import annotations

from amaranth import Module, Signal, Value

#: Part of the name of every register that synthesis must not merge with its equals.
REPLICA = "__rep"
#: Yosys commands, run after reading the design, that keep replicated registers apart
#: (``keep`` on the register cells: opt_merge then leaves them, checked with yosys 0.70).
#: ``%a`` follows aliases: Amaranth may name a register's output wire after a submodule
#: port it drives, and the copy's own name is then only an alias of that wire.
YOSYS_KEEP_REPLICAS = f"setattr -set keep 1 w:*{REPLICA}* %a %ci1:+$dff[Q] t:$dff %i"


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


def replicate(
    m: Module, value: Value, copies: int, name: str, enable: Value | None = None
) -> list[Signal]:
    """``copies`` registers each loading ``value`` (when ``enable``, default always; no reset).

    Each copy is meant to drive one group of consumers, so that the placer can put
    it beside them; the copies survive synthesis as separate registers.
    """
    regs = []
    for i in range(copies):
        reg = Signal.like(value, name=f"{name}{REPLICA}{i}", reset_less=True)
        if enable is None:
            m.d.sync += reg.eq(value)
        else:
            with m.If(enable):
                m.d.sync += reg.eq(value)
        regs.append(reg)
    return regs
