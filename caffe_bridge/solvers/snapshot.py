"""Snapshot files: atomic writes, ``SolverState`` history blobs, and Barista's resume record.

A ``.solverstate`` is Caffe's ``SolverState`` (iter, learned_net, history,
current_step), readable by Caffe. What Caffe does not keep but a bit-identical
resume needs (random generator states, data cursors, the hardware backend's
scale state) travels in the same file as one extra length-delimited field,
number :data:`RESUME_FIELD`, holding UTF-8 JSON. Caffe's parser keeps it as an
unknown field and ignores it; one file and one rename keep the record and the
Caffe state consistent. (A proto field ``optional bytes barista_resume = 1000``
in ``SolverState`` would describe it; the bytes on the wire are the same.)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from barista_base.errors import InputError

from ..proto import caffe_pb2

RESUME_FIELD = 1000  # SolverState field number of the resume record (Caffe uses 1-4)
RESUME_VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Write ``path`` through ``write(tmp_path)`` then rename: readers see old or new, never half.

    The temporary file sits in the same directory (same file system) and is
    synced before the rename, so a crash or SIGKILL at any point leaves either
    the previous file or the complete new one (plus, at worst, a stray
    ``*.tmp``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """:func:`atomic_write` of a byte string."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


# -- blobs --------------------------------------------------------------------


def array_to_blobproto(a: np.ndarray) -> caffe_pb2.BlobProto:
    """Caffe's Blob::ToProto (data only): N-d ``shape`` and float ``data``."""
    bp = caffe_pb2.BlobProto()
    bp.shape.dim.extend(int(d) for d in a.shape)
    bp.data.extend(np.ascontiguousarray(a, dtype=np.float32).ravel().tolist())
    return bp


def blobproto_shape(bp: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The blob's shape, from ``shape`` or the legacy num/channels/height/width."""
    if bp.HasField("shape"):
        return tuple(int(d) for d in bp.shape.dim)
    if any(bp.HasField(f) for f in ("num", "channels", "height", "width")):
        return (bp.num, bp.channels, bp.height, bp.width)
    return (len(bp.data) or len(bp.double_data),)


def blobproto_to_array(bp: caffe_pb2.BlobProto) -> np.ndarray:
    """Caffe's Blob::FromProto data as float32 (double_data is rounded, as in Caffe)."""
    shape = blobproto_shape(bp)
    values = bp.double_data if len(bp.double_data) else bp.data
    a = np.asarray(values, dtype=np.float32 if values is bp.data else np.float64)
    if a.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"blob of shape {shape} holds {a.size} values")
    return a.astype(np.float32).reshape(shape)


# -- the resume record ------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def encode_resume_field(record: dict[str, Any]) -> bytes:
    """The wire bytes of field :data:`RESUME_FIELD` carrying ``record`` as JSON."""
    payload = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return _varint(RESUME_FIELD << 3 | 2) + _varint(len(payload)) + payload


