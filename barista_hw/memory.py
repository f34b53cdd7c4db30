"""Memories with one write and one read port whose read-during-write word is never used.

Amaranth's synchronous read ports keep the old word when the word read is written
in the same cycle. A design that never uses that word says so with
:func:`collision_free_memory`, which marks the memory with Yosys's own attribute
(:data:`NO_COLLISION`). The board flow then runs :data:`YOSYS_NO_COLLISION`, so the
block RAM's read port may return anything on a collision and Yosys builds no bypass
logic behind it. Simulation gets the same rule from
:func:`barista_hw.rtl.to_verilog` with ``undefined_collisions``: the read returns
``x`` then, so a simulation that stays bit-exact shows that no such word is used.
"""

from __future__ import annotations

from amaranth.hdl import ShapeCastable
from amaranth.lib.memory import Memory

#: Memory attribute (Yosys's name for it): the word a read port returns in the cycle a
#: write port changes it is never used, so it may be anything.
NO_COLLISION = {"no_rw_check": 1}
#: Yosys command, after memory collection and before RAM mapping, that lets such
#: memories' read ports return an undefined word on a collision. Yosys applies
#: ``no_rw_check`` only to read ports it builds from fabric registers; Amaranth's
#: ports are synchronous already, so without this Yosys keeps the old-word rule with
#: a write-data register and a bypass multiplexer behind every block RAM output bit
#: (85 flip-flops and 60 LUT4 more for 2048 x 36 bits, yosys 0.70), and the block's
#: slow clock-to-out must reach wherever that multiplexer is placed (the critical path
#: of a 6x6 build on ULX3S 85F: 5.8 ns, then 4.6 ns of routing across the die). The
#: mask has one bit per (read, write) port pair: these memories have one of each, and
#: Yosys rejects the mask of any other.
YOSYS_NO_COLLISION = "setparam -set RD_COLLISION_X_MASK 1'1 t:$mem_v2 a:no_rw_check %i"


def collision_free_memory(shape: ShapeCastable, depth: int) -> Memory:
    """A memory for one write and one read port whose read-during-write word is unused."""
    return Memory(shape=shape, depth=depth, init=[], attrs=NO_COLLISION)
