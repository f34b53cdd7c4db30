"""The DMA engine in RTL: LOAD and STORE tiles between the memory port and a scratchpad.

It runs the device model's LOAD and STORE (:mod:`barista_hw.device.dma`,
:func:`barista_hw.device.traffic.tile_index`): dense, transposed and folded views and
im2col (stride, padding read as zeros, kernel, dilation, groups) by address generation
with counters; no expanded ``Xcol`` exists anywhere.

**Elements.** This engine moves *unpacked* elements: one element per bus word of the
element's width, bus word ``a`` holding the model's slot ``a`` (the model's flat DRAM);
a col2im STORE's accumulator elements (``acc_bits``, 32) take ``acc_bits / bits``
words each, low word first, slot ``a`` at word ``a * acc_bits / bits`` (the packed
layout of a 32-bit tensor). A dense STORE writes its tile (padding entries dropped).
Behind a :class:`~.packed.PackedPort` the elements reach DRAM packed at their width
(``command(..., packed=True)``: addresses from the tensor's first element, its bit
address in ``first_bit``).

**col2im.** A STORE of an im2col view adds the tile into the accumulator tensor as
:func:`~barista_hw.device.dma.scatter_add` does: pass 1 sums every element into an
on-chip accumulator RAM of ``acc_depth`` slots at full (exact) width, one slot per
element of the tile's *footprint* (its first to last DRAM element, which
:func:`command` computes and bounds); pass 2 reads the footprint in bursts, adds each
slot's sum to its element, saturates once to ``acc_bits`` and writes it back (a
footprint element no contribution reaches is written back unchanged).

**Scratchpad layout.** A tile of ``rows x cols`` elements fills words of ``lanes``
lanes along one *lane axis*: buffer A along the tile's rows (word ``tm * cols + k``
holds rows ``tm * lanes ..``, as :func:`barista_hw.schedule.pack_a`), the others along
its columns (word ``tn * rows + r`` holds columns ``tn * lanes ..``, as
:func:`barista_hw.schedule.pack_b`); lanes past the tile's edge hold zeros.

**Address generation.** Each tile axis has a *walker*: up to three nested counters
(:data:`LEVELS`) whose steps add constant deltas to the axis's share of the address
and of the image coordinates ``(y, x)`` the padding test reads. An element's address is
``base + lane walker + other walker``; it reads padding when ``check`` is set and
``(y, x)`` falls outside ``height x width``. An im2col row ``k`` walks ``(kw, kh,
channels)`` and a column walks ``(out_width, out_height, images)``; a folded column
``(pixels, images)``; a dense axis one stride. :func:`command` turns a LOAD or STORE
instruction of a program into this command (the start counters are divided out
there, so the hardware has no divider).

**Streaming.** One element a cycle enters the memory side. Consecutive addresses are
merged into one burst command of up to ``max_burst`` words. A LOAD queues a tag per
element (padding or data) in a FIFO of ``inflight`` entries, which covers the memory's
latency; the read data fill the lanes in order and each whole word is written to the
scratchpad. A STORE reads a scratchpad word, then sends its lanes as write data.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from barista_base.errors import InputError
from barista_hw.memory import collision_free_memory

from ..isa import Instruction, Op, Program, View
from ..lowering import WIDE_BITS
from ..memory import COL2IM_ELEMENTS, PortConfig
from ..traffic import StagePlan, conv_geometry, dram_tensor, lane_axis, stage_plan, tile_index
from .port import ADDR_BITS, LEN_BITS, max_length, port_signature
from .scratchpad import SpadGeometry

ACC_DEPTH = COL2IM_ELEMENTS  # col2im: the largest footprint (elements) one STORE adds into
LEVELS = 3  # counters per walker: the top one never wraps
COUNT_BITS = 16  # a level's counter (an ISA tile extent is 16 bits)
COORD_BITS = 18  # image coordinates (signed): heights and widths up to 2**17 - 1
OFFSET_BITS = 32  # signed address arithmetic, wider than the port's addresses
FIRST_BIT_BITS = ADDR_BITS + 5  # a bit address in DRAM (bus words of up to 32 bits)
STAGE_BITS = COUNT_BITS + 2  # a stage element's index share (signed, wrapping: sums exact)


def walker_layout(stage: bool = False) -> data.StructLayout:
    """One walker's command: start counters and shares, wrap sizes, per-level steps;
    ``stage``: with a stage share (the DMA's)."""
    shares = {"saddr": signed(STAGE_BITS), "sstep": data.ArrayLayout(signed(STAGE_BITS), LEVELS)}
    return data.StructLayout(
        {
            "cnt": data.ArrayLayout(unsigned(COUNT_BITS), LEVELS),
            "addr": signed(OFFSET_BITS),
            "y": signed(COORD_BITS),
            "x": signed(COORD_BITS),
            "size": data.ArrayLayout(unsigned(COUNT_BITS), LEVELS - 1),
            "step": data.ArrayLayout(signed(OFFSET_BITS), LEVELS),
            "step_y": data.ArrayLayout(signed(COORD_BITS), LEVELS),
            "step_x": data.ArrayLayout(signed(COORD_BITS), LEVELS),
            **(shares if stage else {}),
        }
    )


def position_layout(stage: bool = False) -> data.StructLayout:
    """A walker's position: its counters, address share and image coordinates (``stage``:
    and its stage share)."""
    return data.StructLayout(
        {
            "cnt": data.ArrayLayout(unsigned(COUNT_BITS), LEVELS),
            "addr": signed(OFFSET_BITS),
            "y": signed(COORD_BITS),
            "x": signed(COORD_BITS),
            **({"saddr": signed(STAGE_BITS)} if stage else {}),
        }
    )


def command_layout(spad_bits: int) -> data.StructLayout:
    """A DMA command: direction, scratchpad word, DRAM base, tile shape, two walkers."""
    return data.StructLayout(
        {
            "store": unsigned(1),
            "check": unsigned(1),  # test (y, x) against height x width (im2col)
            "col2im": unsigned(1),  # a STORE adding into the accumulator (View.IM2COL)
            "acc_base": signed(OFFSET_BITS),  # col2im: the footprint's first element
            "acc_len": unsigned(COUNT_BITS),  # col2im: the footprint's elements
            "spad": unsigned(spad_bits),
            "base": signed(OFFSET_BITS),
            "first_bit": unsigned(FIRST_BIT_BITS),  # packed: the tensor's bit address
            "dl": unsigned(COUNT_BITS),  # tile extent along the lane axis
            "do": unsigned(COUNT_BITS),  # tile extent along the other axis
            "blocks": unsigned(COUNT_BITS),  # ceil(dl / lanes): words per other-axis index
            "height": unsigned(COORD_BITS - 1),
            "width": unsigned(COORD_BITS - 1),
            "staged": unsigned(1),  # an im2col LOAD through the stage buffer
            "st_first": signed(OFFSET_BITS),  # the footprint's first element
            "st_stride": unsigned(OFFSET_BITS),  # elements between its runs (an image)
            "st_len": unsigned(COUNT_BITS),  # elements a run
            "st_runs": unsigned(COUNT_BITS),  # runs
            "st_total": unsigned(COUNT_BITS),  # the footprint's elements (runs x length)
            "la": walker_layout(stage=True),
            "lo": walker_layout(stage=True),
        }
    )


# -- the command, from an instruction ---------------------------------------------------


@dataclass(frozen=True)
class Walk:
    """One axis as a walker steps it: ``sizes`` of the two wrapping levels, each level's
    ``(addr, y, x)`` or ``(addr, y, x, stage)`` delta, and the start: counters and the
    axis's shares (the stage share, the DMA's: an element's index in the stage buffer of a
    staged LOAD)."""

    sizes: tuple[int, int]
    deltas: tuple[tuple[int, ...], ...]
    cnt: tuple[int, int, int]
    start: tuple[int, ...]

    def fields(self) -> dict:
        """The walker's command fields: a level's step is its delta less the lower levels'
        whole runs, which it undoes as they wrap to 0."""
        steps = []
        for lvl in range(LEVELS):
            steps.append(
                tuple(
                    self.deltas[lvl][c]
                    - sum((self.sizes[j] - 1) * self.deltas[j][c] for j in range(lvl))
                    for c in range(len(self.start))
                )
            )
        stage = {}
        if len(self.start) > 3:
            stage = {"saddr": _wrap(self.start[3]), "sstep": [_wrap(s[3]) for s in steps]}
        return {
            "cnt": list(self.cnt),
            "addr": self.start[0],
            "y": self.start[1],
            "x": self.start[2],
            "size": list(self.sizes),
            "step": [s[0] for s in steps],
            "step_y": [s[1] for s in steps],
            "step_x": [s[2] for s in steps],
            **stage,
        }


def _wrap(v: int) -> int:
    """``v`` as a :data:`STAGE_BITS` signed share (stage sums wrap; valid ones are exact)."""
    half = 1 << (STAGE_BITS - 1)
    return (v + half) % (2 * half) - half


def _stride(p: int, stride: int) -> Walk:
    """A dense axis from index ``p``: one unbounded level of ``stride``."""
    zero = (0, 0, 0, 0)
    return Walk((1, 1), (zero, zero, (stride, 0, 0, 0)), (0, 0, 0), (p * stride, 0, 0, 0))


def _view_axes(
    inst: Instruction, program: Program, p_row: int, p_col: int, plan: StagePlan | None = None
) -> tuple[Walk, Walk]:
    """Walkers of the view's row and column axes from view row ``p_row``, column ``p_col``;
    an im2col view's stage shares from ``plan`` (a column's image less the plan's first,
    its run's length an image)."""
    d = program.descriptors[inst["desc"]]
    if inst.sub == View.MATRIX:
        return _stride(p_row, d["row_stride"]), _stride(p_col, d["col_stride"])
    if inst.sub == View.FOLDED:
        ch, pix = d["channels"], d["pixels"]
        img, px = divmod(p_col, pix)
        col = Walk(
            (pix, 1),
            ((1, 0, 0, 0), (0, 0, 0, 0), (ch * pix, 0, 0, 0)),
            (px, 0, 0),
            (img * ch * pix + px, 0, 0, 0),
        )
        return _stride(p_row, pix), col
    g = conv_geometry(d)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = g.kernel, g.stride, g.pad, g.dilation
    h, w = g.height, g.width
    c, rest = divmod(p_row, kh * kw)
    ki, kj = divmod(rest, kw)
    chan = inst["group"] * g.group_channels + c
    at = (chan * h + ki * dh) * w + kj * dw
    row = Walk(
        (kw, kh),
        ((dw, 0, dw, dw), (dh * w, dh, 0, dh * w), (h * w, 0, 0, h * w)),
        (kj, ki, 0),
        (at, ki * dh, kj * dw, at),
    )
    img, px = divmod(p_col, g.pixels)
    oy, ox = divmod(px, g.out_width)
    y, x = oy * sh - ph, ox * sw - pw
    run, image0, skip = (plan.length, plan.image0, plan.skip) if plan else (0, 0, 0)
    col = Walk(
        (g.out_width, g.out_height),
        ((sw, 0, sw, sw), (sh * w, sh, 0, sh * w), (g.channels * h * w, 0, 0, run)),
        (ox, oy, 0),
        (img * g.channels * h * w + y * w + x, y, x, (img - image0) * run + y * w + x - skip),
    )
    return row, col


def _footprint(
    inst: Instruction, program: Program, acc_depth: int, acc_bits: int
) -> tuple[int, int]:
    """A col2im STORE's footprint: its first DRAM element and its length (from the first
    to the last element the tile adds into), checked against the engine's accumulator."""
    d = program.descriptors[inst["desc"]]
    if "tensor" in d and dram_tensor(inst, program)["bits"] != acc_bits:
        t = dram_tensor(inst, program)
        raise InputError(
            f"{inst.text()}: col2im into {t['name']!r} of {t['bits']} bits; the DMA's "
            f"accumulator elements are {acc_bits} bits"
        )
    index = tile_index(inst, program)
    valid = index[index >= 0]
    if not valid.size:
        return inst["dram"], 0
    lo, hi = int(valid.min()), int(valid.max())
    if hi - lo + 1 > acc_depth:
        raise InputError(
            f"{inst.text()}: col2im footprint of {hi - lo + 1} elements exceeds the DMA's "
            f"accumulator of {acc_depth}"
        )
    return inst["dram"] + lo, hi - lo + 1


def command(
    inst: Instruction,
    program: Program,
    geom: SpadGeometry,
    *,
    acc_depth: int = ACC_DEPTH,
    acc_bits: int = WIDE_BITS,
    packed: bool = False,
    stage_depth: int = 0,
) -> dict:
    """The DMA command (:func:`command_layout` fields) of LOAD or STORE ``inst``, whose
    scratchpad side has geometry ``geom``; a col2im STORE's footprint must fit the
    engine's accumulator of ``acc_depth`` elements of ``acc_bits`` bits; an im2col LOAD
    is staged where :func:`~barista_hw.device.traffic.stage_plan` says so for the
    engine's stage buffer of ``stage_depth`` elements.

    Unpacked, element addresses are the model's slots; ``packed`` (behind a
    :class:`~.packed.PackedPort`), they count from the tensor's first element and
    ``first_bit`` is its bit address (``8 * addr``, the tensor table's)."""
    if inst.op not in (Op.LOAD, Op.STORE):
        raise InputError(f"{inst.text()}: the DMA runs LOAD and STORE, not {inst.op.name}")
    if inst.op is Op.STORE and inst.sub == View.IM2COL and acc_depth == 0:
        raise InputError(f"{inst.text()}: this DMA has no col2im accumulator")
    rows, cols = inst["rows"], inst["cols"]
    plan = stage_plan(inst, program, geom.lanes, stage_depth)
    if inst["flags"] & 1:  # tile (i, j) is view (c0 + j, r0 + i)
        vrow, vcol = _view_axes(inst, program, inst["c0"], inst["r0"], plan)
        axes = (vcol, vrow)
    else:
        axes = _view_axes(inst, program, inst["r0"], inst["c0"], plan)
    la = lane_axis(inst["space"])
    dl, do = (rows, cols) if la == 0 else (cols, rows)
    blocks = -(-dl // geom.lanes)
    if blocks * do > geom.depth - inst["spad"]:
        raise InputError(
            f"{inst.text()}: {blocks * do} words from word {inst['spad']} overflow the "
            f"scratchpad's {geom.depth}"
        )
    d = program.descriptors[inst["desc"]]
    im2col = inst.sub == View.IM2COL
    col2im = im2col and inst.op is Op.STORE
    acc_base, acc_len = _footprint(inst, program, acc_depth, acc_bits) if col2im else (0, 0)
    base, first_bit = inst["dram"], 0
    if packed:
        t = dram_tensor(inst, program)
        if t["bits"] != (acc_bits if col2im else geom.bits):
            raise InputError(
                f"{inst.text()}: {t['name']!r} holds {t['bits']}-bit elements; the DMA "
                f"moves {geom.bits}-bit ones"
            )
        base, acc_base, first_bit = base - t["dram"], acc_base - t["dram"], 8 * t["addr"]
    return {
        "store": int(inst.op is Op.STORE),
        "check": int(im2col),
        "col2im": int(col2im),
        "acc_base": acc_base,
        "acc_len": acc_len,
        "spad": inst["spad"],
        "base": base,
        "first_bit": first_bit,
        "dl": dl,
        "do": do,
        "blocks": blocks,
        "height": d["height"] if im2col else 0,
        "width": d["width"] if im2col else 0,
        "la": axes[la].fields(),
        "lo": axes[1 - la].fields(),
        "staged": int(plan is not None),
        "st_first": base + plan.first if plan else 0,
        "st_stride": plan.stride if plan else 0,
        "st_len": plan.length if plan else 0,
        "st_runs": plan.segments if plan else 0,
        "st_total": plan.elements if plan else 0,
    }


def pack_command(fields: dict, geom: SpadGeometry) -> int:
    """The bits of a command (the ``cmd`` stream's payload)."""
    return command_layout(geom.addr_bits).const(fields).as_bits()


# -- the engine -----------------------------------------------------------------------------


def walker_levels(pos: data.View, cfg: data.View) -> tuple[Value, Value]:
    """Which level the walker's next step advances: level 0 where the first is true, else
    level 1 where the second is, else level 2 (the lower counters wrap)."""
    return pos.cnt[0] != cfg.size[0] - 1, pos.cnt[1] != cfg.size[1] - 1


def walker_step(m: Module, pos: data.View, cfg: data.View, name: str) -> data.View:
    """The walker position after one step (combinational)."""
    nxt = Signal(pos.shape(), name=name)
    m.d.comb += nxt.eq(pos)
    first, second = walker_levels(pos, cfg)
    with m.If(first):
        m.d.comb += [nxt.cnt[0].eq(pos.cnt[0] + 1), *_add(nxt, pos, cfg, 0)]
    with m.Elif(second):
        m.d.comb += [nxt.cnt[0].eq(0), nxt.cnt[1].eq(pos.cnt[1] + 1), *_add(nxt, pos, cfg, 1)]
    with m.Else():
        m.d.comb += [
            nxt.cnt[0].eq(0),
            nxt.cnt[1].eq(0),
            nxt.cnt[2].eq(pos.cnt[2] + 1),
            *_add(nxt, pos, cfg, 2),
        ]
    return nxt


def _add(nxt: data.View, pos: data.View, cfg: data.View, lvl: int) -> list:
    stage = [nxt.saddr.eq(pos.saddr + cfg.sstep[lvl])] if _staged(pos) else []
    return [
        nxt.addr.eq(pos.addr + cfg.step[lvl]),
        nxt.y.eq(pos.y + cfg.step_y[lvl]),
        nxt.x.eq(pos.x + cfg.step_x[lvl]),
        *stage,
    ]


def _staged(pos: data.View) -> bool:
    """Whether walker position ``pos`` has a stage share."""
    return "saddr" in dict(pos.shape())


def _start(w: data.View) -> list:
    """The position fields of a walker's command."""
    return [w.cnt, w.addr, w.y, w.x, *([w.saddr] if _staged(w) else [])]


def col2im_sum_bits(geom: SpadGeometry) -> int:
    """Bits of a col2im accumulator slot fed from a scratchpad of ``geom``: exact, as a
    slot takes at most one contribution of each of the tile's elements."""
    return geom.bits + (geom.depth * geom.lanes).bit_length()


class DmaEngine(wiring.Component):
    """LOAD and STORE between the memory port (``port``, unpacked: one ``geom.bits``-bit
    element a bus word) and one scratchpad of geometry ``geom`` (module docstring).

    Ports: ``cmd`` (in, :func:`command_layout` records, taken while idle); ``port``
    (the memory port's master); the scratchpad's write port ``s_w_addr``/``s_w_data``/
    ``s_w_en`` and read port ``s_r_addr``/``s_r_data`` (``spad_latency`` cycles);
    ``busy`` (a command is running; low again once a LOAD's last word is written or a
    STORE's last word is taken by the port).
    """

    def __init__(
        self,
        geom: SpadGeometry,
        *,
        addr_bits: int = ADDR_BITS,
        len_bits: int = LEN_BITS,
        max_burst: int = PortConfig.dma_burst,
        inflight: int = 32,
        spad_latency: int = 1,
        acc_depth: int = ACC_DEPTH,
        acc_bits: int = WIDE_BITS,
        stage_depth: int = 0,
    ) -> None:
        if not 0 <= stage_depth < 1 << COUNT_BITS:
            raise InputError(f"DMA stage buffer of {stage_depth} elements: 0 (none) to 65535")
        if not 1 <= max_burst <= max_length(len_bits):
            raise InputError(f"DMA bursts of {max_burst} words: 1 to {max_length(len_bits)}")
        if inflight < 2 or spad_latency < 1:
            raise InputError(f"DMA inflight {inflight} (>= 2), spad latency {spad_latency} (>= 1)")
        words = max(1, acc_bits // geom.bits)
        if acc_depth and (acc_bits % geom.bits or not 1 <= acc_depth < 1 << COUNT_BITS):
            raise InputError(
                f"DMA col2im accumulator of {acc_depth} elements of {acc_bits} bits: a "
                f"multiple of the {geom.bits}-bit bus word, 0 (none) to "
                f"{(1 << COUNT_BITS) - 1} deep"
            )
        if words * max(1, max_burst // words) > max(max_burst, max_length(len_bits)) or (
            words > inflight
        ):
            raise InputError(f"DMA col2im: {acc_bits}-bit elements need bursts of {words} words")
        self.geom, self.addr_bits, self.len_bits = geom, addr_bits, len_bits
        self.max_burst, self.inflight, self.spad_latency = max_burst, inflight, spad_latency
        self.acc_depth, self.acc_bits, self.stage_depth = acc_depth, acc_bits, stage_depth
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(geom.addr_bits))),
                "port": Out(port_signature(geom.bits, addr_bits, len_bits)),
                "s_w_addr": Out(geom.addr_bits),
                "s_w_data": Out(geom.word_bits),
                "s_w_en": Out(1),
                "s_r_addr": Out(geom.addr_bits),
                "s_r_data": In(geom.word_bits),
                "busy": Out(1),
                "first_bit": Out(FIRST_BIT_BITS),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        lanes, bits = self.geom.lanes, self.geom.bits
        cmd = Signal(command_layout(self.geom.addr_bits))
        active = Signal()
        at = position_layout(stage=True)
        la, lo = Signal(at), Signal(at)
        la_mark, lo_start = Signal(at), Signal(at)
        # Generator counters: lane, other-axis index, block; its lane-axis position t*lanes.
        lane = Signal(max(1, (lanes - 1).bit_length()))
        o = Signal(COUNT_BITS)
        t = Signal(COUNT_BITS)
        tw = Signal(COUNT_BITS + 1)
        gen_done = Signal()
        g_words = Signal(2 * COUNT_BITS)  # words the generator has finished (STORE)
        m.d.comb += [self.busy.eq(active), self.first_bit.eq(cmd.first_bit)]

        # -- taking a command
        m.d.comb += self.cmd.ready.eq(~active)
        with m.If(self.cmd.valid & ~active):
            p = self.cmd.payload
            m.d.sync += [cmd.eq(p), active.eq(1), gen_done.eq(0)]
            m.d.sync += [lane.eq(0), o.eq(0), t.eq(0), tw.eq(0), g_words.eq(0)]
            for pos, src in ((la, p.la), (la_mark, p.la), (lo, p.lo), (lo_start, p.lo)):
                m.d.sync += [a.eq(b) for a, b in zip(_start(pos), _start(src), strict=True)]

        # -- the element the generator presents
        e_valid, e_pad, e_take = Signal(), Signal(), Signal()
        e_addr = Signal(signed(OFFSET_BITS))
        e_value = Signal(bits)
        y, x = Signal(signed(COORD_BITS)), Signal(signed(COORD_BITS))
        lane_ok = Signal()
        m.d.comb += [
            e_addr.eq(cmd.base + la.addr + lo.addr),
            y.eq(la.y + lo.y),
            x.eq(la.x + lo.x),
            lane_ok.eq(tw + lane < cmd.dl),
        ]
        # Unsigned, a negative coordinate compares above the bound: one test a side.
        inside = (y.as_unsigned() < cmd.height) & (x.as_unsigned() < cmd.width)
        m.d.comb += e_pad.eq(~lane_ok | (cmd.check & ~inside))

        la_next = walker_step(m, la, cmd.la, "la_next")
        lo_next = walker_step(m, lo, cmd.lo, "lo_next")
        word_end = lane == lanes - 1
        row_end = o == cmd.do - 1
        with m.If(e_take):
            with m.If(~word_end):
                m.d.sync += [lane.eq(lane + 1), la.eq(la_next)]
            with m.Else():
                m.d.sync += [lane.eq(0), g_words.eq(g_words + 1)]
                with m.If(~row_end):
                    m.d.sync += [o.eq(o + 1), lo.eq(lo_next), la.eq(la_mark)]
                with m.Else():
                    # The block's last word: the lane walker moves on to the next block.
                    m.d.sync += [o.eq(0), lo.eq(lo_start), la.eq(la_next), la_mark.eq(la_next)]
                    m.d.sync += [t.eq(t + 1), tw.eq(tw + lanes)]
                    with m.If(t == cmd.blocks - 1):
                        m.d.sync += gen_done.eq(1)

        # -- STORE: the scratchpad word of the generator's element, and the next one
        # prefetched while its lanes go out (one read in flight at a time).
        word, nxt = Signal(self.geom.word_bits), Signal(self.geom.word_bits)
        word_ok, nxt_ok = Signal(), Signal()
        f_words = Signal(2 * COUNT_BITS)  # words whose read has been issued
        fetching = Signal(self.spad_latency)  # a read in flight, one bit a cycle of latency
        m.d.comb += self.s_r_addr.eq(cmd.spad + f_words)
        issue = active & cmd.store & (f_words != cmd.blocks * cmd.do) & ~fetching.any() & ~nxt_ok
        m.d.sync += fetching.eq((fetching << 1) | issue)
        with m.If(issue):
            m.d.sync += f_words.eq(f_words + 1)
        with m.If(self.cmd.valid & ~active):
            m.d.sync += [f_words.eq(0), word_ok.eq(0), nxt_ok.eq(0)]
        release = e_take & word_end  # the word's last lane goes out
        with m.If(fetching[-1]):
            # (nxt is empty here: a read is issued only while it is.)
            with m.If(~word_ok | release):
                m.d.sync += [word.eq(self.s_r_data), word_ok.eq(1)]
            with m.Else():
                m.d.sync += [nxt.eq(self.s_r_data), nxt_ok.eq(1)]
        with m.Elif(release):
            m.d.sync += [word.eq(nxt), word_ok.eq(nxt_ok), nxt_ok.eq(0)]
        m.d.comb += e_value.eq(word.word_select(lane, bits))
        m.d.comb += e_valid.eq(active & ~gen_done & ~cmd.staged & (~cmd.store | word_ok))

        # -- merging elements into burst commands
        # A LOAD's FIFO holds a tag per element (1: padding), a STORE's the write data.
        m.submodules.tags = tags = fifo.SyncFIFO(width=1, depth=self.inflight)
        m.submodules.wdata = wdata = fifo.SyncFIFO(width=bits, depth=self.inflight)
        room = Mux(cmd.store, wdata.w_rdy, tags.w_rdy)
        pend_valid = Signal()
        pend_addr = Signal(signed(OFFSET_BITS))
        pend_len = Signal(self.len_bits)
        # A command offered and not taken stays as it was (the stream rules): no extending.
        offered = Signal()
        contiguous = pend_valid & (e_addr == pend_addr + pend_len) & (pend_len != self.max_burst)
        e_burst = e_valid & ~cmd.col2im  # col2im elements go to the accumulator instead
        extend = e_burst & ~e_pad & contiguous & room & ~offered
        pc = self.port.cmd
        # A col2im STORE's second pass drives the port itself (by Mux: every output is a
        # continuous assignment, defined from time 0 in an event-driven simulator).
        col = self._col2im(m, cmd, active, gen_done, e_valid, e_pad, e_addr, e_value, wdata)
        st = self._staged(m, cmd, active, lo_start)
        ph2, stg = col["phase2"], cmd.staged
        m.d.comb += [
            pc.valid.eq(Mux(ph2, col["c_valid"], Mux(stg, st["c_valid"], pend_valid & ~extend))),
            pc.payload.addr.eq(Mux(ph2, col["c_addr"], Mux(stg, st["c_addr"], pend_addr))),
            pc.payload.length.eq(Mux(ph2, col["c_len"], Mux(stg, st["c_len"], pend_len))),
            pc.payload.write.eq(Mux(ph2, col["c_write"], cmd.store)),
        ]
        sent = pc.valid & pc.ready
        m.d.sync += offered.eq(pc.valid & ~pc.ready)
        start = e_burst & ~e_pad & ~extend & room & (~pend_valid | sent)
        # A STORE drops padding; a LOAD queues its tag (its zero needs no read).
        take_pad = e_burst & e_pad & (cmd.store | tags.w_rdy)
        m.d.comb += e_take.eq(extend | start | take_pad | (e_valid & cmd.col2im))
        with m.If(extend):
            m.d.sync += pend_len.eq(pend_len + 1)
        with m.Elif(start):
            m.d.sync += [pend_valid.eq(1), pend_addr.eq(e_addr), pend_len.eq(1)]
        with m.Elif(sent):
            m.d.sync += pend_valid.eq(0)
        m.d.comb += [
            tags.w_en.eq(e_take & ~cmd.store),
            tags.w_data.eq(e_pad),
            wdata.w_en.eq(Mux(cmd.col2im, col["push"], (extend | start) & cmd.store)),
            wdata.w_data.eq(Mux(cmd.col2im, col["w_data"], e_value)),
            self.port.w.valid.eq(wdata.r_rdy),
            self.port.w.payload.eq(wdata.r_data),
            wdata.r_en.eq(self.port.w.ready),
        ]

        # -- LOAD: read data (or a padding zero) into the lanes, whole words to the scratchpad
        r = self.port.r
        a_lane = Signal(max(1, (lanes - 1).bit_length()))
        a_words = Signal(2 * COUNT_BITS)
        lanes_in = Signal(self.geom.word_bits)
        got = Signal()
        value = Signal(bits)
        m.d.comb += [
            r.ready.eq((tags.r_rdy & ~tags.r_data) | col["r_ready"] | st["r_ready"]),
            got.eq(tags.r_rdy & (tags.r_data | r.valid)),
            tags.r_en.eq(got),
            value.eq(Mux(tags.r_data, 0, r.payload)),
        ]
        filled = Signal(self.geom.word_bits)
        for i in range(lanes):
            m.d.comb += filled[i * bits : (i + 1) * bits].eq(
                Mux(a_lane == i, value, lanes_in[i * bits : (i + 1) * bits])
            )
        m.d.sync += self.s_w_en.eq(0)
        with m.If(got):
            m.d.sync += [lanes_in.eq(filled), a_lane.eq(Mux(a_lane == lanes - 1, 0, a_lane + 1))]
            with m.If(a_lane == lanes - 1):
                m.d.sync += [
                    self.s_w_en.eq(1),
                    self.s_w_addr.eq(cmd.spad + a_words),
                    self.s_w_data.eq(filled),
                    a_words.eq(a_words + 1),
                ]
        with m.If(st["w_en"]):  # a staged LOAD's word, every lane at once
            m.d.sync += [
                self.s_w_en.eq(1),
                self.s_w_addr.eq(cmd.spad + a_words),
                self.s_w_data.eq(st["w_data"]),
                a_words.eq(a_words + 1),
            ]
        with m.If(self.cmd.valid & ~active):
            m.d.sync += [a_words.eq(0), a_lane.eq(0)]

        # -- the end of a command
        total = cmd.blocks * cmd.do
        load_done = ~cmd.store & (a_words == total) & ~self.s_w_en & st["filled"]
        store_done = cmd.store & ~cmd.col2im & gen_done & ~pend_valid & ~wdata.r_rdy
        with m.If(active & (load_done | store_done | col["done"])):
            m.d.sync += active.eq(0)
        return m

    def _staged(self, m: Module, cmd: data.View, active: Signal, lo_start: data.View) -> dict:
        """A staged im2col LOAD (:func:`~barista_hw.device.traffic.stage_plan`).

        Phase 1 reads the footprint's runs in bursts of ``max_burst`` elements into the
        stage buffer, one copy a lane (``lanes`` memories of ``stage_depth`` elements,
        written alike, in index order). Phase 2 makes a scratchpad word a cycle: each lane
        reads its copy at its element's stage index (the lane walker's stage share, kept
        per lane, plus the other walker's), padding and lanes past the tile's edge read as
        zero. The phases overlap: a word goes once every lane's element is in the buffer
        (its index below the elements written); the LOAD ends once the whole footprint is
        in. The lanes' positions of the next block of
        words are stepped one a cycle while the current block's words go out. Returns the
        port command, the read data's ``r_ready`` and the scratchpad word to write
        (``w_en``, ``w_data``).
        """
        lanes, bits, depth = self.geom.lanes, self.geom.bits, self.stage_depth
        if not depth:
            zero = Const(0)
            keys = ("c_valid", "c_addr", "c_len", "r_ready", "w_en", "w_data")
            return {**dict.fromkeys(keys, zero), "filled": Const(1)}
        new = self.cmd.valid & ~active
        on = active & cmd.staged
        # -- phase 1: the footprint's runs into every lane's copy
        run, off = Signal(COUNT_BITS), Signal(COUNT_BITS)
        run_addr = Signal(signed(OFFSET_BITS))
        left = Signal(COUNT_BITS)
        m.d.comb += left.eq(cmd.st_len - off)
        now = Mux(left < self.max_burst, left, self.max_burst)
        c_valid = on & (run != cmd.st_runs)
        with m.If(c_valid & self.port.cmd.ready):
            with m.If(left == now):
                m.d.sync += [run.eq(run + 1), off.eq(0), run_addr.eq(run_addr + cmd.st_stride)]
            with m.Else():
                m.d.sync += off.eq(off + now)
        wrote = Signal(COUNT_BITS)
        beat = on & self.port.r.valid
        with m.If(beat):
            m.d.sync += wrote.eq(wrote + 1)
        with m.If(new):
            m.d.sync += [run.eq(0), off.eq(0), run_addr.eq(self.cmd.payload.st_first)]
            m.d.sync += wrote.eq(0)

        # -- the lanes' positions, a block ahead
        rec = data.StructLayout(
            {"s": signed(STAGE_BITS), "y": signed(COORD_BITS), "x": signed(COORD_BITS)}
        )
        pp = Signal(position_layout(stage=True))
        pp_next = walker_step(m, pp, cmd.la, "st_pp_next")
        nxt = [Signal(rec, name=f"st_nxt{i}") for i in range(lanes)]
        cur = [Signal(rec, name=f"st_cur{i}") for i in range(lanes)]
        pi = Signal(range(lanes + 1))
        ahead = pi == lanes
        with m.If(on & ~ahead):
            for i in range(lanes):
                with m.If(pi == i):
                    m.d.sync += [nxt[i].s.eq(pp.saddr), nxt[i].y.eq(pp.y), nxt[i].x.eq(pp.x)]
            m.d.sync += [pp.eq(pp_next), pi.eq(pi + 1)]
        loaded = Signal(COUNT_BITS)  # blocks whose lanes went into ``cur``
        cur_ok = Signal()
        cur_tw, next_tw = Signal(COUNT_BITS + 1), Signal(COUNT_BITS + 1)
        o = Signal(COUNT_BITS)
        lo = Signal(position_layout(stage=True))
        lo_next = walker_step(m, lo, cmd.lo, "st_lo_next")
        ready = Signal(lanes)  # each lane's element is padding or already in the buffer
        issue = on & cur_ok & ready.all()
        last = o == cmd.do - 1
        load = on & ahead & (loaded != cmd.blocks) & (~cur_ok | (issue & last))
        with m.If(load):
            m.d.sync += [c.eq(n) for c, n in zip(cur, nxt, strict=True)]
            m.d.sync += [cur_ok.eq(1), cur_tw.eq(next_tw), next_tw.eq(next_tw + lanes)]
            m.d.sync += [loaded.eq(loaded + 1), pi.eq(0)]
        with m.Elif(issue & last):
            m.d.sync += cur_ok.eq(0)
        with m.If(issue):
            with m.If(last):
                m.d.sync += [o.eq(0), lo.eq(lo_start)]
            with m.Else():
                m.d.sync += [o.eq(o + 1), lo.eq(lo_next)]
        with m.If(new):
            p = self.cmd.payload
            m.d.sync += [a.eq(b) for a, b in zip(_start(pp), _start(p.la), strict=True)]
            m.d.sync += [a.eq(b) for a, b in zip(_start(lo), _start(p.lo), strict=True)]
            m.d.sync += [pi.eq(0), loaded.eq(0), cur_ok.eq(0), next_tw.eq(0), o.eq(0)]

        # -- phase 2: every lane reads its copy; the word is written the cycle after
        idx_bits = max(1, (depth - 1).bit_length())
        pad, got = Signal(lanes), Signal()
        lanes_out = []
        for i in range(lanes):
            ram = collision_free_memory(unsigned(bits), depth)
            m.submodules[f"stage{i}"] = ram
            wp, rp = ram.write_port(), ram.read_port(domain="sync")
            s, y, x = Signal(STAGE_BITS), Signal(signed(COORD_BITS)), Signal(signed(COORD_BITS))
            m.d.comb += [
                s.eq(cur[i].s + lo.saddr),
                y.eq(cur[i].y + lo.y),
                x.eq(cur[i].x + lo.x),
                wp.addr.eq(wrote),
                wp.data.eq(self.port.r.payload),
                wp.en.eq(beat),
                rp.addr.eq(s[:idx_bits]),
            ]
            inside = (y.as_unsigned() < cmd.height) & (x.as_unsigned() < cmd.width)
            pad_now = ~inside | (cur_tw + i >= cmd.dl)
            # Phase 1 writes the buffer in index order: below ``wrote``, an element is in.
            m.d.comb += ready[i].eq(pad_now | (s[:idx_bits] < wrote))
            m.d.sync += pad[i].eq(pad_now)
            lanes_out.append(Mux(pad[i], 0, rp.data))
        m.d.sync += got.eq(issue)
        return {
            "c_valid": c_valid,
            "c_addr": run_addr + off,
            "c_len": now,
            "r_ready": on,
            "w_en": got,
            "w_data": Cat(*lanes_out),
            # A staged LOAD ends once its whole footprint is in, read or not (no read of
            # it is left in the port for the next command).
            "filled": ~cmd.staged | (wrote == cmd.st_total),
        }

    def _col2im(
        self,
        m: Module,
        cmd: data.View,
        active: Signal,
        gen_done: Signal,
        e_valid: Signal,
        e_pad: Signal,
        e_addr: Signal,
        e_value: Signal,
        wdata: fifo.SyncFIFO,
    ) -> dict:
        """The col2im STORE (:func:`~barista_hw.device.dma.scatter_add`), in two passes.

        Pass 1 adds each tile element into its footprint slot of the accumulator RAM at
        full width (a read-modify-write a cycle; the word written in the previous cycle
        is forwarded, as the RAM's read of it is undefined). Pass 2 walks the footprint
        in chunks of whole bursts: a read, then a write of the same words; each element
        read (``acc_bits`` bits over ``words`` bus words, low word first) gets its slot's
        sum added, saturates once and goes back, and the slot is cleared for the next
        STORE. Returns the signals the engine muxes onto the port and the write FIFO.
        """
        if not self.acc_depth:  # no col2im: nothing drives the port
            zero = Const(0)
            keys = ("phase2", "c_valid", "c_addr", "c_len", "c_write", "push", "w_data")
            return {**dict.fromkeys(keys, zero), "r_ready": zero, "done": zero}
        bits, words = self.geom.bits, self.acc_bits // self.geom.bits
        chunk = max(1, self.max_burst // words)  # elements a burst
        sum_bits = col2im_sum_bits(self.geom)
        m.submodules.acc = acc = collision_free_memory(signed(sum_bits), self.acc_depth)
        wp, rp = acc.write_port(), acc.read_port(domain="sync")
        idx_bits = max(1, (self.acc_depth - 1).bit_length())
        phase2 = Signal()
        with m.If(self.cmd.valid & ~active):
            m.d.sync += phase2.eq(0)

        # -- pass 1: sum the tile into the accumulator
        e_idx = Signal(idx_bits)
        m.d.comb += e_idx.eq(e_addr - cmd.acc_base)
        p_valid, p_idx, p_val = Signal(), Signal(idx_bits), Signal(signed(bits))
        f_valid, f_idx, f_val = Signal(), Signal(idx_bits), Signal(signed(sum_bits))
        old, new = Signal(signed(sum_bits)), Signal(signed(sum_bits))
        m.d.sync += [
            p_valid.eq(e_valid & cmd.col2im & ~e_pad),
            p_idx.eq(e_idx),
            p_val.eq(e_value.as_signed()),
            f_valid.eq(p_valid),
            f_idx.eq(p_idx),
            f_val.eq(new),
        ]
        m.d.comb += [
            old.eq(Mux(f_valid & (f_idx == p_idx), f_val, rp.data)),
            new.eq(old + p_val),
        ]
        with m.If(active & cmd.col2im & ~phase2 & gen_done & ~p_valid):
            m.d.sync += phase2.eq(1)

        # -- pass 2: read, add, saturate, write back, by chunks of the footprint
        issued = Signal(COUNT_BITS)  # elements whose read and write commands are sent
        write_next = Signal()  # the chunk's read is sent, its write is next
        sent_len = Signal(COUNT_BITS)  # the chunk's elements
        left = Signal(COUNT_BITS)
        m.d.comb += left.eq(cmd.acc_len - issued)
        now = Mux(write_next, sent_len, Mux(left < chunk, left, chunk))
        c_valid = phase2 & (write_next | (issued != cmd.acc_len))
        with m.If(c_valid & self.port.cmd.ready):
            m.d.sync += write_next.eq(~write_next)
            with m.If(write_next):
                m.d.sync += issued.eq(issued + sent_len)
            with m.Else():
                m.d.sync += sent_len.eq(now)

        done = Signal(COUNT_BITS)  # elements written back (their words queued)
        asm = Signal(self.acc_bits)  # the element's words as they arrive
        w_i = Signal(range(words))
        fresh = Signal()  # rp.data is the accumulator slot of element ``done``
        out, out_left = Signal(self.acc_bits), Signal(range(words + 1))
        push = (out_left != 0) & wdata.w_rdy
        r = self.port.r
        full = Signal(self.acc_bits)
        m.d.comb += full.eq(Cat(asm, r.payload)[bits:])
        last_word = w_i == words - 1
        room = (out_left == 0) | ((out_left == 1) & push)
        r_ready = phase2 & (~last_word | (fresh & room))
        beat = r.valid & r_ready
        finish = beat & last_word
        lim = 1 << (self.acc_bits - 1)
        total = Signal(signed(max(self.acc_bits, sum_bits) + 1))
        m.d.comb += total.eq(full.as_signed() + rp.data)
        sat = Mux(total >= lim, lim - 1, Mux(total < -lim, -lim, total))
        m.d.sync += fresh.eq(phase2 & ~finish)
        with m.If(beat):
            m.d.sync += [asm.eq(full), w_i.eq(Mux(last_word, 0, w_i + 1))]
        with m.If(finish):
            m.d.sync += [out.eq(sat[: self.acc_bits]), out_left.eq(words), done.eq(done + 1)]
        with m.Elif(push):
            m.d.sync += [out.eq(out >> bits), out_left.eq(out_left - 1)]
        with m.If(self.cmd.valid & ~active):
            m.d.sync += [issued.eq(0), write_next.eq(0), done.eq(0), w_i.eq(0), out_left.eq(0)]

        # The RAM's ports: pass 1's read-modify-write, pass 2's read and clear.
        m.d.comb += [
            rp.addr.eq(Mux(phase2, done, e_idx)),
            wp.addr.eq(Mux(phase2, done, p_idx)),
            wp.data.eq(Mux(phase2, 0, new)),
            wp.en.eq(Mux(phase2, finish, p_valid)),
        ]
        all_sent = (issued == cmd.acc_len) & ~write_next
        flushed = (done == cmd.acc_len) & (out_left == 0) & ~wdata.r_rdy
        return {
            "phase2": phase2,
            "c_valid": c_valid,
            "c_addr": (cmd.acc_base + issued) * words,
            "c_len": now * words,
            "c_write": write_next,
            "push": push,
            "w_data": out[:bits],
            "r_ready": r_ready,
            "done": phase2 & all_sent & flushed,
        }
