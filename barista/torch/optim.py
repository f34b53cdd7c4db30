"""``CaffeSGD``: Caffe's SGD update as a torch optimizer, for runs that match the Caffe path.

``torch.optim.SGD`` keeps the momentum buffer without the rate
(``b = m*b + g; w -= lr*b``); Caffe's SGDSolver keeps it with the rate
(``h = m*h + lr*g; w -= h``). The two agree in exact arithmetic at a fixed rate, but
round differently in float32, and with hardware arithmetic in the loop a weight one
ulp apart can quantise to another integer: on LeNet (golden backend, batch 8) the
losses parted by 2.7e-5 within 5 iterations. This optimizer runs Caffe's float32
operations in Caffe's order (:mod:`caffe_bridge.solvers`), so that the losses stay
within float noise of a Caffe run. Its rate sits inside the history, as in Caffe, so a
rate schedule behaves as Caffe's ``lr_policy`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch


class CaffeSGD(torch.optim.Optimizer):
    """Caffe's SGD with momentum and L2 weight decay, per parameter group.

    A group's ``lr`` and ``weight_decay`` are Caffe's local ones: the solver's
    ``base_lr`` times the layer's ``lr_mult``, ``weight_decay`` times ``decay_mult``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"CaffeSGD: lr {lr}, momentum {momentum}, weight_decay {weight_decay} must be >= 0"
            )
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One update: ``g += decay * w; h = momentum * h; h += lr * g; w -= h``
        (Caffe's Regularize, ComputeUpdateValue and Update, each rounded to float32)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Python floats rounded to float32 first, as Caffe's Dtype arguments are.
            rate = float(np.float32(group["lr"]))
            decay = float(np.float32(group["weight_decay"]))
            momentum = float(np.float32(group["momentum"]))
            for p in group["params"]:
                if p.grad is None:
                    continue
                diff = p.grad
                if decay:
                    diff = diff + p * decay
                state = self.state[p]
                if "history" not in state:
                    state["history"] = torch.zeros_like(p)
                history = state["history"]
                history.mul_(momentum)
                history.add_(diff * rate)
                p.sub_(history)
        return loss
