"""Shared fixtures: the real Caffe models in ../shared, and small LMDBs of Datums."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    """/work/shared (the unmodified Caffe models); skips when it is absent."""
    if not (SHARED / "caffe-models").is_dir():
        pytest.skip(f"shared Caffe models not found at {SHARED / 'caffe-models'}")
    return SHARED


def write_datum_lmdb(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    encode: Callable[[np.ndarray], bytes] | None = None,
) -> Path:
    """Write ``images`` (N, C, H, W) uint8 (or float32 -> float_data) as Caffe Datums
    under Caffe's key format ``%08d``; ``encode`` turns an image into encoded bytes."""
    import lmdb

    from caffe_bridge.proto import caffe_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.zeros(len(images), dtype=np.int64) if labels is None else labels
    env = lmdb.open(str(path), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            d = caffe_pb2.Datum(
                channels=img.shape[0], height=img.shape[1], width=img.shape[2], label=int(label)
            )
            if encode is not None:
                d.data = encode(img)
                d.encoded = True
            elif img.dtype == np.uint8:
                d.data = img.tobytes()
            else:
                d.float_data.extend(img.astype(np.float32).ravel().tolist())
            txn.put(f"{i:08d}".encode(), d.SerializeToString())
    env.close()
    return path


@pytest.fixture
def datum_lmdb() -> Callable[..., Path]:
    """The :func:`write_datum_lmdb` helper."""
    return write_datum_lmdb
