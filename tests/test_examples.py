"""The BVLC example nets shipped in examples/: complete, attributed, unmodified.

The tests that load, generate and train these nets read the shipped copies (through
``caffe_bridge.datasets.example_dir``, as an installed Barista does); this file checks
that those copies are BVLC's files as they are: byte-identical to the copies in
``../shared/caffe-models`` (skipped, with the reason, where that directory is absent),
each listed in examples/README.md, and each a net or solver that parses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from caffe_bridge.datasets import example_dir
from caffe_bridge.io import read_net, read_solver

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHARED = EXAMPLES.parents[1] / "shared" / "caffe-models"

#: Every net and solver Barista ships, by example directory.
SHIPPED = {
    "mnist": [
        "lenet.prototxt",
        "lenet_multistep_solver.prototxt",
        "lenet_solver.prototxt",
        "lenet_solver_adam.prototxt",
        "lenet_solver_rmsprop.prototxt",
        "lenet_train_test.prototxt",
    ],
    "cifar10": [
        "cifar10_full.prototxt",
        "cifar10_full_solver.prototxt",
        "cifar10_full_train_test.prototxt",
        "cifar10_quick.prototxt",
        "cifar10_quick_solver.prototxt",
        "cifar10_quick_train_test.prototxt",
    ],
    "bvlc_alexnet": ["deploy.prototxt", "solver.prototxt", "train_val.prototxt"],
    "bvlc_reference_caffenet": ["deploy.prototxt", "solver.prototxt", "train_val.prototxt"],
}


def test_the_examples_are_the_listed_files() -> None:
    found = {
        d.name: sorted(p.name for p in d.glob("*.prototxt"))
        for d in EXAMPLES.iterdir()
        if d.is_dir() and d.name != "sweeps"  # sweeps/: specs of `barista sweep`, no nets
    }
    assert found == SHIPPED
    for model in SHIPPED:
        assert example_dir(model) == EXAMPLES / model


def test_the_readme_attributes_every_file() -> None:
    readme = " ".join((EXAMPLES / "README.md").read_text().split())
    assert "BSD 2-Clause" in readme and "The Regents of the University of California" in readme
    for model, names in SHIPPED.items():
        assert f"`{model}/`" in readme, model
        for name in names:
            assert f"`{name}`" in readme, f"{model}/{name}"


@pytest.mark.parametrize("path", [f"{m}/{n}" for m, names in SHIPPED.items() for n in names])
def test_every_example_parses(path: str) -> None:
    model, name = path.split("/")
    if "solver" in name:
        assert read_solver(example_dir(model) / name).base_lr > 0
    else:
        assert read_net(example_dir(model) / name).layer


def test_shipped_copies_are_byte_identical_to_the_shared_models() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the unmodified BVLC Caffe models) is not present")
    shared = sorted(SHARED.glob("*/*.prototxt"))
    assert shared, f"no prototxt under {SHARED}"
    for original in shared:
        copy = EXAMPLES / original.parent.name / original.name
        assert copy.is_file(), f"{original} is not shipped in examples/"
        assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}"
