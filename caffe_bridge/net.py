"""The Net: Caffe's ``Net`` with pycaffe's Python API.

Construction follows Caffe's ``Net::Init`` step by step: upgrade legacy forms,
filter layers by the net state (phase, level, stages; ``include``/``exclude``
rules), insert ``Split`` layers where a blob feeds several consumers (with
Caffe's names and loss-weight handling), then create, connect, set up and
shape every layer in order, register parameters (with named sharing), and work
out which layers and bottoms need backward, exactly as Caffe does.

Data-source layers can be replaced by stand-ins with ``data_shapes``: any layer
without bottoms whose tops are all named in ``data_shapes`` (Data, HDF5Data,
MemoryData, ImageData, Python data layers, Input...) is not created; a stand-in
of the same name and type produces zero-filled tops of the given shapes instead.
This lets a net be shape-inferred, timed and turned into hardware without its
dataset::

    net = Net("lenet_train_test.prototxt", TRAIN,
              data_shapes={"data": (64, 1, 28, 28), "label": (64,)})
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from barista_base.errors import InputError

from .backend import CpuBackend, GemmBackend
from .blob import Blob
from .io import (
    array_to_blobproto,
    blobproto_shape,
    blobproto_to_array,
    layer_blocks,
    read_caffemodel,
    read_text_proto,
    write_caffemodel,
)
from .layers.base import LAYER_TYPES, Layer, LayerContext
from .proto import caffe_pb2
from .upgrade import upgrade_net

TRAIN = caffe_pb2.TRAIN  # 0, as caffe.TRAIN
TEST = caffe_pb2.TEST  # 1, as caffe.TEST

_PHASE_NAMES = {TRAIN: "TRAIN", TEST: "TEST"}

__all__ = ["Net", "TRAIN", "TEST", "insert_splits", "filter_net", "state_meets_rule"]


def _phase_value(phase: int | str) -> int:
    if isinstance(phase, str):
        try:
            return caffe_pb2.Phase.Value(phase.upper())
        except ValueError:
            raise InputError(f"unknown phase {phase!r}: use TRAIN or TEST") from None
    if int(phase) not in _PHASE_NAMES:
        raise InputError(f"unknown phase {phase!r}: use TRAIN (0) or TEST (1)")
    return int(phase)


# ---------------------------------------------------------------------------
# Net state filtering (Caffe's FilterNet / StateMeetsRule)


def state_meets_rule(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    """Caffe's StateMeetsRule: phase, level range, required and forbidden stages."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(state: caffe_pb2.NetState, layer: caffe_pb2.LayerParameter) -> bool:
    """Caffe's inclusion rule: no rules -> included; any include rule met -> included;
    any exclude rule met -> excluded."""
    included = len(layer.include) == 0
    for rule in layer.exclude:
        if state_meets_rule(state, rule):
            included = False
    for rule in layer.include:
        if state_meets_rule(state, rule):
            included = True
    return included


def filter_net(
    net: caffe_pb2.NetParameter, *, source: str = "", lines: Sequence[int | None] | None = None
) -> tuple[caffe_pb2.NetParameter, list[int | None]]:
    """The net with only the layers its ``state`` includes, and those layers' source lines."""
    lines = list(lines) if lines is not None else [None] * len(net.layer)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    kept: list[int | None] = []
    for layer, line in zip(net.layer, lines, strict=True):
        if len(layer.include) and len(layer.exclude):
            where = f"{source}:{line}: " if line else (f"{source}: " if source else "")
            raise InputError(
                f"{where}layer '{layer.name}': specify either include or exclude rules, not both"
            )
        if layer_included(net.state, layer):
            out.layer.add().CopyFrom(layer)
            kept.append(line)
    return out, kept


# ---------------------------------------------------------------------------
# Split insertion (Caffe's InsertSplits)


