"""barista_base.environ: variables set for a block and restored, also after an error."""

from __future__ import annotations

import os

import pytest

from barista_base.environ import environ


def test_values_are_set_then_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BARISTA_TEST_A", "old")
    monkeypatch.delenv("BARISTA_TEST_B", raising=False)
    with pytest.raises(RuntimeError), environ({"BARISTA_TEST_A": "1", "BARISTA_TEST_B": "2"}):
        assert os.environ["BARISTA_TEST_A"] == "1" and os.environ["BARISTA_TEST_B"] == "2"
        raise RuntimeError("the tool failed")
    assert os.environ["BARISTA_TEST_A"] == "old" and "BARISTA_TEST_B" not in os.environ
