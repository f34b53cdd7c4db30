"""Per-network accelerator generation: choose a design for a net's GEMM layers and elaborate it.

:func:`generate` is the Python API behind ``barista generate``::

    from barista_hw.generate import generate
    from barista_hw.plan import GemmLayer

    layers = [GemmLayer("conv1", "conv", batch=64, m=20, k=25, p=576, backward_data=False),
              GemmLayer("ip1", "fc", batch=64, m=500, k=800)]
    design = generate(layers, target="ulx3s-85f", name="LeNet")
    design.config          # the AcceleratorConfig chosen by the design-space exploration
    design.verilog         # Verilog of the Accelerator, top module named after the net
    design.summary         # a few lines for people

The design is either explored (:func:`barista_hw.dse.explore`, within the target's
budget, optionally with a fixed format or array) or a named preset. Same inputs give
the same design and the same Verilog text: the search is deterministic. Writing it
out, with the manifest every backend reads, is the application's part
(``barista.manifest.write_rtl_dir``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from amaranth.hdl import Shape
from amaranth.lib import data

from barista_base.errors import InputError

from .accelerator import Accelerator
from .config import AcceleratorConfig, EngineConfig, EngineFormat, parse_engine_format
from .dse import Candidate, DseResult, Rank, explore, needed_dim_bits
from .plan import GemmLayer, NetPlan, plan_net
from .presets import get_preset
from .resources import Resources, estimate
from .rtl import to_verilog
from .targets import DEFAULT_TARGET, Budget, Target, get_target


@dataclass(frozen=True)
class Port:
    """A top-level Verilog port, flattened with ``__`` as Amaranth writes it."""

    name: str
    direction: str  # "input" | "output"
    width: int
    # Stream payloads: field name -> (bit offset, width), from the Amaranth layout.
    fields: dict[str, tuple[int, int]] | None = None

    def to_dict(self) -> dict:
        d: dict = {"name": self.name, "direction": self.direction, "width": self.width}
        if self.fields is not None:
            d["fields"] = {k: list(v) for k, v in self.fields.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Port:
        fields = d.get("fields")
        return cls(
            str(d["name"]),
            str(d["direction"]),
            int(d["width"]),
            None if fields is None else {k: (int(v[0]), int(v[1])) for k, v in fields.items()},
        )


@dataclass(frozen=True)
class Design:
    """What :func:`generate` chose for a net, and its elaborated Verilog."""

    config: AcceleratorConfig
    plan: NetPlan
    layers: tuple[GemmLayer, ...]
    budget: Budget
    top: str  # the Verilog top module
    verilog: str
    ports: tuple[Port, ...]
    dse: DseResult | None  # None for a preset
    preset: str | None = None
    im2col_stage: int = 0  # a device build's stage buffer, elements a lane of B (0: none)

    @cached_property
    def resources(self) -> Resources:
        """The resource estimate against the budget (host link and any stage buffer
        included)."""
        return estimate(self.config, self.budget, im2col_stage=self.im2col_stage)

    @property
    def how(self) -> str:
        if self.dse is None:
            return f"preset {self.preset}"
        return f"design-space exploration ({len(self.dse.candidates)} designs fitted)"

    @property
    def summary(self) -> str:
        """The design, its estimate against the budget and the cycles of each layer pass."""
        cfg, e, b, plan = self.config, self.config.engine, self.budget, self.plan
        res = self.resources
        lines = [
            f"{self.top}: {e.rows}x{e.cols} {e.fmt.name} systolic array, buffers A "
            f"{cfg.a_depth} / B {cfg.b_depth} words, accumulator memory {e.acc_depth} rows, "
            f"{e.dim_bits}-bit dimensions ({self.how})",
            f"target {b.name} @ {cfg.clock_mhz:g} MHz: {res.mults}/{b.mults} "
            f"{b.mult_kind}, {res.bram_blocks}/{b.bram_blocks} {b.bram_kind}, "
            f"~{res.luts}/{b.luts} {b.lut_kind}, ~{res.ffs} FF (estimate, host link included; "
            f"designs are planned up to {b.bram_usable} {b.bram_kind} and {b.luts_usable} "
            f"{b.lut_kind})",
            f"one TRAIN iteration (batch {plan.batch}): {plan.cycles} cycles, "
            f"{plan.images_per_second:.1f} images/s, PE utilisation {plan.utilisation:.1%}",
            "",
            f"{'layer':12} {'pass':9} {'M':>6} {'K':>7} {'N':>8} {'chunks':>8} {'cycles':>12} "
            f"{'util':>6}",
        ]
        for p in plan.passes:
            w = p.workload
            g = f" x{w.groups}" if w.groups > 1 else ""
            lines.append(
                f"{w.layer[:12]:12} {w.kind.value:9} {w.m:>6} {w.kt:>7} {w.n:>8} "
                f"{p.chunks:>8} {p.cycles:>12} {p.utilisation:>6.1%}{g}"
            )
        return "\n".join(lines) + "\n"


def module_name(net_name: str) -> str:
    """A Verilog identifier from a net name: ``"CaffeNet"`` -> ``caffenet``."""
    ident = re.sub(r"[^0-9a-zA-Z_]+", "_", net_name).strip("_").lower() or "net"
    return f"net_{ident}" if ident[0].isdigit() else ident


def _budget(target: str | Target | Budget) -> Budget:
    if isinstance(target, Budget):
        return target
    if isinstance(target, Target):
        return target.budget
    return get_target(target).budget


def _ports(component: Accelerator) -> tuple[Port, ...]:
    """Top-level Verilog ports, from the component's signature."""
    ports = [Port("clk", "input", 1), Port("rst", "input", 1)]
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        layout = member.shape if isinstance(member.shape, data.Layout) else None
        ports.append(
            Port(
                "__".join(str(p) for p in path),
                "input" if member.flow.value == "In" else "output",
                Shape.cast(member.shape).width,
                None if layout is None else _fields(layout),
            )
        )
    return tuple(ports)


