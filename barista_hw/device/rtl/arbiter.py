"""A round-robin arbiter: several masters of the memory port (:mod:`.port`) on one memory.

Commands are granted one at a time, round robin from the master after the last one
granted (each master with a command waits at most ``n - 1`` others' commands); a command
offered downstream and not yet taken keeps its grant (the stream rules). Data follow the
port's order rules without buffering: the memory performs commands in order, so the words
of write commands are asked for in the order the writes were granted and the read data
return in the order the reads were granted. Two FIFOs of ``depth`` entries (master and
length) remember those orders and steer ``w`` and ``r``; a full FIFO holds the next grant.

Ports: ``m0`` .. ``m{n-1}`` (the memory side of a port each, ``In(port_signature)``);
``port`` (the master side, to the memory).
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .port import ADDR_BITS, LEN_BITS, port_signature

__all__ = ["PortArbiter"]


class PortArbiter(wiring.Component):
    """``n`` masters on one memory port (module docstring)."""

    def __init__(
        self,
        n: int,
        bus_bits: int,
        *,
        addr_bits: int = ADDR_BITS,
        len_bits: int = LEN_BITS,
        depth: int = 8,
    ) -> None:
        if n < 1 or depth < 1:
            raise ValueError(f"arbiter of {n} masters, order FIFOs of {depth}: both >= 1")
        self.n, self.depth, self.len_bits = n, depth, len_bits
        sig = port_signature(bus_bits, addr_bits, len_bits)
        ports = {f"m{i}": In(sig) for i in range(n)}
        super().__init__({**ports, "port": Out(sig)})

    def masters(self) -> list:
        return [getattr(self, f"m{i}") for i in range(self.n)]

    def elaborate(self, platform: object) -> Module:
        m = Module()
        ms, n, pc = self.masters(), self.n, self.port.cmd
        idx = max(1, (n - 1).bit_length())
        width = idx + self.len_bits
        m.submodules.wq = wq = fifo.SyncFIFO(width=width, depth=self.depth)
        m.submodules.rq = rq = fifo.SyncFIFO(width=width, depth=self.depth)

        # -- commands: the held grant, else round robin after the last granted master.
        last, held, hold = Signal(idx), Signal(idx), Signal()
        pick, sel = Signal(idx), Signal(idx)
        valid = _array([x.cmd.valid for x in ms], idx)
        with m.Switch(last):
            for lst in range(n):
                with m.Case(lst):
                    for k in reversed(range(1, n + 1)):  # highest priority assigned last
                        j = (lst + k) % n
                        with m.If(ms[j].cmd.valid):
                            m.d.comb += pick.eq(j)
            with m.Default():  # ``last`` never leaves [0, n); a case for every value
                m.d.comb += pick.eq(0)
        m.d.comb += sel.eq(Mux(hold, held, pick))
        room = wq.w_rdy & rq.w_rdy
        payloads = _array([x.cmd.payload.as_value() for x in ms], idx)
        m.d.comb += [pc.valid.eq(valid[sel] & room), pc.payload.eq(payloads[sel])]
        for i, x in enumerate(ms):
            m.d.comb += x.cmd.ready.eq((sel == i) & pc.ready & room)
        took = pc.valid & pc.ready
        entry = sel | (pc.payload.length << idx)
        m.d.comb += [
            wq.w_data.eq(entry),
            rq.w_data.eq(entry),
            wq.w_en.eq(took & pc.payload.write),
            rq.w_en.eq(took & ~pc.payload.write),
        ]
        m.d.sync += [hold.eq(pc.valid & ~pc.ready), held.eq(sel)]
        with m.If(took):
            m.d.sync += last.eq(sel)

        # -- data: the head of each order FIFO owns its stream for its length of words.
        self._steer(m, wq, ms, idx, write=True)
        self._steer(m, rq, ms, idx, write=False)
        return m

    def _steer(self, m: Module, q: fifo.SyncFIFO, ms: list, idx: int, *, write: bool) -> None:
        owner, length = q.r_data[:idx], q.r_data[idx:]
        count = Signal(self.len_bits, name="w_count" if write else "r_count")
        if write:
            up = self.port.w
            m.d.comb += [
                up.valid.eq(q.r_rdy & _array([x.w.valid for x in ms], idx)[owner]),
                up.payload.eq(_array([x.w.payload for x in ms], idx)[owner]),
            ]
            for i, x in enumerate(ms):
                m.d.comb += x.w.ready.eq(q.r_rdy & (owner == i) & up.ready)
            moved = up.valid & up.ready
        else:
            down = self.port.r
            m.d.comb += down.ready.eq(q.r_rdy & _array([x.r.ready for x in ms], idx)[owner])
            for i, x in enumerate(ms):
                m.d.comb += [
                    x.r.valid.eq(q.r_rdy & (owner == i) & down.valid),
                    x.r.payload.eq(down.payload),
                ]
            moved = down.valid & down.ready
        with m.If(moved):
            with m.If(count + 1 == length):
                m.d.sync += count.eq(0)
                m.d.comb += q.r_en.eq(1)
            with m.Else():
                m.d.sync += count.eq(count + 1)


def _array(values: list, idx: int) -> Array:
    """``values`` indexed by an ``idx``-bit master number, padded with zeros to every
    index (a case for each value: Verilator's CASEINCOMPLETE when ``n`` is no power of 2)."""
    return Array([*values, *[Const(0)] * ((1 << idx) - len(values))])
