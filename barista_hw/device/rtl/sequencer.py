"""The device's sequencer in Amaranth: it takes the program's records in order, queues each
for its unit, and issues it once the instructions it waits for are done.

Program source: a ``prog`` stream of whole 32-byte records, not the memory port. A fetch
through :mod:`~barista_hw.device.rtl.port` is a reader that packs bus words into records
(16 words a record on the 16-bit SDRAM bus, i.e. 16 bus cycles an instruction, shared
with the DMA); it is a separate block that feeds this stream, so the sequencer's
ordering, which this step proves, does not depend on it.

Ports (``lib.stream``, Amaranth's rules: ``valid`` held until ``ready``):

* ``prog`` (in, :data:`PROG_LAYOUT`): ``record`` (the 32 bytes, byte ``i`` at bits
  ``[8i, 8i + 8)``) and ``last`` on the program's final record.
* ``dma_in``, ``dma_out``, ``engine``, ``vector``, ``link`` (out, :data:`RECORD_BITS`):
  each unit's command stream (:data:`~barista_hw.device.emit.UNIT` says which opcode goes
  where), the whole record, in program order.
* ``<unit>_done`` (in, 16 bits): the unit reports an instruction finished by its token;
  always ready. A unit finishes its instructions in the order it took them.
* ``scale`` (out, :data:`RECORD_BITS`): the ``SCALE`` record, once every earlier
  instruction is done; it counts as done when taken. ``SYNC`` is done as soon as its
  waits are.
* ``running`` (out): from the first record taken until the ``last`` one and all before
  it are done; ``cycles`` (out, 32 bits): the cycles ``running`` was high;
  ``busy_<unit>`` (out, 32 bits): the cycles in which the unit held an instruction it
  had taken and not yet reported done. A new program (a record taken while not running)
  clears them.

Tokens: the scoreboard is a ring of ``window`` done bits indexed by program position.
Tokens must be consecutive modulo ``2**16 - 1`` (1..0xFFFF, as :meth:`Builder._token
<barista_hw.device.emit.Builder._token>` numbers them, wrapping), so a token's distance
back from the latest record's, ``(latest - token) mod 0xFFFF``, gives its position. At
most ``window`` instructions are in flight (taken and not *retired*: retired once it and
all before it are done): a record waits for a free slot, so a wait naming an instruction
older than the oldest in flight is met however far back it reaches. A done report
reaches a waiting instruction's ``valid`` a cycle later (the done bits are registers).

Each unit has a queue of ``depth`` records, so units run ahead of each other as far as
the program's waits and the queues allow (the time model's overlap); records are taken
in program order, so a full queue holds up the records behind it. A record whose opcode
has no unit is never taken (the program stops there).
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..emit import UNIT
from ..isa import HEADER, MAX_WAITS, RECORD_BYTES, Op

RECORD_BITS = RECORD_BYTES * 8
TOKEN_BITS = 16
TOKEN_MOD = (1 << TOKEN_BITS) - 1  # tokens run 1..0xFFFF
POS_BITS = TOKEN_BITS + 1  # positions modulo 2**17: a wait reaches back < 2**16
COUNT_BITS = 32
#: The units with command streams, in the order of their ports.
UNITS = tuple(dict.fromkeys(u for u in UNIT.values() if u != "sequencer"))
SEQ = "sequencer"  # SYNC and SCALE: the sequencer's own queue
PROG_LAYOUT = data.StructLayout({"record": RECORD_BITS, "last": 1})
# Header fields' bit offsets in a record (isa.HEADER: opcode, subcode, token, waits).
assert HEADER.format == "<BBHHHH"
OP_BITS = slice(0, 8)
TOKEN_AT = 16
WAIT_AT = 32


def entry_layout(record_bits: int = RECORD_BITS) -> data.StructLayout:
    """A queued record: its first ``record_bits`` bits, its position and its waits'."""
    return data.StructLayout(
        {
            "record": record_bits,
            "pos": POS_BITS,
            "waits": data.ArrayLayout(POS_BITS, MAX_WAITS),  # positions waited for
            "has": MAX_WAITS,  # which waits are named
        }
    )