def _fields(layout: data.Layout) -> dict[str, tuple[int, int]]:
    """``name -> (offset, width)`` of a payload layout (array layouts: per element)."""
    return {str(key): (f.offset, Shape.cast(f.shape).width) for key, f in layout}


def _choose(
    layers: Sequence[GemmLayer],
    budget: Budget,
    fmt: EngineFormat | None,
    array: tuple[int, int] | None,
    preset: str | None,
    name: str,
    im2col_stage: int,
    rank: Rank | None,
) -> tuple[AcceleratorConfig, NetPlan, DseResult | None]:
    if preset is not None:
        if fmt is not None or array is not None:
            raise InputError(
                "--preset fixes the whole design: do not combine it with --format or --array"
            )
        base = get_preset(preset)
        cfg = replace(base, name=name, target=budget.name, clock_mhz=budget.mhz)
        res = estimate(cfg, budget, im2col_stage=im2col_stage)
        if not res.fits(budget):
            raise InputError(
                f"preset {preset} does not fit {budget.name}: it needs "
                f"{', '.join(res.shortfall(budget))}"
            )
        return cfg, plan_net(cfg, layers), None
    dse = explore(
        layers, budget, fmt=fmt, array=array, name=name, im2col_stage=im2col_stage, rank=rank
    )
    return dse.best.config, dse.plan, dse


def generate(
    layers: Sequence[GemmLayer],
    *,
    target: str | Target | Budget = DEFAULT_TARGET,
    fmt: EngineFormat | str | None = None,
    array: tuple[int, int] | str | None = None,
    preset: str | None = None,
    name: str = "net",
    im2col_stage: int = 0,
    rank: Rank | None = None,
) -> Design:
    """Size and elaborate an accelerator for ``layers`` (see the module docstring).

    ``target``: a target name (:data:`barista_hw.targets.TARGETS`), a :class:`Target` or
    an explicit :class:`Budget`; ``fmt``/``array`` fix the number format / array shape
    for the exploration; ``preset`` takes a named design instead
    (:data:`barista_hw.presets.PRESETS`); ``im2col_stage``: the design is a device's, whose
    im2col stage buffer of that many elements a lane of B must fit too (0: none); ``rank``:
    another model's figures that choose among the exploration's shortlist
    (:func:`barista_hw.dse.explore`). Raises
    :class:`InputError` naming the layer and pass a design cannot run.
    """
    budget = _budget(target)
    if isinstance(fmt, str):
        fmt = parse_engine_format(fmt)
    if isinstance(array, str):
        array = EngineConfig.parse_array(array)
    layers = tuple(layers)
    if not layers:
        raise InputError(f"net {name}: no Convolution or InnerProduct layer to accelerate")
    needed_dim_bits(layers)  # a clear error for dimensions no design can take
    cfg, plan, dse = _choose(layers, budget, fmt, array, preset, name, im2col_stage, rank)
    return _elaborate(cfg, plan, layers, budget, dse, preset, name, im2col_stage)


def _elaborate(
    cfg: AcceleratorConfig,
    plan: NetPlan,
    layers: tuple[GemmLayer, ...],
    budget: Budget,
    dse: DseResult | None,
    preset: str | None,
    name: str,
    im2col_stage: int = 0,
) -> Design:
    top = module_name(name)
    component = Accelerator(cfg)
    verilog = to_verilog(component, top)
    ports = _ports(component)
    return Design(cfg, plan, layers, budget, top, verilog, ports, dse, preset, im2col_stage)


def step_down(design: Design, choice: Candidate) -> Design:
    """``design`` with ``choice``, another design of its exploration's Pareto front (see
    :meth:`barista_hw.dse.DseResult.step_down`), in place of the one the exploration
    chose: the same net, budget and exploration, ``choice`` elaborated and marked as the
    design in the Pareto table."""
    if design.dse is None or choice not in design.dse.pareto:
        raise ValueError("step_down takes a design of the exploration's Pareto front")
    cfg = choice.config
    plan = plan_net(cfg, design.layers)
    dse = replace(design.dse, best=choice, plan=plan)
    return _elaborate(
        cfg, plan, design.layers, design.budget, dse, None, design.config.name, design.im2col_stage
    )
