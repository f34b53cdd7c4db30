"""ProcessingElement in the Amaranth simulator: MAC, bubbles, capture on last, drain."""

from amaranth.sim import Simulator

from barista_hw.numfmt import FixedFormat
from barista_hw.pe import ProcessingElement


def _run(fmt: FixedFormat, terms: list[tuple[int, int, int, int]], drain_in: int) -> dict:
    """Feed (a, b, valid, last) per cycle; then drain once from ``drain_in``."""
    pe = ProcessingElement(fmt)
    seen: dict = {"banks": [], "passthrough": []}

    async def tb(ctx) -> None:  # noqa: ANN001
        for a, b, valid, last in terms + [(0, 0, 0, 0)] * 3:
            ctx.set(pe.a, a)
            ctx.set(pe.b, b)
            ctx.set(pe.valid, valid)
            ctx.set(pe.last, last)
            await ctx.tick()
            seen["passthrough"].append((ctx.get(pe.a_o), ctx.get(pe.b_o), ctx.get(pe.valid_o)))
            seen["banks"].append(ctx.get(pe.bank))
        ctx.set(pe.shift_i, drain_in)
        ctx.set(pe.drain, 1)
        await ctx.tick()
        seen["drained"] = ctx.get(pe.bank)

    sim = Simulator(pe)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return seen


def test_pe_accumulates_valid_terms_and_captures_on_last() -> None:
    fmt = FixedFormat(8, 4, 24)
    terms = [
        (3, 4, 1, 0),
        (99, 99, 0, 0),
        (-128, -128, 1, 0),
        (-5, 7, 1, 1),  # tile 1
        (2, 2, 1, 1),
    ]  # tile 2 starts from zero: K = 1
    seen = _run(fmt, terms, drain_in=-77)
    assert seen["passthrough"][0] == (3, 4, 1)  # one-cycle hop to the neighbours
    assert seen["passthrough"][1] == (99, 99, 0)
    # Result visible three cycles after the last term enters (input, product, acc).
    assert seen["banks"][5] == 3 * 4 + 128 * 128 - 35
    assert seen["banks"][6] == 4
    assert seen["drained"] == -77


def test_pe_accumulator_wraps_modulo_its_width() -> None:
    fmt = FixedFormat(8, 0, 16)
    terms = [(-128, -128, 1, 0)] * 3 + [(-128, -128, 1, 1)]  # 4 * 16384 = 65536 = 0 mod 2**16
    seen = _run(fmt, terms, drain_in=0)
    assert seen["banks"][5] == 0
