"""Reading and writing Caffe's files: text ``.prototxt``, binary ``.caffemodel`` and
``.binaryproto`` (mean files), and BlobProto <-> numpy conversion.

Text files are parsed by ``google.protobuf.text_format``; every failure becomes an
:class:`~barista_base.errors.InputError` naming the file and, where there is one, the
line (and the layer whose block holds that line).  Net definitions are upgraded
from Caffe's legacy forms on reading (see :mod:`caffe_bridge.upgrade`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from google.protobuf import message as _pb_message
from google.protobuf import text_format

from barista_base.errors import InputError

from .proto import caffe_pb2

M = TypeVar("M", bound=_pb_message.Message)

PathLike = str | os.PathLike[str]

__all__ = [
    "array_to_blobproto",
    "blobproto_shape",
    "blobproto_to_array",
    "layer_blocks",
    "layer_line",
    "read_binaryproto",
    "read_caffemodel",
    "read_net",
    "read_solver",
    "read_text_proto",
    "write_binaryproto",
    "write_caffemodel",
    "write_message",
]


# ---------------------------------------------------------------------------
# Locating layers in a prototxt (for error messages only)

_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<open>\{|<)
  | (?P<close>\}|>)
  | (?P<newline>\n)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


def layer_blocks(text: str) -> list[tuple[str, int]]:
    """``(name, line)`` of every top-level ``layer``/``layers`` block, in file order.

    ``line`` (1-based) is where the block opens; ``name`` is its ``name`` field, or
    ``""`` when it has none.  This only tracks braces, strings and comments to find
    block boundaries; parsing itself is text_format's job.
    """
    blocks: list[tuple[str, int]] = []
    depth = 0
    line = 1
    last_word = ""
    current: list[Any] | None = None  # [name, line] of the open top-level layer block
    expect_name = False
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "newline":
            line += 1
        elif kind == "comment":
            continue
        elif kind == "open":
            if depth == 0 and last_word in ("layer", "layers"):
                current = ["", line]
                blocks.append(("", line))
            depth += 1
            last_word = ""
        elif kind == "close":
            depth = max(depth - 1, 0)
            if depth == 0 and current is not None:
                blocks[-1] = (current[0], current[1])
                current = None
            last_word = ""
        elif kind == "word":
            expect_name = depth == 1 and current is not None and m.group() == "name"
            last_word = m.group()
        elif kind == "string":
            if expect_name and current is not None and not current[0]:
                current[0] = _unquote(m.group())
            expect_name = False
            line += m.group().count("\n")
    return blocks


def _unquote(s: str) -> str:
    body = s[1:-1]
    try:
        return text_format.Tokenizer([s]).ConsumeString()
    except text_format.ParseError:
        return body


def layer_line(path: PathLike | None, name: str, occurrence: int = 0) -> int | None:
    """Line of the ``occurrence``-th layer block named ``name`` in the file, if found."""
    if not path:
        return None
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    lines = [ln for n, ln in layer_blocks(text) if n == name]
    return lines[occurrence] if occurrence < len(lines) else None


def _enclosing_layer(text: str, line: int) -> str | None:
    """Name of the top-level layer block containing ``line``, if any."""
    blocks = layer_blocks(text)
    name = None
    for n, ln in blocks:
        if ln <= line:
            name = n
    return name


# ---------------------------------------------------------------------------
# Text and binary messages


def read_text_proto(path: PathLike, message: M) -> M:
    """Parse a text-format protobuf file into ``message`` (returned)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    return parse_text_proto(text, message, source=str(path))


def parse_text_proto(text: str, message: M, *, source: str = "<text>") -> M:
    """Parse text-format protobuf ``text`` into ``message``; errors name ``source``:line."""
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        # ParseError's message starts with "line:col : "; keep only the reason.
        reason = re.sub(r"^\d+:\d+\s*:\s*", "", str(exc))
        where = f"{source}:{line}:{col}" if line else source
        layer = _enclosing_layer(text, line) if line else None
        in_layer = f" (in layer '{layer}')" if layer else ""
        raise InputError(f"{where}: {reason}{in_layer}") from None
    return message


def read_binary_proto(path: PathLike, message: M, *, what: str = "protobuf") -> M:
    """Parse a binary protobuf file into ``message``; a truncated file is an error."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    if not data:
        raise InputError(f"{path}: empty file, expected a binary {what}")
    try:
        message.ParseFromString(data)
    except _pb_message.DecodeError as exc:
        raise InputError(
            f"{path}: not a valid binary {what} (truncated or corrupt file?): {exc}"
        ) from None
    return message


def write_message(path: PathLike, message: _pb_message.Message) -> None:
    """Write ``message`` in binary form atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    data = message.SerializeToString()
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------
# Nets, solvers, weights


