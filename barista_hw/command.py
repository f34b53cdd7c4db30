"""The typed command of a GEMM: what a host puts on an engine's or an accelerator's ``cmd`` stream.

Two levels, as the hardware sees them:

* :class:`GemmCommand`: what one GEMM asks besides its operands: the requantisation
  ``shift`` and ``rounding``, the ``seed`` of the stochastic lanes, and the ``images``
  of its reduction (the weight gradient's batch). The model, the backends and every
  host take it.
* :class:`EngineCommand`: one command on a ``cmd`` stream: the fields of
  :func:`barista_hw.engine.command_layout` and, for an accelerator, of
  :func:`barista_hw.accelerator.run_layout` (the engine command plus buffer bases).
  :meth:`GemmCommand.chunk` makes the command of one chunk of
  :func:`barista_hw.schedule.schedule_gemm`; :meth:`GemmCommand.engine` the single
  command of a plain engine.

:meth:`EngineCommand.fields` is where a command meets a bit layout: it gives the
value of every field of the layout and checks that each fits its width
(:func:`fit_field`, the one such check).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from barista_base.errors import InputError

from . import passengine
from .config import Pass
from .numfmt import Rounding
from .schedule import Chunk, block_seed

#: The ``pass_id`` field of a per-pass engine's command
#: (:class:`~barista_hw.passengine.PassGemmFormat`): which formats the GEMM takes. Engines
#: in one format have no such field and run any pass.
PASS_IDS: Mapping[Pass, int] = MappingProxyType(
    {
        Pass.FORWARD: passengine.FORWARD,
        Pass.BACKWARD_DATA: passengine.BACKWARD_DATA,
        Pass.WEIGHT_GRAD: passengine.WEIGHT_GRAD,
    }
)

#: The value a command field must hold when a layout lacks it (what the command means
#: without it): an engine without the image count sums one image, one without an
#: accumulator memory runs whole reductions, a plain engine reads no buffers, a
#: minifloat engine shifts nothing.
ABSENT: Mapping[str, int] = MappingProxyType(
    {
        "images": 1,
        "acc_first": True,
        "acc_last": True,
        "a_base": 0,
        "b_base": 0,
        "shift": 0,
        "raw": False,
    }
)


def fit_field(name: str, value: int, width: int, what: str = "command") -> int:
    """``value`` as an int, or an :class:`InputError` naming the field when it does not fit
    ``width`` unsigned bits."""
    v = int(value)
    if not 0 <= v < 1 << width:
        raise InputError(f"{what}: field {name} = {v} does not fit its {width} unsigned bits")
    return v


@dataclass(frozen=True)
class EngineCommand:
    """One command of a ``cmd`` stream (see the module docstring); ``k`` is per image."""

    m: int
    k: int
    n: int
    shift: int
    rounding: Rounding = Rounding.NEAREST_EVEN
    seed: int = 0
    images: int = 1
    acc_first: bool = True  # start from zero, not from the accumulator memory
    acc_last: bool = True  # requantise and emit the results
    a_base: int = 0  # first word of A in the accelerator's buffer
    b_base: int = 0
    raw: bool = False  # emit the accumulators unrequantised (EngineConfig.raw_readout)
    pass_id: int = 0  # PASS_IDS: read only by a per-pass engine (others lack the field)

    def fields(self, layout: Iterable[tuple[str, Any]], what: str = "command") -> dict[str, int]:
        """The value of every field of an Amaranth ``StructLayout``, in declaration order.

        Raises :class:`InputError` naming ``what`` and the field when a value does not
        fit its width, or when the command needs a field the layout lacks (say
        ``images = 3`` on an engine without the image count).
        """
        known = {f.name for f in dataclasses.fields(self)}
        values: dict[str, int] = {}
        for name, f in layout:
            if name not in known:
                raise InputError(f"{what}: the layout has a field {name!r} no command sets")
            values[name] = fit_field(name, getattr(self, name), f.width, what)
        for name, neutral in ABSENT.items():
            if name not in values and getattr(self, name) != neutral:
                raise InputError(
                    f"{what}: {name} = {int(getattr(self, name))} needs a {name} field, "
                    f"which this command layout lacks (it has {', '.join(values)})"
                )
        return values


@dataclass(frozen=True)
class GemmCommand:
    """What one GEMM ``A (m x images*k) @ B (images*k x n)`` asks of the hardware."""

    shift: int
    rounding: Rounding = Rounding.NEAREST_EVEN
    seed: int = 0
    images: int = 1
    # Return the full-width accumulators instead of requantised results (shift, rounding
    # and seed then do not matter): what a device of a data-parallel run sends back.
    raw: bool = False
    pass_id: int = 0  # PASS_IDS of the GEMM's pass (a per-pass engine's formats)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", Rounding(self.rounding))

    def engine(
        self, m: int, k: int, n: int, *, acc_first: bool = True, acc_last: bool = True
    ) -> EngineCommand:
        """The engine command of this GEMM (``k`` per image), or of one reduction piece of it."""
        return EngineCommand(
            m,
            k,
            n,
            self.shift,
            self.rounding,
            self.seed,
            self.images,
            acc_first,
            acc_last,
            raw=self.raw,
            pass_id=self.pass_id,
        )

    def chunk(self, c: Chunk) -> EngineCommand:
        """The accelerator command of chunk ``c`` of this GEMM's schedule: its block's seed
        (:func:`~barista_hw.schedule.block_seed`), images, accumulation flags and bases."""
        return EngineCommand(
            m=c.m,
            k=c.k,
            n=c.n,
            shift=self.shift,
            rounding=self.rounding,
            seed=block_seed(self.seed, c.block),
            images=c.images,
            acc_first=c.acc_first,
            acc_last=c.acc_last,
            a_base=c.a_base,
            b_base=c.b_base,
            raw=self.raw,
            pass_id=self.pass_id,
        )
