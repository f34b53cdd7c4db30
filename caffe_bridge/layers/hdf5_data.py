"""HDF5Data and HDF5Output layers (Caffe's HDF5DataLayer and HDF5OutputLayer).

HDF5Data reads, for each top, the dataset of the same name from the ``.h5``
files listed in ``hdf5_data_param.source``. As in Caffe, rows are served in
order, file after file, wrapping around at the end; with ``shuffle`` the file
order is reshuffled at every wrap and the row order at every file. Paths are
relative to the working directory, as in Caffe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..blob import Blob
from .base import Layer, register_layer


def _h5py():  # noqa: ANN202 - the module
    import h5py  # deferred: only nets with HDF5 layers pay for it

    return h5py


@register_layer("HDF5Data")
class HDF5DataLayer(Layer):
    """Batches of rows from HDF5 datasets named after the tops.

    Every listed file is opened at setup and its datasets checked (present,
    numeric, at least 1-d, the same number of rows for every top, the same
    per-row shape in every file), so a bad file fails at setup, not mid-training.
    Data is converted to float32, as Caffe reads it with ``H5LTread_dataset_float``.
    """

    exact_bottoms = 0
    min_tops = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.hdf5_data_param
        if self.param.HasField("transform_param"):
            # Caffe refuses it too: HDF5 data is generic, it is not an image.
            raise self.error("transform_param is not supported: HDF5Data does not transform data")
        if p.batch_size <= 0:
            raise self.error(f"hdf5_data_param.batch_size must be positive, got {p.batch_size}")
        self._batch_size = int(p.batch_size)
        self._shuffle = bool(p.shuffle)
        self._names = list(self.param.top)
        self._files = self._read_source(p.source)
        self._row_shapes = self._check_files()

        # Caffe's order of events: shuffle the file order, load the first file.
        self._file_order = np.arange(len(self._files))
        if self._shuffle:
            self.ctx.rng.shuffle(self._file_order)
        self._current_file = 0
        self._load(self._file_order[0])
        self._current_row = 0
        for t, row_shape in zip(top, self._row_shapes, strict=True):
            t.reshape((self._batch_size, *row_shape))

    def _read_source(self, source: str) -> list[tuple[Path, int]]:
        """The listed file names, each with its line number in ``source``."""
        if not source:
            raise self.error("hdf5_data_param.source is not set")
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise self.error(
                f"hdf5_data_param.source '{source}': cannot read ({exc.strerror})"
            ) from None
        # Caffe reads the list with `>>`: names are whitespace-separated tokens.
        files = [
            (Path(tok), lineno)
            for lineno, line in enumerate(text.splitlines(), start=1)
            for tok in line.split()
        ]
        if not files:
            raise self.error(f"hdf5_data_param.source '{source}': no HDF5 file names listed")
        self._source = source
        return files

    def _where(self, index: int) -> str:
        path, lineno = self._files[index]
        return f"'{path}' (listed at {self._source}:{lineno})"

    def _check_files(self) -> list[tuple[int, ...]]:
        """Per-row shape of every top, checked to agree in every listed file."""
        h5py = _h5py()
        row_shapes: list[tuple[int, ...]] | None = None
        for i, (path, _) in enumerate(self._files):
            try:
                f = h5py.File(path, "r")
            except OSError as exc:
                raise self.error(f"cannot open HDF5 file {self._where(i)}: {exc}") from None
            with f:
                shapes = []
                for name in self._names:
                    ds = f.get(name)
                    if not isinstance(ds, h5py.Dataset):
                        have = ", ".join(sorted(k for k in f if isinstance(f[k], h5py.Dataset)))
                        raise self.error(
                            f"HDF5 file {self._where(i)} has no dataset '{name}' for top "
                            f"'{name}' (datasets: {have or 'none'})"
                        )
                    if ds.dtype.kind not in "fiu":
                        raise self.error(
                            f"dataset '{name}' in {self._where(i)} has type {ds.dtype}; "
                            f"only integer and floating-point data can be read"
                        )
                    if ds.ndim < 1:
                        raise self.error(
                            f"dataset '{name}' in {self._where(i)} is a scalar; it needs at "
                            f"least 1 axis (rows)"
                        )
                    shapes.append(tuple(int(s) for s in ds.shape))
            rows = {s[0] for s in shapes}
            if len(rows) != 1:
                counts = ", ".join(
                    f"'{n}': {s[0]}" for n, s in zip(self._names, shapes, strict=True)
                )
                raise self.error(
                    f"datasets in {self._where(i)} disagree on the number of rows ({counts})"
                )
            if rows == {0}:
                raise self.error(f"datasets in {self._where(i)} have no rows")
            per_row = [s[1:] for s in shapes]
            if row_shapes is None:
                row_shapes = per_row
            elif per_row != row_shapes:
                for name, want, got in zip(self._names, row_shapes, per_row, strict=True):
                    if want != got:
                        raise self.error(
                            f"dataset '{name}' in {self._where(i)} has rows of shape {got}, "
                            f"but the first file {self._where(0)} sets top '{name}' to "
                            f"rows of shape {want}"
                        )
        assert row_shapes is not None  # _read_source guarantees a file
        return row_shapes

    def _load(self, index: int) -> None:
        """Caffe's LoadHDF5FileData: read every top's dataset; reset the row order."""
        h5py = _h5py()
        with h5py.File(self._files[index][0], "r") as f:
            self._arrays = [np.asarray(f[name][()], dtype=np.float32) for name in self._names]
        self._row_order = np.arange(self._arrays[0].shape[0])
        if self._shuffle:
            self.ctx.rng.shuffle(self._row_order)

    def _advance(self) -> None:
        """Caffe's Next() at the end of a file: next file (wrapping), fresh row order."""
        if len(self._files) > 1:
            self._current_file += 1
            if self._current_file == len(self._files):
                self._current_file = 0
                if self._shuffle:
                    self.ctx.rng.shuffle(self._file_order)
            self._load(self._file_order[self._current_file])
        self._current_row = 0
        if self._shuffle:
            self.ctx.rng.shuffle(self._row_order)

    def state_dict(self) -> dict[str, object]:
        """File and row order and position, for exact training resumes."""
        return {
            "file_order": self._file_order.tolist(),
            "current_file": int(self._current_file),
            "row_order": np.asarray(self._row_order).tolist(),
            "current_row": int(self._current_row),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self._file_order = np.asarray(state["file_order"], dtype=np.int64)
        self._current_file = int(state["current_file"])  # type: ignore[arg-type]
        self._load(self._file_order[self._current_file])
        self._row_order = np.asarray(state["row_order"], dtype=np.int64)
        self._current_row = int(state["current_row"])  # type: ignore[arg-type]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Shapes are fixed at setup from the first file, as in Caffe."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        filled = 0
        while filled < self._batch_size:
            # Copy the longest run of rows the current file can give in one go.
            rows = self._arrays[0].shape[0]
            take = min(self._batch_size - filled, rows - self._current_row)
            idx = self._row_order[self._current_row : self._current_row + take]
            for t, arr in zip(top, self._arrays, strict=True):
                t.data[filled : filled + take] = arr[idx]
            filled += take
            self._current_row += take
            if self._current_row == rows:
                self._advance()


@register_layer("HDF5Output")
class HDF5OutputLayer(Layer):
    """Writes its two bottoms to ``hdf5_output_param.file_name`` as ``data`` and ``label``.

    As in Caffe, the file is created (truncated) at setup and blobs are stored as
    4-D float32 arrays (missing axes are 1). Caffe can only write one batch; here
    every forward pass appends its batch along the first axis.
    """

    exact_bottoms = 2
    exact_tops = 0
    DATASETS = ("data", "label")

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        name = self.param.hdf5_output_param.file_name
        if not name:
            raise self.error("hdf5_output_param.file_name is not set")
        self._path = Path(name)
        try:
            with _h5py().File(self._path, "w"):
                pass
        except OSError as exc:
            raise self.error(
                f"hdf5_output_param.file_name '{name}': cannot create ({exc})"
            ) from None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise self.error(
                f"bottoms disagree on the batch size: {bottom[0].shape} vs. {bottom[1].shape}"
            )
        for b in bottom:
            if b.num_axes > 4:
                raise self.error(f"can only write blobs of up to 4 axes, got shape {b.shape}")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        with _h5py().File(self._path, "a") as f:
            for name, b in zip(self.DATASETS, bottom, strict=True):
                arr = b.data.astype(np.float32).reshape(b.shape + (1,) * (4 - b.num_axes))
                if name not in f:
                    f.create_dataset(name, data=arr, maxshape=(None, *arr.shape[1:]))
                    continue
                ds = f[name]
                if ds.shape[1:] != arr.shape[1:]:
                    raise self.error(
                        f"'{name}' batches changed shape from {ds.shape[1:]} to "
                        f"{arr.shape[1:]} while writing {self._path}"
                    )
                n = ds.shape[0]
                ds.resize(n + arr.shape[0], axis=0)
                ds[n:] = arr

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        """No gradient: the layer only writes."""