def split_layer_name(layer: str, blob: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(layer: str, blob: str, top_index: int, split_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{split_index}"


def insert_splits(
    net: caffe_pb2.NetParameter, *, source: str = "", lines: Sequence[int | None] | None = None
) -> tuple[caffe_pb2.NetParameter, list[int | None]]:
    """Insert a ``Split`` layer after every top consumed more than once (counting a
    nonzero explicit ``loss_weight`` as one use), as Caffe's InsertSplits does.

    Returns the new net and the source line of each of its layers (a split layer
    gets its producer's line).
    """
    lines = list(lines) if lines is not None else [None] * len(net.layer)
    last_top: dict[str, tuple[int, int]] = {}
    source_top: dict[tuple[int, int], tuple[int, int]] = {}
    use_count: dict[tuple[int, int], int] = {}
    loss_weight: dict[tuple[int, int], float] = {}
    for i, layer in enumerate(net.layer):
        for j, name in enumerate(layer.bottom):
            if name not in last_top:
                where = f"{source}:{lines[i]}: " if lines[i] else (f"{source}: " if source else "")
                raise InputError(
                    f"{where}layer '{layer.name}' ({layer.type}): unknown bottom blob '{name}' "
                    f"(bottom index {j}): no earlier layer produces it"
                )
            top_idx = last_top[name]
            source_top[(i, j)] = top_idx
            use_count[top_idx] = use_count.get(top_idx, 0) + 1
        for j, name in enumerate(layer.top):
            last_top[name] = (i, j)
        # A top used as a loss counts as one more consumer.
        for j in range(min(len(layer.loss_weight), len(layer.top))):
            top_idx = last_top[layer.top[j]]
            loss_weight[top_idx] = layer.loss_weight[j]
            if loss_weight[top_idx]:
                use_count[top_idx] = use_count.get(top_idx, 0) + 1

    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    out_lines: list[int | None] = []
    split_next: dict[tuple[int, int], int] = {}
    for i, original in enumerate(net.layer):
        layer = out.layer.add()
        layer.CopyFrom(original)
        out_lines.append(lines[i])
        for j in range(len(layer.bottom)):
            top_idx = source_top[(i, j)]
            if use_count.get(top_idx, 0) > 1:
                producer = net.layer[top_idx[0]].name
                k = split_next.get(top_idx, 0)
                split_next[top_idx] = k + 1
                layer.bottom[j] = split_blob_name(producer, layer.bottom[j], top_idx[1], k)
        for j in range(len(layer.top)):
            top_idx = (i, j)
            count = use_count.get(top_idx, 0)
            if count > 1:
                blob = layer.top[j]
                weight = loss_weight.get(top_idx, 0.0)
                split = out.layer.add()
                split.name = split_layer_name(layer.name, blob, j)
                split.type = "Split"
                split.bottom.append(blob)
                for k in range(count):
                    split.top.append(split_blob_name(layer.name, blob, j, k))
                    if weight:
                        split.loss_weight.append(weight if k == 0 else 0.0)
                out_lines.append(lines[i])
                if weight:
                    # The split's first top now carries the loss.
                    layer.ClearField("loss_weight")
                    split_next[top_idx] = split_next.get(top_idx, 0) + 1
    return out, out_lines


# ---------------------------------------------------------------------------
# Stand-in for data sources when data_shapes is given


class _ShapeOnlySource(Layer):
    """Produces zero tops of fixed shapes in place of a data-source layer."""

    exact_bottoms = 0

    def __init__(self, param: Any, ctx: LayerContext, shapes: list[tuple[int, ...]]) -> None:
        super().__init__(param, ctx)
        self.type_name = param.type  # shown as the layer it replaces
        self._shapes = shapes

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t, shape in zip(top, self._shapes, strict=True):
            t.reshape(shape)
            t.data[...] = 0

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t, shape in zip(top, self._shapes, strict=True):
            t.reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Tops stay zero: no data is read."""


# ---------------------------------------------------------------------------
# The Net


class Net:
    """A Caffe network: layers, blobs and parameters, with pycaffe's API.

    ``model`` is a ``.prototxt`` path or a ``NetParameter``.  ``phase`` is ``"TRAIN"``/
    ``"TEST"`` or :data:`TRAIN`/:data:`TEST`; ``level`` and ``stages`` complete the
    NetState (stages are added to any in the model's ``state``).  ``weights`` is a
    ``.caffemodel`` to copy from (:meth:`copy_from`).  ``backend`` (a
    :class:`GemmBackend`, default :class:`CpuBackend`) computes every GEMM;
    ``seed`` seeds the net's random generator (fillers, dropout, crops).
    ``data_shapes`` maps top names of data-source layers to shapes (see the module
    documentation).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | caffe_pb2.NetParameter,
        phase: int | str = TEST,
        weights: str | os.PathLike[str] | None = None,
        *,
        level: int = 0,
        stages: Iterable[str] = (),
        backend: GemmBackend | None = None,
        seed: int | None = None,
        data_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        if isinstance(model, caffe_pb2.NetParameter):
            param = caffe_pb2.NetParameter()
            param.CopyFrom(model)
            upgrade_net(param)
            self.source_file = ""
            raw_lines: list[int | None] = [None] * len(param.layer)
        else:
            self.source_file = str(model)
            param = read_text_proto(model, caffe_pb2.NetParameter())
            text = Path(model).read_text(errors="replace")
            raw_lines = [line for _, line in layer_blocks(text)]
            n_before = len(param.layer) + len(param.layers)
            upgrade_net(param, source=self.source_file)
            if len(raw_lines) != n_before:
                raw_lines = [None] * n_before  # the locator got confused; no lines
            # An Input layer made from net-level inputs comes first and has no block.
            raw_lines = [None] * (len(param.layer) - n_before) + raw_lines
        self._phase = _phase_value(phase)
        param.state.phase = self._phase
        param.state.level = int(level)
        param.state.stage.extend(stages)

        self.backend: GemmBackend = backend if backend is not None else CpuBackend()
        self.rng = np.random.default_rng(seed)
        self.name: str = param.name
        self.force_backward: bool = param.force_backward
        self._data_shapes = {k: tuple(int(d) for d in v) for k, v in (data_shapes or {}).items()}

        filtered, lines = filter_net(param, source=self.source_file, lines=raw_lines)
        split, lines = insert_splits(filtered, source=self.source_file, lines=lines)
        self._net_param = split
        self._layer_lines = lines
        self.loss = 0.0  # total loss of the last forward pass
        self._init_layers(split)
        if weights is not None:
            self.copy_from(weights)

    # -- construction --------------------------------------------------------
    def _where(self, layer_id: int | None) -> str:
        line = self._layer_lines[layer_id] if layer_id is not None else None
        if self.source_file and line:
            return f"{self.source_file}:{line}: "
        return f"{self.source_file}: " if self.source_file else ""

    def _layer_error(self, layer_id: int, message: str) -> InputError:
        lp = self._net_param.layer[layer_id]
        return InputError(f"{self._where(layer_id)}layer '{lp.name}' ({lp.type}): {message}")

    def _init_layers(self, net: caffe_pb2.NetParameter) -> None:
        self.layers: list[Layer] = []
        self._layer_names: list[str] = []
        self._blobs: list[Blob] = []
        self._blob_names: list[str] = []
        self._blob_need_backward: list[bool] = []
        self._bottom_ids: list[list[int]] = []
        self._top_ids: list[list[int]] = []
        self._bottom_need_backward: list[list[bool]] = []
        self._layer_need_backward: list[bool] = []
        self._loss_weights: list[list[float]] = []
        self._input_ids: list[int] = []
        # Parameters (Caffe's params_, param_owners_, learnable_params_, ...).
        self._params: list[Blob] = []
        self._param_owners: list[int] = []
        self._param_layer_indices: list[tuple[int, int]] = []
        self.param_display_names: list[str] = []
        self._param_names_index: dict[str, int] = {}
        self.learnable_params: list[Blob] = []
        self._learnable_param_ids: list[int] = []
        self.params_lr: list[float] = []
        self.params_weight_decay: list[float] = []
        self._has_params_lr: list[bool] = []
        self._has_params_decay: list[bool] = []

        name_to_id: dict[str, int] = {}
        available: set[str] = set()
        used_shapes: set[str] = set()

        for layer_id, lp_net in enumerate(net.layer):
            lp = caffe_pb2.LayerParameter()
            lp.CopyFrom(lp_net)
            if not lp.HasField("phase"):
                lp.phase = self._phase
            n_bottom = len(lp.bottom)
            if len(lp.propagate_down) not in (0, n_bottom):
                raise self._layer_error(
                    layer_id,
                    f"propagate_down must be given 0 or {n_bottom} (once per bottom) times, "
                    f"got {len(lp.propagate_down)}",
                )
            layer = self._create_layer(layer_id, lp, used_shapes)
            self.layers.append(layer)
            self._layer_names.append(lp.name)

            # Bottoms (Caffe's AppendBottom).
            bottom_ids: list[int] = []
            bottom_nb: list[bool] = []
            need_backward = False
            for j, name in enumerate(lp.bottom):
                if name not in available:
                    raise self._layer_error(
                        layer_id,
                        f"unknown bottom blob '{name}' (bottom index {j}): no earlier layer "
                        "produces it",
                    )
                blob_id = name_to_id[name]
                available.discard(name)
                nb = self._blob_need_backward[blob_id]
                if len(lp.propagate_down):
                    nb = bool(lp.propagate_down[j])
                bottom_ids.append(blob_id)
                bottom_nb.append(nb)
                need_backward |= self._blob_need_backward[blob_id]

            # Tops (Caffe's AppendTop), including anonymous tops of loss layers.
            top_ids: list[int] = []
            n_top = len(lp.top)
            if layer.is_loss:
                n_top = max(n_top, layer.exact_tops or 0, layer.min_tops or 0)
            for j in range(n_top):
                if j < len(lp.top):
                    name = lp.top[j]
                    if j < n_bottom and lp.bottom[j] == name:
                        blob_id = name_to_id[name]  # in-place computation
                    elif name in name_to_id:
                        raise self._layer_error(
                            layer_id, f"top blob '{name}' is produced by more than one layer"
                        )
                    else:
                        blob_id = self._new_blob(name)
                        name_to_id[name] = blob_id
                    available.add(name)
                else:
                    blob_id = self._new_blob("(automatic)")
                if lp.type == "Input":
                    self._input_ids.append(blob_id)
                top_ids.append(blob_id)
            self._bottom_ids.append(bottom_ids)
            self._top_ids.append(top_ids)
            self._bottom_need_backward.append(bottom_nb)

            bottom = [self._blobs[b] for b in bottom_ids]
            top = [self._blobs[t] for t in top_ids]
            self._setup_layer(layer_id, layer, bottom, top)

            # Parameters: which need backward, then registration and sharing.
            specs = layer.param.param
            n_blobs = len(layer.blobs)
            if len(specs) > n_blobs:
                raise self._layer_error(
                    layer_id,
                    f"{len(specs)} 'param' specs given but the layer has {n_blobs} "
                    "parameter blob(s)",
                )
            default = caffe_pb2.ParamSpec()
            param_propagate = []
            for p in range(n_blobs):
                spec = specs[p] if p < len(specs) else default
                param_propagate.append(spec.lr_mult != 0)
                need_backward |= spec.lr_mult != 0
            layer.param_propagate_down = param_propagate
            for p in range(n_blobs):
                self._append_param(layer_id, layer, p)
            self._layer_need_backward.append(need_backward)
            for t in top_ids:
                if need_backward:
                    self._blob_need_backward[t] = True

        unknown = set(self._data_shapes) - used_shapes
        if unknown:
            raise InputError(
                f"{self.source_file or 'net'}: data_shapes names {sorted(unknown)}, which are not "
                "all tops of a data-source layer (a layer without bottoms) in this phase"
            )
        self._compute_backward_needs()
        # Remaining unconsumed blobs are the outputs, in name order as in Caffe (a std::set).
        self._output_ids = [name_to_id[n] for n in sorted(available)]
        self._seed_loss_diffs()

    def _new_blob(self, name: str) -> int:
        self._blobs.append(Blob())
        self._blob_names.append(name)
        self._blob_need_backward.append(False)
        return len(self._blobs) - 1

    def _create_layer(self, layer_id: int, lp: Any, used_shapes: set[str]) -> Layer:
        line = self._layer_lines[layer_id]
        source = f"{self.source_file}:{line}" if self.source_file and line else self.source_file
        ctx = LayerContext(
            phase=_PHASE_NAMES[lp.phase],
            backend=self.backend,
            rng=self.rng,
            source_file=source,
        )
        if self._data_shapes and not len(lp.bottom) and len(lp.top):
            hits = [t for t in lp.top if t in self._data_shapes]
            if hits:
                missing = [t for t in lp.top if t not in self._data_shapes]
                if missing:
                    raise self._layer_error(
                        layer_id,
                        f"data_shapes gives shapes for {hits} but not for the other top(s) "
                        f"{missing} of this data layer",
                    )
                used_shapes.update(hits)
                return _ShapeOnlySource(lp, ctx, [self._data_shapes[t] for t in lp.top])
        cls = LAYER_TYPES.get(lp.type)
        if cls is None:
            known = ", ".join(sorted(LAYER_TYPES))
            raise self._layer_error(layer_id, f"unknown layer type '{lp.type}' (known: {known})")
        return cls(lp, ctx)

    def _setup_layer(
        self, layer_id: int, layer: Layer, bottom: list[Blob], top: list[Blob]
    ) -> None:
        """Caffe's Layer::SetUp: check blob counts, LayerSetUp, Reshape, loss weights."""
        try:
            layer.check_blob_counts(bottom, top)
            layer.setup(bottom, top)
            layer.reshape(bottom, top)
        except InputError:
            raise
        except ValueError as exc:  # numpy shape errors and the like: name the layer
            raise self._layer_error(layer_id, f"cannot set up: {exc}") from exc
        weights = list(layer.param.loss_weight)
        if not weights and layer.is_loss:
            weights = [1.0]  # LossLayer's default: the first top is the loss
            layer.param.loss_weight.append(1.0)
        if weights and len(weights) != len(top):
            raise self._layer_error(
                layer_id,
                f"loss_weight must be unspecified or given once per top blob "
                f"({len(top)} tops, {len(weights)} loss_weight values)",
            )
        self._loss_weights.append(weights or [0.0] * len(top))

    def _append_param(self, layer_id: int, layer: Layer, p: int) -> None:
        """Caffe's AppendParam: register a parameter blob, sharing it by name."""
        specs = layer.param.param
        spec = specs[p] if p < len(specs) else caffe_pb2.ParamSpec()
        name = spec.name
        self.param_display_names.append(name or f"{layer.name}[{p}]")
        net_param_id = len(self._params)
        self._params.append(layer.blobs[p])
        self._param_layer_indices.append((layer_id, p))
        if not name or name not in self._param_names_index:
            # This layer owns the blob.
            self._param_owners.append(-1)
            if name:
                self._param_names_index[name] = net_param_id
            self._learnable_param_ids.append(len(self.learnable_params))
            self.learnable_params.append(layer.blobs[p])
            self._has_params_lr.append(spec.HasField("lr_mult"))
            self._has_params_decay.append(spec.HasField("decay_mult"))
            self.params_lr.append(float(spec.lr_mult))
            self.params_weight_decay.append(float(spec.decay_mult))
            return
        owner_id = self._param_names_index[name]
        self._param_owners.append(owner_id)
        owner_layer, owner_p = self._param_layer_indices[owner_id]
        owner_blob = self.layers[owner_layer].blobs[owner_p]
        this_blob = layer.blobs[p]
        owner_name = self._layer_names[owner_layer]
        if spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE:
            if this_blob.count != owner_blob.count:
                raise self._layer_error(
                    layer_id,
                    f"cannot share param '{name}' owned by layer '{owner_name}': count "
                    f"mismatch, owner shape {owner_blob.shape} vs. this layer's {this_blob.shape}",
                )
        elif this_blob.shape != owner_blob.shape:
            raise self._layer_error(
                layer_id,
                f"cannot share param '{name}' owned by layer '{owner_name}': shape mismatch, "
                f"owner shape {owner_blob.shape} vs. this layer's {this_blob.shape} "
                "(use share_mode: PERMISSIVE to check only the count)",
            )
        if this_blob.shape == owner_blob.shape:
            layer.blobs[p] = owner_blob  # the very same Blob: shared data and diff
        else:
            # Permissive sharing with another shape: views of the owner's arrays.
            shared = Blob()
            shared.data = owner_blob.data.reshape(this_blob.shape)
            shared.diff = owner_blob.diff.reshape(this_blob.shape)
            layer.blobs[p] = shared
        self._params[net_param_id] = layer.blobs[p]
        lid = self._learnable_param_ids[owner_id]
        self._learnable_param_ids.append(lid)
        if spec.HasField("lr_mult"):
            if self._has_params_lr[lid] and spec.lr_mult != self.params_lr[lid]:
                raise self._layer_error(layer_id, f"shared param '{name}' has mismatched lr_mult")
            self._has_params_lr[lid] = True
            self.params_lr[lid] = float(spec.lr_mult)
        if spec.HasField("decay_mult"):
            if self._has_params_decay[lid] and spec.decay_mult != self.params_weight_decay[lid]:
                raise self._layer_error(
                    layer_id, f"shared param '{name}' has mismatched decay_mult"
                )
            self._has_params_decay[lid] = True
            self.params_weight_decay[lid] = float(spec.decay_mult)

    def _compute_backward_needs(self) -> None:
        """Caffe's pass over the net from the end: which layers contribute to the loss,
        which bottoms can skip backward, then force_backward."""
        under_loss: set[str] = set()
        skip_backp: set[str] = set()
        for layer_id in range(len(self.layers) - 1, -1, -1):
            contributes = False
            skip_propagate = True
            for j, t in enumerate(self._top_ids[layer_id]):
                name = self._blob_names[t]
                if self._loss_weights[layer_id][j] != 0 or name in under_loss:
                    contributes = True
                if name not in skip_backp:
                    skip_propagate = False
                if contributes and not skip_propagate:
                    break
            if self._layer_need_backward[layer_id] and skip_propagate:
                self._layer_need_backward[layer_id] = False
                self._bottom_need_backward[layer_id] = [False] * len(self._bottom_ids[layer_id])
            if not contributes:
                self._layer_need_backward[layer_id] = False
            for j, b in enumerate(self._bottom_ids[layer_id]):
                name = self._blob_names[b]
                if contributes:
                    under_loss.add(name)
                else:
                    self._bottom_need_backward[layer_id][j] = False
                if not self._bottom_need_backward[layer_id][j]:
                    skip_backp.add(name)
        if self.force_backward:
            for layer_id, layer in enumerate(self.layers):
                self._layer_need_backward[layer_id] = True
                for j, b in enumerate(self._bottom_ids[layer_id]):
                    nb = self._bottom_need_backward[layer_id][j] or layer.allow_force_backward(j)
                    self._bottom_need_backward[layer_id][j] = nb
                    self._blob_need_backward[b] = self._blob_need_backward[b] or nb
                layer.param_propagate_down = [True] * len(layer.blobs)

    def _seed_loss_diffs(self, start: int = 0, end: int | None = None) -> None:
        """Loss tops carry their loss weight in ``diff`` (Caffe's SetLossWeights), which
        is what backward starts from."""
        end = len(self.layers) - 1 if end is None else end
        for layer_id in range(start, end + 1):
            for j, w in enumerate(self._loss_weights[layer_id]):
                if w:
                    self._blobs[self._top_ids[layer_id][j]].diff[...] = w

    # -- pycaffe-style views -------------------------------------------------
    @property
    def phase(self) -> int:
        return self._phase

    @property
    def blobs(self) -> OrderedDict[str, Blob]:
        """Blob name -> Blob, in creation order (anonymous loss tops are left out)."""
        return OrderedDict(
            (n, b) for n, b in zip(self._blob_names, self._blobs, strict=True) if n != "(automatic)"
        )

    @property
    def params(self) -> OrderedDict[str, list[Blob]]:
        """Layer name -> its parameter blobs, for layers that have any."""
        return OrderedDict(
            (n, list(layer.blobs))
            for n, layer in zip(self._layer_names, self.layers, strict=True)
            if layer.blobs
        )

    @property
    def layer_names(self) -> list[str]:
        return list(self._layer_names)

    @property
    def layer_dict(self) -> OrderedDict[str, Layer]:
        return OrderedDict(zip(self._layer_names, self.layers, strict=True))

    @property
    def inputs(self) -> list[str]:
        """Names of the net's input blobs (tops of Input layers)."""
        return [self._blob_names[i] for i in self._input_ids]

    @property
    def outputs(self) -> list[str]:
        """Names of the blobs no layer consumes, sorted by name as in Caffe."""
        return [self._blob_names[i] for i in self._output_ids]

    @property
    def bottom_names(self) -> OrderedDict[str, list[str]]:
        return OrderedDict(
            (n, [self._blob_names[b] for b in ids])
            for n, ids in zip(self._layer_names, self._bottom_ids, strict=True)
        )

    @property
    def top_names(self) -> OrderedDict[str, list[str]]:
        return OrderedDict(
            (n, [self._blob_names[t] for t in ids])
            for n, ids in zip(self._layer_names, self._top_ids, strict=True)
        )

    @property
    def layer_need_backward(self) -> list[bool]:
        return list(self._layer_need_backward)

    @property
    def bottom_need_backward(self) -> list[list[bool]]:
        return [list(v) for v in self._bottom_need_backward]

    @property
    def blob_loss_weights(self) -> OrderedDict[str, float]:
        """Blob name -> loss weight (0 for blobs that are not losses)."""
        out: OrderedDict[str, float] = OrderedDict((n, 0.0) for n in self._blob_names)
        for ids, weights in zip(self._top_ids, self._loss_weights, strict=True):
            for t, w in zip(ids, weights, strict=True):
                if w:
                    out[self._blob_names[t]] = w
        return out

    @property
    def param_owners(self) -> list[int]:
        """For every parameter blob (all layers, in order): -1 if it owns its data, else
        the index of the owner."""
        return list(self._param_owners)

    def layer_bottoms(self, i: int) -> list[Blob]:
        """The bottom blobs of layer ``i``."""
        return [self._blobs[b] for b in self._bottom_ids[i]]

    def layer_tops(self, i: int) -> list[Blob]:
        """The top blobs of layer ``i``."""
        return [self._blobs[t] for t in self._top_ids[i]]

    @property
    def param_layer_indices(self) -> list[tuple[int, int]]:
        """For every parameter blob (see :attr:`param_owners`): (layer index, blob index)."""
        return list(self._param_layer_indices)

    def layer_line(self, layer_name: str) -> int | None:
        """The line of a layer's block in the source prototxt, when known."""
        for name, line in zip(self._layer_names, self._layer_lines, strict=True):
            if name == layer_name:
                return line
        return None

    # -- running -------------------------------------------------------------
    def _layer_index(self, name: str | None, default: int) -> int:
        if name is None:
            return default
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise InputError(f"{self.source_file or 'net'}: no layer named '{name}'") from None

    def forward_layer(self, i: int) -> float:
        """Reshape and run layer ``i`` forward (Caffe's Layer::Forward); returns the
        weighted loss of its tops and leaves each loss weight in its top's diff."""
        layer = self.layers[i]
        bottom = [self._blobs[b] for b in self._bottom_ids[i]]
        top = [self._blobs[t] for t in self._top_ids[i]]
        # Caffe reshapes before every forward, so shapes follow the bottoms.
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        loss = 0.0
        for j, w in enumerate(self._loss_weights[i]):
            if w:
                loss += w * float(np.sum(top[j].data, dtype=np.float64))
                top[j].diff[...] = w
        return loss

    def backward_layer(self, i: int) -> None:
        """Run layer ``i`` backward if the net needs it (Caffe's layer_need_backward)."""
        if not self._layer_need_backward[i]:
            return
        top = [self._blobs[t] for t in self._top_ids[i]]
        bottom = [self._blobs[b] for b in self._bottom_ids[i]]
        self.layers[i].backward(top, list(self._bottom_need_backward[i]), bottom)

    def forward_from_to(self, start: int = 0, end: int | None = None) -> float:
        """Run layers ``start``..``end`` (indices, inclusive); returns their total loss."""
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        for i in range(start, end + 1):
            loss += self.forward_layer(i)
        self.loss = loss
        return loss

    def backward_from_to(self, start: int | None = None, end: int = 0) -> None:
        """Run backward over layers ``start`` down to ``end`` (indices, inclusive)."""
        start = len(self.layers) - 1 if start is None else start
        for i in range(start, end - 1, -1):
            self.backward_layer(i)

    def forward(
        self,
        blobs: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        **inputs: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """pycaffe's ``Net.forward``: optional input arrays by blob name; runs the layers
        from ``start`` to ``end`` (layer names); returns ``{blob name: data}`` for the
        outputs (or the tops of ``end``) plus ``blobs``.  The arrays are the blobs' own
        (overwritten by the next pass).  An input of a new shape reshapes the net.
        The total loss is left in ``self.loss``."""
        extra = list(blobs or [])
        reshape = False
        for name, value in inputs.items():
            if name not in self.inputs:
                raise InputError(
                    f"forward: '{name}' is not an input of the net (inputs: {self.inputs})"
                )
            value = np.asarray(value, dtype=np.float32)
            blob = self.blobs[name]
            if value.shape != blob.shape:
                blob.reshape(value.shape)
                reshape = True
            blob.data[...] = value
        if reshape:
            self.reshape()
        start_i = self._layer_index(start, 0)
        end_i = self._layer_index(end, len(self.layers) - 1)
        outputs = self.top_names[end] if end is not None else self.outputs
        self.forward_from_to(start_i, end_i)
        return {n: self.blobs[n].data for n in dict.fromkeys([*outputs, *extra])}

    def backward(
        self,
        diffs: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        **output_diffs: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """pycaffe's ``Net.backward``: optional top diffs by output blob name; runs
        backward from ``start`` down to ``end`` (layer names); returns ``{blob name:
        diff}`` for the inputs (or the bottoms of ``end``) plus ``diffs``."""
        for name, value in output_diffs.items():
            if name not in self.outputs:
                raise InputError(
                    f"backward: '{name}' is not an output of the net (outputs: {self.outputs})"
                )
            blob = self.blobs[name]
            value = np.asarray(value, dtype=np.float32)
            if value.shape != blob.shape:
                raise InputError(
                    f"backward: diff for '{name}' has shape {value.shape}, blob is {blob.shape}"
                )
            blob.diff[...] = value
        start_i = self._layer_index(start, len(self.layers) - 1)
        end_i = self._layer_index(end, 0)
        wanted = self.bottom_names[end] if end is not None else self.inputs
        self.backward_from_to(start_i, end_i)
        return {n: self.blobs[n].diff for n in dict.fromkeys([*wanted, *(diffs or [])])}

    def forward_backward(self) -> float:
        """One forward and one backward pass over the whole net; returns the loss."""
        loss = self.forward_from_to()
        self.backward_from_to()
        return loss

    def reshape(self) -> None:
        """Re-run every layer's reshape in order (after an input changed shape)."""
        for i, layer in enumerate(self.layers):
            bottom = [self._blobs[b] for b in self._bottom_ids[i]]
            top = [self._blobs[t] for t in self._top_ids[i]]
            layer.reshape(bottom, top)
        self._seed_loss_diffs()

    def clear_param_diffs(self) -> None:
        """Zero the diff of every learnable parameter (Caffe's ClearParamDiffs)."""
        for blob in self.learnable_params:
            blob.diff[...] = 0

    def update(self) -> None:
        """``data -= diff`` for every learnable parameter (Caffe's Net::Update)."""
        for blob in self.learnable_params:
            blob.data -= blob.diff

    # -- weights -------------------------------------------------------------
    def to_proto(self, write_diff: bool = False) -> caffe_pb2.NetParameter:
        """The net with every layer's parameters, as Caffe's Net::ToProto."""
        out = caffe_pb2.NetParameter()
        out.name = self.name
        for layer in self.layers:
            lp = out.layer.add()
            lp.CopyFrom(layer.param)
            lp.ClearField("blobs")
            for blob in layer.blobs:
                lp.blobs.add().CopyFrom(
                    array_to_blobproto(blob.data, blob.diff if write_diff else None)
                )
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the weights as a binary ``.caffemodel`` (atomically)."""
        write_caffemodel(path, self.to_proto())

    def copy_from(self, weights: str | os.PathLike[str] | caffe_pb2.NetParameter) -> None:
        """Copy parameters by layer name from a ``.caffemodel`` (CopyTrainedLayersFrom).

        Layers absent from this net are ignored; a layer with another number of
        blobs or a blob of another shape is an error naming both shapes.
        """
        if isinstance(weights, caffe_pb2.NetParameter):
            source_param, origin = weights, "weights"
        else:
            source_param, origin = read_caffemodel(weights), str(weights)
        for src in source_param.layer:
            if src.name not in self._layer_names:
                continue
            layer_id = self._layer_names.index(src.name)
            target = self.layers[layer_id].blobs
            if len(target) != len(src.blobs):
                raise InputError(
                    f"{origin}: layer '{src.name}' has {len(src.blobs)} parameter blob(s), "
                    f"the net's layer has {len(target)}"
                )
            for j, (tblob, sblob) in enumerate(zip(target, src.blobs, strict=True)):
                if not _shape_equals(tblob.shape, sblob):
                    raise InputError(
                        f"{origin}: cannot copy param {j} of layer '{src.name}': shape mismatch, "
                        f"source {blobproto_shape(sblob)} vs. target {tblob.shape} (rename the "
                        "layer to learn it from scratch)"
                    )
                values = blobproto_to_array(sblob, source=f"{origin}: layer '{src.name}'")
                tblob.data[...] = values.reshape(tblob.shape)

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """Feed the first MemoryData layer (pycaffe's ``net.set_input_arrays``)."""
        for layer in self.layers:
            if layer.type_name == "MemoryData":
                layer.set_input_arrays(data, labels)  # type: ignore[attr-defined]
                return
        raise InputError("set_input_arrays: the net has no MemoryData layer")

    def share_weights(self, other: Net) -> None:
        """Share parameter data with the same-named layers of ``other``
        (ShareTrainedLayersWith; used for test nets)."""
        for src_name, src_layer in zip(other._layer_names, other.layers, strict=True):
            if src_name not in self._layer_names:
                continue
            target = self.layers[self._layer_names.index(src_name)].blobs
            if len(target) != len(src_layer.blobs):
                raise InputError(
                    f"cannot share weights of layer '{src_name}': {len(src_layer.blobs)} "
                    f"parameter blob(s) in the source, {len(target)} here"
                )
            for j, (tblob, sblob) in enumerate(zip(target, src_layer.blobs, strict=True)):
                if tblob.shape != sblob.shape:
                    raise InputError(
                        f"cannot share param {j} of layer '{src_name}': shape mismatch, "
                        f"source {sblob.shape} vs. target {tblob.shape}"
                    )
                tblob.share_data(sblob)

    def __repr__(self) -> str:
        return f"Net({self.name!r}, phase={_PHASE_NAMES[self._phase]}, {len(self.layers)} layers)"


def _shape_equals(shape: tuple[int, ...], blob: caffe_pb2.BlobProto) -> bool:
    """Caffe's Blob::ShapeEquals, accepting the legacy 4-d form for up to 4 axes."""
    if not blob.HasField("shape") and any(
        blob.HasField(f) for f in ("num", "channels", "height", "width")
    ):
        if len(shape) > 4:
            return False
        legacy = (1,) * (4 - len(shape)) + tuple(shape)
        return legacy == (blob.num, blob.channels, blob.height, blob.width)
    return tuple(shape) == blobproto_shape(blob)
