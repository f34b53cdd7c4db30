"""An ONNX model's GEMM layers, as :mod:`barista.backends.plan` reads a Caffe net's.

``barista generate model.onnx`` takes its workload list from here: every ``Conv`` and
every ``Gemm``/``MatMul`` with a weight initializer is one layer, named after its weight
(``conv1.weight`` -> ``conv1``, the module name a PyTorch export keeps), in graph order,
its sizes from ONNX shape inference. Caffe's rule decides a layer's backward-data pass:
it runs when the layer's input depends on a learnable parameter (a float initializer);
the graph's inputs need no gradient. The ``onnx`` package is needed (``pip install
'barista[torch]'``); torch is not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from barista_base.errors import InputError
from barista_hw.plan import GemmLayer

_FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
_GEMM_OPS = ("Conv", "Gemm", "MatMul")


def load_layers(
    path: str | Path, data_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> tuple[str, list[GemmLayer]]:
    """(model name, GEMM layers) of the ONNX model at ``path``. ``data_shapes`` fixes the
    shapes of graph inputs (needed where the file leaves a dimension symbolic)."""
    try:
        import onnx
    except ImportError:
        raise InputError(f"{path}: reading ONNX needs onnx: pip install 'barista[torch]'") from None
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # a protobuf decode error: not an ONNX file
        raise InputError(f"{path}: not an ONNX model ({exc})") from None
    _fix_input_shapes(model, dict(data_shapes or {}), path)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:
        raise InputError(f"{path}: ONNX shape inference failed: {exc}") from None
    return path.stem, gemm_layers(model.graph, path)


def _fix_input_shapes(model: Any, shapes: dict[str, tuple[int, ...]], path: Path) -> None:
    """Write ``shapes`` into the graph inputs; every input dimension must then be known."""
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    unknown = set(shapes) - {i.name for i in inputs}
    if unknown:
        names = ", ".join(i.name for i in inputs)
        raise InputError(f"{path}: --data-shape names {sorted(unknown)}; the inputs are {names}")
    if shapes:  # the shapes recorded for the old input shapes would contradict inference
        del model.graph.value_info[:]
        for value in model.graph.output:
            value.type.tensor_type.ClearField("shape")
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        if value.name in shapes:
            shape = shapes[value.name]
            del dims[:]
            for d in shape:
                dims.add(dim_value=d)
        elif not all(d.HasField("dim_value") for d in dims):
            raise InputError(
                f"{path}: input {value.name!r} has a symbolic shape; give it, e.g. "
                f"--data-shape {value.name}=64,1,28,28"
            )


def gemm_layers(graph: Any, where: Path | str = "model") -> list[GemmLayer]:
    """The GEMM layers of a shape-inferred ONNX graph, in graph (topological) order."""
    shapes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    params = {init.name: tuple(int(d) for d in init.dims) for init in graph.initializer}
    learnable = {init.name for init in graph.initializer if init.data_type in _FLOAT_TYPES}
    needs_grad: set[str] = set()
    out: list[GemmLayer] = []
    seen: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        inputs = list(node.input)
        if any(x in needs_grad or x in learnable for x in inputs):
            needs_grad.update(node.output)
        if node.op_type not in _GEMM_OPS:
            continue
        if node.op_type == "MatMul" and (len(inputs) < 2 or inputs[1] not in params):
            continue  # a product of two activations: no layer (attention-like)
        name = _layer_name(node, i)
        count = seen.get(name, 0)
        seen[name] = count + 1
        name = name if count == 0 else f"{name}:{count}"
        out.append(_gemm_layer(node, name, shapes, params, inputs[0] in needs_grad, where))
    return out


def _layer_name(node: Any, index: int) -> str:
    """The weight's name without its ``.weight`` suffix, else the node's, else op+index."""
    weight = node.input[1] if len(node.input) > 1 else ""
    if weight.endswith(".weight"):
        return weight[: -len(".weight")]
    return node.name or f"{node.op_type.lower()}{index}"


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _gemm_layer(
    node: Any,
    name: str,
    shapes: dict[str, tuple[int, ...]],
    params: dict[str, tuple[int, ...]],
    backward_data: bool,
    where: Path | str,
) -> GemmLayer:
    x, w = node.input[0], node.input[1]
    if w not in params:
        raise InputError(f"{where}: {node.op_type} {name}: its weight {w!r} is not an initializer")
    if x not in shapes or node.output[0] not in shapes:
        raise InputError(f"{where}: {node.op_type} {name}: shape inference left its shapes open")
    xs, ys, ws = shapes[x], shapes[node.output[0]], params[w]
    if node.op_type == "Conv":
        if len(ws) != 4:
            raise InputError(f"{where}: Conv {name}: only 2-D convolutions are supported")
        group = _attr(node, "group", 1)
        return GemmLayer(
            name=name,
            kind="conv",
            batch=xs[0],
            m=ws[0] // group,
            k=math.prod(ws[1:]),
            p=math.prod(ys[2:]),
            group=group,
            backward_data=backward_data,
        )
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0):
            raise InputError(f"{where}: Gemm {name}: transA = 1 is not supported")
        n_out, k = ws if _attr(node, "transB", 0) else ws[::-1]
    else:  # MatMul by a (K, N) weight
        if len(ws) != 2:
            raise InputError(f"{where}: MatMul {name}: the weight must be 2-D, got {ws}")
        k, n_out = ws
    return GemmLayer(
        name=name,
        kind="fc",
        batch=math.prod(xs[:-1]),
        m=n_out,
        k=k,
        backward_data=backward_data,
    )
