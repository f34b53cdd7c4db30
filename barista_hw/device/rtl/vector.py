"""The vector unit in Amaranth: the ``VEC`` operations of :mod:`barista_hw.device.vector`,
bit-exact, ``lanes`` elements a cycle (``lanes`` copies of one element's datapath side by
side, on ``lanes``-wide beats).

Ports (``lib.stream``, Amaranth's rules: ``valid`` held until ``ready``):

* ``cmd`` (:data:`CMD_LAYOUT`): one instruction, taken when the unit is idle. Its fields
  are the model's parameters in the form the hardware uses (the shifts are exponent
  differences, the scalars :func:`~barista_hw.device.vector.encode_scalar` mantissas):
  :class:`VecCommand` builds them from the model's arguments, one function an operation.
* ``x`` (:func:`in_layout`): a beat of ``lanes`` entries, each up to three operands side
  by side (``v[lane]``), ``pad`` and ``on`` per lane, ``last`` and ``end`` per beat. Lane
  ``l`` computes *group* ``b * lanes + l`` of the output's beat ``b``: a group is the
  inputs of one output (one element for element operations; a channel for ``BIAS_GRAD``,
  a window or a pixel's covering windows for pooling), all groups of a beat the same
  length, one entry of each a beat (:func:`beat_words` packs them). ``last`` closes the
  beat's groups, ``end`` marks the instruction's final beat, ``pad`` an entry that
  contributes nothing (padding), ``on`` a lane that holds a group (the final beat's
  unused lanes do not). The scratchpad reader orders and repeats the operands:
  ``BIAS_ADD`` gets the bias of each element's channel beside it, ``MEAN_SUB`` the mean
  image again for every image, ``BIAS_GRAD`` the gradient channel by channel
  (:func:`bias_grad_order`), pooling the windows (:func:`window_order`, forward) or each
  input pixel's candidate covering windows (:func:`covering_order`, backward): the unit
  does not walk windows itself.
* ``y`` (:func:`out_layout`): one beat of ``lanes`` outputs per beat of groups, each up
  to three results (``q[lane][k]`` is rounded with the instruction's ``k``-th random
  stream: ``SGD``'s momentum, master and operand copy; ``MAXPOOL``: the maximum and its
  mask), ``on`` as the groups' ``on``, ``last`` on the instruction's final beat.
* ``stats`` (:data:`STATS_LAYOUT`): after the final output, the
  :class:`~barista_hw.device.vector.Stats` of each result over every lane (``SGD``: all
  three; else ``q[0]``'s, the others zero); the next command is taken once it is read.

Rounding: output ``i`` (lane ``i % lanes`` of output beat ``i // lanes``) takes lane
``i % lanes``'s word at beat ``i // lanes``: one :class:`~barista_hw.requant.LfsrLanes` per
random stream, seeded at the command as :meth:`~barista_hw.device.vector.Rounder.stream`
says, every lane stepping at every output beat. Values: 32-bit signed elements, results of
2..32 bits, intermediate values as the model forms them (exact, or saturated to
``WIDE_BITS``).

Pipeline: :data:`LATENCY` register stages, all advancing together while the output
register is empty or read (``x`` stalls with ``y``); one beat a cycle. An instruction of
``B`` beats takes ``B + vector.LATENCY`` cycles back to back (:func:`barista_hw.device.
vector.cycles`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_hw import lfsr
from barista_hw.numfmt import Rounding
from barista_hw.requant import LfsrLanes

from .. import vector
from ..geometry import PoolGeometry
from ..vector import GUARD, WIDE_BITS, Rounder, Stats, VecOp
from .rounding import saturate, shift_round

DATA_BITS = 32  # an element (the V scratchpad's lane: master weights and momentum)
SHIFT_BITS = 10  # a signed shift: exponent differences within [-512, 511]
ALIGN_BITS = 5  # MEAN_SUB's exact left shifts
STREAMS = 3  # random streams, results a beat
RAW_BITS = 11  # the bit length of a result before saturation (overflow statistic)
LATENCY = 9  # register stages from ``x`` to ``y``

CMD_LAYOUT = data.StructLayout(
    {
        "op": 4,  # VecOp
        "rounding": 2,  # Rounding
        "seed": lfsr.STATE_BITS,
        "bits": 6,  # width of q[0] (q[2] for SGD)
        "bits2": 6,  # SGD: width of the momentum and master (q[0], q[1])
        "shifts": data.ArrayLayout(signed(SHIFT_BITS), 5),
        "scalars": data.ArrayLayout(signed(DATA_BITS), 3),
        "align": data.ArrayLayout(unsigned(ALIGN_BITS), 2),
    }
)


def in_layout(lanes: int) -> data.StructLayout:
    """An ``x`` beat: ``lanes`` entries of three operands, per-lane ``pad`` and ``on``."""
    return data.StructLayout(
        {
            "v": data.ArrayLayout(data.ArrayLayout(signed(DATA_BITS), 3), lanes),
            "pad": lanes,
            "on": lanes,
            "last": 1,
            "end": 1,
        }
    )


def out_layout(lanes: int) -> data.StructLayout:
    """A ``y`` beat: ``lanes`` outputs of :data:`STREAMS` results, per-lane ``on``."""
    return data.StructLayout(
        {
            "q": data.ArrayLayout(data.ArrayLayout(signed(DATA_BITS), STREAMS), lanes),
            "on": lanes,
            "last": 1,
        }
    )


STAT_LAYOUT = data.StructLayout(
    {"peak": unsigned(DATA_BITS), "saturated": unsigned(DATA_BITS), "overflow": RAW_BITS}
)
STATS_LAYOUT = data.ArrayLayout(STAT_LAYOUT, STREAMS)

GROUP_OPS = (VecOp.BIAS_GRAD, VecOp.MAXPOOL, VecOp.MAXPOOL_BACK, VecOp.AVEPOOL, VecOp.AVEPOOL_BACK)
BUILT_OPS = tuple(VecOp)  # every operation of the model


def stream_key(k: int) -> int:
    """What the ``k``-th random stream's seed XORs into the command's (Rounder.stream)."""
    return Rounder(Rounding.NEAREST_EVEN, 0).stream(k).seed


# -- commands ------------------------------------------------------------------------
@dataclass(frozen=True)
class VecCommand:
    """A ``cmd`` payload. Build it with the per-operation constructors below, which take
    the model function's arguments (and its :class:`Rounder`)."""

    op: VecOp
    rounding: Rounding = Rounding.NEAREST_EVEN
    seed: int = 0
    bits: int = 32
    bits2: int = 32
    shifts: tuple[int, ...] = (0, 0, 0, 0, 0)
    scalars: tuple[int, ...] = (0, 0, 0)
    align: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        lim = 1 << (SHIFT_BITS - 1)
        if not all(-lim <= s < lim for s in self.shifts):
            raise ValueError(f"{self.op.name}: shifts {self.shifts} exceed {SHIFT_BITS} bits")
        if not all(0 <= a < 1 << ALIGN_BITS for a in self.align):
            raise ValueError(f"{self.op.name}: alignment {self.align} exceeds {ALIGN_BITS} bits")
        if not 2 <= min(self.bits, self.bits2) <= max(self.bits, self.bits2) <= DATA_BITS:
            raise ValueError(f"{self.op.name}: results have 2..{DATA_BITS} bits")

    def word(self) -> int:
        """The packed payload."""
        fields = {
            "op": int(self.op),
            "rounding": int(self.rounding),
            "seed": self.seed & 0xFFFFFFFF,
            "bits": self.bits,
            "bits2": self.bits2,
            "shifts": list(self.shifts),
            "scalars": list(self.scalars),
            "align": list(self.align),
        }
        return CMD_LAYOUT.const(fields).as_value().value

    @staticmethod
    def _rnd(rnd: Rounder) -> dict:
        return {"rounding": rnd.rounding, "seed": rnd.seed}

    @classmethod
    def copy(cls, bits: int) -> VecCommand:
        return cls(VecOp.COPY, bits=bits)

    @classmethod
    def convert(cls, frac_in: int, frac_out: int, bits: int, rnd: Rounder) -> VecCommand:
        return cls(
            VecOp.CONVERT, bits=bits, shifts=(frac_in - frac_out, 0, 0, 0, 0), **cls._rnd(rnd)
        )

    @classmethod
    def relu(
        cls, bits: int, negative_slope: float, rnd: Rounder, *, back: bool = False
    ) -> VecCommand:
        """``RELU`` (``back``: ``RELU_BACK``, ``v[1]`` the forward input)."""
        mantissa, exp = vector.encode_scalar(negative_slope) if negative_slope else (0, 0)
        op = VecOp.RELU_BACK if back else VecOp.RELU
        return cls(
            op, bits=bits, shifts=(exp, 0, 0, 0, 0), scalars=(mantissa, 0, 0), **cls._rnd(rnd)
        )

    @classmethod
    def bias_add(cls, frac_y: int, frac_bias: int, bits: int, rnd: Rounder) -> VecCommand:
        """``v[0]`` = y, ``v[1]`` = its channel's bias."""
        shifts = (frac_bias - frac_y, 0, 0, 0, 0)
        return cls(VecOp.BIAS_ADD, bits=bits, shifts=shifts, **cls._rnd(rnd))

    @classmethod
    def mean_sub(
        cls, frac_x: int, frac_mean: int, frac_out: int, bits: int, rnd: Rounder
    ) -> VecCommand:
        """``v[0]`` = x, ``v[1]`` = the mean's element."""
        fine = max(frac_x, frac_mean)
        return cls(
            VecOp.MEAN_SUB,
            bits=bits,
            shifts=(fine - frac_out, 0, 0, 0, 0),
            align=(fine - frac_x, fine - frac_mean),
            **cls._rnd(rnd),
        )

    @classmethod
    def bias_grad(cls, frac_dy: int, frac_out: int, bits: int, rnd: Rounder) -> VecCommand:
        """``v[0]`` = dy in :func:`bias_grad_order`, a group a channel."""
        shifts = (frac_dy - frac_out, 0, 0, 0, 0)
        return cls(VecOp.BIAS_GRAD, bits=bits, shifts=shifts, **cls._rnd(rnd))

    @classmethod
    def sgd(
        cls,
        frac_master: int,
        frac_mom: int,
        frac_grad: int,
        *,
        lr: tuple[int, int],
        mom: tuple[int, int],
        decay: tuple[int, int],
        operand_bits: int,
        frac_operand: int,
        rnd: Rounder,
        master_bits: int = 32,
    ) -> VecCommand:
        """``v`` = (grad, momentum, master); ``q`` = (momentum, master, operand copy).

        The shifts are those of :func:`vector.sgd`'s roundings, in its order."""
        (ml, el), (mm, em), (md, ed) = lr, mom, decay
        work = frac_mom + GUARD
        shifts = (
            em + frac_mom - work,
            el + frac_grad - work,
            el + ed + frac_master - work,
            frac_mom - frac_master - GUARD,
            frac_master - frac_operand,
        )
        return cls(
            VecOp.SGD,
            bits=operand_bits,
            bits2=master_bits,
            shifts=shifts,
            scalars=(mm, ml, ml * md),
            **cls._rnd(rnd),
        )

    @classmethod
    def maxpool(cls) -> VecCommand:
        """``v[0]`` = x in :func:`window_order`; ``q`` = (maximum, mask)."""
        return cls(VecOp.MAXPOOL)

    @classmethod
    def maxpool_back(cls, bits: int) -> VecCommand:
        """``v`` = (dy, mask, the element's offset) in :func:`covering_order`."""
        return cls(VecOp.MAXPOOL_BACK, bits=bits)

    @classmethod
    def avepool(
        cls, geom: PoolGeometry, bits: int, rnd: Rounder, *, back: bool = False
    ) -> VecCommand:
        """``v`` = (x, the window's 1/n) in :func:`window_order` (``back``: ``AVEPOOL_BACK``,
        ``v`` = (dy, its window's 1/n) in :func:`covering_order`); 1/n and the shift as
        :func:`vector.reciprocals` gives them."""
        op = VecOp.AVEPOOL_BACK if back else VecOp.AVEPOOL
        shift = vector.reciprocals(geom)[1]
        return cls(op, bits=bits, shifts=(shift, 0, 0, 0, 0), **cls._rnd(rnd))


