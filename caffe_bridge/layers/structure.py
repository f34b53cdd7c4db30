"""Blob plumbing: Split, Concat, Slice, Crop, Tile, Eltwise, Reduction, Flatten, Reshape,
Silence, ArgMax.

Where Caffe shares memory between bottom and top (Split, Flatten, Reshape, one-input
Concat/Slice) the top's ``data`` here is the bottom's array or a reshaped view of it, set
again on every forward so it follows a bottom whose arrays were replaced by a reshape.
Diffs are copied back in backward rather than shared, which gives the same values
whatever the Net does with the top's ``diff`` array.
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from .base import Layer, register_layer

_F32 = np.float32


def _axis(layer: Layer, blob: Blob, axis: int, what: str) -> int:
    try:
        return blob.canonical_axis(int(axis))
    except ValueError as exc:
        raise layer.error(f"{what}: {exc}") from None


def _share_view(top: Blob, bottom: Blob) -> None:
    """Give ``top`` the bottom's data memory, in the top's shape (Caffe's ShareData)."""
    top.data = bottom.data.reshape(top.shape)


@register_layer("Split")
class SplitLayer(Layer):
    """Copies one bottom to several tops by reference; backward sums the top diffs.

    The Net inserts these where one blob feeds several layers, as Caffe's InsertSplits does.
    """

    exact_bottoms = 1
    min_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if any(t is bottom[0] for t in top):
            raise self.error("Split does not allow in-place computation (a top is the bottom)")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t in top:
            t.reshape_like(bottom[0])
            t.share_data(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t in top:
            t.share_data(bottom[0])

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        diff = bottom[0].diff
        np.copyto(diff, top[0].diff)
        for t in top[1:]:
            diff += t.diff


@register_layer("Concat")
class ConcatLayer(Layer):
    """Joins the bottoms along ``axis`` (or the legacy ``concat_dim``)."""

    min_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.concat_param
        first = bottom[0]
        if p.HasField("concat_dim"):
            axis = int(p.concat_dim)
            if axis >= first.num_axes:
                raise self.error(
                    f"concat_param.concat_dim {axis} out of range for bottom shape {first.shape}"
                )
        else:
            axis = _axis(self, first, p.axis, "concat_param.axis")
        total = 0
        for i, b in enumerate(bottom):
            if b.num_axes != first.num_axes:
                raise self.error(
                    f"all inputs must have the same number of axes: bottom[0] has shape "
                    f"{first.shape}, bottom[{i}] has shape {b.shape}"
                )
            for a in range(first.num_axes):
                if a != axis and b.shape[a] != first.shape[a]:
                    raise self.error(
                        f"all inputs must have the same shape except at concat axis {axis}: "
                        f"bottom[0] has shape {first.shape}, bottom[{i}] has shape {b.shape}"
                    )
            total += b.shape[axis]
        self.concat_axis = axis
        shape = list(first.shape)
        shape[axis] = total
        top[0].reshape(shape)
        if len(bottom) == 1:
            top[0].share_data(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(bottom) == 1:
            top[0].share_data(bottom[0])
            return
        np.concatenate([b.data for b in bottom], axis=self.concat_axis, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        offset = 0
        for i, b in enumerate(bottom):
            n = b.shape[self.concat_axis]
            if propagate_down[i] and b.diff is not top[0].diff:
                index = [slice(None)] * top[0].num_axes
                index[self.concat_axis] = slice(offset, offset + n)
                b.diff[...] = top[0].diff[tuple(index)]
            offset += n


@register_layer("Slice")
class SliceLayer(Layer):
    """Cuts the bottom along ``axis`` (or legacy ``slice_dim``) at ``slice_point`` s,
    or into equal parts, one per top."""

    exact_bottoms = 1
    min_tops = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.slice_param
        b = bottom[0]
        if p.HasField("slice_dim"):
            axis = int(p.slice_dim)
            if axis >= b.num_axes:
                raise self.error(
                    f"slice_param.slice_dim {axis} out of range for bottom shape {b.shape}"
                )
        else:
            axis = _axis(self, b, p.axis, "slice_param.axis")
        n = b.shape[axis]
        points = [int(s) for s in p.slice_point]
        if points:
            if len(points) != len(top) - 1:
                raise self.error(
                    f"slice_param.slice_point has {len(points)} value(s); with {len(top)} tops "
                    f"it needs {len(top) - 1}"
                )
            sizes = []
            prev = 0
            for s in points:
                if s <= prev:
                    raise self.error(
                        f"slice_param.slice_point must be positive and strictly increasing, "
                        f"got {points}"
                    )
                sizes.append(s - prev)
                prev = s
            if prev >= n:
                raise self.error(
                    f"slice_param.slice_point {points} must lie inside axis {axis} of size {n} "
                    f"(bottom shape {b.shape})"
                )
            sizes.append(n - prev)
        else:
            if n % len(top) != 0:
                raise self.error(
                    f"axis {axis} of size {n} (bottom shape {b.shape}) does not divide into "
                    f"{len(top)} equal slices; give slice_param.slice_point"
                )
            sizes = [n // len(top)] * len(top)
        self.slice_axis = axis
        self.sizes = sizes
        for t, size in zip(top, sizes, strict=True):
            shape = list(b.shape)
            shape[axis] = size
            t.reshape(shape)
        if len(top) == 1:
            top[0].share_data(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(top) == 1:
            top[0].share_data(bottom[0])
            return
        parts = np.split(bottom[0].data, np.cumsum(self.sizes)[:-1], axis=self.slice_axis)
        for t, part in zip(top, parts, strict=True):
            t.data[...] = part

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        if len(top) == 1:
            if bottom[0].diff is not top[0].diff:
                bottom[0].diff[...] = top[0].diff
            return
        np.concatenate([t.diff for t in top], axis=self.slice_axis, out=bottom[0].diff)


@register_layer("Crop")
class CropLayer(Layer):
    """Crops bottom[0] to the shape of bottom[1] on the axes from ``crop_param.axis``
    (default 2: the spatial axes), starting at ``offset`` (none: 0, one: for every cropped
    axis, or one per cropped axis). Axes before ``axis`` are kept whole. bottom[1] only
    gives the size: its values do not reach the top, so its gradient is zero.
    """

    exact_bottoms = 2
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.crop_param
        self.start = _axis(self, bottom[0], p.axis, "crop_param.axis")
        self.offsets = [int(o) for o in p.offset]
        cropped = bottom[0].num_axes - self.start
        if len(self.offsets) > 1 and len(self.offsets) != cropped:
            raise self.error(
                f"crop_param.offset has {len(self.offsets)} values; it needs one, or one per "
                f"cropped axis ({cropped}: axes {self.start}..{bottom[0].num_axes - 1} of "
                f"bottom shape {bottom[0].shape})"
            )

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        data, ref = bottom[0], bottom[1]
        n = data.num_axes
        if ref.num_axes < n:
            raise self.error(
                f"bottom[1] (shape {ref.shape}) needs at least the {n} axes of bottom[0] "
                f"(shape {data.shape}) to give the crop size"
            )
        index: list[slice] = []
        shape: list[int] = []
        for i in range(n):
            if i < self.start:
                index.append(slice(None))
                shape.append(data.shape[i])
                continue
            off = 0
            if len(self.offsets) == 1:
                off = self.offsets[0]
            elif self.offsets:
                off = self.offsets[i - self.start]
            size = ref.shape[i]
            if data.shape[i] - off < size:
                raise self.error(
                    f"the crop of axis {i} is out of bounds: size {size} (from bottom[1] "
                    f"{ref.shape}) at offset {off} does not fit in {data.shape[i]} (bottom[0] "
                    f"{data.shape})"
                )
            index.append(slice(off, off + size))
            shape.append(size)
        self.index = tuple(index)
        top[0].reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = bottom[0].data[self.index]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            diff = bottom[0].diff
            diff[...] = 0
            diff[self.index] = top[0].diff
        if propagate_down[1]:
            bottom[1].diff[...] = 0


@register_layer("Tile")
class TileLayer(Layer):
    """Repeats the bottom ``tile_param.tiles`` times along ``axis`` (default 1): the block
    of axes from ``axis`` on is copied whole, so the result is ``np.tile``'s on that axis;
    backward sums the copies' gradients."""

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.tile_param
        if not p.HasField("tiles"):
            raise self.error("tile_param.tiles (the number of copies) must be given")
        self.tiles = int(p.tiles)
        if self.tiles <= 0:
            raise self.error(f"tile_param.tiles must be positive, got {self.tiles}")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        b = bottom[0]
        self.axis = _axis(self, b, self.param.tile_param.axis, "tile_param.axis")
        self.outer = b.count_range(0, self.axis)
        self.inner = b.count_range(self.axis)
        shape = list(b.shape)
        shape[self.axis] *= self.tiles
        top[0].reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        out = top[0].data.reshape(self.outer, self.tiles, self.inner)
        out[...] = bottom[0].data.reshape(self.outer, 1, self.inner)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(self.outer, self.tiles, self.inner)
        dx = bottom[0].diff.reshape(self.outer, self.inner)
        # Caffe's order: the first copy, then the others added one by one.
        dx[...] = dy[:, 0]
        for t in range(1, self.tiles):
            dx += dy[:, t]


@register_layer("Eltwise")
class EltwiseLayer(Layer):
    """Element-wise PROD, SUM (with per-bottom ``coeff``) or MAX of two or more bottoms."""

    min_bottoms = 2
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.eltwise_param
        self.op = p.operation
        self.ops = type(p)
        coeffs = list(p.coeff)
        if coeffs and len(coeffs) != len(bottom):
            raise self.error(
                f"eltwise_param.coeff has {len(coeffs)} value(s); it needs one per bottom "
                f"({len(bottom)})"
            )
        if coeffs and self.op == self.ops.PROD:
            raise self.error("eltwise_param.coeff is only for operation SUM (got PROD)")
        self.coeffs = [_F32(c) for c in coeffs] or [_F32(1)] * len(bottom)
        self.stable_prod_grad = bool(p.stable_prod_grad)
        self._argmax: np.ndarray | None = None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for i, b in enumerate(bottom[1:], start=1):
            if b.shape != bottom[0].shape:
                raise self.error(
                    f"all bottoms must have the same shape: bottom[0] has shape "
                    f"{bottom[0].shape}, bottom[{i}] has shape {b.shape}"
                )
        if top[0] is not bottom[0]:
            top[0].reshape_like(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if self.op == self.ops.PROD:
            y = bottom[0].data * bottom[1].data
            for b in bottom[2:]:
                y = y * b.data
        elif self.op == self.ops.SUM:
            y = self.coeffs[0] * bottom[0].data
            for c, b in zip(self.coeffs[1:], bottom[1:], strict=True):
                y = y + c * b.data
        elif self.op == self.ops.MAX:
            # Caffe's tie rule: bottom[1] wins a tie with bottom[0]; later bottoms must be
            # strictly greater to take over.
            a, b1 = bottom[0].data, bottom[1].data
            first = a > b1
            y = np.where(first, a, b1)
            idx = np.where(first, 0, 1).astype(np.int32)
            for i, b in enumerate(bottom[2:], start=2):
                better = b.data > y
                y = np.where(better, b.data, y)
                idx[better] = i
            self._argmax = idx
        else:
            raise self.error(f"eltwise_param.operation {self.op} is unknown")
        top[0].data[...] = y

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff
        grads: list[np.ndarray | None] = []
        # Compute every gradient before writing any: a bottom may share memory with the top.
        for i, b in enumerate(bottom):
            if not propagate_down[i]:
                grads.append(None)
                continue
            if self.op == self.ops.PROD:
                if self.stable_prod_grad:
                    others = [o.data for j, o in enumerate(bottom) if j != i]
                    g = others[0].copy()
                    for o in others[1:]:
                        g = g * o
                else:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        g = top[0].data / b.data
                grads.append(g * dy)
            elif self.op == self.ops.SUM:
                c = self.coeffs[i]
                grads.append(dy.copy() if c == 1 else c * dy)
            else:
                if self._argmax is None:
                    raise self.error("backward called before forward")
                grads.append(np.where(self._argmax == i, dy, _F32(0)))
        for b, g in zip(bottom, grads, strict=True):
            if g is not None:
                b.diff[...] = g


@register_layer("Reduction")
class ReductionLayer(Layer):
    """Reduces every axis from ``reduction_param.axis`` (default 0: everything, a scalar top)
    with SUM, ASUM (sum of absolute values), SUMSQ (sum of squares) or MEAN, times
    ``coeff``. The top keeps the axes before ``axis``. Sums are accumulated in float64 and
    rounded once to float32 (Caffe's BLAS dot accumulates in float32)."""

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.reduction_param
        ops = type(p)
        self.op = int(p.operation)
        if self.op not in (ops.SUM, ops.ASUM, ops.SUMSQ, ops.MEAN):
            raise self.error(f"reduction_param.operation {self.op} is unknown")
        self.ops = ops

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        b = bottom[0]
        p = self.param.reduction_param
        self.axis = _axis(self, b, p.axis, "reduction_param.axis")
        self.num = b.count_range(0, self.axis)
        self.dim = b.count_range(self.axis)
        coeff = _F32(p.coeff)
        if self.op == self.ops.MEAN:
            coeff = _F32(coeff / _F32(self.dim))
        self.coeff = coeff
        top[0].reshape(b.shape[: self.axis])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.num, self.dim).astype(np.float64)
        if self.op == self.ops.ASUM:
            x = np.abs(x)
        elif self.op == self.ops.SUMSQ:
            x = x * x
        y = x.sum(axis=1).astype(_F32)
        if self.coeff != 1:
            y *= self.coeff
        top[0].data.reshape(self.num)[...] = y

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        scale = (top[0].diff.reshape(self.num, 1) * self.coeff).astype(_F32)
        dx = bottom[0].diff.reshape(self.num, self.dim)
        if self.op in (self.ops.SUM, self.ops.MEAN):
            dx[...] = scale
            return
        x = bottom[0].data.reshape(self.num, self.dim)
        if self.op == self.ops.ASUM:
            dx[...] = np.sign(x) * scale
        else:
            dx[...] = (_F32(2) * scale) * x


@register_layer("Flatten")
class FlattenLayer(Layer):
    """Merges axes ``axis`` .. ``end_axis`` into one; data shared with the bottom."""

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("Flatten does not allow in-place computation (top equals bottom)")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.flatten_param
        b = bottom[0]
        start = _axis(self, b, p.axis, "flatten_param.axis")
        end = _axis(self, b, p.end_axis, "flatten_param.end_axis")
        if end < start:
            raise self.error(
                f"flatten_param.end_axis ({p.end_axis} -> {end}) comes before axis "
                f"({p.axis} -> {start}) for bottom shape {b.shape}"
            )
        shape = list(b.shape[:start]) + [b.count_range(start, end + 1)] + list(b.shape[end + 1 :])
        top[0].reshape(shape)
        _share_view(top[0], b)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        _share_view(top[0], bottom[0])

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff.reshape(bottom[0].shape)


@register_layer("Reshape")
class ReshapeLayer(Layer):
    """Caffe's Reshape: ``shape`` dims replace bottom axes [axis, axis + num_axes);
    0 copies the bottom's dimension, one -1 is inferred."""

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("Reshape does not allow in-place computation (top equals bottom)")
        dims = [int(d) for d in self.param.reshape_param.shape.dim]
        self.new_dims = dims
        self.copy_axes = [i for i, d in enumerate(dims) if d == 0]
        inferred = [i for i, d in enumerate(dims) if d == -1]
        if len(inferred) > 1:
            raise self.error(
                f"reshape_param.shape {dims} contains more than one -1; at most one "
                "dimension can be inferred"
            )
        bad = [d for d in dims if d < -1]
        if bad:
            raise self.error(f"reshape_param.shape {dims} has negative dimension(s) {bad}")
        self.inferred_axis = inferred[0] if inferred else -1
        self.constant_count = int(np.prod([d for d in dims if d > 0], dtype=np.int64))

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.reshape_param
        b = bottom[0]
        nb = b.num_axes
        start = int(p.axis) if p.axis >= 0 else nb + int(p.axis) + 1
        if not 0 <= start <= nb:
            raise self.error(f"reshape_param.axis {p.axis} out of range for bottom shape {b.shape}")
        num_axes = int(p.num_axes)
        if num_axes < -1:
            raise self.error(f"reshape_param.num_axes must be >= -1, got {num_axes}")
        end = nb if num_axes == -1 else start + num_axes
        if end > nb:
            raise self.error(
                f"reshape_param.axis {p.axis} + num_axes {num_axes} extends past the bottom's "
                f"{nb} axes (shape {b.shape})"
            )
        shape = list(b.shape[:start]) + list(self.new_dims) + list(b.shape[end:])
        for i in self.copy_axes:
            if start + i >= nb:
                raise self.error(
                    f"reshape_param.shape {self.new_dims} has a 0 at position {i} but the "
                    f"bottom (shape {b.shape}) has no axis {start + i} to copy"
                )
            shape[start + i] = b.shape[start + i]
        if self.inferred_axis >= 0:
            explicit = self.constant_count * b.count_range(0, start) * b.count_range(end)
            for i in self.copy_axes:
                explicit *= shape[start + i]
            if explicit == 0 or b.count % explicit != 0:
                raise self.error(
                    f"bottom count {b.count} (shape {b.shape}) is not divisible by the product "
                    f"{explicit} of the dimensions given in reshape_param.shape "
                    f"{self.new_dims}"
                )
            shape[start + self.inferred_axis] = b.count // explicit
        if int(np.prod(shape, dtype=np.int64)) != b.count:
            raise self.error(
                f"output shape {tuple(shape)} from reshape_param.shape {self.new_dims} has "
                f"count {int(np.prod(shape, dtype=np.int64))}, the bottom (shape {b.shape}) "
                f"has {b.count}"
            )
        top[0].reshape(shape)
        _share_view(top[0], b)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        _share_view(top[0], bottom[0])

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff.reshape(bottom[0].shape)


@register_layer("Silence")
class SilenceLayer(Layer):
    """Swallows its bottoms (no tops); backward gives them zero gradient."""

    min_bottoms = 1
    exact_tops = 0

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        for b, down in zip(bottom, propagate_down, strict=True):
            if down:
                b.diff[...] = 0


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries along the last axis, in Caffe's order.

    Caffe partially sorts (value, index) pairs with ``std::greater``: larger values first,
    and among equal values the larger index first.
    """
    n = values.shape[-1]
    # A stable sort of the reversed, negated row ranks equal values by descending index.
    order = np.argsort(-values[..., ::-1], axis=-1, kind="stable")[..., :k]
    return n - 1 - order


@register_layer("ArgMax")
class ArgMaxLayer(Layer):
    """Indices (and with ``out_max_val`` values) of the ``top_k`` largest entries.

    Without ``axis``: per item of the batch over all other axes, top shape
    (N, 1 or 2, top_k[, 1...]). With ``axis``: along that axis, which becomes top_k long
    and holds values instead of indices when ``out_max_val``. Has no gradient.
    """

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.argmax_param
        self.out_max_val = bool(p.out_max_val)
        self.top_k = int(p.top_k)
        if self.top_k < 1:
            raise self.error(f"argmax_param.top_k must be at least 1, got {self.top_k}")
        self.has_axis = p.HasField("axis")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        b = bottom[0]
        if self.has_axis:
            self.axis = _axis(self, b, self.param.argmax_param.axis, "argmax_param.axis")
            if self.top_k > b.shape[self.axis]:
                raise self.error(
                    f"argmax_param.top_k {self.top_k} exceeds the size {b.shape[self.axis]} of "
                    f"axis {self.axis} (bottom shape {b.shape})"
                )
            shape = list(b.shape)
            shape[self.axis] = self.top_k
        else:
            if b.num_axes < 1 or self.top_k > b.count_range(1):
                raise self.error(
                    f"argmax_param.top_k {self.top_k} exceeds the {b.count_range(1)} values per "
                    f"item of bottom shape {b.shape}"
                )
            shape = [1] * max(b.num_axes, 3)
            shape[0] = b.shape[0]
            shape[1] = 2 if self.out_max_val else 1
            shape[2] = self.top_k
        top[0].reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if self.has_axis:
            rows = np.moveaxis(x, self.axis, -1)
            idx = top_k_indices(rows, self.top_k)
            out = np.take_along_axis(rows, idx, -1) if self.out_max_val else idx
            top[0].data[...] = np.moveaxis(out.astype(_F32), -1, self.axis)
            return
        rows = x.reshape(x.shape[0], -1)
        idx = top_k_indices(rows, self.top_k)
        y = top[0].data.reshape(x.shape[0], -1, self.top_k)
        y[:, 0, :] = idx
        if self.out_max_val:
            y[:, 1, :] = np.take_along_axis(rows, idx, -1)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if any(propagate_down):
            raise self.error("ArgMax has no gradient; it cannot be backpropagated through")