class _Queue(wiring.Component):
    """A first-in first-out queue of ``depth`` entries in registers (no block RAM read
    collisions to reason about; ``depth`` is small)."""

    def __init__(self, shape: data.Layout, depth: int) -> None:
        self.depth = depth
        super().__init__({"w": In(stream.Signature(shape)), "r": Out(stream.Signature(shape))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        slots = Array(Signal(self.w.payload.shape(), name=f"slot{i}") for i in range(self.depth))
        wp = Signal(range(self.depth))
        rp = Signal(range(self.depth))
        count = Signal(range(self.depth + 1))
        put = self.w.valid & self.w.ready
        take = self.r.valid & self.r.ready
        m.d.comb += [
            self.w.ready.eq(count != self.depth),
            self.r.valid.eq(count != 0),
            self.r.payload.eq(slots[rp]),
        ]
        for i, slot in enumerate(slots):  # one write enable a slot (no partial case)
            with m.If(put & (wp == i)):
                m.d.sync += slot.eq(self.w.payload)
        with m.If(put):
            m.d.sync += wp.eq(_wrap_inc(wp, self.depth))
        with m.If(take):
            m.d.sync += rp.eq(_wrap_inc(rp, self.depth))
        m.d.sync += count.eq(count + put - take)
        return m


def _wrap_inc(v: Signal, n: int) -> Mux:
    return Mux(v == n - 1, 0, v + 1)


def _token_distance(latest: Signal, token: Signal) -> Mux:
    """``(latest - token) mod 0xFFFF`` for tokens in 1..0xFFFF (``latest`` at or after)."""
    return Mux(latest >= token, latest - token, latest + TOKEN_MOD - token)


class Sequencer(wiring.Component):
    """The sequencer (module docstring): ``window`` in-flight instructions (a power of
    two), ``depth`` records queued a unit. A unit's queue keeps the first ``keep`` bits of
    each record (at least the header's opcode, subcode and token): the unit streams carry
    those, zero above; the device top's front-ends read the token alone, and each
    record's fields travel decoded in the top's command FIFOs."""

    def __init__(self, *, window: int = 64, depth: int = 8, keep: int = RECORD_BITS) -> None:
        if window < 2 or window & (window - 1) or window >= 1 << TOKEN_BITS:
            raise ValueError(f"window {window} must be a power of two in [2, 2**16)")
        if depth < 1:
            raise ValueError(f"queue depth {depth} must be at least 1")
        if not TOKEN_AT + TOKEN_BITS <= keep <= RECORD_BITS:
            raise ValueError(f"keep {keep} must be in [{TOKEN_AT + TOKEN_BITS}, {RECORD_BITS}]")
        self.window, self.depth, self.keep = window, depth, keep
        ports: dict[str, object] = {
            "prog": In(stream.Signature(PROG_LAYOUT)),
            "scale": Out(stream.Signature(RECORD_BITS)),
            "running": Out(1),
            "cycles": Out(COUNT_BITS),
        }
        for u in UNITS:
            ports[u] = Out(stream.Signature(RECORD_BITS))
            ports[f"{u}_done"] = In(stream.Signature(TOKEN_BITS))
            ports[f"busy_{u}"] = Out(COUNT_BITS)
        super().__init__(ports)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        win_bits = self.window.bit_length() - 1
        done = Signal(self.window)  # per slot (position mod window): finished
        head = Signal(POS_BITS)  # oldest position not retired
        nxt = Signal(POS_BITS)  # position of the next record
        latest_tok = Signal(TOKEN_BITS)  # token of the latest record taken
        seen_last = Signal()
        # SYNC and SCALE keep whole records: ``scale`` sends the SCALE record on.
        queues = {u: _Queue(entry_layout(self.keep), self.depth) for u in UNITS}
        queues[SEQ] = _Queue(entry_layout(), self.depth)
        for u, q in queues.items():
            m.submodules[f"q_{u}"] = q

        # -- dispatch: the next record into its unit's queue, positions for its waits.
        rec = self.prog.payload.record
        op, token = rec[OP_BITS], rec[TOKEN_AT : TOKEN_AT + TOKEN_BITS]
        free = (nxt - head)[:POS_BITS] < self.window
        entry = Signal(entry_layout())
        m.d.comb += [entry.record.eq(rec), entry.pos.eq(nxt)]
        for i in range(MAX_WAITS):
            w = rec[WAIT_AT + TOKEN_BITS * i :][:TOKEN_BITS]
            m.d.comb += [
                entry.has[i].eq(w != 0),
                entry.waits[i].eq(nxt - _token_distance(token, w)),
            ]
        room = Signal()
        for u, q in queues.items():
            ops = [o for o, unit in UNIT.items() if unit == u]
            mine = Signal(name=f"to_{u}")
            m.d.comb += mine.eq(_is_any(op, ops))
            for f in entry.shape().members:  # field by field: the record is cut to ``keep``
                m.d.comb += getattr(q.w.payload, f).eq(getattr(entry, f))
            m.d.comb += q.w.valid.eq(self.prog.valid & free & mine)
            with m.If(mine):
                m.d.comb += room.eq(q.w.ready)
        take = Signal()
        m.d.comb += [self.prog.ready.eq(free & room), take.eq(self.prog.valid & self.prog.ready)]
        start = take & ~self.running
        with m.If(take):
            m.d.sync += [
                nxt.eq(nxt + 1),
                latest_tok.eq(token),
                seen_last.eq(self.prog.payload.last),
            ]

        # -- the scoreboard: set by units' reports and the sequencer's own instructions,
        # cleared when a slot takes a new record.
        sets = []

        def slot_of(pos: object) -> object:
            return pos[:win_bits] if win_bits else Const(0)

        def met(e: data.View) -> object:
            """The waits of queue entry ``e`` are all done."""
            ok = Const(1)
            for i in range(MAX_WAITS):
                ahead = (e.waits[i] - head)[:POS_BITS]
                bit = done.bit_select(slot_of(e.waits[i]), 1)
                ok = ok & (~e.has[i] | (ahead >= self.window) | bit)
            return ok

        for u in UNITS:
            q, out, rep = queues[u], getattr(self, u), getattr(self, f"{u}_done")
            ready = Signal(name=f"{u}_met")
            m.d.comb += [ready.eq(q.r.valid & met(q.r.payload)), out.valid.eq(ready)]
            m.d.comb += [out.payload.eq(q.r.payload.record), q.r.ready.eq(out.ready & ready)]
            m.d.comb += rep.ready.eq(1)
            # The reported token's position: its distance back from the latest record.
            back = _token_distance(latest_tok, rep.payload)
            sets.append((rep.valid, (nxt - 1 - back)[:POS_BITS]))
            self._count_busy(m, u, out.valid & out.ready, rep.valid, start)

        sq = queues[SEQ]
        e = sq.r.payload
        is_scale = e.record[OP_BITS] == Op.SCALE
        m.d.comb += self.scale.payload.eq(e.record)
        m.d.comb += self.scale.valid.eq(sq.r.valid & is_scale & (head == e.pos))
        sync_go = sq.r.valid & ~is_scale & met(e)
        scale_go = self.scale.valid & self.scale.ready
        m.d.comb += sq.r.ready.eq(sync_go | scale_go)
        sets.append((sync_go | scale_go, e.pos))

        new_done = Signal(self.window)
        for s in range(self.window):
            hit = Const(0)
            for valid, pos in sets:
                hit = hit | (valid & (slot_of(pos) == s))
            cleared = take & (slot_of(nxt) == s)
            m.d.comb += new_done[s].eq(Mux(cleared, 0, done[s] | hit))
        m.d.sync += done.eq(new_done)

        # -- retire: the oldest position, once done (one a cycle).
        with m.If((head != nxt) & done.bit_select(slot_of(head), 1)):
            m.d.sync += head.eq(head + 1)

        # -- running and the total count.
        finished = seen_last & (head == nxt)
        with m.If(start):
            m.d.sync += [self.running.eq(1), self.cycles.eq(1)]
        with m.Elif(self.running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(finished):
                m.d.sync += self.running.eq(0)
        return m

    def _count_busy(
        self, m: Module, u: str, issued: object, reported: object, start: object
    ) -> None:
        """``busy_<u>``: cycles with an instruction taken by ``u`` and not reported done."""
        held = Signal(range(self.depth + self.window + 1), name=f"held_{u}")
        busy = getattr(self, f"busy_{u}")
        m.d.sync += held.eq(held + issued - reported)
        with m.If(start):
            m.d.sync += busy.eq(0)
        with m.Elif(held != 0):
            m.d.sync += busy.eq(busy + 1)


def _is_any(op: object, ops: list[Op]) -> object:
    hit = Const(0)
    for o in ops:
        hit = hit | (op == int(o))
    return hit
