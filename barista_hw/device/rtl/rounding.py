"""The vector unit's rounding and saturation as Amaranth logic: :func:`barista_hw.device.vector.
shift_round` and its saturation, element by element.

Each function adds combinational logic to a module and returns the signals it made, so the
caller puts registers between them. Values are signed; a shift is a signed signal (``> 0``:
right, rounded; ``<= 0``: left, exact). The random word is the lane's 32-bit LFSR state.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value, signed, unsigned

from barista_hw.numfmt import Rounding

WORD_BITS = 32  # the LFSR word a stochastic rounding adds (barista_hw.lfsr.STATE_BITS)
_MAX_SHIFT = 63  # the model's shifts saturate at 63 (numpy's int64 shift limit)


def magnitude_bits(m: Module, x: Value, name: str) -> Signal:
    """The bit length of ``|x|`` (0 for 0): what ``Stats.overflow`` is measured in."""
    mag = Signal(unsigned(len(x) + 1), name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(x < 0, -x, x))
    length = Signal(range(len(mag) + 1), name=f"{name}_len")
    for i in range(len(mag)):  # the highest set bit wins: later assignments take priority
        with m.If(mag[i]):
            m.d.comb += length.eq(i + 1)
    return length


def shift_round(
    m: Module,
    v: Value,
    shift: Value,
    rounding: Value | Rounding,
    word: Value | None,
    name: str,
    *,
    want_bits: bool = False,
) -> tuple[Signal, Signal | None]:
    """``(raw, raw_bits)``: ``v * 2**-shift`` rounded as :func:`vector.shift_round` rounds
    before it saturates, and (``want_bits``) the bit length of ``|raw|`` before any clipping.

    ``|v| < 2**62``. A left shift past 63 is clipped to 63: ``raw`` is then far outside any
    saturation limit (bits <= 62) with the right sign, and ``raw_bits`` counts the whole
    shift. ``word`` may be None when ``rounding`` is a constant other than stochastic.
    """
    width = max(len(v), 64)
    left = Signal(name=f"{name}_left")
    m.d.comb += left.eq(shift <= 0)
    k = Signal(range(_MAX_SHIFT + 1), name=f"{name}_k")  # left shift, clipped
    s = Signal(range(_MAX_SHIFT + 1), name=f"{name}_s")  # right shift, clipped
    m.d.comb += [
        k.eq(Mux(-shift > _MAX_SHIFT, _MAX_SHIFT, -shift)),
        s.eq(Mux(shift > _MAX_SHIFT, _MAX_SHIFT, shift)),
    ]
    shifted = Signal(signed(width + _MAX_SHIFT), name=f"{name}_shl")
    m.d.comb += shifted.eq(v << k)

    mask = Signal(unsigned(_MAX_SHIFT), name=f"{name}_mask")  # 2**s - 1
    m.d.comb += mask.eq((Const(1, _MAX_SHIFT + 1) << s) - 1)

    raw = Signal(signed(width + _MAX_SHIFT), name=f"{name}_raw")
    modes = [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC, Rounding.FLOOR]
    if isinstance(rounding, Rounding):  # a fixed mode: only its logic
        modes, mode = [rounding], Const(int(rounding), 2)
    else:
        mode = rounding
    # A Mux chain, not an If chain: Yosys writes the latter as a casez that Verilator's
    # lint flags as overlapping when a condition is constant (a fixed shift or mode).
    choice: Value = _right(m, v, shift, s, mask, modes[-1], word, name)
    for each in modes[-2::-1]:
        choice = Mux(mode == each, _right(m, v, shift, s, mask, each, word, name), choice)
    m.d.comb += raw.eq(Mux(left, shifted, choice))
    if not want_bits:
        return raw, None
    # Left: |v| << k has bit length bits(|v|) + k for v != 0 (k unclipped); right: measured.
    length = magnitude_bits(m, Mux(left, v, raw[:width].as_signed()), name)
    raw_bits = Signal(range(2 * 512), name=f"{name}_bits")
    m.d.comb += raw_bits.eq(Mux(left & (length != 0), length - shift, length))
    return raw, raw_bits


def _right(
    m: Module,
    v: Value,
    shift: Value | int,
    s: Value,
    mask: Value,
    mode: Rounding,
    word: Value | None,
    name: str,
) -> Value:
    """``v >> shift`` rounded by ``mode`` (``s``: the shift clipped to 63, ``mask``: 2**s - 1)."""
    width = max(len(v), 64)
    if mode is Rounding.FLOOR:
        return v >> s
    if mode is Rounding.NEAREST_EVEN:
        lsb = Signal(name=f"{name}_lsb")
        m.d.comb += lsb.eq((v >> s)[0])
        nearest = Signal(signed(width + 2), name=f"{name}_ne")
        m.d.comb += nearest.eq((v + (mask >> 1) + lsb) >> s)
        return Mux(shift >= _MAX_SHIFT, 0, nearest)
    if word is None:
        raise ValueError(f"{name}: stochastic rounding needs a random word")
    # shift <= 32: add the word's low bits; beyond: drop shift - 32 bits first, add the
    # whole word, drop 32 more (the model's truncation below 2**-32 LSB).
    far = shift > WORD_BITS
    pre_shift = Signal(range(_MAX_SHIFT + 1), name=f"{name}_pre")
    m.d.comb += pre_shift.eq(
        Mux(far, Mux(shift - WORD_BITS > _MAX_SHIFT, _MAX_SHIFT, shift - WORD_BITS), 0)
    )
    drawn = Signal(signed(width + 2), name=f"{name}_sr")
    m.d.comb += drawn.eq(((v >> pre_shift) + Mux(far, word, word & mask)) >> Mux(far, WORD_BITS, s))
    return drawn


def saturate(
    m: Module, raw: Value, bits: Value | int, name: str, out_width: int | None = None
) -> tuple[Signal, Signal]:
    """``(q, clipped)``: ``raw`` clipped to ``bits`` signed bits (``bits`` 2..62)."""
    width = out_width if out_width is not None else (bits if isinstance(bits, int) else len(raw))
    hi = Signal(signed(64), name=f"{name}_hi")
    amount = bits - 1 if isinstance(bits, int) else (bits - 1).as_unsigned()
    m.d.comb += hi.eq((Const(1, 64) << amount) - 1)
    lo = Signal(signed(65), name=f"{name}_lo")
    m.d.comb += lo.eq(-hi - 1)
    q = Signal(signed(width), name=f"{name}_q")
    clipped = Signal(name=f"{name}_clip")
    with m.If(raw > hi):
        m.d.comb += [q.eq(hi), clipped.eq(1)]
    with m.Elif(raw < lo):
        m.d.comb += [q.eq(lo), clipped.eq(1)]
    with m.Else():
        m.d.comb += q.eq(raw)
    return q, clipped
