"""OperandBuffer: an accelerator's operand memory, in banks, with a pipelined read.

A deep buffer takes block RAMs from all over the die. Left to itself Yosys maps
8192 words as four 2048-word blocks per bit slice and selects among them with a
multiplexer behind the blocks' outputs, so a word's path runs from a block's slow
clock-to-out (5.8 ns on ECP5) across the die through that multiplexer into the
operand FIFO, which limits the clock of a design with deep buffers.
Here the memory is split explicitly: into banks of :data:`BANK_DEPTH` words, and
each bank into groups of :data:`GROUP_BITS` bits. Each group has its own address
and write registers (replicated registers, see :mod:`barista_hw.pipeline`) and
registers its read word beside its blocks; the bank is chosen among registers:

    r_addr --> [group address] --> [group memory] --> [group register] --> [select] --> r_data

So no address net reaches more than one group's blocks. Read latency
:data:`READ_LATENCY` cycles, one read per cycle. A write is seen by reads issued
after its cycle. No user reads a word its writer is changing (the host writes a half
only when no command reads it), so that read is left undefined, on the board and in
our Verilog simulations (:mod:`barista_hw.memory`).
"""

from __future__ import annotations

from amaranth import Const, Module, Shape, Signal, Value
from amaranth.hdl import ShapeCastable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .memory import collision_free_memory
from .pipeline import delay, replicate

#: Words per bank: one ECP5 DP16KD holds 2048 x 9 bits, so a bank's bit slice is one
#: block deep and needs no multiplexer of its own.
BANK_DEPTH = 2048
#: Bits per group: a multiple of every block RAM width at these depths (ECP5 9 bits,
#: iCE40 up to 16), so splitting into groups costs no block; 16 DP16KD per group.
GROUP_BITS = 144
#: Cycles from ``r_addr`` to ``r_data``: the group's address register, the block read,
#: the group register, the selection.
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
        edges = [*range(0, width, GROUP_BITS), width]
        groups = list(zip(edges[:-1], edges[1:], strict=True))
        r_bank, w_bank = self.r_addr[low:], self.w_addr[low:]
        w_bits, r_bits = Value.cast(self.w_data), Value.cast(self.r_data)

        def is_bank(bank: Value, i: int) -> Value:
            return bank == i if multi else Const(1)

        # Per group, the registers of each bank.
        banked: list[list[Signal]] = [[] for _ in groups]
        for i, d in enumerate(depths):
            # A bank's address and write registers load only for that bank; a bank not
            # read keeps reading its old address, and that word is not selected.
            hit_r, hit_w = is_bank(r_bank, i), self.w_en & is_bank(w_bank, i)
            r_addrs = replicate(m, self.r_addr[:low], len(groups), f"b{i}_raddr", hit_r)
            w_addrs = replicate(m, self.w_addr[:low], len(groups), f"b{i}_waddr", hit_w)
            w_ens = replicate(m, hit_w, len(groups), f"b{i}_wen")
            for g, (lo, hi) in enumerate(groups):
                mem = collision_free_memory(hi - lo, d)
                m.submodules[f"bank{i}_group{g}"] = mem
                wp, rp = mem.write_port(), mem.read_port(domain="sync")
                w_data = Signal(hi - lo, name=f"b{i}_g{g}_wdata", reset_less=True)
                with m.If(hit_w):
                    m.d.sync += w_data.eq(w_bits[lo:hi])
                reg = Signal(hi - lo, name=f"b{i}_g{g}_data", reset_less=True)
                m.d.sync += reg.eq(rp.data)
                m.d.comb += [
                    wp.addr.eq(w_addrs[g]),
                    wp.data.eq(w_data),
                    wp.en.eq(w_ens[g]),
                    rp.addr.eq(r_addrs[g]),
                ]
                banked[g].append(reg)
        # The bank of the word being read, through the address, block and group
        # registers (the last stage once per group).
        sels = replicate(m, delay(m, r_bank, 2, "sel"), len(groups), "sel") if multi else []
        for g, (lo, hi) in enumerate(groups):
            out = Signal(hi - lo, name=f"g{g}_out", reset_less=True)
            if multi:
                with m.Switch(sels[g]):
                    for i, reg in enumerate(banked[g]):
                        with m.Case(i):
                            m.d.sync += out.eq(reg)
            else:
                m.d.sync += out.eq(banked[g][0])
            m.d.comb += r_bits[lo:hi].eq(out)
        return m
