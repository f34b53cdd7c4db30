"""barista_hw.device.energy: coefficients and their sources, the energy sum on hand-made cases."""

from __future__ import annotations

from dataclasses import fields

import pytest

from barista_hw.device.energy import (
    ENERGY,
    Actions,
    Coefficient,
    EnergyModel,
    coefficient_table,
    dram_byte_j,
    energy,
    link_coefficient,
)
from barista_hw.device.memory import LinkConfig
from barista_hw.targets import TARGETS

COEFFICIENTS = [f.name for f in fields(EnergyModel) if f.name != "family"]


def _model(values: list[float]) -> EnergyModel:
    return EnergyModel(
        "test",
        **{n: Coefficient(v, "J", "test", True) for n, v in zip(COEFFICIENTS, values, strict=True)},
    )


def test_every_target_family_has_a_model() -> None:
    assert {t.family for t in TARGETS.values()} <= set(ENERGY)


def test_every_coefficient_is_positive_with_a_source() -> None:
    for family, model in ENERGY.items():
        assert model.family == family
        assert list(model.coefficients()) == COEFFICIENTS
        for name, c in model.coefficients().items():
            assert c.value > 0, (family, name)
            assert c.source.strip() and c.unit, (family, name)
            assert isinstance(c.estimate, bool)
    with pytest.raises(ValueError):
        Coefficient(0.0, "J", "somewhere", False)
    with pytest.raises(ValueError):
        Coefficient(1.0, "J", "", False)


def test_energy_sums_actions_times_coefficients_plus_static() -> None:
    # mac 1, bram read 2, bram write 3, vector 4, dram byte 5, activate 6, link 7 J; 8 W.
    model = _model([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    acts = Actions(
        macs=10,
        bram_read_bits=20,
        bram_write_bits=30,
        vector_ops=40,
        dram_bytes=50,
        dram_activates=60,
        link_bytes=70,
    )
    report = energy(acts, 0.5, model)
    # 10 + 40 + 90 + 160 + 250 + 360 + 490 = 1400 J dynamic; 8 W x 0.5 s = 4 J.
    assert report.per_action_j == {
        "macs": 10.0,
        "bram_read_bits": 40.0,
        "bram_write_bits": 90.0,
        "vector_ops": 160.0,
        "dram_bytes": 250.0,
        "dram_activates": 360.0,
        "link_bytes": 490.0,
    }
    assert (report.dynamic_j, report.static_j, report.total_j) == (1400.0, 4.0, 1404.0)
    assert report.per_image_mj(64) == pytest.approx(1404.0 / 64 * 1e3)
    with pytest.raises(ValueError):
        report.per_image_mj(0)


def test_energy_of_the_ecp5_model_uses_its_own_coefficients() -> None:
    m = ENERGY["ecp5"]
    report = energy(Actions(macs=1_000_000, dram_bytes=1000), 2.0, m)
    assert report.dynamic_j == pytest.approx(1e6 * m.mac_j.value + 1000 * m.dram_j_per_byte.value)
    assert report.static_j == pytest.approx(2.0 * m.static_w.value)
    assert energy(Actions(), 0.0, m).total_j == 0.0


def test_actions_add_and_check() -> None:
    total = Actions(macs=1, link_bytes=2) + Actions(macs=3, dram_activates=4)
    assert total == Actions(macs=4, link_bytes=2, dram_activates=4)
    with pytest.raises(ValueError):
        Actions(macs=-1)


def test_derived_board_coefficients() -> None:
    # (130 - 30) mA x 3.3 V x 7 ns / 2 bytes + 8 x 1/4 x 10 pF x 3.3 V^2.
    assert dram_byte_j() == pytest.approx(0.1 * 3.3 * 7e-9 / 2 + 8 * 0.25 * 10e-12 * 3.3**2)
    # 8 mA x 5 V x 10 bits / 3 Mbaud; a slower line costs more per byte.
    assert link_coefficient(LinkConfig()).value == pytest.approx(0.04 * 10 / 3e6)
    slow = link_coefficient(LinkConfig(baud=1_000_000)).value
    assert slow == pytest.approx(3 * ENERGY["ecp5"].link_j_per_byte.value)


def kind(c: Coefficient) -> str:
    return "estimate" if c.estimate else "datasheet"


def test_coefficient_table_lists_every_field_with_its_source() -> None:
    for model in ENERGY.values():
        table = coefficient_table(model)
        for name, c in model.coefficients().items():
            line = next(ln for ln in table.splitlines() if ln.startswith(name + " "))
            assert c.source in line
            assert line.split()[1:4] == [f"{c.value:.4g}", c.unit, kind(c)]
