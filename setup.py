"""Build hook: the wheel carries the repository's top-level ``examples/``.

The BVLC example nets live at the top of the repository, where a clone shows them; an
installed Barista finds them as the package data ``caffe_bridge/examples/<name>``
(``caffe_bridge.datasets.example_dir`` looks in both places). Everything else about
the build is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
# What is shipped: the attribution and the nets and solvers, not data or snapshots a
# user may have written beside them.
PATTERNS = ("README.md", "*/*.prototxt")


def example_files() -> list[Path]:
    """The shipped files under ``examples/``, relative to it."""
    return sorted({p.relative_to(EXAMPLES) for pat in PATTERNS for p in EXAMPLES.glob(pat)})


class BuildPyWithExamples(build_py):
    """``build_py`` that also copies ``examples/`` into ``caffe_bridge/examples``."""

    def _targets(self) -> list[tuple[Path, Path]]:
        dest = Path(self.build_lib) / "caffe_bridge" / "examples"
        return [(EXAMPLES / rel, dest / rel) for rel in example_files()]

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads examples/ in place
        for src, dst in self._targets():
            self.mkpath(str(dst.parent))
            self.copy_file(str(src), str(dst))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return outputs + [str(dst) for _, dst in self._targets()]


setup(cmdclass={"build_py": BuildPyWithExamples})
