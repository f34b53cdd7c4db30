"""What a board build produced: :class:`BuildReport` (``report.json``), read from nextpnr.

:func:`judge` fills a report from the files a build left: post-route Fmax per
clock, utilisation per cell type and the critical path from nextpnr's JSON report
(:data:`PNR_REPORT`), or from its log when the report is missing (the post-placement
estimate, the utilisation table); then the status: ``ok``; ``timing`` (placed and
routed, Fmax below the clock); ``no-fit`` (more cells than the device has);
``failed`` (a tool stopped for another reason: the log tail says why).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from barista_base.cache import write_text_atomic
from barista_base.errors import InputError, log_tail
from barista_hw.config import AcceleratorConfig

from .platforms import BoardSpec
from .protocol import PROTOCOL_VERSION

NAME = "top"  # the build's file names: top.json, top.tim, top.bit ...
REPORT = "report.json"
PNR_REPORT = "pnr_report.json"

#: Where Barista's packages live: dropped from the source paths of critical-path reports.
SOURCE_ROOT = str(Path(__file__).resolve().parents[1]) + os.sep


@dataclass
class BuildReport:
    """What a build produced (``report.json``)."""

    status: str  # ok | timing | no-fit | failed
    board: str
    device: str
    config: dict
    config_hash: str
    clock: dict  # requested and PLL MHz, PLL parameters
    baud: int
    uart_divisor: int
    result_depth: int
    fmax: dict[str, dict[str, float]] = field(default_factory=dict)  # clock -> MHz figures
    utilisation: dict[str, dict[str, int]] = field(default_factory=dict)  # cell -> used/avail
    # nextpnr's estimate after placement, before routing (clock -> MHz): the only figure
    # of a build stopped by its timeout during routing.
    fmax_placed: dict[str, float] = field(default_factory=dict)
    # The worst register-to-register path: delays and the source lines along it.
    critical_path: dict = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)
    tools: dict[str, str | None] = field(default_factory=dict)
    build_seconds: float = 0.0
    key: str = ""
    bitstream: str | None = None
    messages: list[str] = field(default_factory=list)
    cached: bool = False
    protocol_version: int = PROTOCOL_VERSION
    build_dir: str = ""  # the cache entry a published report was copied from

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def accelerator_config(self) -> AcceleratorConfig:
        return AcceleratorConfig.from_dict(self.config)

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, path: Path) -> None:
        """Write ``report.json`` (atomically)."""
        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, d: dict, where: str = "report") -> BuildReport:
        """A report from its JSON document; errors name ``where`` it came from."""
        known = set(cls.__dataclass_fields__)
        try:
            report = cls(**{k: v for k, v in d.items() if k in known})
            report.accelerator_config  # noqa: B018 - checks the configuration
        except (TypeError, ValueError, KeyError) as exc:
            raise InputError(f"{where}: not a usable build report ({exc})") from None
        return report

    @classmethod
    def read(cls, path: Path) -> BuildReport:
        """Read ``report.json``; an :class:`InputError` names the file if it is unusable."""
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise InputError(f"{path}: cannot read the build report ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        return cls.from_dict(doc, str(path))

    def summary(self) -> str:
        """A few lines for people."""
        device = "accelerator" in self.config  # a DeviceConfig's (boards.device_board)
        e = self.config["accelerator"]["engine"] if device else self.config["engine"]
        kind = "device accelerator" if device else "accelerator"
        lines = [
            f"{self.board} ({self.device}): {e['rows']}x{e['cols']} {e['fmt']} {kind}, "
            f"UART {self.baud} baud; status {self.status}"
            + (" (cached build)" if self.cached else f" in {self.build_seconds:.0f} s"),
        ]
        for clk, f in sorted(self.fmax.items()):
            lines.append(
                f"  clock {clk}: Fmax {f['achieved_mhz']:.1f} MHz "
                f"(constraint {f['constraint_mhz']:.1f} MHz)"
            )
        if not self.fmax:
            for clk, mhz in sorted(self.fmax_placed.items()):
                lines.append(f"  clock {clk}: {mhz:.1f} MHz estimated after placement (not routed)")
        for cell in sorted(self.utilisation):
            u = self.utilisation[cell]
            if u["used"]:
                pct = 100.0 * u["used"] / u["available"] if u["available"] else 0.0
                lines.append(f"  {cell:<16} {u['used']:>7} / {u['available']:<7} {pct:5.1f}%")
        cp = self.critical_path
        if cp:
            lines.append(
                f"  critical path {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
                f"{cp['routing_ns']:.2f} routing) through {', '.join(cp['sources'][:4]) or '?'}"
            )
        lines += [f"  {msg}" for msg in self.messages]
        if self.bitstream:
            lines.append(f"  bitstream {self.bitstream}")
        return "\n".join(lines)


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX_LINE = re.compile(r"Max frequency for clock '([^']+)': ([\d.]+) MHz")


def log_fmax_placed(log: str) -> dict[str, float]:
    """The first ``Max frequency`` per clock in a nextpnr log: the post-placement estimate."""
    out: dict[str, float] = {}
    for clk, mhz in _FMAX_LINE.findall(log):
        out.setdefault(clk, float(mhz))
    return out


def log_utilisation(log: str) -> dict[str, dict[str, int]]:
    """``Device utilisation`` lines of a nextpnr log (the last table wins)."""
    out: dict[str, dict[str, int]] = {}
    for cell, used, avail in _UTIL_LINE.findall(log):
        out[cell] = {"used": int(used), "available": int(avail)}
    return out


def critical_path(doc: dict) -> dict:
    """The longest clock-to-clock path of a nextpnr report (empty when there is none)."""
    paths = [
        p
        for p in doc.get("critical_paths", [])
        if str(p.get("from", "")).startswith("pos") and str(p.get("to", "")).startswith("pos")
    ]
    if not paths:
        return {}
    worst = max(paths, key=lambda p: sum(step["delay"] for step in p["path"]))
    steps = worst["path"]
    routing = sum(step["delay"] for step in steps if step["type"] == "routing")
    total = sum(step["delay"] for step in steps)
    sources: list[str] = []
    for step in steps:
        for src in step.get("sources", []):
            src = src.removeprefix(SOURCE_ROOT)
            if src not in sources:
                sources.append(src)
    return {
        "clock": worst["from"],
        "delay_ns": round(total, 3),
        "logic_ns": round(total - routing, 3),
        "routing_ns": round(routing, 3),
        "from": steps[0]["from"]["cell"],
        "to": steps[-1]["to"]["cell"],
        "sources": sources,
    }


def parse_pnr_report(path: Path) -> tuple[dict, dict, dict]:
    """(Fmax per clock, utilisation per cell type, critical path) of nextpnr's ``--report``."""
    doc = json.loads(path.read_text())
    fmax = {
        clk: {
            "achieved_mhz": round(float(v["achieved"]), 3),
            "constraint_mhz": round(float(v["constraint"]), 3),
        }
        for clk, v in doc.get("fmax", {}).items()
    }
    util = {
        cell: {"used": int(v["used"]), "available": int(v["available"])}
        for cell, v in doc.get("utilization", {}).items()
    }
    return fmax, util, critical_path(doc)


