"""The device's memory port: a burst interface of our own, between the DMA and DRAM.

No maintained Amaranth SoC bus package is published, so the DMA engines, the DRAM
controller and the simulation models meet at this signature (seen from the master,
the DMA; the memory side is its :meth:`~amaranth.lib.wiring.Signature.flip`):

* ``cmd`` (out): a :class:`amaranth.lib.stream` of :func:`command_layout` records,
  ``addr`` (bus-word address), ``length`` (bus words, 1 to ``2**len_bits - 1``; 0 is
  not a command) and ``write``. A command moves ``length`` words at consecutive
  addresses from ``addr``.
* ``w`` (out): write data, one bus word a beat. The words of write commands follow on
  ``w`` in command order, ``length`` beats each; the master may present them before
  the memory has taken their command, and the memory takes them only for a write
  command it holds (so ``w`` never runs ahead of the commands on the memory side).
* ``r`` (in): read data, the words of the read commands in command order, ``length``
  beats each.

Every stream follows ``lib.stream``'s rules: a beat moves in a cycle where ``valid``
and ``ready`` are both high; ``valid`` never waits for ``ready``, and a payload stays
put while ``valid`` is high and ``ready`` low. Either side may stall any stream at
any time (backpressure both ways), and a memory may return a read's data any number
of cycles after its command (latency). Reads and writes are performed in command
order: a read issued after a write to the same address returns the written word.
"""

from __future__ import annotations

from amaranth import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

#: Default widths: 2**24 bus words (32 MiB of a 16-bit bus), bursts up to 255 words.
ADDR_BITS = 24
LEN_BITS = 8


def command_layout(addr_bits: int = ADDR_BITS, len_bits: int = LEN_BITS) -> data.StructLayout:
    """A ``cmd`` record: ``addr`` (bus words), ``length`` (bus words, >= 1), ``write``."""
    return data.StructLayout(
        {"addr": unsigned(addr_bits), "length": unsigned(len_bits), "write": unsigned(1)}
    )


def port_signature(
    data_bits: int, addr_bits: int = ADDR_BITS, len_bits: int = LEN_BITS
) -> wiring.Signature:
    """The memory port seen from its master (the module docstring is the contract)."""
    if min(data_bits, addr_bits, len_bits) < 1:
        raise ValueError(f"memory port widths {data_bits}, {addr_bits}, {len_bits} must be >= 1")
    return wiring.Signature(
        {
            "cmd": Out(stream.Signature(command_layout(addr_bits, len_bits))),
            "w": Out(stream.Signature(data_bits)),
            "r": In(stream.Signature(data_bits)),
        }
    )


def max_length(len_bits: int = LEN_BITS) -> int:
    """The longest burst a command of ``len_bits`` length bits can ask for."""
    return (1 << len_bits) - 1
