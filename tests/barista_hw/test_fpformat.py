"""barista_hw.fpformat: names of minifloat engine formats, their shapes, the config round trip."""

import pytest

from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig, EngineConfig, parse_engine_format
from barista_hw.fpformat import DEFAULT_K, MinifloatGemmFormat
from barista_hw.minifloat import PRESETS
from barista_hw.numfmt import FixedFormat


@pytest.mark.parametrize(
    "name", ["e4m3", "e5m2", "e2m3xe3m2_e2m1k64", "e4m3k1024_nosat", "e4m3xe5m2_e5m2"]
)
def test_names_round_trip(name: str) -> None:
    fmt = MinifloatGemmFormat.parse(name)
    assert fmt.name == name and parse_engine_format(name) == fmt
    cfg = AcceleratorConfig().derive(fmt=fmt)
    assert AcceleratorConfig.from_json(cfg.to_json()) == cfg


def test_fields_of_a_name() -> None:
    fmt = parse_engine_format("fp6_e2m3xe3m2_e2m1k64_nosat")
    assert (fmt.a, fmt.b, fmt.out) == (PRESETS["e2m3"], PRESETS["e3m2"], PRESETS["e2m1"])
    assert fmt.k == 64 and not fmt.saturate
    assert fmt.width == 6 and fmt.output_shape.width == 4
    assert fmt.acc_width == PRESETS["e2m3"].acc_width(64, PRESETS["e3m2"])
    e4m3 = MinifloatGemmFormat.of("e4m3")
    assert e4m3 == parse_engine_format("fp8_e4m3") and e4m3.k == DEFAULT_K
    assert e4m3.to_dict()["acc_lsb_exp"] == -18  # E4M3's unit is 2**-9


def test_fixed_point_names_stay_fixed_point() -> None:
    assert parse_engine_format("fx16") == FixedFormat.parse("fx16")
    assert parse_engine_format("int8") == FixedFormat.parse("int8")


@pytest.mark.parametrize("bad", ["e8m0", "e4m3_e8m0", "e4m3k0", "e9m3", "e4m3x"])
def test_bad_names_are_input_errors(bad: str) -> None:
    with pytest.raises(InputError):
        parse_engine_format(bad)


def test_engine_config_takes_it() -> None:
    cfg = EngineConfig(2, 3, parse_engine_format("e4m3"))
    assert EngineConfig.from_json(cfg.to_json()) == cfg
