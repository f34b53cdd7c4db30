"""PyTorch front end: train a torch model with Barista's arithmetic, generate RTL from it.

An optional extra (``pip install 'barista[torch]'``); ``import barista`` and the CLI never
import torch. :func:`convert` swaps every ``nn.Conv2d`` and ``nn.Linear`` of a model for a
module whose three GEMM passes run on a Barista backend (:mod:`.modules`), so any torch
optimizer and training loop trains on the hardware arithmetic (:class:`CaffeSGD` and
:func:`caffe_softmax_loss` round as Caffe does, for runs that match the Caffe path);
:func:`gemm_layers` and :func:`generate` read a model's GEMM layers for the accelerator
generator (:mod:`.generate`).
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError:  # one line, saying how to get it
    raise ImportError("barista.torch needs PyTorch: pip install 'barista[torch]'") from None

from .convert import KeptLayer, convert, make_backend
from .generate import gemm_layers, generate
from .loss import caffe_softmax_loss
from .modules import BaristaConv2d, BaristaLinear
from .optim import CaffeSGD

__all__ = [
    "BaristaConv2d",
    "BaristaLinear",
    "CaffeSGD",
    "KeptLayer",
    "caffe_softmax_loss",
    "convert",
    "gemm_layers",
    "generate",
    "make_backend",
]
