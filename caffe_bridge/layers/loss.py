"""Softmax, the loss layers and Accuracy, with the arithmetic of Caffe's CPU layers.

Losses: SoftmaxWithLoss, SigmoidCrossEntropyLoss, EuclideanLoss, HingeLoss,
MultinomialLogisticLoss, InfogainLoss and ContrastiveLoss.

Loss layers produce a scalar top (shape ``()``); their backward multiplies by that top's
``diff``, which the Net seeds with the layer's loss weight, exactly as Caffe does.
"""

from __future__ import annotations

import numpy as np

from barista_base.errors import InputError

from ..blob import Blob
from ..io import read_binaryproto
from .base import Layer, register_layer

_F32 = np.float32
_FLT_MIN = np.finfo(np.float32).tiny
_LOG_THRESHOLD = _F32(1e-20)  # Caffe's kLOG_THRESHOLD (loss_layer.hpp)


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Caffe's softmax along ``axis``: subtract the maximum, exponentiate, normalise."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True, dtype=_F32)).astype(_F32, copy=False)


def _canonical(layer: Layer, blob: Blob, axis: int, what: str) -> int:
    try:
        return blob.canonical_axis(int(axis))
    except ValueError as exc:
        raise layer.error(f"{what}: {exc}") from None


@register_layer("Softmax")
class SoftmaxLayer(Layer):
    """``y = exp(x) / sum_axis exp(x)`` along ``softmax_param.axis``."""

    exact_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.axis = _canonical(self, bottom[0], self.param.softmax_param.axis, "softmax_param.axis")
        if top[0] is not bottom[0]:
            top[0].reshape_like(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = softmax(bottom[0].data, self.axis)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            y, dy = top[0].data, top[0].diff
            dot = (dy * y).sum(axis=self.axis, keepdims=True, dtype=_F32)
            bottom[0].diff[...] = (dy - dot) * y


class LossLayer(Layer):
    """Caffe's LossLayer: two bottoms (prediction, target), a scalar loss top."""

    exact_bottoms = 2
    exact_tops = 1
    is_loss = True

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes == 0 or bottom[1].num_axes == 0:
            raise self.error(
                f"bottoms must have a batch axis, got shapes {bottom[0].shape} and "
                f"{bottom[1].shape}"
            )
        if bottom[0].shape[0] != bottom[1].shape[0]:
            raise self.error(
                f"the data and label should have the same first dimension: bottom[0] has shape "
                f"{bottom[0].shape}, bottom[1] has shape {bottom[1].shape}"
            )
        top[0].reshape(())

    def _no_label_backward(self, propagate_down: list[bool]) -> None:
        if len(propagate_down) > 1 and propagate_down[1]:
            raise self.error("cannot backpropagate to the label input (bottom[1])")

    def _normalization(self) -> int:
        """Caffe's choice: ``normalization`` if set, else legacy ``normalize``, else default."""
        lp = self.param.loss_param
        modes = type(lp)
        if lp.HasField("normalization"):
            return lp.normalization
        if lp.HasField("normalize"):
            return modes.VALID if lp.normalize else modes.BATCH_SIZE
        return self.default_normalization()

    def default_normalization(self) -> int:
        return type(self.param.loss_param).VALID

    def _normalizer(self, mode: int, outer: int, inner: int, valid_count: int) -> float:
        modes = type(self.param.loss_param)
        if mode == modes.FULL:
            n = float(outer * inner)
        elif mode == modes.VALID:
            n = float(outer * inner if valid_count == -1 else valid_count)
        elif mode == modes.BATCH_SIZE:
            n = float(outer)
        elif mode == modes.NONE:
            n = 1.0
        else:
            raise self.error(f"loss_param.normalization {mode} is unknown")
        # Caffe's guard for batches whose labels are all ignored.
        return max(1.0, n)

    def _ignore_label(self) -> int | None:
        lp = self.param.loss_param
        return int(lp.ignore_label) if lp.HasField("ignore_label") else None

    @staticmethod
    def _loss_weight(top: list[Blob]) -> float:
        return float(top[0].diff.reshape(-1)[0])


def _labels(
    layer: Layer, raw: np.ndarray, classes: int, ignore: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels (C++ truncation of the float), the valid mask, and range checks."""
    labels = raw.astype(np.int64)
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    bad = valid & ((labels < 0) | (labels >= classes))
    if bad.any():
        value = labels[bad][0]
        raise layer.error(f"label value {value} outside the {classes} classes [0, {classes})")
    return np.where(valid, labels, 0), valid


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLossLayer(LossLayer):
    """Multinomial logistic loss of the softmax along ``softmax_param.axis``.

    An optional second top receives the probabilities. Normalisation follows
    ``loss_param`` (default VALID: the number of non-ignored labels).
    """

    exact_tops = None
    min_tops = 1
    max_tops = 2

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.normalization = self._normalization()
        self.ignore_label = self._ignore_label()
        self.prob = Blob()

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        b = bottom[0]
        self.axis = _canonical(self, b, self.param.softmax_param.axis, "softmax_param.axis")
        self.outer = b.count_range(0, self.axis)
        self.inner = b.count_range(self.axis + 1)
        if self.outer * self.inner != bottom[1].count:
            raise self.error(
                f"number of labels must match number of predictions: with softmax axis "
                f"{self.axis} and prediction shape {b.shape} the label count must be "
                f"{self.outer * self.inner}, got {bottom[1].count} (label shape "
                f"{bottom[1].shape})"
            )
        self.prob.reshape_like(b)
        if len(top) > 1:
            top[1].reshape_like(b)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.prob.data[...] = softmax(bottom[0].data, self.axis)
        classes = bottom[0].shape[self.axis]
        prob = self.prob.data.reshape(self.outer, classes, self.inner)
        labels, valid = _labels(
            self, bottom[1].data.reshape(self.outer, self.inner), classes, self.ignore_label
        )
        picked = np.take_along_axis(prob, labels[:, None, :], axis=1)[:, 0, :]
        loss = -np.log(np.maximum(picked[valid], _FLT_MIN)).sum(dtype=np.float64)
        self.valid_count = int(valid.sum())
        self._labels, self._valid = labels, valid
        norm = self._normalizer(self.normalization, self.outer, self.inner, self.valid_count)
        top[0].data[...] = _F32(loss / norm)
        if len(top) > 1:
            top[1].share_data(self.prob)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        self._no_label_backward(propagate_down)
        if not propagate_down[0]:
            return
        classes = bottom[0].shape[self.axis]
        grad = self.prob.data.reshape(self.outer, classes, self.inner).copy()
        rows = np.arange(self.outer)[:, None]
        cols = np.arange(self.inner)[None, :]
        grad[rows, self._labels, cols] -= _F32(1)
        grad *= self._valid[:, None, :]
        norm = self._normalizer(self.normalization, self.outer, self.inner, self.valid_count)
        scale = _F32(self._loss_weight(top) / norm)
        bottom[0].diff[...] = (grad * scale).reshape(bottom[0].shape)


@register_layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLossLayer(LossLayer):
    """Cross-entropy of ``sigmoid(x)`` against targets in [0, 1], in Caffe's stable form.

    Normalisation defaults to BATCH_SIZE (Caffe's historical choice for this layer).
    """

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.normalization = self._normalization()
        self.ignore_label = self._ignore_label()
        self._sigmoid: np.ndarray | None = None

    def default_normalization(self) -> int:
        return type(self.param.loss_param).BATCH_SIZE

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise self.error(
                f"inputs must have the same count: bottom[0] shape {bottom[0].shape}, "
                f"bottom[1] shape {bottom[1].shape}"
            )
        self.outer = bottom[0].shape[0]
        self.inner = bottom[0].count_range(1)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(-1)
        t = bottom[1].data.reshape(-1)
        self._sigmoid = _F32(0.5) * np.tanh(_F32(0.5) * x) + _F32(0.5)
        if self.ignore_label is None:
            valid = np.ones(x.shape, bool)
        else:
            valid = t.astype(np.int64) != self.ignore_label
        pos = (x >= 0).astype(_F32)
        terms = x * (t - pos) - np.log1p(np.exp(x - 2 * x * pos))
        loss = -terms[valid].sum(dtype=np.float64)
        self._valid = valid
        self.valid_count = int(valid.sum())
        norm = self._normalizer(self.normalization, self.outer, self.inner, self.valid_count)
        top[0].data[...] = _F32(loss / norm)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        self._no_label_backward(propagate_down)
        if not propagate_down[0]:
            return
        if self._sigmoid is None:
            raise self.error("backward called before forward")
        grad = (self._sigmoid - bottom[1].data.reshape(-1)) * self._valid
        norm = self._normalizer(self.normalization, self.outer, self.inner, self.valid_count)
        scale = _F32(self._loss_weight(top) / norm)
        bottom[0].diff[...] = (grad * scale).reshape(bottom[0].shape)


@register_layer("EuclideanLoss")
class EuclideanLossLayer(LossLayer):
    """``sum((a - b)^2) / (2 N)``; both inputs get gradients (Caffe allows forcing both)."""

    def allow_force_backward(self, bottom_index: int) -> bool:
        return True

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        if bottom[0].count_range(1) != bottom[1].count_range(1):
            raise self.error(
                f"inputs must have the same dimension: bottom[0] shape {bottom[0].shape}, "
                f"bottom[1] shape {bottom[1].shape}"
            )

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._diff = bottom[0].data - bottom[1].data.reshape(bottom[0].shape)
        d = self._diff.reshape(-1)
        num = bottom[0].shape[0]
        top[0].data[...] = _F32(np.dot(d, d) / num / _F32(2))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        num = bottom[0].shape[0]
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = _F32(sign * self._loss_weight(top) / num)
                bottom[i].diff[...] = (alpha * self._diff).reshape(bottom[i].shape)


@register_layer("HingeLoss")
class HingeLossLayer(LossLayer):
    """One-vs-all hinge loss ``sum max(0, 1 - delta(l = k) x_k)^p / N``, p = 1 (L1) or 2 (L2)."""

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.hinge_loss_param
        self.l2 = p.norm == type(p).L2

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        if bottom[1].count != bottom[0].shape[0]:
            raise self.error(
                f"needs one label per item: {bottom[1].count} labels (shape {bottom[1].shape}) "
                f"for predictions of shape {bottom[0].shape}"
            )

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        num = bottom[0].shape[0]
        x = bottom[0].data.reshape(num, -1)
        labels, _ = _labels(self, bottom[1].data.reshape(num), x.shape[1], None)
        margin = x.copy()
        rows = np.arange(num)
        margin[rows, labels] *= _F32(-1)
        margin = np.maximum(_F32(0), _F32(1) + margin)
        self._margin, self._hinge_labels = margin, labels
        if self.l2:
            loss = np.dot(margin.reshape(-1), margin.reshape(-1))
        else:
            loss = np.abs(margin).sum(dtype=_F32)
        top[0].data[...] = _F32(loss / num)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        self._no_label_backward(propagate_down)
        if not propagate_down[0]:
            return
        num = bottom[0].shape[0]
        g = self._margin.copy()
        g[np.arange(num), self._hinge_labels] *= _F32(-1)
        lw = self._loss_weight(top)
        if self.l2:
            g = g * _F32(2 * lw / num)
        else:
            g = np.sign(g) * _F32(lw / num)
        bottom[0].diff[...] = g.reshape(bottom[0].shape)


def _legacy_shape(layer: Layer, blob: Blob, which: str) -> tuple[int, int, int, int]:
    """Caffe's (num, channels, height, width) of a blob of up to 4 axes (missing axes are 1)."""
    if blob.num_axes > 4:
        raise layer.error(
            f"{which} must have at most 4 axes (num, channels, height, width), got shape "
            f"{blob.shape}"
        )
    shape = tuple(blob.shape) + (1,) * (4 - blob.num_axes)
    return shape  # type: ignore[return-value]


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLossLayer(LossLayer):
    """``-sum_n log(max(p[n, label_n], 1e-20)) / N`` of probabilities ``p`` (e.g. a Softmax
    top): bottom[0] is (N, classes...), bottom[1] one label per item. No ignore_label and
    no normalization modes, as in Caffe."""

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        _, c, h, w = _legacy_shape(self, bottom[1], "bottom[1] (the labels)")
        if (c, h, w) != (1, 1, 1):
            raise self.error(
                f"needs one label per item: the labels have shape {bottom[1].shape}, expected "
                f"({bottom[0].shape[0]},) or ({bottom[0].shape[0]}, 1, 1, 1)"
            )

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        num = bottom[0].shape[0]
        p = bottom[0].data.reshape(num, -1)
        labels, _ = _labels(self, bottom[1].data.reshape(num), p.shape[1], None)
        picked = np.maximum(p[np.arange(num), labels], _LOG_THRESHOLD)
        self._mll_labels, self._picked = labels, picked
        loss = -np.log(picked).sum(dtype=np.float64)
        top[0].data[...] = _F32(loss / num)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        self._no_label_backward(propagate_down)
        if not propagate_down[0]:
            return
        num = bottom[0].shape[0]
        scale = _F32(-self._loss_weight(top) / num)
        dx = bottom[0].diff.reshape(num, -1)
        dx[...] = 0
        dx[np.arange(num), self._mll_labels] = scale / self._picked


@register_layer("InfogainLoss")
class InfogainLossLayer(LossLayer):
    """Infogain loss of the softmax along ``infogain_loss_param.axis``: for a label ``k`` the
    loss is ``-sum_l H[k, l] log(max(p_l, 1e-20))``, ``H`` a (classes x classes) matrix
    (the identity gives SoftmaxWithLoss).

    ``H`` is the optional bottom[2] or the BlobProto file ``infogain_loss_param.source``.
    ``loss_param``: ``ignore_label`` and ``normalization`` (default VALID); the legacy
    ``normalize`` is refused, as in Caffe. An optional second top receives the softmax.
    """

    exact_bottoms = None
    min_bottoms = 2
    max_bottoms = 3
    exact_tops = None
    min_tops = 1
    max_tops = 2

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        lp = self.param.loss_param
        if lp.HasField("normalize"):
            raise self.error(
                'loss_param.normalize is deprecated for InfogainLoss: use "normalization"'
            )
        self.normalization = int(lp.normalization)
        self.ignore_label = self._ignore_label()
        self.prob = Blob()
        self.infogain: np.ndarray | None = None
        if len(bottom) < 3:
            p = self.param.infogain_loss_param
            if not p.HasField("source"):
                raise self.error(
                    "the infogain matrix is missing: give infogain_loss_param.source or a "
                    "third bottom"
                )
            try:
                self.infogain = read_binaryproto(p.source).astype(_F32)
            except InputError as exc:
                raise self.error(f"infogain_loss_param.source: {exc}") from None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        b = bottom[0]
        self.axis = _canonical(
            self, b, self.param.infogain_loss_param.axis, "infogain_loss_param.axis"
        )
        self.outer = b.count_range(0, self.axis)
        self.inner = b.count_range(self.axis + 1)
        if self.outer * self.inner != bottom[1].count:
            raise self.error(
                f"number of labels must match number of predictions: with infogain axis "
                f"{self.axis} and prediction shape {b.shape} the label count must be "
                f"{self.outer * self.inner}, got {bottom[1].count} (label shape "
                f"{bottom[1].shape})"
            )
        self.classes = b.shape[self.axis]
        h = self._matrix(bottom)
        if h.size != self.classes * self.classes:
            where = "bottom[2]" if len(bottom) > 2 else "infogain_loss_param.source"
            raise self.error(
                f"the infogain matrix ({where}, shape {h.shape}) must have "
                f"{self.classes}x{self.classes} entries for {self.classes} classes"
            )
        self.prob.reshape_like(b)
        if len(top) > 1:
            top[1].reshape_like(b)

    def _matrix(self, bottom: list[Blob]) -> np.ndarray:
        return bottom[2].data if len(bottom) > 2 else self.infogain  # type: ignore[return-value]

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.prob.data[...] = softmax(bottom[0].data, self.axis)
        h = self._matrix(bottom).reshape(self.classes, self.classes)
        prob = self.prob.data.reshape(self.outer, self.classes, self.inner)
        labels, valid = _labels(
            self, bottom[1].data.reshape(self.outer, self.inner), self.classes, self.ignore_label
        )
        log_p = np.log(np.maximum(prob, _LOG_THRESHOLD)).astype(np.float64)
        rows = h[labels].astype(np.float64)  # (outer, inner, classes): H[label, :]
        per_item = np.einsum("oic,oci->oi", rows, log_p)
        loss = -per_item[valid].sum()
        self._infogain_labels, self._valid = labels, valid
        self.valid_count = int(valid.sum())
        norm = self._normalizer(self.normalization, self.outer, self.inner, self.valid_count)
        top[0].data[...] = _F32(loss / norm)
        if len(top) > 1:
            top[1].share_data(self.prob)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        self._no_label_backward(propagate_down)
        if len(propagate_down) > 2 and propagate_down[2]:
            raise self.error("cannot backpropagate to the infogain matrix (bottom[2])")
        if not propagate_down[0]:
            return
        h = self._matrix(bottom).reshape(self.classes, self.classes)
        row_sums = h.sum(axis=1, dtype=_F32)
        prob = self.prob.data.reshape(self.outer, self.classes, self.inner)
        labels = self._infogain_labels
        # prob * sum_l H[label, l] - H[label, :], zero where the label is ignored.
        grad = prob * row_sums[labels][:, None, :] - h[labels].transpose(0, 2, 1)
        grad *= self._valid[:, None, :]
        norm = self._normalizer(self.normalization, self.outer, self.inner, self.valid_count)
        scale = _F32(self._loss_weight(top) / norm)
        bottom[0].diff[...] = (grad * scale).reshape(bottom[0].shape)


@register_layer("ContrastiveLoss")
class ContrastiveLossLayer(LossLayer):
    """Hadsell et al.'s contrastive loss of feature pairs ``a``, ``b`` (N, C[, 1, 1]) with
    similarity labels ``y`` (N[, 1, 1, 1]): ``sum(y d^2 + (1 - y) max(margin - d, 0)^2) / 2N``,
    ``d = ||a - b||``; ``legacy_version`` uses ``max(margin - d^2, 0)``. Both feature inputs
    get gradients; the labels get none (Caffe leaves their diff alone)."""

    exact_bottoms = 3

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 2

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.contrastive_loss_param
        self.margin = _F32(p.margin)
        self.legacy = bool(p.legacy_version)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        n0, c0, h0, w0 = _legacy_shape(self, bottom[0], "bottom[0]")
        _, c1, h1, w1 = _legacy_shape(self, bottom[1], "bottom[1]")
        n2, c2, h2, w2 = _legacy_shape(self, bottom[2], "bottom[2] (the labels)")
        if (h0, w0, h1, w1) != (1, 1, 1, 1) or c0 != c1:
            raise self.error(
                f"the two feature inputs must be (N, C) or (N, C, 1, 1) of the same C, got "
                f"{bottom[0].shape} and {bottom[1].shape}"
            )
        if (c2, h2, w2) != (1, 1, 1) or n2 != n0:
            raise self.error(
                f"bottom[2] must hold one similarity label per pair ({n0},), got shape "
                f"{bottom[2].shape}"
            )

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        num = bottom[0].shape[0]
        a = bottom[0].data.reshape(num, -1)
        self._diff = a - bottom[1].data.reshape(num, -1)
        d2 = np.einsum("nc,nc->n", self._diff, self._diff, dtype=_F32)
        similar = bottom[2].data.reshape(num).astype(np.int64) != 0
        if self.legacy:
            far = np.maximum(self.margin - d2, _F32(0))
        else:
            far = np.maximum(self.margin - np.sqrt(d2), _F32(0)) ** 2
        self._dist_sq, self._similar = d2, similar
        loss = np.where(similar, d2, far).sum(dtype=np.float64)
        top[0].data[...] = _F32(loss / num / 2)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        num = bottom[0].shape[0]
        d2, similar = self._dist_sq, self._similar
        if self.legacy:
            mdist = self.margin - d2
        else:
            dist = np.sqrt(d2)
            mdist = self.margin - dist
        for i, sign in ((0, 1.0), (1, -1.0)):
            if not propagate_down[i]:
                continue
            alpha = _F32(sign * self._loss_weight(top) / num)
            if self.legacy:
                beta = np.full(num, -alpha, dtype=_F32)
            else:
                beta = -alpha * mdist / (dist + _F32(1e-4))
            coeff = np.where(similar, alpha, np.where(mdist > 0, beta, _F32(0)))
            bottom[i].diff[...] = (coeff[:, None] * self._diff).reshape(bottom[i].shape)


@register_layer("Accuracy")
class AccuracyLayer(Layer):
    """Fraction of labels among the ``top_k`` highest scores along ``axis``.

    Ranking follows Caffe's partial sort of (score, class) pairs with ``std::greater``:
    a class with an equal score but a higher index ranks above the true class. The
    optional second top holds the per-class accuracy. No gradient.
    """

    exact_bottoms = 2
    min_tops = 1
    max_tops = 2

    def allow_force_backward(self, bottom_index: int) -> bool:
        return False

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.accuracy_param
        self.top_k = int(p.top_k)
        self.ignore_label = int(p.ignore_label) if p.HasField("ignore_label") else None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        b = bottom[0]
        if bottom[1].count == 0 or self.top_k > b.count // bottom[1].count:
            raise self.error(
                f"accuracy_param.top_k {self.top_k} must be at most the number of classes "
                f"({b.count // max(bottom[1].count, 1)})"
            )
        self.axis = _canonical(self, b, self.param.accuracy_param.axis, "accuracy_param.axis")
        self.outer = b.count_range(0, self.axis)
        self.inner = b.count_range(self.axis + 1)
        if self.outer * self.inner != bottom[1].count:
            raise self.error(
                f"number of labels must match number of predictions: with accuracy_param.axis "
                f"{self.axis} and prediction shape {b.shape} the label count must be "
                f"{self.outer * self.inner}, got {bottom[1].count}"
            )
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((b.shape[self.axis],))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        classes = bottom[0].shape[self.axis]
        x = bottom[0].data.reshape(self.outer, classes, self.inner)
        labels, valid = _labels(
            self, bottom[1].data.reshape(self.outer, self.inner), classes, self.ignore_label
        )
        true_score = np.take_along_axis(x, labels[:, None, :], axis=1)
        k = np.arange(classes)[None, :, None]
        above = (x > true_score) | ((x == true_score) & (k > labels[:, None, :]))
        hit = (above.sum(axis=1) < self.top_k) & valid
        count = int(valid.sum())
        top[0].data[...] = _F32(0) if count == 0 else _F32(_F32(hit.sum()) / _F32(count))
        if len(top) > 1:
            seen = np.bincount(labels[valid], minlength=classes).astype(_F32)
            hits = np.bincount(labels[hit], minlength=classes).astype(_F32)
            with np.errstate(divide="ignore", invalid="ignore"):
                top[1].data[...] = np.where(seen == 0, _F32(0), hits / seen)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if any(propagate_down):
            raise self.error("Accuracy has no gradient; it cannot be backpropagated through")
