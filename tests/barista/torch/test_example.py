"""examples/pytorch_digits.py, the README's worked example, in a small form: 25
iterations on golden already classify the digits well above chance (10%)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="PyTorch is not installed: pip install 'barista[torch]'")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pytorch_digits.py"


def test_example_trains_on_golden(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(EXAMPLE))["main"]
    accuracy = main(["--backend", "golden", "--iterations", "25"])
    out = capsys.readouterr().out
    assert "stayed in torch: pool1 (MaxPool2d(" in out and "relu (ReLU)" in out
    assert f"test accuracy {accuracy:.2%} (golden)" in out
    assert accuracy > 0.5
