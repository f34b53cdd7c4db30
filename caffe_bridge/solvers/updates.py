"""Caffe's per-parameter update rules (src/caffe/solvers/*.cpp), in float32 numpy.

Each rule turns the regularised gradient in ``diff`` into the step that
``Net::Update`` subtracts from ``data``, keeping its state in ``history``
arrays laid out as Caffe lays out ``history_``: one array per learnable
parameter, and for AdaDelta and Adam a second set after the first (update
history / second moment). Operations run in Caffe's order on float32 arrays,
so results match Caffe's CPU path up to BLAS's own rounding choices.
"""

from __future__ import annotations

import numpy as np

from .solver import Solver

F32 = np.float32


class SGDSolver(Solver):
    """Stochastic gradient descent with momentum: ``h = lr * g + momentum * h; w -= h``."""

    type_name = "SGD"

    def compute_update_value(self, i: int, rate: np.float32) -> None:
        diff, h = self.net.learnable_params[i].diff, self.history[i]
        local_rate = F32(rate) * F32(self.net.params_lr[i])
        h *= F32(self.param.momentum)  # caffe_cpu_axpby: y = b*y, then y += a*x
        h += local_rate * diff
        diff[...] = h


class NesterovSolver(Solver):
    """Nesterov's accelerated gradient: step back the old momentum, over-step the new one."""

    type_name = "Nesterov"

    def compute_update_value(self, i: int, rate: np.float32) -> None:
        diff, h = self.net.learnable_params[i].diff, self.history[i]
        momentum = F32(self.param.momentum)
        local_rate = F32(rate) * F32(self.net.params_lr[i])
        old = h.copy()
        h *= momentum
        h += local_rate * diff
        # update = (1 + momentum) * h - momentum * h_old
        update = old * -momentum
        update += (F32(1) + momentum) * h
        diff[...] = update


class AdaGradSolver(Solver):
    """AdaGrad: ``h += g**2; step = lr * g / (sqrt(h) + delta)``."""

    type_name = "AdaGrad"

    def compute_update_value(self, i: int, rate: np.float32) -> None:
        diff, h = self.net.learnable_params[i].diff, self.history[i]
        local_rate = F32(rate) * F32(self.net.params_lr[i])
        h += diff * diff
        update = np.sqrt(h)
        update += F32(self.param.delta)
        np.divide(diff, update, out=update)
        np.multiply(update, local_rate, out=diff)


class RMSPropSolver(Solver):
    """RMSProp: ``h = (1 - d) g**2 + d h; step = lr * g / (sqrt(h) + delta)``."""

    type_name = "RMSProp"

    def compute_update_value(self, i: int, rate: np.float32) -> None:
        diff, h = self.net.learnable_params[i].diff, self.history[i]
        decay = F32(self.param.rms_decay)
        local_rate = F32(rate) * F32(self.net.params_lr[i])
        h *= decay
        h += (F32(1) - decay) * (diff * diff)
        update = np.sqrt(h)
        update += F32(self.param.delta)
        np.divide(diff, update, out=update)
        np.multiply(update, local_rate, out=diff)


class AdaDeltaSolver(Solver):
    """AdaDelta (Zeiler 2012) with Caffe's ``momentum`` as the decay and ``delta`` as epsilon.

    ``history[i]`` is the running mean of squared gradients, ``history[n + i]``
    that of squared updates; the step is finally scaled by the learning rate.
    """

    type_name = "AdaDelta"
    history_sets = 2

    def compute_update_value(self, i: int, rate: np.float32) -> None:
        n = len(self.net.learnable_params)
        diff = self.net.learnable_params[i].diff
        hg, hu = self.history[i], self.history[n + i]
        momentum = F32(self.param.momentum)
        delta = F32(self.param.delta)
        local_rate = F32(rate) * F32(self.net.params_lr[i])
        one_minus = F32(1) - momentum
        hg *= momentum
        hg += one_minus * (diff * diff)
        # sqrt((hu + delta) / (hg + delta)) * g
        update = hu + delta
        update /= hg + delta
        np.sqrt(update, out=update)
        diff *= update
        hu *= momentum
        hu += one_minus * (diff * diff)
        diff *= local_rate


class AdamSolver(Solver):
    """Adam (Kingma & Ba): ``momentum`` is beta1, ``momentum2`` beta2, ``delta`` epsilon.

    ``history[i]`` is the first moment m, ``history[n + i]`` the second moment v;
    the bias correction uses ``t = iter + 1`` as in Caffe.
    """

    type_name = "Adam"
    history_sets = 2

    def compute_update_value(self, i: int, rate: np.float32) -> None:
        n = len(self.net.learnable_params)
        diff = self.net.learnable_params[i].diff
        m, v = self.history[i], self.history[n + i]
        beta1, beta2 = F32(self.param.momentum), F32(self.param.momentum2)
        local_rate = F32(rate) * F32(self.net.params_lr[i])
        t = self.iter + 1
        # Caffe computes the bias correction in double and rounds it to Dtype.
        b1, b2 = float(beta1), float(beta2)
        correction = F32(np.sqrt(1.0 - b2**t) / (1.0 - b1**t))
        m *= beta1
        m += (F32(1) - beta1) * diff
        v *= beta2
        v += (F32(1) - beta2) * (diff * diff)
        update = np.sqrt(v)
        update += F32(self.param.delta)
        np.divide(m, update, out=update)
        np.multiply(update, local_rate * correction, out=diff)


SOLVER_CLASSES: dict[str, type[Solver]] = {
    cls.type_name: cls
    for cls in (SGDSolver, NesterovSolver, AdaGradSolver, RMSPropSolver, AdaDeltaSolver, AdamSolver)
}
