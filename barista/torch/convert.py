"""``convert``: a torch model's ``nn.Conv2d`` and ``nn.Linear`` layers onto a Barista backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from barista_base.errors import InputError
from barista_hw.numfmt import FixedFormat, Rounding
from caffe_bridge.backend import GemmBackend

from ..backends import get_backend
from ..manifest import AcceleratorFiles, load_accelerator
from .modules import BaristaConv2d, BaristaLinear, describe, supports_conv


class KeptLayer(NamedTuple):
    """A module that stayed in torch: its qualified name and what it is."""

    name: str
    module: str


def make_backend(
    backend: str | GemmBackend = "golden",
    *,
    format: FixedFormat | str | None = None,
    rounding: Rounding | str | None = None,
    accelerator: AcceleratorFiles | Path | str | None = None,
) -> GemmBackend:
    """A backend by name (``cpu``, ``golden``, ``rtl``, ``board``) with the options the
    CLI's ``train`` takes (``accelerator``: an RTL directory, manifest or board build), or
    ``backend`` itself when it is one already."""
    if isinstance(backend, GemmBackend):
        if format is not None or rounding is not None or accelerator is not None:
            raise InputError("convert: give format/rounding/accelerator to a backend by name")
        return backend
    options: dict[str, Any] = {}
    if format is not None:
        options["fmt"] = format
    if rounding is not None:
        options["rounding"] = rounding
    if accelerator is not None:
        options["accelerator"] = (
            accelerator
            if isinstance(accelerator, AcceleratorFiles)
            else load_accelerator(accelerator)
        )
    try:
        return get_backend(backend, **options)
    except InputError as exc:  # say which of the options it was
        names = {"fmt": "format"}
        given = "".join(
            f", {names.get(k, k)}={v!r}" for k, v in options.items() if k != "accelerator"
        )
        raise InputError(f"convert(backend={backend!r}{given}): {exc}") from None


def convert(
    model: nn.Module,
    backend: str | GemmBackend = "golden",
    *,
    format: FixedFormat | str | None = None,
    rounding: Rounding | str | None = None,
    accelerator: AcceleratorFiles | Path | str | None = None,
) -> tuple[nn.Module, list[KeptLayer]]:
    """Replace, in place, every ``nn.Conv2d`` and ``nn.Linear`` of ``model`` by a module
    whose three GEMM passes run on one backend (:func:`make_backend`), named by its
    qualified name; returns the model and the leaf modules that stayed in torch (batch
    norm, pooling, activations, and convolutions Barista does not map, e.g. ``"same"``
    padding or a non-zero ``padding_mode``).

    The parameters are the model's own, so optimizers made before or after work alike.
    The backend is each converted module's ``backend`` attribute (one for all):
    ``begin_iteration``, ``report`` and ``close`` are the training loop's to call. In
    eval mode the modules run on ``test_backend``, made as a Caffe solver makes its test
    nets' (:meth:`GemmBackend.for_test_nets` of a second backend of the same name and
    options; of ``backend`` itself when an instance is given, which may be the same).
    """
    gemm = make_backend(backend, format=format, rounding=rounding, accelerator=accelerator)
    test = gemm.for_test_nets()
    if test is gemm and not isinstance(backend, GemmBackend):
        # A backend of its own, as a Caffe solver's factory makes one per test net.
        test = make_backend(
            backend, format=format, rounding=rounding, accelerator=accelerator
        ).for_test_nets()
    kept: list[KeptLayer] = []
    for name, module in list(model.named_modules()):
        replacement: nn.Module | None = None
        if type(module) is nn.Conv2d and supports_conv(module):
            replacement = BaristaConv2d(module, gemm, name, test)
        elif type(module) is nn.Linear and module.weight.dtype == torch.float32:
            replacement = BaristaLinear(module, gemm, name, test)
        elif not any(True for _ in module.children()) and not isinstance(
            module, BaristaConv2d | BaristaLinear
        ):
            kept.append(KeptLayer(name, describe(module)))
        if replacement is not None:
            _set_submodule(model, name, replacement)
    return model, kept


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the qualified ``name`` inside ``model``."""
    if not name:
        raise InputError("convert: the model itself is one layer; wrap it in nn.Sequential")
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
