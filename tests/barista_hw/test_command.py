"""The typed engine command: field values for a layout, width checks, the commands of chunks."""

from __future__ import annotations

import json

import pytest

from barista_base.errors import InputError
from barista_hw.accelerator import run_layout
from barista_hw.command import EngineCommand, GemmCommand, fit_field
from barista_hw.config import AcceleratorConfig, EngineConfig, parse_engine_format
from barista_hw.engine import command_layout
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.schedule import block_seed, schedule_gemm

FMT = FixedFormat(8, 4, 24)
CFG = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=16, b_depth=16)


def test_fields_follow_the_layout_and_pack_as_amaranth_does() -> None:
    cmd = EngineCommand(5, 4, 7, 3, Rounding.STOCHASTIC, 9, 2, acc_last=False, a_base=8)
    layout = run_layout(CFG)
    fields = cmd.fields(layout)
    assert list(fields) == [name for name, _ in layout]
    assert fields == {
        "m": 5, "k": 4, "n": 7, "shift": 3, "rounding": 2, "seed": 9, "images": 2,
        "acc_first": 1, "acc_last": 0, "raw": 0, "a_base": 8, "b_base": 0,
    }  # fmt: skip
    packed = sum(v << f.offset for (_, f), v in zip(layout, fields.values(), strict=True))
    assert packed == layout.const(fields).as_bits()


def test_engine_layouts_get_only_their_fields() -> None:
    plain = EngineConfig(2, 2, FMT)  # no accumulator memory, not batched
    cmd = GemmCommand(shift=1, seed=3).engine(2, 3, 4)
    assert cmd.fields(command_layout(plain, batched=False)) == {
        "m": 2, "k": 3, "n": 4, "shift": 1, "rounding": 0, "seed": 3, "raw": 0,
    }  # fmt: skip
    assert "images" in cmd.fields(command_layout(plain, batched=True))


def test_a_value_that_does_not_fit_names_the_field() -> None:
    layout = command_layout(EngineConfig(2, 2, FMT, dim_bits=8), batched=False)
    with pytest.raises(InputError, match=r"conv1: field n = 256 does not fit its 8 unsigned"):
        GemmCommand(shift=0).engine(1, 1, 256).fields(layout, what="conv1")
    with pytest.raises(InputError, match="field seed"):
        GemmCommand(shift=0, seed=1 << 40).engine(1, 1, 1).fields(layout)
    with pytest.raises(InputError, match="field m = -1"):
        EngineCommand(-1, 1, 1, shift=0).fields(layout)
    assert fit_field("x", 255, 8) == 255


def test_a_command_that_needs_a_missing_field_is_refused() -> None:
    layout = command_layout(EngineConfig(2, 2, FMT), batched=False)
    with pytest.raises(InputError, match="images = 3 needs a images field"):
        GemmCommand(shift=0, images=3).engine(1, 1, 1).fields(layout)
    with pytest.raises(InputError, match="acc_first"):
        GemmCommand(shift=0).engine(1, 1, 1, acc_first=False).fields(layout)
    with pytest.raises(InputError, match="a_base"):
        EngineCommand(1, 1, 1, shift=0, a_base=4).fields(layout)


def test_a_read_out_needs_an_engine_built_with_it() -> None:
    raw = GemmCommand(shift=0, raw=True)
    assert raw.engine(1, 1, 1).fields(command_layout(EngineConfig(2, 2, FMT), False))["raw"] == 1
    assert raw.chunk(schedule_gemm(CFG, 2, 3, 3)[0]).raw
    without = command_layout(EngineConfig(2, 2, FMT, raw_readout=False), batched=False)
    with pytest.raises(InputError, match="raw = 1 needs a raw field"):
        raw.engine(1, 1, 1).fields(without)
    with pytest.raises(InputError, match="e4m3 engine has no accumulator read-out"):
        EngineConfig(2, 2, parse_engine_format("e4m3"), raw_readout=True)
    assert not EngineConfig(2, 2, parse_engine_format("e4m3")).readout
    derived = CFG.derive(fmt=parse_engine_format("e4m3"))  # a preset into another format
    assert CFG.engine.readout and not derived.engine.readout
    assert EngineConfig.from_json(CFG.engine.to_json()) == CFG.engine
    legacy = json.loads(CFG.engine.to_json())
    del legacy["raw_readout"]  # a manifest written before the read-out: none was built
    old = EngineConfig.from_json(json.dumps(legacy))
    assert not old.readout
    assert json.loads(old.to_json()) == legacy  # the same JSON, so the same board hash


def test_chunk_commands_carry_the_block_seed_bases_and_flags() -> None:
    cmd = GemmCommand(shift=5, rounding=2, seed=17, images=2)
    assert cmd.rounding is Rounding.STOCHASTIC
    chunks = schedule_gemm(CFG, 7, 9, 8, 2)
    assert len({c.block for c in chunks}) > 1 and any(not c.acc_last for c in chunks)
    for c in chunks:
        e = cmd.chunk(c)
        assert (e.m, e.k, e.n, e.images) == (c.m, c.k, c.n, c.images)
        assert (e.acc_first, e.acc_last, e.a_base, e.b_base) == (
            c.acc_first, c.acc_last, c.a_base, c.b_base,
        )  # fmt: skip
        assert (e.shift, e.rounding, e.seed) == (5, Rounding.STOCHASTIC, block_seed(17, c.block))
