"""Without torch: ``import barista``, the CLI and its commands work, and ``barista.torch``
fails with one line saying how to install the extra. Runs in a subprocess whose meta path
refuses torch (so it runs whether or not torch is installed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

BLOCK = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


def test_barista_and_cli_work_without_torch() -> None:
    done = _run(
        """
        import barista, barista.cli, barista.backends
        from barista.backends import get_backend
        get_backend("golden")
        for argv in (["--help"], ["generate", "--help"], ["train", "--help"]):
            try:
                barista.cli.main(argv)
            except SystemExit as exc:
                assert exc.code == 0, (argv, exc.code)
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("ok")


def test_barista_torch_says_how_to_install() -> None:
    done = _run(
        """
        try:
            import barista.torch
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "barista.torch needs PyTorch: pip install 'barista[torch]'\n"
