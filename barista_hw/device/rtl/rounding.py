"""The vector unit's rounding and saturation as Amaranth logic: :func:`barista_hw.device.vector.
shift_round` and its saturation, element by element.

Each function adds combinational logic to a module and returns the signals it made, so the
caller puts registers between them. Values are signed; a shift is a signed signal (``> 0``:
right, rounded; ``<= 0``: left, exact). The random word is the lane's 32-bit LFSR state.
``late``: the shift, the mode and the width are an instruction's (steady while it runs);
what they alone decide (clipped shifts, masks, limits) is registered, for timing, so it
follows them a cycle late: the caller uses the results from the second cycle after they
change.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned

from barista_hw.numfmt import Rounding

WORD_BITS = 32  # the LFSR word a stochastic rounding adds (barista_hw.lfsr.STATE_BITS)
_MAX_SHIFT = 63  # the model's shifts saturate at 63 (numpy's int64 shift limit)


def ones_from(n: Value | int, width: int) -> Value:
    """``width`` bits, ones at bits ``>= n`` (``0 <= n``): a shift of ones, which
    synthesises to a few LUTs a bit (an adder's ``(1 << n) - 1`` takes a carry chain)."""
    return (Const((1 << width) - 1, width) << Value.cast(n).as_unsigned())[:width]


def magnitude_bits(m: Module, x: Value, name: str) -> Signal:
    """The bit length of ``|x|`` (0 for 0): what ``Stats.overflow`` is measured in. A tree
    of halves (is the upper half nonzero? then its position, else the lower's), not a
    priority chain through every bit."""
    mag = Signal(unsigned(len(x) + 1), name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(x < 0, -x, x))
    size = max(2, 1 << (len(mag) - 1).bit_length())
    bit = [mag[i] if i < len(mag) else Const(0, 1) for i in range(size)]
    nodes = [(lo | hi, hi) for lo, hi in zip(bit[::2], bit[1::2], strict=True)]
    while len(nodes) > 1:
        pairs = zip(nodes[::2], nodes[1::2], strict=True)
        nodes = [(hi[0] | lo[0], Cat(Mux(hi[0], hi[1], lo[1]), hi[0])) for lo, hi in pairs]
    nonzero, position = nodes[0]
    length = Signal(range(len(mag) + 1), name=f"{name}_len")
    m.d.comb += length.eq(Mux(nonzero, position + 1, 0))
    return length


def shift_round(
    m: Module,
    v: Value,
    shift: Value | int,
    rounding: Value | Rounding,
    word: Value | None,
    name: str,
    *,
    want_bits: bool = False,
    bits_of: tuple[Value, Value] | None = None,
    late: bool = False,
) -> tuple[Signal, Signal | None]:
    """``(raw, raw_bits)``: ``v * 2**-shift`` rounded as :func:`vector.shift_round` rounds
    before it saturates, and (``want_bits``) the bit length of ``|raw|`` before any clipping.

    ``|v| < 2**62``, ``len(v) <= 64``. ``raw`` is 64 bits: a left shift whose result
    does not fit is clamped to the extreme of its sign (far outside any saturation limit,
    bits <= 62), and ``raw_bits`` counts the whole shift; ``bits_of`` ``(when, x)``: where
    ``when``, ``raw_bits`` is the bit length of ``|x|`` instead (one measurement for a
    result that may come from elsewhere). ``word`` may be None when
    ``rounding`` is a constant other than stochastic. One right shifter serves every
    rounding mode (``((v >> pre) + addend) >> post``: see :func:`_addend`). ``late``: what
    the shift and the mode alone decide is registered (the module docstring).
    """
    width = max(len(v), 64)
    shift = Value.cast(shift)
    fixed = _Fixed(m, late, name)
    vx = Signal(signed(width), name=f"{name}_v")
    m.d.comb += vx.eq(v)
    # Signals, not expressions: Amaranth lowers an expression again at every use, and the
    # shifters built on these made elaboration ten times slower.
    k_of = Signal(range(_MAX_SHIFT + 1), name=f"{name}_k_of")  # left shift, clipped
    s_of = Signal(range(_MAX_SHIFT + 1), name=f"{name}_s_of")  # right shift, clipped
    m.d.comb += [
        k_of.eq(Mux(-shift > _MAX_SHIFT, _MAX_SHIFT, -shift)),
        s_of.eq(Mux(shift > _MAX_SHIFT, _MAX_SHIFT, shift)),
    ]
    left = fixed(shift <= 0, 1, "left")
    k = fixed(k_of, range(_MAX_SHIFT + 1), "k")
    s = fixed(s_of, range(_MAX_SHIFT + 1), "s")
    # Left: exact when the bits shifted out and the new sign bit equal v's sign (the
    # top k + 1 bits: ``keep``), else clamped; no shifter wider than ``width``.
    keep = fixed(ones_from(width - 1 - k_of, width), unsigned(width), "keep")
    sign = vx[-1]
    fits = ~((vx.as_unsigned() ^ sign.replicate(width)) & keep).any()
    extreme = Mux(sign, Const(-(1 << (width - 1)), signed(width)), (1 << (width - 1)) - 1)
    shifted = Mux(fits, (vx << k)[:width].as_signed(), extreme)

    mask_of = Signal(_MAX_SHIFT, name=f"{name}_mask_of")  # 2**s - 1
    m.d.comb += mask_of.eq(~ones_from(s_of, _MAX_SHIFT))
    modes = [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC, Rounding.FLOOR]
    if isinstance(rounding, Rounding):  # a fixed mode: only its logic
        modes, mode_of = [rounding], Const(int(rounding), 2)
    else:
        mode_of = rounding
    if Rounding.STOCHASTIC in modes and word is None:
        raise ValueError(f"{name}: stochastic rounding needs a random word")
    pre, addend, post = _addend(m, vx, shift, (s_of, s), mask_of, modes, mode_of, word, fixed)
    right = Signal(signed(width + 2), name=f"{name}_right")
    m.d.comb += right.eq(((vx >> pre) + addend) >> post)
    if Rounding.NEAREST_EVEN in modes:  # |v| < 2**62: below half of the last bit
        zero = fixed((mode_of == Rounding.NEAREST_EVEN) & (shift >= _MAX_SHIFT), 1, "zero")
        right_v = Mux(zero, 0, right)
    else:
        right_v = right
    raw = Signal(signed(width), name=f"{name}_raw")
    m.d.comb += raw.eq(Mux(left, shifted, right_v))
    if not want_bits:
        return raw, None
    # Left: |v| << k has bit length bits(|v|) + k for v != 0 (k unclipped); right: measured.
    when, other = bits_of if bits_of is not None else (Const(0), Const(0))
    length = magnitude_bits(m, Mux(when, other, Mux(left, vx, raw)), name)
    raw_bits = Signal(range(2 * 512), name=f"{name}_bits")
    by = fixed(shift, shift.shape(), "shift")
    m.d.comb += raw_bits.eq(Mux(~when & left & (length != 0), length - by, length))
    return raw, raw_bits


class _Fixed:
    """Signals of what an instruction's shift, mode or width alone decide: combinational,
    or (``late``) registered from them."""

    def __init__(self, m: Module, late: bool, name: str) -> None:
        self.m, self.domain, self.name = m, "sync" if late else "comb", name

    def __call__(self, value: Value, shape: object, what: str) -> Signal:
        sig = Signal(shape, name=f"{self.name}_{what}")
        self.m.d[self.domain] += sig.eq(value)
        return sig


def _addend(
    m: Module,
    v: Value,
    shift: Value,
    s: tuple[Value, Signal],
    mask: Value,
    modes: list[Rounding],
    mode: Value,
    word: Value | None,
    fixed: _Fixed,
) -> tuple[Value, Value, Value]:
    """``(pre, addend, post)`` of ``modes``' right shift ``((v >> pre) + addend) >> post``
    (``s``: the shift clipped to 63, as given and as ``fixed`` holds it; ``mask``: 2**s - 1
    as given): floor adds nothing; nearest-even half an LSB less one plus the kept LSB
    (``v``'s bit ``s``); stochastic the word's low ``s`` bits, or for shift > 32 drops
    ``shift - 32`` bits first, adds the whole word and drops 32 more (the model's
    truncation below 2**-32 LSB)."""
    width, (s_of, s_now) = len(v), s
    far = Const(0)
    if Rounding.STOCHASTIC in modes:
        far = (mode == Rounding.STOCHASTIC) & (shift > WORD_BITS)
    clip = Mux(shift - WORD_BITS > _MAX_SHIFT, _MAX_SHIFT, shift - WORD_BITS)
    pre = fixed(Mux(far, clip, 0), range(_MAX_SHIFT + 1), "pre")
    post = fixed(Mux(far, WORD_BITS, s_of), range(_MAX_SHIFT + 1), "post")
    now = fixed(mode, 2, "mode")
    addend = Signal(unsigned(_MAX_SHIFT + 1), name=f"{fixed.name}_add")
    if Rounding.NEAREST_EVEN in modes:  # half + lsb as a choice of two: no carry chain
        half = fixed(mask >> 1, unsigned(_MAX_SHIFT), "half")
        half_up = fixed((mask >> 1) + 1, unsigned(_MAX_SHIFT), "half_up")
        lsb = Signal(name=f"{fixed.name}_lsb")
        m.d.comb += lsb.eq(v.bit_select(s_now, 1) if width > _MAX_SHIFT else (v >> s_now)[0])
    if Rounding.STOCHASTIC in modes:
        word_far = fixed(far, 1, "far")
        word_mask = fixed(mask, unsigned(_MAX_SHIFT), "mask")
    for each in modes:
        with m.If(now == each):
            if each is Rounding.NEAREST_EVEN:
                m.d.comb += addend.eq(Mux(lsb, half_up, half))
            elif each is Rounding.STOCHASTIC:
                m.d.comb += addend.eq(Mux(word_far, word, word & word_mask))
    return pre, addend, post


def saturate(
    m: Module,
    raw: Value,
    bits: Value | int,
    name: str,
    out_width: int | None = None,
    *,
    late: bool = False,
) -> tuple[Signal, Signal]:
    """``(q, clipped)``: ``raw`` clipped to ``bits`` signed bits (``bits`` 2..62, ``len(raw)
    <= 64``). ``raw`` fits when its bits from ``bits - 1`` up all equal its sign (``top``,
    a thermometer of ``bits``); the limits are ``top`` (the lowest) and its complement.
    ``late``: ``top`` is registered (the module docstring)."""
    width = out_width if out_width is not None else (bits if isinstance(bits, int) else len(raw))
    wide = max(len(raw), 64)
    r = Signal(signed(wide), name=f"{name}_r")
    m.d.comb += r.eq(raw)
    # ones at bits >= bits - 1
    top = _Fixed(m, late and not isinstance(bits, int), name)(
        ones_from(bits - 1, wide), unsigned(wide), "top"
    )
    sign = r[-1]
    clipped = Signal(name=f"{name}_clip")
    m.d.comb += clipped.eq(((r.as_unsigned() ^ sign.replicate(wide)) & top).any())
    q = Signal(signed(width), name=f"{name}_q")
    m.d.comb += q.eq(Mux(clipped, Mux(sign, top, ~top).as_signed(), r))
    return q, clipped
