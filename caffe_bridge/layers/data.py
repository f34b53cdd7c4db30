"""Data layer: Caffe ``Datum`` records from an LMDB, through Caffe's DataTransformer.

``data_param { source batch_size backend: LMDB }``: records are read in key
order, wrapping around at the end of the database; top 0 is the transformed
data (batch, C, H, W) float32 and the optional top 1 the labels (batch,).
Records may hold uint8 ``data``, ``float_data`` or an encoded image
(``encoded: true``, decoded with Pillow into Caffe's BGR channel order).  The
source path is relative to the current directory, as in Caffe.

At net construction the database is opened and checked: a missing, empty or
unreadable source, or records whose shape differs from the first one, are
errors naming the layer and the path.  Databases up to ``FULL_CHECK_BYTES`` are
checked record by record; larger ones have their first batch checked at
construction and every record checked as it is read.
"""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np

from ..blob import Blob
from ..proto import caffe_pb2
from ..transform import DataTransformer
from .base import Layer, LayerError, register_layer

# Databases up to this size are shape-checked record by record at construction.
FULL_CHECK_BYTES = 256 * 1024 * 1024


# py-lmdb refuses to open one environment twice in a process, and several nets
# (train and test, or a net built twice) may read the same source: share them.
_ENVS: dict[str, tuple[tuple[int, int], object]] = {}


def _open_env(path: Path):  # noqa: ANN202 - an lmdb.Environment
    import lmdb

    real = str(path.resolve())
    data_file = path / "data.mdb" if path.is_dir() else path
    st = data_file.stat()
    ident = (st.st_ino, st.st_mtime_ns)
    cached = _ENVS.get(real)
    if cached is not None:
        if cached[0] == ident:
            return cached[1]
        cached[1].close()  # the database was replaced since it was opened
        del _ENVS[real]
    env = lmdb.open(
        real, readonly=True, lock=False, readahead=False, subdir=path.is_dir(), max_readers=126
    )
    _ENVS[real] = (ident, env)
    return env