def judge(
    report: BuildReport, d: Path, spec: BoardSpec, code: int | None, timeout: float | None
) -> None:
    """Fill status, figures and messages from the files a build left in ``d``."""
    tim = d / f"{NAME}.tim"
    log = tim.read_text(errors="replace") if tim.exists() else ""
    report.fmax_placed = log_fmax_placed(log)
    if (d / PNR_REPORT).exists():
        report.fmax, report.utilisation, report.critical_path = parse_pnr_report(d / PNR_REPORT)
    elif log:
        report.utilisation = log_utilisation(log)
    over = [
        f"{cell} {u['used']} / {u['available']}"
        for cell, u in report.utilisation.items()
        if u["used"] > u["available"]
    ]
    if over:
        report.status = "no-fit"
        report.messages.append(f"does not fit {report.device}: needs {', '.join(over)}")
        return
    if code is None:
        report.messages.append(f"stopped after the {timeout:g} s build timeout")
        return
    if code != 0 or not (d / spec.bitstream).exists():
        stage = "place and route" if (d / f"{NAME}.json").exists() else "synthesis"
        errors = [ln for ln in (log or log_tail(d / "build.log")).splitlines() if "ERROR" in ln]
        tail = errors[-3:] or log_tail(d / "build.log").splitlines()[-5:]
        report.messages.append(f"{stage} failed (exit {code}): " + " | ".join(tail))
        return
    report.bitstream = spec.bitstream
    missed = [
        f"{clk} reached {f['achieved_mhz']:.1f} MHz, needs {f['constraint_mhz']:.1f} MHz"
        for clk, f in report.fmax.items()
        if f["achieved_mhz"] < f["constraint_mhz"]
    ]
    if missed:
        report.status = "timing"
        report.messages.append("timing not met: " + "; ".join(missed))
    else:
        report.status = "ok"
