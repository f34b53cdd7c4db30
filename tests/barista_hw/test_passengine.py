"""barista_hw.passengine, passpe, passrequant: the per-pass minifloat engine (E4M3 forward,
E5M2 gradients on one array), against the one-format model of each pass, in pysim."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw import fpgemm
from barista_hw.accelerator import SharedEngine
from barista_hw.command import PASS_IDS, GemmCommand
from barista_hw.config import EngineConfig, Pass, parse_engine_format
from barista_hw.engine import command_layout
from barista_hw.fpformat import MinifloatGemmFormat
from barista_hw.minifloat import PRESETS
from barista_hw.numfmt import Rounding
from barista_hw.passengine import PassGemmFormat
from barista_hw.passpe import PassArith, TaggedDecoder
from barista_hw.resources import pe_cost
from sim.cases import minifloat_codes
from sim.pysim import run_gemm

E4M3, E5M2 = PRESETS["e4m3"], PRESETS["e5m2"]


def test_names_read_back_and_each_pass_is_a_one_format_engine() -> None:
    fmt = parse_engine_format("e4m3,grad=e5m2")
    assert isinstance(fmt, PassGemmFormat) and fmt.name == "fwd=e4m3,grad=e5m2"
    full = parse_engine_format("fwd=e4m3_fp32,grad=e5m2_fp32k4096_nosat")
    assert full.name == "fwd=e4m3_fp32,grad=e5m2_fp32k4096_nosat"
    assert parse_engine_format(full.name) == full
    assert [fmt.for_pass(PASS_IDS[p]).name for p in Pass] == [
        "e4m3",
        "e4m3xe5m2_e5m2",
        "e5m2xe4m3",
    ]
    assert parse_engine_format("fwd=e4m3,grad=e4m3") == MinifloatGemmFormat.parse("e4m3")
    with pytest.raises(InputError, match="'grad=mxfp8_e5m2': use fwd="):
        parse_engine_format("fwd=e4m3,grad=mxfp8_e5m2")
    with pytest.raises(InputError, match="fwd and grad needed"):
        parse_engine_format("fwd=e4m3")


def test_frame_is_e5m3_and_the_accumulator_holds_the_widest_pass() -> None:
    arith = PassArith(E4M3, E5M2, 4096)
    assert arith.unit_exp == -17 and arith.acc_exp == -34  # E5M3's unit: both formats exact
    widest = max(
        a.acc_width(4096, b) + arith.frame_shift(a) + arith.frame_shift(b)
        for a, b in ((E4M3, E4M3), (E4M3, E5M2), (E5M2, E4M3))
    )
    assert arith.acc_width == widest == E4M3.acc_width(4096, E5M2) + 8 + 1
    assert arith.operand_shape.width == 9  # the code and its tag


def test_tagged_decoder_gives_every_finite_code_exactly() -> None:
    """Every finite code of both formats, tagged, is ``sig << shift`` frame units: its
    ``to_units`` shifted into the frame."""
    arith = PassArith(E4M3, E5M2, 64)
    dec = TaggedDecoder(arith)
    seen: list[tuple[int, int, int]] = []
    codes = {tag: np.arange(256)[np.isfinite(fmt.table)] for tag, fmt in enumerate(arith.formats)}

    async def tb(ctx) -> None:  # noqa: ANN001
        for tag, finite in codes.items():
            for code in finite.tolist():
                ctx.set(dec.code, code | tag << 8)
                sig, shift, sign = ctx.get(dec.sig), ctx.get(dec.shift), ctx.get(dec.sign)
                seen.append((tag, code, (-1) ** sign * (sig << shift)))

    sim = Simulator(dec)  # combinational: no clock
    sim.add_testbench(tb)
    sim.run()
    assert len(seen) == 254 + 248
    for tag, code, got in seen:
        fmt = arith.formats[tag]
        want = int(fmt.to_units(np.array([code]))[0]) << arith.frame_shift(fmt)
        assert got == want, (fmt.name, code)


def test_command_has_pass_id_only_for_a_per_pass_engine() -> None:
    per_pass = EngineConfig(2, 2, parse_engine_format("fwd=e4m3,grad=e5m2"))
    one = EngineConfig(2, 2, parse_engine_format("e4m3"))
    assert "pass_id" in dict(command_layout(per_pass, True).members)
    assert "pass_id" not in dict(command_layout(one, True).members)
    cmd = GemmCommand(0, pass_id=2).engine(2, 3, 2)
    assert cmd.fields(command_layout(per_pass, True))["pass_id"] == 2
    assert "pass_id" not in cmd.fields(command_layout(one, True))  # any pass runs there


@pytest.mark.parametrize("kind", list(Pass))
def test_engine_runs_each_pass_in_its_formats(kind: Pass) -> None:
    """One engine, the pass chosen by the command: codes equal to the one-format model of
    that pass (forward E4M3 results, gradients E5M2) in every rounding mode, with the
    reduction split over two commands through the accumulator memory once."""
    fmt = parse_engine_format("fwd=e4m3,grad=e5m2k4096")
    cfg = EngineConfig(2, 2, fmt, acc_depth=8)
    pid = PASS_IDS[kind]
    one = EngineConfig(2, 2, fmt.for_pass(pid))
    rng = np.random.default_rng(pid)
    for rounding in Rounding:
        a = minifloat_codes(rng, one.fmt.a, (3, 5), "random")
        b = minifloat_codes(rng, one.fmt.b, (5, 3), "random")
        cmd = GemmCommand(0, rounding, 99, pass_id=pid)
        chunks = 2 if rounding is Rounding.STOCHASTIC else 1
        got, _ = run_gemm(SharedEngine(cfg), a, b, cmd, k_chunks=chunks)
        np.testing.assert_array_equal(got, fpgemm.engine_gemm(a, b, one, cmd))
        np.testing.assert_array_equal(got, fpgemm.engine_gemm(a, b, cfg, cmd))


def test_per_pass_pe_costs_more_than_the_widest_pass_alone() -> None:
    """The per-pass PE holds the E4M3 x E5M2 PE's product and shifter plus the decoders'
    multiplexers and a frame as fine as E5M3's."""
    fmt = parse_engine_format("fwd=e4m3,grad=e5m2")
    widest = pe_cost(MinifloatGemmFormat.parse("e4m3xe5m2").arith)
    cost = pe_cost(fmt.arith)
    assert cost.luts > widest.luts and cost.ffs > widest.ffs and cost.mults == 0