@register_layer("Data")
class DataLayer(Layer):
    """Caffe's DataLayer over LMDB (LevelDB is not supported)."""

    exact_bottoms = 0
    min_tops = 1
    max_tops = 2

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.data_param
        if p.backend != caffe_pb2.DataParameter.LMDB:
            raise self.error(
                "data_param.backend LEVELDB (Caffe's default) is not supported: convert the "
                "database to LMDB and set 'backend: LMDB'"
            )
        if not p.source:
            raise self.error("data_param.source is not set")
        if p.batch_size <= 0:
            raise self.error("data_param.batch_size must be positive")
        self.source = p.source
        self.batch_size = int(p.batch_size)
        self._open()
        src = f"{self.ctx.source_file}: " if self.ctx.source_file else ""
        self._where = f"{src}layer '{self.name}' ({self.type_name})"
        self.transformer = DataTransformer(
            self.param.transform_param, self.ctx.phase, self.ctx.rng, where=self._where
        )
        first_key, first_value = self._first
        first = self._decode(first_key, first_value)
        self.record_shape: tuple[int, int, int] = first.shape  # type: ignore[assignment]
        self.record_dtype = first.dtype  # uint8 (images) or float32 (float_data)
        self.out_shape = self.transformer.output_shape(self.record_shape)
        self._check_shapes()
        self._cursor_reset()

    # -- database ------------------------------------------------------------
    def _open(self) -> None:
        try:
            import lmdb
        except ImportError:  # pragma: no cover - lmdb is a dependency
            raise self.error("the 'lmdb' package is needed for Data layers") from None
        path = Path(self.source)
        if not path.exists():
            raise self.error(f"data_param.source {self.source}: no such LMDB (path does not exist)")
        try:
            self._env = _open_env(path)
            self._entries = int(self._env.stat()["entries"])
            info = self._env.info()
            self._db_bytes = int(info["last_pgno"]) * int(self._env.stat()["psize"])
        except (lmdb.Error, OSError) as exc:
            raise self.error(
                f"data_param.source {self.source}: cannot open as LMDB: {exc}"
            ) from None
        if self._entries == 0:
            raise self.error(f"data_param.source {self.source}: the LMDB is empty")
        with self._env.begin() as txn:
            cur = txn.cursor()
            if not cur.first():
                raise self.error(f"data_param.source {self.source}: the LMDB is empty")
            self._first = (bytes(cur.key()), bytes(cur.value()))

    def _cursor_reset(self) -> None:
        self._txn = self._env.begin()
        self._cursor = self._txn.cursor()
        self._cursor.first()
        self.position = 0  # the next record's index in the database's key order

    @property
    def entries(self) -> int:
        """The records in the database."""
        return self._entries

    def records(self) -> tuple[np.ndarray, np.ndarray]:
        """Every record in key order (the order batches read them), decoded and not
        transformed, and their labels: ``(entries, C, H, W)`` and ``(entries,)``."""
        first = self._decode(*self._first)
        out = np.empty((self._entries, *first.shape), dtype=first.dtype)
        labels = np.empty(self._entries, dtype=np.int64)
        with self._env.begin() as txn:
            for i, (key, value) in enumerate(txn.cursor()):
                arr = self._decode(bytes(key), bytes(value))
                self._check_record_shape(bytes(key), arr)
                out[i], labels[i] = arr, self._last_label
        return out, labels

    def state_dict(self) -> dict[str, str]:
        """Where reading resumes (the next record's key), for exact training resumes."""
        return {"next_key": bytes(self._cursor.key()).hex()}

    def load_state_dict(self, state: dict[str, str]) -> None:
        key = bytes.fromhex(state["next_key"])
        if not self._cursor.set_key(key):
            raise self.error(
                f"data_param.source {self.source}: the saved position (key {key!r}) is not in "
                "the database any more"
            )
        with self._env.begin() as txn:
            self.position = sum(1 for k in txn.cursor().iternext(values=False) if k < key)

    def _next_record(self) -> tuple[bytes, bytes]:
        key, value = self._cursor.key(), self._cursor.value()
        self.position = (self.position + 1) % self._entries
        if not self._cursor.next():
            self._cursor.first()  # wrap around, as Caffe's DataReader does
        return bytes(key), bytes(value)

    # -- records -------------------------------------------------------------
    def _parse(self, key: bytes, value: bytes) -> caffe_pb2.Datum:
        datum = caffe_pb2.Datum()
        try:
            datum.ParseFromString(value)
        except Exception as exc:  # protobuf's DecodeError
            raise self.error(
                f"data_param.source {self.source}: record {key!r} is not a Caffe Datum: {exc}"
            ) from None
        return datum

    def _decode(self, key: bytes, value: bytes) -> np.ndarray:
        """A record as a (C, H, W) uint8 or float32 array, with its label kept aside."""
        datum = self._parse(key, value)
        self._last_label = int(datum.label)
        if datum.encoded:
            return self._decode_image(key, datum)
        c, h, w = int(datum.channels), int(datum.height), int(datum.width)
        n = c * h * w
        if datum.data:
            if len(datum.data) != n:
                raise self._bad_record(key, f"{len(datum.data)} data bytes for shape {(c, h, w)}")
            return np.frombuffer(datum.data, dtype=np.uint8).reshape(c, h, w)
        if len(datum.float_data) != n:
            raise self._bad_record(
                key, f"{len(datum.float_data)} float_data values for shape {(c, h, w)}"
            )
        return np.asarray(datum.float_data, dtype=np.float32).reshape(c, h, w)

    def _decode_image(self, key: bytes, datum: caffe_pb2.Datum) -> np.ndarray:
        try:
            from PIL import Image
        except ImportError:
            raise self.error(
                f"data_param.source {self.source}: records are encoded images and Pillow "
                "is not installed (pip install pillow)"
            ) from None
        try:
            img = Image.open(_io.BytesIO(datum.data))
            img.load()
        except Exception as exc:  # Pillow raises several types for bad images
            raise self._bad_record(key, f"cannot decode the encoded image: {exc}") from None
        t = self.param.transform_param
        if t.force_gray:
            img = img.convert("L")
        elif t.force_color or self.param.data_param.force_encoded_color or img.mode != "L":
            img = img.convert("RGB")
        arr = np.asarray(img, dtype=np.uint8)
        if arr.ndim == 2:
            return arr[None]
        # Caffe decodes with OpenCV: channels in BGR order.
        return np.ascontiguousarray(arr[:, :, ::-1].transpose(2, 0, 1))

    def _bad_record(self, key: bytes, message: str) -> LayerError:
        return self.error(f"data_param.source {self.source}: record {key!r}: {message}")

    def _check_record_shape(self, key: bytes, arr: np.ndarray) -> None:
        if arr.shape != self.record_shape:
            raise self._bad_record(
                key,
                f"shape {arr.shape} differs from the first record's {self.record_shape}",
            )

    def _check_shapes(self) -> None:
        """Check record shapes: all of them for small databases, else the first batch."""
        full = self._db_bytes <= FULL_CHECK_BYTES
        limit = self._entries if full else min(self._entries, self.batch_size)
        with self._env.begin() as txn:
            cur = txn.cursor()
            cur.first()
            for _ in range(limit):
                key = bytes(cur.key())
                self._check_record_shape(key, self._decode(key, bytes(cur.value())))
                if not cur.next():
                    break

    # -- layer ---------------------------------------------------------------
    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape((self.batch_size, *self.out_shape))
        if len(top) > 1:
            top[1].reshape((self.batch_size,))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        records = np.empty((self.batch_size, *self.record_shape), dtype=np.float32)
        labels = np.empty(self.batch_size, dtype=np.float32)
        for i in range(self.batch_size):
            key, value = self._next_record()
            arr = self._decode(key, value)
            self._check_record_shape(key, arr)
            records[i] = arr
            labels[i] = self._last_label
        self.transformer(records, top[0].data)
        if len(top) > 1:
            top[1].data[...] = labels
