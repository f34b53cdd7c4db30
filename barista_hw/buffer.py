"""OperandBuffer: an accelerator's operand memory, in banks, with a pipelined read.

A deep buffer takes block RAMs from all over the die. Left to itself Yosys maps
8192 words as four 2048-word blocks per bit slice and selects among them with a
multiplexer behind the blocks' outputs, so a word's path runs from a block's slow
clock-to-out (5.8 ns) across the die through that multiplexer into the operand FIFO
(the critical path of a 6x6 fx16 build with 8192-word buffers on ULX3S 85F).
Here the banks are explicit, each bank's read data is registered beside its
blocks, and the bank is chosen among registers:

    r_addr --> [bank memories] --> [bank registers] --> [select] --> r_data

Read latency :data:`READ_LATENCY` cycles, one read per cycle. A write is seen by
reads issued after its cycle (as in a block RAM, a read in the same cycle gets the
old word).
"""

from __future__ import annotations

from amaranth import Module, Shape, Signal
from amaranth.hdl import ShapeCastable
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

#: Words per bank: one ECP5 DP16KD holds 2048 x 9 bits, so a bank's bit slice is one
#: block deep and needs no multiplexer of its own.
BANK_DEPTH = 2048
#: Cycles from ``r_addr`` to ``r_data``: the block read, the bank register, the selection.
READ_LATENCY = 3


def bank_depths(depth: int) -> list[int]:
    """Words in each bank of a ``depth``-word buffer (all :data:`BANK_DEPTH` but the last)."""
    full, rest = divmod(depth, BANK_DEPTH)
    return [BANK_DEPTH] * full + ([rest] if rest else [])


class OperandBuffer(wiring.Component):
    """``depth`` words of ``shape``: one write port, one pipelined read port."""

    def __init__(self, shape: ShapeCastable, depth: int) -> None:
        self.shape, self.depth = shape, depth
        addr_bits = max(1, (depth - 1).bit_length())
        super().__init__(
            {
                "w_addr": In(addr_bits),
                "w_data": In(shape),
                "w_en": In(1),
                "r_addr": In(addr_bits),
                "r_data": Out(shape),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        depths = bank_depths(self.depth)
        low = (BANK_DEPTH - 1).bit_length() if len(depths) > 1 else len(self.r_addr)
        width = Shape.cast(self.shape).width
        sel = Signal(range(len(depths)))  # the bank of the word being read, then registered
        held = Signal.like(sel)
        banked = []
        for i, d in enumerate(depths):
            mem = Memory(shape=self.shape, depth=d, init=[])
            m.submodules[f"bank{i}"] = mem
            wp, rp = mem.write_port(), mem.read_port(domain="sync")
            m.d.comb += [
                wp.addr.eq(self.w_addr[:low]),
                wp.data.eq(self.w_data),
                wp.en.eq(self.w_en & (self.w_addr[low:] == i)),
                rp.addr.eq(self.r_addr[:low]),
            ]
            # Data registers have no reset: a read's word is used only when it was asked for.
            reg = Signal(width, name=f"bank{i}_data", reset_less=True)
            m.d.sync += reg.eq(rp.data)
            banked.append(reg)
        out = Signal(width, reset_less=True)
        if len(depths) == 1:
            m.d.sync += out.eq(banked[0])
        else:
            m.d.sync += [sel.eq(self.r_addr[low:]), held.eq(sel)]
            with m.Switch(held):
                for i, reg in enumerate(banked):
                    with m.Case(i):
                        m.d.sync += out.eq(reg)
        m.d.comb += self.r_data.eq(out)
        return m
