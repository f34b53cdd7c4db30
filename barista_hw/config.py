"""Engine geometry: the parameters one GEMM engine is built from (RTL, model and drivers)."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field

from .errors import InputError
from .numfmt import FixedFormat

MAX_ARRAY_DIM = 64


class Dataflow(enum.Enum):
    """Which operand stays in the PEs. Only output-stationary is built so far."""

    OUTPUT_STATIONARY = "os"


class Pass(enum.Enum):
    """The three GEMM passes of a Convolution/InnerProduct layer."""

    FORWARD = "forward"
    BACKWARD_DATA = "backward"
    WEIGHT_GRAD = "gradient"


@dataclass(frozen=True)
class EngineConfig:
    """An R x C systolic array in a number format, plus the width of its dimension counters."""

    rows: int = 4
    cols: int = 4
    fmt: FixedFormat = field(default_factory=FixedFormat)
    dim_bits: int = 16  # M, K, N (and images) per command are < 2**dim_bits
    dataflow: Dataflow = Dataflow.OUTPUT_STATIONARY

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if not 1 <= v <= MAX_ARRAY_DIM:
                raise InputError(f"array {name} = {v} out of range 1..{MAX_ARRAY_DIM}")
        if not 4 <= self.dim_bits <= 24:
            raise InputError(f"dim_bits = {self.dim_bits} out of range 4..24")

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def max_dim(self) -> int:
        return (1 << self.dim_bits) - 1

    @staticmethod
    def parse_array(text: str) -> tuple[int, int]:
        """``"8x8"`` -> (8, 8); errors are one line."""
        parts = text.lower().split("x")
        try:
            rows, cols = (int(p) for p in parts)
        except ValueError:
            raise InputError(f"array size {text!r} must look like RxC, e.g. 8x8") from None
        if rows <= 0 or cols <= 0:
            raise InputError(f"array size {text!r} must be positive")
        return rows, cols

    def to_json(self) -> str:
        d = asdict(self)
        d["fmt"] = self.fmt.name
        d["dataflow"] = self.dataflow.value
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineConfig:
        d = json.loads(text)
        d["fmt"] = FixedFormat.parse(d["fmt"])
        d["dataflow"] = Dataflow(d["dataflow"])
        return cls(**d)