@dataclass(frozen=True)
class PoolOrder:
    """The order a pooling instruction's entries stream in, for one ``H x W`` plane (planes
    follow each other, images then channels): a row a group (an output's window, forward;
    an input pixel's candidate windows, backward), every row the same length. Per entry
    the input pixel (``h * W + w``, -1 in the padding), the output pixel (``oh * out_w +
    ow``, -1: none) and the entry's offset in that window (``i * kw + j``)."""

    inp: np.ndarray
    out: np.ndarray
    offset: np.ndarray

    @property
    def pad(self) -> np.ndarray:
        """Entries that contribute nothing (padding; no window at that candidate)."""
        return (self.inp < 0) | (self.out < 0)


def window_order(geom: PoolGeometry) -> PoolOrder:
    """``MAXPOOL``/``AVEPOOL``: a row an output (row-major), its window's ``kh * kw`` input
    pixels in offset order (the DMA walks the windows as it does im2col's)."""
    hs, ws = vector.window_starts(geom)
    (kh, kw), k = geom.kernel, np.arange(geom.kernel[0] * geom.kernel[1])
    rows = hs[:, None, None] + (k // kw)[None, None, :]
    cols = ws[None, :, None] + (k % kw)[None, None, :]
    inside = (rows >= 0) & (rows < geom.height) & (cols >= 0) & (cols < geom.width)
    n_out = geom.out_height * geom.out_width
    inp = np.where(inside, rows * geom.width + cols, -1).reshape(n_out, kh * kw)
    out = np.repeat(np.arange(n_out), kh * kw).reshape(n_out, kh * kw)
    return PoolOrder(inp, out, np.tile(k, (n_out, 1)))


def _candidates(size: int, out_size: int, k: int, s: int, p: int) -> tuple[np.ndarray, ...]:
    """Along one axis, for every input position: the ``ceil(k / s)`` windows that may cover
    it (the last one starting at or before it, and those before), their offsets at it, and
    whether they exist and cover it."""
    pos = np.arange(size)[:, None] + p  # in padded coordinates
    win = pos // s - np.arange(-(-k // s))[None, :]
    off = pos - win * s  # >= 0
    return win, off, (win >= 0) & (win < out_size) & (off < k)


def covering_order(geom: PoolGeometry) -> PoolOrder:
    """``MAXPOOL_BACK``/``AVEPOOL_BACK``: a row an input pixel (row-major), its
    :func:`~barista_hw.device.vector.covering_windows` candidate windows (an address
    pattern the DMA steps without division); candidates that do not cover the pixel, and
    every candidate of a pixel no window covers, are padding."""
    (kh, kw), (sh, sw), (ph, pw) = geom.kernel, geom.stride, geom.pad
    oh, i, row_ok = _candidates(geom.height, geom.out_height, kh, sh, ph)
    ow, j, col_ok = _candidates(geom.width, geom.out_width, kw, sw, pw)

    def grid(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (H, W, rows, cols) -> (H*W, n)
        return (a[:, None, :, None] + b[None, :, None, :]).reshape(geom.height * geom.width, -1)

    covers = grid(row_ok.astype(np.int64), col_ok.astype(np.int64)) == 2
    out = np.where(covers, grid(oh * geom.out_width, ow), -1)
    offset = np.where(covers, grid(i * kw, j), 0)
    inp = np.broadcast_to(np.arange(geom.height * geom.width)[:, None], out.shape)
    return PoolOrder(inp.copy(), out, offset)


def bias_grad_order(dy: np.ndarray) -> np.ndarray:
    """``BIAS_GRAD``'s input order: dy ``(images, M, pixels)`` as ``(M, images * pixels)``,
    a row a group (the unit sums each row)."""
    return dy.transpose(1, 0, 2).reshape(dy.shape[1], -1)


def decode_stats(word: int) -> list[Stats]:
    """The ``stats`` payload as the model's :class:`Stats`, one a random stream."""
    s = data.Const(STATS_LAYOUT, word)
    return [Stats(int(t.peak), int(t.saturated), int(t.overflow)) for t in s]


# -- the unit -------------------------------------------------------------------------
class VectorUnit(wiring.Component):
    """The vector unit: ``lanes`` element datapaths side by side, each with its random lane
    (the model's ``Rounder.lanes``)."""

    def __init__(self, lanes: int = 16) -> None:
        if lanes < 1:
            raise ValueError(f"a vector unit has at least one lane, not {lanes}")
        self.lanes = lanes
        super().__init__(
            {
                "cmd": In(stream.Signature(CMD_LAYOUT)),
                "x": In(stream.Signature(in_layout(lanes))),
                "y": Out(stream.Signature(out_layout(lanes))),
                "stats": Out(stream.Signature(STATS_LAYOUT)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        c = Signal(CMD_LAYOUT, name="c")  # the running command
        running, draining, reporting = Signal(), Signal(), Signal()
        idle = ~(running | draining | reporting)
        start = self.cmd.valid & idle
        m.d.comb += self.cmd.ready.eq(idle)
        with m.If(start):
            m.d.sync += [c.eq(self.cmd.payload), running.eq(1)]

        en = ~self.y.valid | self.y.ready  # the whole pipeline advances together
        m.d.comb += self.x.ready.eq(running & en)
        take = self.x.valid & self.x.ready
        grouped = Cat(*(c.op == op for op in GROUP_OPS)).any()
        x = self.x.payload
        glast = Mux(grouped, x.last, 1)  # element operations: groups of one
        with m.If(take & x.end):
            m.d.sync += [running.eq(0), draining.eq(1)]
        offset = Signal(16, name="offset")  # position in the beat's groups
        with m.If(start):
            m.d.sync += offset.eq(0)
        with m.Elif(take):
            m.d.sync += offset.eq(Mux(glast, 0, offset + 1))

        words = self._words(m, start, take & glast)
        outs = []  # each lane's final stage
        for lane in range(self.lanes):
            pipe = _Pipe(m, en, c, f"l{lane}_")
            s = {"valid": take, "last": glast, "end": x.end, "off": offset}
            s |= {"pad": x.pad[lane], "on": x.on[lane]}
            s |= {f"v{i}": x.v[lane][i] for i in range(3)}
            s |= {f"w{k}": words[k][lane] for k in range(STREAMS)}
            s = pipe.advance(s, s)
            for stage in (_products, _reduce, _prepare, _result0, _aligned, _master, _operand):
                s = stage(pipe, s)
            outs.append(s)

        y = self.y.payload
        with m.If(en):
            m.d.sync += [
                self.y.valid.eq(outs[0]["valid"]),
                y.last.eq(outs[0]["end"]),
                y.on.eq(Cat(*(s["on"] for s in outs))),
            ]
            for lane, s in enumerate(outs):
                m.d.sync += [y.q[lane][k].eq(s[f"q{k}"]) for k in range(STREAMS)]
        self._statistics(m, en, c, outs, start)
        with m.If(self.y.valid & self.y.ready & y.last):
            m.d.sync += [draining.eq(0), reporting.eq(1)]
        m.d.comb += self.stats.valid.eq(reporting)
        with m.If(self.stats.valid & self.stats.ready):
            m.d.sync += reporting.eq(0)
        return m

    def _words(self, m: Module, start: Value, step: Value) -> list[Value]:
        """Each random stream's lane words for the current output beat; ``step``: a beat of
        outputs was taken (every lane steps)."""
        words = []
        for k in range(STREAMS):
            gen = LfsrLanes(self.lanes)
            m.submodules[f"lfsr{k}"] = gen
            m.d.comb += [
                gen.seed.eq(self.cmd.payload.seed ^ stream_key(k)),
                gen.load.eq(start),
                gen.advance.eq(Mux(step, Const(-1, self.lanes), 0)),
            ]
            words.append(gen.words)
        return words

    def _statistics(self, m: Module, en: Value, c: Value, outs: list[dict], start: Value) -> None:
        """Accumulate the Stats of what enters the output register, over the lanes that
        hold an output; report them."""
        sgd = c.op == VecOp.SGD
        widths = [Mux(sgd, c.bits2, c.bits), c.bits2, c.bits]
        for k in range(STREAMS):
            peak = Signal(unsigned(DATA_BITS), name=f"peak{k}")
            count = Signal(unsigned(DATA_BITS), name=f"saturated{k}")
            widest = Signal(RAW_BITS, name=f"widest{k}")
            mags, rbs, clips = [peak], [widest], []
            for lane, s in enumerate(outs):
                q, on = s[f"q{k}"], s["on"]
                mag = Signal(unsigned(DATA_BITS), name=f"l{lane}_mag{k}")
                m.d.comb += mag.eq(Mux(on, Mux(q < 0, -q, q), 0))
                mags.append(mag)
                rbs.append(Mux(on, s[f"rb{k}"], 0))
                clips.append(on & s[f"clip{k}"])
            beat_peak, beat_widest = _largest(mags), _largest(rbs)
            beat_count = count + sum(clips)
            counted = sgd if k else Const(1)  # results 1 and 2 are SGD's (MAXPOOL's mask: none)
            with m.If(start):
                m.d.sync += [peak.eq(0), count.eq(0), widest.eq(0)]
            with m.Elif(en & outs[0]["valid"] & counted):
                m.d.sync += [peak.eq(beat_peak), count.eq(beat_count), widest.eq(beat_widest)]
            out = self.stats.payload[k]
            m.d.comb += [
                out.peak.eq(peak),
                out.saturated.eq(count),
                out.overflow.eq(Mux(count != 0, widest - (widths[k] - 1), 0)),
            ]


def _largest(values: list[Value]) -> Value:
    """The largest of unsigned ``values``, a balanced tree of comparisons (the lanes'
    statistics: depth log2(lanes), not a chain through every lane)."""
    while len(values) > 1:
        pairs = zip(values[::2], values[1::2], strict=False)
        values = [Mux(a > b, a, b) for a, b in pairs] + values[len(values) // 2 * 2 :]
    return values[0]


class _Pipe:
    """Register stages that all advance on ``en``; a stage's values travel as a dict."""

    def __init__(self, m: Module, en: Value, c: Value, prefix: str = "") -> None:
        self.m, self.en, self.c, self.prefix, self.stage = m, en, c, prefix, -1

    def n(self, name: str) -> str:
        """A signal name of this pipe's (its lane's prefix: lanes do not share names)."""
        return self.prefix + name

    def advance(self, s: dict, keep: Iterable[str], **new: Value) -> dict:
        """The next stage's registers: the values ``keep`` names in ``s``, and ``new``."""
        self.stage += 1
        values = {k: s[k] for k in keep} | new
        regs = {}
        for name, value in values.items():
            reg = Signal(Value.cast(value).shape(), name=self.n(f"{name}_{self.stage}"))
            with self.m.If(self.en):
                self.m.d.sync += reg.eq(value)
            regs[name] = reg
        return regs

    def is_op(self, *ops: VecOp) -> Value:
        return Cat(*(self.c.op == op for op in ops)).any()


_V, _W = ("v0", "v1", "v2"), ("w0", "w1", "w2")


def _products(p: _Pipe, s: dict) -> dict:
    """S1: the products and MEAN_SUB's aligned difference. Three multipliers a lane (one
    operation runs at a time: ``v0``'s serves RELU, SGD and both poolings: every entry of
    an average window carries its 1/n, so AVEPOOL sums the products ``x * 1/n``, the
    window's sum times 1/n exactly)."""
    sc, v0, v1, v2 = p.c.scalars, s["v0"], s["v1"], s["v2"]
    relu = p.is_op(VecOp.RELU, VecOp.RELU_BACK)
    by = Mux(relu, sc[0], Mux(p.is_op(VecOp.AVEPOOL, VecOp.AVEPOOL_BACK), v1, sc[1]))
    return p.advance(
        s,
        s,
        p_v0=v0 * by,  # RELU: values * slope; SGD: lr * g; AVEPOOL(_BACK): x * 1/n
        p_mom=v1 * sc[0],  # SGD: mom * v
        p_master=v2 * sc[2],  # SGD: lr * decay * w
        diff=(v0 << p.c.align[0]) - (v1 << p.c.align[1]),  # MEAN_SUB
    )


def _reduce(p: _Pipe, s: dict) -> dict:
    """S2: the group's reduction: an exact sum, or MAXPOOL's first strict maximum and its
    offset (padding never wins); a group's last element passes on."""
    m, c = p.m, p.c
    v0, v1, v2, pad, first = s["v0"], s["v1"], s["v2"], s["pad"], s["off"] == 0
    term = Signal(signed(64), name=p.n("term"))
    with m.Switch(c.op):
        with m.Case(VecOp.AVEPOOL, VecOp.AVEPOOL_BACK):
            m.d.comb += term.eq(s["p_v0"])
        with m.Case(VecOp.MAXPOOL_BACK):  # dy where the window's argmax is this element
            m.d.comb += term.eq(Mux(v1 == v2, v0, 0))
        with m.Default():
            m.d.comb += term.eq(v0)
    acc = Signal(signed(64), name=p.n("acc"))
    acc_next = Signal(signed(64), name=p.n("acc_next"))
    m.d.comb += acc_next.eq(Mux(first, 0, acc) + Mux(pad, 0, term))
    best = Signal(signed(DATA_BITS), name=p.n("best"))
    arg, have = Signal(16, name=p.n("arg")), Signal(name=p.n("have"))
    wins = ~pad & (first | ~have | (v0 > best))
    best_next = Mux(wins, v0, best)
    arg_next = Mux(wins, s["off"], Mux(first, 0, arg))
    with m.If(p.en & s["valid"]):
        m.d.sync += [
            acc.eq(acc_next),
            best.eq(best_next),
            arg.eq(arg_next),
            have.eq(~pad | (have & ~first)),
        ]
    keep = (*_V, *_W, "end", "on", "p_v0", "p_mom", "p_master", "diff")
    return p.advance(
        s, keep, valid=s["valid"] & s["last"], total=acc_next, best=best_next, arg=arg_next
    )


def _prepare(p: _Pipe, s: dict) -> dict:
    """S3: the first roundings (SGD's three terms; the slope product or the aligned bias,
    saturated to WIDE_BITS as the model does). SGD's momentum term and the others' first
    rounding share a rounder (both by ``shifts[0]``; one operation runs at a time)."""
    m, c, nearest = p.m, p.c, Rounding.NEAREST_EVEN
    sgd, relu = p.is_op(VecOp.SGD), p.is_op(VecOp.RELU, VecOp.RELU_BACK)
    first = Mux(sgd, s["p_mom"], Mux(relu, s["p_v0"], s["v1"]))
    mode = Mux(sgd, int(nearest), c.rounding)
    raw, _ = shift_round(m, first, c.shifts[0], mode, s["w0"], p.n("pre"), late=True)
    terms = [saturate(m, raw, WIDE_BITS, p.n("pre"))[0]]
    for i, name in ((1, "p_v0"), (2, "p_master")):
        raw, _ = shift_round(m, s[name], c.shifts[i], nearest, None, p.n(f"term{i}"), late=True)
        terms.append(saturate(m, raw, WIDE_BITS, p.n(f"term{i}"))[0])
    keep = ("valid", *_V, *_W, "end", "on", "total", "best", "arg", "diff")
    return p.advance(s, keep, term_sum=terms[0] + terms[1] + terms[2], pre=terms[0])


def _result0(p: _Pipe, s: dict) -> dict:
    """S4: result 0 (SGD: the momentum), rounded or formed, then saturated."""
    m, c = p.m, p.c
    sgd, maxpool = p.is_op(VecOp.SGD), p.is_op(VecOp.MAXPOOL)
    rounded = p.is_op(
        VecOp.CONVERT, VecOp.MEAN_SUB, VecOp.BIAS_GRAD, VecOp.SGD, VecOp.AVEPOOL, VecOp.AVEPOOL_BACK
    )
    v0, v1 = s["v0"], s["v1"]
    main_in = Signal(signed(64), name=p.n("main_in"))
    formed = Signal(signed(64), name=p.n("formed"))
    with m.Switch(c.op):
        with m.Case(VecOp.CONVERT):
            m.d.comb += main_in.eq(v0)
        with m.Case(VecOp.MEAN_SUB):
            m.d.comb += main_in.eq(s["diff"])
        with m.Case(VecOp.SGD):
            m.d.comb += main_in.eq(s["term_sum"])
        with m.Default():
            m.d.comb += main_in.eq(s["total"])
    with m.Switch(c.op):
        with m.Case(VecOp.RELU):
            m.d.comb += formed.eq(Mux(v0 > 0, v0, s["pre"]))
        with m.Case(VecOp.RELU_BACK):
            m.d.comb += formed.eq(Mux(v1 > 0, v0, s["pre"]))
        with m.Case(VecOp.BIAS_ADD):
            m.d.comb += formed.eq(v0 + s["pre"])
        with m.Case(VecOp.MAXPOOL):
            m.d.comb += formed.eq(s["best"])
        with m.Case(VecOp.MAXPOOL_BACK):
            m.d.comb += formed.eq(s["total"])
        with m.Default():  # COPY
            m.d.comb += formed.eq(v0)
    shift = Mux(sgd, GUARD, c.shifts[0])
    raw, rb0 = shift_round(
        m, main_in, shift, c.rounding, s["w0"], p.n("main"), want_bits=True,
        bits_of=(~rounded, formed), late=True,
    )  # fmt: skip
    # MAXPOOL's maximum is an input: not saturated (the model's neither).
    bits = Mux(sgd, c.bits2, Mux(maxpool, DATA_BITS, c.bits))
    q0, clip0 = saturate(m, Mux(rounded, raw, formed), bits, p.n("out0"), DATA_BITS, late=True)
    return p.advance(
        s, ("valid", "v2", "w1", "w2", "end", "on", "arg"), q0=q0, clip0=clip0, rb0=rb0
    )


def _aligned(p: _Pipe, s: dict) -> dict:
    """S5: SGD: the new momentum at the master's exponent (plus GUARD bits)."""
    nearest = Rounding.NEAREST_EVEN
    raw, _ = shift_round(p.m, s["q0"], p.c.shifts[3], nearest, None, p.n("v_al"), late=True)
    return p.advance(s, s, v_al=saturate(p.m, raw, WIDE_BITS, p.n("v_al"))[0])


def _master(p: _Pipe, s: dict) -> dict:
    """S6: SGD: the master, ``w - v``, rounded once (result 1; MAXPOOL: the mask)."""
    c, diff = p.c, (s["v2"] << GUARD) - s["v_al"]
    # A constant shift: its quantities are constants (registers of them would not fold).
    raw, rb1 = shift_round(p.m, diff, GUARD, c.rounding, s["w1"], p.n("master"), want_bits=True)
    q1, clip1 = saturate(p.m, raw, c.bits2, p.n("out1"), DATA_BITS, late=True)
    q1 = Mux(p.is_op(VecOp.MAXPOOL), s["arg"], q1)
    keep = ("valid", "end", "on", "w2", "q0", "clip0", "rb0")
    return p.advance(s, keep, q1=q1, clip1=clip1, rb1=rb1)


def _operand(p: _Pipe, s: dict) -> dict:
    """S7: SGD: the operand copy of the new master (result 2)."""
    c = p.c
    raw, rb2 = shift_round(
        p.m, s["q1"], c.shifts[4], c.rounding, s["w2"], p.n("operand"), want_bits=True, late=True
    )
    q2, clip2 = saturate(p.m, raw, c.bits, p.n("out2"), DATA_BITS, late=True)
    keep = ("valid", "end", "on", "q0", "clip0", "rb0", "q1", "clip1", "rb1")
    return p.advance(s, keep, q2=q2, clip2=clip2, rb2=rb2)


# -- packing (for test benches and the sequencer's simulation) -------------------------
def _bits(flags: np.ndarray) -> list[int]:
    """Rows of 0/1 flags ``(beats, lanes)`` as integers, lane ``l`` at bit ``l``."""
    weights = np.left_shift(np.int64(1), np.arange(flags.shape[1], dtype=np.int64))
    return (np.asarray(flags, np.int64) * weights).sum(axis=1).tolist()


def beat_words(
    v: np.ndarray, lanes: int, pad: np.ndarray | None = None, *, idle: int = 0
) -> list[int]:
    """``x`` payloads of groups ``v`` ``(groups, length, k)`` (``k <= 3`` operands, 32-bit
    signed; an element operation's groups are its elements, of length 1) with their
    ``pad`` flags ``(groups, length)``: ``lanes`` groups side by side, entry ``t`` of each
    in the ``t``-th beat of their row; the final row's missing groups are lanes off,
    carrying ``idle`` (test benches make it a value that would show if it counted)."""
    v = np.asarray(v, dtype=np.int64)
    if v.ndim != 3 or v.shape[2] > 3 or not v.shape[0] * v.shape[1]:
        raise ValueError(f"groups are (groups, length, <= 3) and not empty, not {v.shape}")
    if v.min() < -(1 << (DATA_BITS - 1)) or v.max() >= 1 << (DATA_BITS - 1):
        raise ValueError(f"elements exceed {DATA_BITS} bits")
    groups, length, k = v.shape
    rows = -(-groups // lanes)
    full = np.zeros((rows * lanes, length, 3), np.int64)
    full[groups:] = idle
    full[:groups, :, :k] = v
    flags = np.zeros((2, rows * lanes, length), np.int64)  # pad, on
    flags[0, :groups] = 0 if pad is None else np.asarray(pad).reshape(groups, length)
    flags[1, :groups] = 1
    # (rows, lanes, length, ...) -> beats (rows * length) of lanes entries
    beats = full.reshape(rows, lanes, length, 3).transpose(0, 2, 1, 3).reshape(-1, lanes * 3)
    flags = flags.reshape(2, rows, lanes, length).transpose(0, 1, 3, 2).reshape(2, -1, lanes)
    raw = beats.astype("<u4").view(np.uint8).reshape(len(beats), -1)  # lanes-major, LSB first
    layout = in_layout(lanes)
    words = []
    t = np.arange(len(beats)) % length
    for b, (pad_bits, on_bits) in enumerate(zip(_bits(flags[0]), _bits(flags[1]), strict=True)):
        w = int.from_bytes(raw[b].tobytes(), "little") << layout["v"].offset
        w |= pad_bits << layout["pad"].offset | on_bits << layout["on"].offset
        w |= int(t[b] == length - 1) << layout["last"].offset
        words.append(w | int(b == len(beats) - 1) << layout["end"].offset)
    return words


def decode_outputs(words: list[int], lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """``y`` payloads as ``(n, 3)`` results (the lanes that are on, beat by beat) and each
    beat's ``last`` flag."""
    layout = out_layout(lanes)
    q_bytes = lanes * STREAMS * DATA_BITS // 8
    q, last = [], []
    for w in words:
        beat = (w >> layout["q"].offset) & ((1 << (8 * q_bytes)) - 1)
        values = np.frombuffer(beat.to_bytes(q_bytes, "little"), "<i4").reshape(lanes, STREAMS)
        on = [(w >> (layout["on"].offset + lane)) & 1 for lane in range(lanes)]
        q.append(values[np.flatnonzero(on)])
        last.append((w >> layout["last"].offset) & 1)
    return np.concatenate(q).astype(np.int64), np.asarray(last, np.int64)