def decode_resume_field(buf: bytes) -> dict[str, Any] | None:
    """Find field :data:`RESUME_FIELD` among a serialized message's top-level fields."""
    pos = 0
    found: bytes | None = None
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if number == RESUME_FIELD:
                found = buf[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if found is None:
        return None
    return json.loads(found.decode())


def write_solverstate(
    path: str,
    *,
    iteration: int,
    learned_net: str,
    current_step: int,
    history: list[np.ndarray],
    resume: dict[str, Any] | None,
) -> None:
    """Write a Caffe ``SolverState`` (+ the resume record) atomically."""
    state = caffe_pb2.SolverState()
    state.iter = int(iteration)
    state.learned_net = learned_net
    state.current_step = int(current_step)
    for h in history:
        state.history.append(array_to_blobproto(h))
    data = state.SerializeToString()
    if resume is not None:
        data += encode_resume_field({"version": RESUME_VERSION, **resume})
    atomic_write_bytes(path, data)


def read_solverstate(path: str) -> tuple[caffe_pb2.SolverState, dict[str, Any] | None]:
    """Parse a ``.solverstate`` (or Caffe's HDF5 ``.solverstate.h5``); the second item is
    the resume record, if any."""
    if path.endswith(".h5"):
        return read_solverstate_h5(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: solver state file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read solver state: {exc}") from None
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(data)
        record = decode_resume_field(data)
    except Exception as exc:  # protobuf's DecodeError, our ValueError, bad JSON
        raise InputError(f"{path}: not a valid SolverState: {exc}") from None
    if record is not None and record.get("version") != RESUME_VERSION:
        raise InputError(
            f"{path}: resume record version {record.get('version')!r} is not supported "
            f"(expected {RESUME_VERSION})"
        )
    return state, record


# -- Caffe's HDF5 snapshot format (snapshot_format: HDF5) ----------------------------------
#
# <prefix>_iter_N.caffemodel.h5: group "data" with one group per layer and a dataset
# per parameter blob ("0", "1", ...); <prefix>_iter_N.solverstate.h5: "iter",
# "learned_net", "current_step" and group "history" ("0", "1", ...), as Caffe's
# Net::ToHDF5 and SGDSolver::SnapshotSolverStateToHDF5 write them. The resume
# record is an extra string dataset, "barista_resume", which Caffe never reads.

RESUME_DATASET = "barista_resume"


def write_caffemodel_h5(path: str, params: dict[str, list[np.ndarray]]) -> None:
    """Write layer parameters as Caffe's ``.caffemodel.h5``, atomically."""
    import h5py

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            for layer, blobs in params.items():
                g = data.create_group(layer)
                for i, a in enumerate(blobs):
                    g.create_dataset(str(i), data=np.asarray(a, dtype=np.float32))

    atomic_write(path, write)


def read_caffemodel_h5(path: str) -> dict[str, list[np.ndarray]]:
    """Layer name -> parameter arrays from a ``.caffemodel.h5``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = f["data"]
            return {
                name: [
                    np.asarray(g[str(i)][()], dtype=np.float32)
                    for i in range(len(g))
                    if str(i) in g
                ]
                for name, g in data.items()
            }
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: not a Caffe HDF5 model: {exc}") from None


def write_solverstate_h5(
    path: str,
    *,
    iteration: int,
    learned_net: str,
    current_step: int,
    history: list[np.ndarray],
    resume: dict[str, Any] | None,
) -> None:
    """Write Caffe's ``.solverstate.h5`` (+ the resume record) atomically."""
    import h5py

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("iter", data=np.int32(iteration))
            f.create_dataset("learned_net", data=learned_net.encode())
            f.create_dataset("current_step", data=np.int32(current_step))
            g = f.create_group("history")
            for i, h in enumerate(history):
                g.create_dataset(str(i), data=np.asarray(h, dtype=np.float32))
            if resume is not None:
                record = json.dumps({"version": RESUME_VERSION, **resume}, sort_keys=True)
                f.create_dataset(RESUME_DATASET, data=record.encode())

    atomic_write(path, write)


def read_solverstate_h5(path: str) -> tuple[caffe_pb2.SolverState, dict[str, Any] | None]:
    """Read a ``.solverstate.h5`` into a ``SolverState`` (history as BlobProtos)."""
    import h5py

    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    state = caffe_pb2.SolverState()
    record = None
    try:
        with h5py.File(path, "r") as f:
            state.iter = int(f["iter"][()])
            state.learned_net = text(f["learned_net"][()])
            state.current_step = int(f["current_step"][()]) if "current_step" in f else 0
            hist = f["history"]
            for i in range(len(hist)):
                state.history.append(array_to_blobproto(np.asarray(hist[str(i)][()])))
            if RESUME_DATASET in f:
                record = json.loads(text(f[RESUME_DATASET][()]))
    except FileNotFoundError:
        raise InputError(f"{path}: solver state file not found") from None
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: not a valid HDF5 solver state: {exc}") from None
    if record is not None and record.get("version") != RESUME_VERSION:
        raise InputError(
            f"{path}: resume record version {record.get('version')!r} is not supported"
        )
    return state, record
