"""barista_base.cache: where caches live, and entries that appear whole or not at all."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from barista_base.cache import (
    atomic_directory,
    cache_dir,
    cache_root,
    entry_lock,
    write_text_atomic,
)


def test_cache_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BARISTA_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert cache_dir("verilator") == tmp_path / "mine" / "verilator"
    monkeypatch.delenv("BARISTA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "barista"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "barista"


def test_entry_appears_only_when_complete(tmp_path: Path) -> None:
    final = tmp_path / "a" / "entry"
    with atomic_directory(final) as tmp:
        (tmp / "x").write_text("1")
        assert not final.exists()
    assert (final / "x").read_text() == "1"
    assert [p.name for p in final.parent.iterdir()] == ["entry"]  # nothing left beside it


def test_failed_block_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "x").write_text("1")
        raise RuntimeError("build failed")
    assert list(tmp_path.iterdir()) == []


def test_racing_entry_keeps_the_first(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with atomic_directory(final) as tmp:
        (tmp / "who").write_text("second")
        final.mkdir()  # another process finished first
        (final / "who").write_text("first")
    assert (final / "who").read_text() == "first"
    assert list(tmp_path.iterdir()) == [final]


def test_replace_swaps_an_output_and_keeps_it_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(final, replace=True) as tmp:
        (tmp / "new").write_text("new")
        raise RuntimeError("stopped")
    assert [p.name for p in final.iterdir()] == ["old"]
    with atomic_directory(final, replace=True) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new"]
    assert list(tmp_path.iterdir()) == [final]


def test_write_text_atomic(tmp_path: Path) -> None:
    path = tmp_path / "d" / "f.txt"
    write_text_atomic(path, "hello")
    write_text_atomic(path, "again")
    assert path.read_text() == "again" and list(path.parent.iterdir()) == [path]


def _build_slowly(final: str, holding: Any) -> None:
    with entry_lock(Path(final)):
        holding.set()
        time.sleep(0.5)  # long enough for the parent to arrive at the lock
        with atomic_directory(Path(final)) as tmp:
            (tmp / "who").write_text("child")


def test_a_second_builder_waits_for_the_first(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    ctx = multiprocessing.get_context("spawn")
    holding = ctx.Event()
    child = ctx.Process(target=_build_slowly, args=(str(final), holding))
    child.start()
    try:
        assert holding.wait(60), "the child never took the lock"
        with entry_lock(final):  # blocks until the child's entry is in place
            assert (final / "who").read_text() == "child"
    finally:
        child.join(60)
    assert child.exitcode == 0
