"""``barista demo``: everything under its work directory, the same figures from the same seed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from barista.cli import main


def _figures(out: str) -> list[str]:
    return re.findall(r"test accuracy \S+  loss \S+", out)


@pytest.mark.slow
def test_demo_writes_only_its_work_directory_and_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--work", "w", "--iterations", "3", "--seed", "5"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["w"]
    work = tmp_path / "w"
    assert (work / "rtl_out" / "lenet" / "manifest.json").is_file()
    assert sorted(p.name for p in (work / "rtl_out" / "demo").glob("*.v"))
    assert (work / "examples" / "mnist" / "mnist_train_lmdb").is_dir()
    assert f"everything it wrote is under {work}" in first
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert len(_figures(first)) == 2 and _figures(again) == _figures(first)
