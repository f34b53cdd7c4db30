"""The README's commands run as written, in the order written.

The whole path runs from an empty directory. The board steps need a board; their
command lines are checked against the ``barista`` parser, and ``BARISTA_FULL=1`` runs
the board build itself (about half an hour).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from barista.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
FULL = os.environ.get("BARISTA_FULL") == "1"


def _blocks() -> list[list[str]]:
    """The command lines of the code blocks in the README's "The whole path" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The whole path", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def _steps(lines: list[str]) -> list[list[str]]:
    """Each line's commands (``a && b``), comments dropped, as argument lists."""
    steps = []
    for line in lines:
        for part in line.split("&&"):
            steps.append(shlex.split(part, comments=True))
    return steps


def _run(steps: list[list[str]], cwd: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for argv in steps:
        if argv[0] == "cd":
            cwd = cwd / argv[1]
            continue
        assert argv[0] == "barista", f"the README runs only barista commands: {argv}"
        done = subprocess.run(
            [sys.executable, "-m", "barista", *argv[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout[-3000:]}{done.stderr}"


def test_readme_has_the_path_and_the_board_steps() -> None:
    path, board = _blocks()
    assert len(path) >= 8 and len(board) == 2
    parser = build_parser()
    for argv in _steps(path + board):
        if argv[0] != "cd":
            parser.parse_args(argv[1:])  # every flag as the current command line takes it


@pytest.mark.slow
def test_whole_path_runs_as_written(tmp_path: Path) -> None:
    path, _ = _blocks()
    _run(_steps(path), tmp_path)
    work = tmp_path / "work"
    assert (work / "examples" / "mnist" / "lenet_iter_500.caffemodel").is_file()
    assert (work / "curves.png").is_file() and (work / "rtl_out" / "lenet").is_dir()


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="the LeNet board build takes about half an hour")
def test_board_build_runs_as_written(tmp_path: Path) -> None:
    path, board = _blocks()
    _run(_steps(path[:1]) + _steps(board[:1]), tmp_path)
    assert (tmp_path / "work" / "build" / "lenet-85f" / "report.json").is_file()
