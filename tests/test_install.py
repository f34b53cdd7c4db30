"""An installed Barista (not editable) runs from any directory and writes nothing into itself.

The project is installed from a copy of its tracked files into a fresh virtual
environment (its dependencies from this interpreter's site-packages), and ``barista
generate``, ``barista cosim`` and ``barista data digits`` run from an unrelated working
directory with the cache in a temporary directory. The installed copy carries the BVLC
example nets of ``examples/`` as package data and finds them there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LENET = "examples/mnist/lenet_train_test.prototxt"


def _tracked_copy(dest: Path) -> Path:
    """The tracked (and new, unignored) files of the checkout, copied to ``dest``."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know which files belong to the project")
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, names):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))
    return dest


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts}


def test_installed_barista_runs_from_another_directory(tmp_path: Path) -> None:
    source = _tracked_copy(tmp_path / "source")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    # The installed copy, not a checkout that PYTHONPATH may name.
    env = dict(os.environ, BARISTA_CACHE=str(tmp_path / "cache"), PYTHONPATH="")
    # Dependencies come from this interpreter; the build backend as the README's install
    # gets it (pip's isolated build environment).
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", str(source)], check=True, cwd=tmp_path
    )
    site = Path(
        subprocess.run(
            [
                str(py),
                "-c",
                "import barista_hw, pathlib; print(pathlib.Path(barista_hw.__file__).parents[1])",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
            env=env,
        ).stdout.strip()
    )
    assert site.is_relative_to(venv), f"imported {site}, not the installed copy"
    installed = {
        p: _files(site / p)
        for p in ("barista", "barista_base", "barista_hw", "caffe_bridge", "sim", "boards")
    }
    # The examples travel as package data, byte for byte.
    shipped = site / "caffe_bridge" / "examples"
    for original in sorted((ROOT / "examples").glob("*/*.prototxt")):
        copy = shipped / original.parent.name / original.name
        assert copy.read_bytes() == original.read_bytes(), f"{copy} is not {original}"
    assert (shipped / "README.md").is_file()

    work = tmp_path / "elsewhere"
    work.mkdir()
    barista = str(venv / "bin" / "barista")

    def run(*argv: str) -> str:
        done = subprocess.run(
            [barista, *argv], cwd=work, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    shapes = ["--data-shape", "data=4,1,28,28", "--data-shape", "label=4"]
    out = run("generate", str(source / LENET), *shapes, "--preset", "small", "-o", "rtl")
    assert "wrote rtl/accelerator.v" in out
    assert sorted(p.name for p in (work / "rtl").iterdir()) == [
        "accelerator.v",
        "manifest.json",
        "summary.txt",
    ]
    out = run("cosim", "--sim", "icarus", "--array", "2x2", "--format", "fx8", "--shape", "3,4,5")
    assert "matched 15/15 elements" in out
    assert (tmp_path / "cache" / "sim").is_dir()  # the build went to the cache given
    out = run("data", "digits", "--out", "digits")
    assert "digits" in out
    mnist = work / "digits" / "examples" / "mnist"
    for name in ("lenet_train_test.prototxt", "lenet_solver.prototxt", "lenet.prototxt"):
        assert (mnist / name).read_bytes() == (shipped / "mnist" / name).read_bytes(), name
    for lmdb in ("mnist_train_lmdb", "mnist_test_lmdb"):
        assert (mnist / lmdb / "data.mdb").is_file(), lmdb
    for package, files in installed.items():
        assert _files(site / package) == files, f"{package} was written into"
