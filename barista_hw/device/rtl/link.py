"""The link unit: ``HOST_IN`` / ``HOST_OUT`` as bus words between DRAM and the host's streams.

The link carries a tensor's values packed as in DRAM (``docs/device.md``), so a whole
tensor crosses as its DRAM bus words: a ``HOST_IN`` writes the words the host sends from
the tensor's first word (its byte address is on a burst boundary; the bits past its end
in the last word are padding, sent as zeros), a ``HOST_OUT`` reads them to the host.
:func:`command` pre-decodes an instruction; it refuses a region that does not start on
a bus word or (``HOST_IN``) is not the whole tensor, which the model writes whole.

Bursts of up to ``burst`` words through a FIFO of as many: a write command is issued once
its words wait in the FIFO and a read once the FIFO has room for its words, so a slow
host never holds the memory (the port serves commands in order).

Ports: ``cmd`` (in, :func:`command_layout`, taken while idle); ``port`` (memory port
master); ``host_in`` (in, bus words); ``host_out`` (out, bus words); ``busy`` (out).
"""

from __future__ import annotations

import math

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError

from ..isa import Instruction, Op, Program
from .port import ADDR_BITS, LEN_BITS, port_signature

__all__ = ["LinkUnit", "command", "command_layout"]

WORDS_BITS = 24


def command_layout() -> data.StructLayout:
    """``write`` (HOST_IN), ``addr`` (first bus word), ``words``."""
    return data.StructLayout(
        {"write": 1, "addr": unsigned(ADDR_BITS), "words": unsigned(WORDS_BITS)}
    )


def command(inst: Instruction, program: Program, bus_bits: int) -> dict:
    """The link command of ``HOST_IN`` / ``HOST_OUT`` ``inst`` (module docstring)."""
    if inst.op not in (Op.HOST_IN, Op.HOST_OUT):
        raise InputError(f"{inst.text()}: the link runs HOST_IN and HOST_OUT")
    t = program.tensors[inst["tensor"]]
    per_image = math.prod(t["shape"][1:]) * t["bits"]
    first = 8 * t["addr"] + inst["i0"] * per_image
    whole = inst["i0"] == 0 and inst["images"] == t["shape"][0]
    if first % bus_bits or (inst.op is Op.HOST_IN and not whole):
        raise InputError(f"{inst.text()}: the link moves whole tensors from a bus word")
    words = -(-inst["images"] * per_image // bus_bits)
    return {"write": int(inst.op is Op.HOST_IN), "addr": first // bus_bits, "words": words}


class LinkUnit(wiring.Component):
    """HOST_IN and HOST_OUT on the memory port (module docstring)."""

    def __init__(self, bus_bits: int = 16, *, burst: int = 16) -> None:
        self.bus_bits, self.burst = bus_bits, burst
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout())),
                "port": Out(port_signature(bus_bits, ADDR_BITS, LEN_BITS)),
                "host_in": In(stream.Signature(bus_bits)),
                "host_out": Out(stream.Signature(bus_bits)),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.buf = buf = fifo.SyncFIFO(width=self.bus_bits, depth=self.burst)
        write, addr = Signal(), Signal(ADDR_BITS)
        left = Signal(WORDS_BITS)  # words not yet asked of the memory
        host = Signal(WORDS_BITS)  # words still to cross the host's stream
        owe = Signal(range(self.burst + 1))  # words of the issued command still to move
        active = Signal()
        with m.If(self.cmd.valid & ~active):
            p = self.cmd.payload
            m.d.sync += [
                active.eq(1),
                write.eq(p.write),
                addr.eq(p.addr),
                left.eq(p.words),
                host.eq(p.words),
            ]
        m.d.comb += [self.cmd.ready.eq(~active), self.busy.eq(active)]
        n = Signal(range(self.burst + 1))
        m.d.comb += n.eq(Mux(left < self.burst, left, self.burst))
        # A write once its words wait; a read once the FIFO has room for them.
        ready = Mux(write, buf.level >= n, (self.burst - buf.level) >= n)
        pc = self.port.cmd
        m.d.comb += [
            pc.valid.eq(active & (left != 0) & (owe == 0) & ready),
            pc.payload.addr.eq(addr),
            pc.payload.length.eq(n),
            pc.payload.write.eq(write),
        ]
        with m.If(pc.valid & pc.ready):
            m.d.sync += [addr.eq(addr + n), left.eq(left - n), owe.eq(n)]

        w, r, hi, ho = self.port.w, self.port.r, self.host_in, self.host_out
        m.d.comb += [
            # HOST_IN: host -> FIFO -> memory; HOST_OUT: memory -> FIFO -> host.
            hi.ready.eq(active & write & (host != 0) & buf.w_rdy),
            r.ready.eq(active & ~write & buf.w_rdy),
            buf.w_en.eq(Mux(write, hi.valid & hi.ready, r.valid & r.ready)),
            buf.w_data.eq(Mux(write, hi.payload, r.payload)),
            w.valid.eq(active & write & (owe != 0) & buf.r_rdy),
            w.payload.eq(buf.r_data),
            ho.valid.eq(active & ~write & buf.r_rdy),
            ho.payload.eq(buf.r_data),
            buf.r_en.eq(Mux(write, w.valid & w.ready, ho.valid & ho.ready)),
        ]
        with m.If((w.valid & w.ready) | (r.valid & r.ready)):
            m.d.sync += owe.eq(owe - 1)
        moved = Mux(write, hi.valid & hi.ready, ho.valid & ho.ready)
        with m.If(moved):
            m.d.sync += host.eq(host - 1)
        # Done: every word asked for and moved both ways.
        with m.If(active & (left == 0) & (owe == 0) & (host == 0) & ~buf.r_rdy):
            m.d.sync += active.eq(0)
        return m
