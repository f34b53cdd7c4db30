"""OperandBuffer: an accelerator's operand memory, in banks, with a pipelined read.

A deep buffer takes block RAMs from all over the die. Left to itself Yosys maps
8192 words as four 2048-word blocks per bit slice and selects among them with a
multiplexer behind the blocks' outputs, so a word's path runs from a block's slow
clock-to-out (5.8 ns) across the die through that multiplexer into the operand FIFO
(the critical path of a 6x6 fx16 build with 8192-word buffers on ULX3S 85F).
Here the banks are explicit, each bank's read data is registered beside its
blocks, and the bank is chosen among registers:

    r_addr --> [bank address] --> [bank memories] --> [bank registers] --> [select] --> r_data

Each bank also has its own address and write registers, so no address net reaches
every block of the buffer. Read latency :data:`READ_LATENCY` cycles, one read per
cycle. A write is seen by reads issued after its cycle (as in a block RAM, a read
in the same cycle gets the old word).
"""

from __future__ import annotations

from amaranth import Const, Module, Shape, Signal, Value
from amaranth.hdl import ShapeCastable
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .pipeline import delay

#: Words per bank: one ECP5 DP16KD holds 2048 x 9 bits, so a bank's bit slice is one
#: block deep and needs no multiplexer of its own.
BANK_DEPTH = 2048
#: Cycles from ``r_addr`` to ``r_data``: the bank's address register, the block read,
#: the bank register, the selection.
READ_LATENCY = 4


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
        multi = len(depths) > 1  # (no zero-width bank numbers with one bank: lint-clean)
        low = (BANK_DEPTH - 1).bit_length() if multi else len(self.r_addr)
        width = Shape.cast(self.shape).width
        r_bank, w_bank = self.r_addr[low:], self.w_addr[low:]

        def is_bank(bank: Value, i: int) -> Value:
            return bank == i if multi else Const(1)

        banked = []
        for i, d in enumerate(depths):
            mem = Memory(shape=self.shape, depth=d, init=[])
            m.submodules[f"bank{i}"] = mem
            wp, rp = mem.write_port(), mem.read_port(domain="sync")
            # Each bank registers its own address and write: the registers load only for
            # their bank, so Yosys keeps them apart and each drives its own blocks, not
            # all of the buffer's blocks across the die. A bank not read keeps reading its
            # old address, and that word is not selected. Data registers have no reset.
            r_addr = Signal(low, name=f"bank{i}_raddr", reset_less=True)
            w_addr = Signal(low, name=f"bank{i}_waddr", reset_less=True)
            w_data = Signal(width, name=f"bank{i}_wdata", reset_less=True)
            w_en = Signal(name=f"bank{i}_wen")
            m.d.sync += w_en.eq(self.w_en & is_bank(w_bank, i))
            with m.If(is_bank(r_bank, i)):
                m.d.sync += r_addr.eq(self.r_addr[:low])
            with m.If(self.w_en & is_bank(w_bank, i)):
                m.d.sync += [w_addr.eq(self.w_addr[:low]), w_data.eq(self.w_data)]
            m.d.comb += [wp.addr.eq(w_addr), wp.data.eq(w_data), wp.en.eq(w_en), rp.addr.eq(r_addr)]
            reg = Signal(width, name=f"bank{i}_data", reset_less=True)
            m.d.sync += reg.eq(rp.data)
            banked.append(reg)
        out = Signal(width, reset_less=True)
        if multi:
            # The bank of the word being read, through the address, block and bank registers.
            with m.Switch(delay(m, r_bank, 3, "sel")):
                for i, reg in enumerate(banked):
                    with m.Case(i):
                        m.d.sync += out.eq(reg)
        else:
            m.d.sync += out.eq(banked[0])
        m.d.comb += self.r_data.eq(out)
        return m