def read_net(path: PathLike) -> caffe_pb2.NetParameter:
    """Read a net ``.prototxt`` (text) and upgrade legacy forms to the current one."""
    from .upgrade import upgrade_net

    param = read_text_proto(path, caffe_pb2.NetParameter())
    return upgrade_net(param, source=str(path))


def read_solver(path: PathLike) -> caffe_pb2.SolverParameter:
    """Read a solver ``.prototxt`` (text) as a ``SolverParameter``."""
    return read_text_proto(path, caffe_pb2.SolverParameter())


def read_caffemodel(path: PathLike) -> caffe_pb2.NetParameter:
    """Read a binary ``.caffemodel`` (trained weights), upgrading legacy V1 layers."""
    from .upgrade import upgrade_net

    param = read_binary_proto(path, caffe_pb2.NetParameter(), what="caffemodel (NetParameter)")
    return upgrade_net(param, source=str(path))


def write_caffemodel(path: PathLike, param: caffe_pb2.NetParameter) -> None:
    """Write a ``NetParameter`` as a binary ``.caffemodel``, atomically."""
    write_message(path, param)


# ---------------------------------------------------------------------------
# Blobs


def blobproto_shape(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The shape of a BlobProto: ``shape.dim`` or else the legacy (num, channels, height, width)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (int(blob.num), int(blob.channels), int(blob.height), int(blob.width))
    # Neither form: Caffe treats it as an empty (0-axis) shape; use the data length.
    n = len(blob.data) or len(blob.double_data)
    return (n,) if n else ()


def blobproto_to_array(
    blob: caffe_pb2.BlobProto, *, diff: bool = False, source: str = "BlobProto"
) -> np.ndarray:
    """A float32 array of the blob's ``data`` (or ``diff``), from float or double storage."""
    shape = blobproto_shape(blob)
    values: Any
    if diff:
        values = blob.double_diff if len(blob.double_diff) else blob.diff
    else:
        values = blob.double_data if len(blob.double_data) else blob.data
    arr = np.asarray(values, dtype=np.float32)
    count = int(np.prod(shape, dtype=np.int64))
    if arr.size != count:
        field = "diff" if diff else "data"
        raise InputError(
            f"{source}: blob of shape {shape} holds {arr.size} {field} values, expected {count}"
        )
    return arr.reshape(shape)


def array_to_blobproto(
    data: np.ndarray,
    diff: np.ndarray | None = None,
    *,
    legacy_4d: bool = False,
    double: bool = False,
) -> caffe_pb2.BlobProto:
    """A BlobProto holding ``data`` (and ``diff``), with ``shape`` or the legacy 4-d fields.

    ``legacy_4d`` writes num/channels/height/width (arrays of up to 4 axes, padded
    with leading 1s) as old Caffe and mean files do; ``double`` writes double_data.
    """
    data = np.asarray(data)
    blob = caffe_pb2.BlobProto()
    if legacy_4d:
        if data.ndim > 4:
            raise InputError(f"a legacy 4-d BlobProto cannot hold a {data.ndim}-d array")
        n, c, h, w = (1,) * (4 - data.ndim) + tuple(data.shape)
        blob.num, blob.channels, blob.height, blob.width = n, c, h, w
    else:
        blob.shape.dim.extend(int(d) for d in data.shape)
    if double:
        blob.double_data.extend(data.astype(np.float64).ravel().tolist())
        if diff is not None:
            blob.double_diff.extend(np.asarray(diff, np.float64).ravel().tolist())
    else:
        blob.data.extend(data.astype(np.float32).ravel().tolist())
        if diff is not None:
            blob.diff.extend(np.asarray(diff, np.float32).ravel().tolist())
    return blob


def read_binaryproto(path: PathLike) -> np.ndarray:
    """Read a ``.binaryproto`` BlobProto file (e.g. a mean image) as a float32 array."""
    blob = read_binary_proto(path, caffe_pb2.BlobProto(), what="BlobProto (.binaryproto)")
    return blobproto_to_array(blob, source=str(path))


def write_binaryproto(path: PathLike, array: np.ndarray, *, legacy_4d: bool = True) -> None:
    """Write an array as a ``.binaryproto`` BlobProto (legacy 4-d form by default, as
    Caffe's ``compute_image_mean`` does)."""
    write_message(path, array_to_blobproto(array, legacy_4d=legacy_4d))
