"""Engine geometry: the parameters one GEMM engine is built from (RTL, model and drivers)."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from barista_base.errors import InputError

from .fpformat import MinifloatGemmFormat, is_minifloat_spec
from .mxformat import MXGemmFormat, is_mx_spec
from .numfmt import DEFAULT_FORMAT, FixedFormat
from .passengine import PassGemmFormat, is_per_pass, parse_pass_engine

#: What an engine computes in: fixed point, or minifloat or MX codes with exact accumulators.
EngineFormat = FixedFormat | MinifloatGemmFormat | MXGemmFormat | PassGemmFormat


def parse_engine_format(spec: str) -> EngineFormat:
    """An engine's format by name: a minifloat engine format (``e4m3``, see
    :mod:`barista_hw.fpformat`), an MX engine format (``mxfp8_e4m3``, see
    :mod:`barista_hw.mxformat`), formats per pass (``fwd=e4m3,grad=e5m2``, see
    :mod:`barista_hw.passengine`) or a fixed-point spec or preset (``fx16``, ``int8``)."""
    if is_per_pass(spec):
        return parse_pass_engine(spec)
    if is_mx_spec(spec):
        return MXGemmFormat.parse(spec)
    if is_minifloat_spec(spec):
        return MinifloatGemmFormat.parse(spec)
    return FixedFormat.parse(spec)


MAX_ARRAY_DIM = 64
#: The array wherever none is given (engines, backends, command lines): rows x cols.
DEFAULT_ROWS, DEFAULT_COLS = 4, 4
#: :data:`DEFAULT_ROWS` x :data:`DEFAULT_COLS` as the command lines write an array.
DEFAULT_ARRAY = f"{DEFAULT_ROWS}x{DEFAULT_COLS}"


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
    """An R x C systolic array in a number format, plus the width of its dimension counters.

    ``fmt``: fixed point, or a :class:`~barista_hw.fpformat.MinifloatGemmFormat` (minifloat
    PEs with exact accumulators and the minifloat requantiser; one format for all passes),
    an MX format, or a :class:`~barista_hw.passengine.PassGemmFormat` (formats per pass,
    chosen by each command's ``pass_id``).
    """

    rows: int = DEFAULT_ROWS
    cols: int = DEFAULT_COLS
    fmt: EngineFormat = DEFAULT_FORMAT
    dim_bits: int = 16  # M, K, N (and images) per command are < 2**dim_bits
    dataflow: Dataflow = Dataflow.OUTPUT_STATIONARY
    # Rows (C accumulators each) of the accumulator memory that carries full-width
    # partial sums across commands (K split into chunks); 0 builds none.
    acc_depth: int = 0
    # The command's ``raw`` bit: a block's accumulators leave unrequantised, each as
    # :attr:`raw_beats` operand-width beats (what data-parallel training sums across
    # devices). None: as the format allows (:attr:`readout`: fixed point has it,
    # minifloat/MX cannot), so a preset derived into another format follows it.
    raw_readout: bool | None = None

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if not 1 <= v <= MAX_ARRAY_DIM:
                raise InputError(f"array {name} = {v} out of range 1..{MAX_ARRAY_DIM}")
        if not 4 <= self.dim_bits <= 24:
            raise InputError(f"dim_bits = {self.dim_bits} out of range 4..24")
        if self.acc_depth and self.acc_depth < self.rows:
            raise InputError(
                f"acc_depth = {self.acc_depth} must be 0 or hold one tile ({self.rows} rows)"
            )
        if self.raw_readout and not isinstance(self.fmt, FixedFormat):
            raise InputError(
                f"raw_readout: a {self.fmt.name} engine has no accumulator read-out "
                "(only fixed-point engines do)"
            )

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def max_dim(self) -> int:
        return (1 << self.dim_bits) - 1

    @property
    def readout(self) -> bool:
        """The engine has the accumulator read-out (``raw_readout``, or by its format)."""
        if self.raw_readout is None:
            return isinstance(self.fmt, FixedFormat)
        return self.raw_readout

    @property
    def raw_beats(self) -> int:
        """Output beats that carry one row of accumulators in a ``raw`` command: the
        accumulator width in operand-width pieces (fixed point; 1 without the read-out)."""
        if not self.readout:
            return 1
        width = self.fmt.operand_shape.width
        return -(-self.fmt.acc_width // width)

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
        if d["raw_readout"] is False:  # as written before the read-out: the same identity
            del d["raw_readout"]  # (a board's configuration hash, cache keys)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineConfig:
        d = json.loads(text)
        d.setdefault("raw_readout", False)  # written before the read-out existed: none built
        d["fmt"] = parse_engine_format(d["fmt"])
        d["dataflow"] = Dataflow(d["dataflow"])
        return cls(**d)


@dataclass(frozen=True)
class AcceleratorConfig:
    """Every parameter of a generated accelerator, from the planner to RTL, simulators and drivers.

    One shared engine (``engine``) runs all three passes; operand buffer A holds
    ``a_depth`` words of ``rows`` lanes (column segments of A, tile-row by
    tile-row), buffer B ``b_depth`` words of ``cols`` lanes (row segments of B,
    tile-column by tile-column); the engine's accumulator memory
    (``engine.acc_depth`` rows) carries partial sums when a pass's reduction
    dimension is split into chunks that fit the buffers.
    """

    engine: EngineConfig = field(default_factory=lambda: EngineConfig(acc_depth=64))
    a_depth: int = 1024
    b_depth: int = 1024
    clock_mhz: float = 50.0
    name: str = "custom"
    target: str = "generic"

    def __post_init__(self) -> None:
        for name in ("a_depth", "b_depth"):
            v = getattr(self, name)
            if not 2 <= v <= 1 << 20:
                raise InputError(f"{name} = {v} out of range 2..{1 << 20}")
        if self.clock_mhz <= 0:
            raise InputError(f"clock_mhz = {self.clock_mhz} must be positive")

    @property
    def a_addr_bits(self) -> int:
        return max(1, (self.a_depth - 1).bit_length())

    @property
    def b_addr_bits(self) -> int:
        return max(1, (self.b_depth - 1).bit_length())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["engine"] = json.loads(self.engine.to_json())
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    def derive(self, *, depth: int | None = None, **changes: Any) -> AcceleratorConfig:
        """A copy with ``changes`` to fields of the accelerator (``name``, ``target``,
        ``clock_mhz``, ...) or of its engine (``rows``, ``cols``, ``fmt``, ``acc_depth``, ...);
        ``depth`` sets both buffer depths. Presets are written this way, by keyword from a
        base, so each says only how it differs."""
        engine_fields = {f.name for f in fields(EngineConfig)}
        engine = {k: changes.pop(k) for k in list(changes) if k in engine_fields}
        if depth is not None:
            if {"a_depth", "b_depth"} & changes.keys():
                raise TypeError("derive: give depth or a_depth/b_depth, not both")
            changes.update(a_depth=depth, b_depth=depth)
        return replace(self, engine=replace(self.engine, **engine), **changes)

    @classmethod
    def from_dict(cls, d: dict) -> AcceleratorConfig:
        d = dict(d)
        d["engine"] = EngineConfig.from_json(json.dumps(d["engine"]))
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> AcceleratorConfig:
        return cls.from_dict(json.loads(text))


#: The accelerator every preset is derived from (:meth:`AcceleratorConfig.derive`): all
#: defaults, a :data:`DEFAULT_ARRAY` array in the default format with 1024-word buffers.
DEFAULT_ACCELERATOR = AcceleratorConfig()
