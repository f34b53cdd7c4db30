"""Regenerate ``caffe_pb2.py`` from ``caffe.proto`` with the protoc bundled in grpcio-tools.

Run ``python -m caffe_bridge.proto.regenerate`` after editing ``caffe.proto``;
the generated module is committed so that users need only the protobuf runtime.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "caffe.proto"
GENERATED = HERE / "caffe_pb2.py"


def generate(out_dir: Path) -> Path:
    """Run protoc on ``caffe.proto``, writing ``caffe_pb2.py`` into ``out_dir``."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("grpcio-tools is needed to regenerate caffe_pb2.py") from exc
    # protoc's include path must contain google/protobuf/*.proto; grpc_tools ships them.
    include = Path(protoc.__file__).resolve().parent / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={HERE}",
            f"--proto_path={include}",
            f"--python_out={out_dir}",
            str(PROTO),
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status} on {PROTO}")
    return out_dir / "caffe_pb2.py"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(generate(Path(tmp)), GENERATED)
    print(f"wrote {GENERATED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
