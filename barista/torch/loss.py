"""``caffe_softmax_loss``: Caffe's SoftmaxWithLoss as a torch loss, rounded as Caffe rounds.

With hardware arithmetic in the loop, float parts that round differently do not stay
small: a top gradient one ulp apart can quantise to another integer, and the runs part.
``torch.nn.functional.cross_entropy`` computes the gradient ``softmax - onehot`` in its
own way; on LeNet (golden backend, batch 64, CaffeSGD) the losses parted from the Caffe
path's by 1.8e-3 within 50 iterations. This loss takes Caffe's softmax
(:func:`caffe_bridge.layers.loss.softmax`) and Caffe's gradient
(``(prob - onehot) * (1 / batch)`` in float32), so the GEMM operands stay bit-identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from caffe_bridge.layers.loss import softmax

_F32 = np.float32


class _CaffeSoftmaxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = logits.detach().to(torch.float32).contiguous().numpy()
        idx = labels.detach().to(torch.int64).numpy()
        prob = softmax(x, 1)
        picked = prob[np.arange(len(idx)), idx]
        loss = -np.log(np.maximum(picked, np.finfo(_F32).tiny)).sum(dtype=np.float64)
        ctx.prob, ctx.idx = prob, idx
        return torch.tensor(_F32(loss / len(idx)))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        out = ctx.prob.copy()
        out[np.arange(len(ctx.idx)), ctx.idx] -= _F32(1)
        out *= _F32(float(grad) / len(ctx.idx))  # Caffe's loss_weight / normaliser
        return torch.from_numpy(out), None


def caffe_softmax_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean multinomial logistic loss of ``softmax(logits)`` over a (batch, classes)
    input and integer ``labels``, with Caffe's rounding (SoftmaxWithLoss, VALID
    normalisation, no ignored label)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"caffe_softmax_loss: logits {tuple(logits.shape)} must be (batch, classes) "
            f"and labels {tuple(labels.shape)} (batch,)"
        )
    return _CaffeSoftmaxLoss.apply(logits, labels)
