"""The ``rtl`` backend: every GEMM of chosen layers runs on the Verilated accelerator RTL.

:class:`RtlBackend` is a :class:`~barista.backends.hardware.HardwareBackend` (same
quantisation, scales, shifts and seeds as ``golden``); only ``run`` differs: the
pass is scheduled by :func:`barista_hw.schedule.schedule_gemm` and executed by the
C++ host of :mod:`sim.verilator_driver` on the generated Verilog. Layers outside
``rtl_layers`` go to the bit-exact model of the same accelerator, so the results
are identical whichever layers are simulated, and only those cost simulation time.

Per layer and pass it records the simulated cycles of the last iteration and
running totals; :meth:`RtlBackend.cycle_report` turns them into PE utilisation
(useful MACs / (PEs x cycles)) and a projected time per iteration at the
accelerator's clock. An iteration starts whenever the first layer pass ever seen
comes round again (or when :meth:`RtlBackend.begin_iteration` says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, Pass
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.schedule import schedule_gemm
from boards.protocol import BITS_PER_BYTE, DEFAULT_BAUD
from boards.traffic import gemm_traffic
from caffe_bridge.backend import GemmBackend

from ..manifest import AcceleratorFiles
from .hardware import HardwareBackend, check_same_design


@dataclass
class PassCycles:
    """Cycle record of one layer pass (all GEMM calls of the pass, e.g. one per group)."""

    layer: str
    kind: Pass
    source: str  # "rtl": simulated; "model": the cycle model of barista_hw.plan
    calls: int = 0
    iteration: int = -1  # the iteration the "last_*" fields belong to
    last_cycles: int = 0
    last_macs: int = 0
    last_engine_cycles: int = 0
    last_link_bytes: int = 0  # what the board's UART host link would carry for the pass
    total_cycles: int = 0
    total_macs: int = 0
    wall_seconds: float = 0.0  # time inside the simulator, all calls


@dataclass
class CycleReport:
    """Cycles per layer pass of the last iteration, utilisation and projected time."""

    config: AcceleratorConfig
    passes: list[PassCycles] = field(default_factory=list)

    @property
    def cycles_per_iteration(self) -> int:
        return sum(p.last_cycles for p in self.passes)

    @property
    def macs_per_iteration(self) -> int:
        return sum(p.last_macs for p in self.passes)

    @property
    def seconds_per_iteration(self) -> float:
        """Projected time per iteration at ``config.clock_mhz`` (GEMMs back to back), with
        one buffer word per cycle from the host: the array alone."""
        return self.cycles_per_iteration / (self.config.clock_mhz * 1e6)

    def link_seconds_per_iteration(self, baud: int = DEFAULT_BAUD) -> float:
        """Time per iteration end to end when the host drives the accelerator over the
        board's UART link at ``baud`` (:mod:`boards.traffic`)."""
        link = sum(p.last_link_bytes for p in self.passes) * BITS_PER_BYTE / baud
        return self.seconds_per_iteration + link

    def utilisation(self, p: PassCycles | None = None) -> float:
        """Useful MACs / (PEs x cycles) of one pass, or of the whole iteration."""
        cycles = self.cycles_per_iteration if p is None else p.last_cycles
        macs = self.macs_per_iteration if p is None else p.last_macs
        return macs / (self.config.engine.pes * cycles) if cycles else 0.0

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer pass (for JSON, plotting or tables)."""
        return [
            {
                "layer": p.layer,
                "pass": p.kind.value,
                "source": p.source,
                "cycles": p.last_cycles,
                "macs": p.last_macs,
                "utilisation": self.utilisation(p),
                "seconds": p.last_cycles / (self.config.clock_mhz * 1e6),
                "calls": p.calls,
                "total_cycles": p.total_cycles,
            }
            for p in self.passes
        ]

    def __str__(self) -> str:
        e = self.config.engine
        lines = [
            f"accelerator {e.rows}x{e.cols} {e.fmt.name} at {self.config.clock_mhz:g} MHz "
            "(cycles of the last iteration; source rtl = simulated, model = cycle model)",
            f"{'layer':<16}{'pass':<10}{'source':<8}{'cycles':>12}{'PE util':>9}{'time':>12}",
        ]
        for r in self.rows():
            lines.append(
                f"{r['layer']:<16}{r['pass']:<10}{r['source']:<8}{r['cycles']:>12,}"
                f"{r['utilisation']:>9.1%}{r['seconds'] * 1e3:>10.3f}ms"
            )
        lines.append(
            f"{'iteration':<34}{self.cycles_per_iteration:>12,}{self.utilisation():>9.1%}"
            f"{self.seconds_per_iteration * 1e3:>10.3f}ms"
        )
        lines.append(
            "times above: the array alone, one buffer word per cycle from the host; end to "
            f"end over the UART host link at {DEFAULT_BAUD:,} baud: "
            f"{self.link_seconds_per_iteration():.1f} s per iteration"
        )
        return "\n".join(lines)


class RtlBackend(HardwareBackend):
    """GEMMs on the Verilated accelerator (see the module docstring).

    Options: the accelerator as ``accelerator=``: an ``AcceleratorConfig`` (elaborated
    here) or the :class:`~barista.manifest.AcceleratorFiles` of a ``barista generate``
    output (``rtl_out/<net>``, whose Verilog is simulated as written); ``rtl_layers``
    the layer names simulated (``None``: all); ``trace=(layer, pass,
    iteration)`` writes an FST waveform of that pass into ``trace_dir``;
    ``host`` the host protocol of :mod:`sim.verilator_driver`; ``cache_dir`` the
    build cache. ``fmt``/``rows``/``cols`` are accepted for CLI compatibility and
    must agree with the accelerator.
    """

    name = "rtl"

    def __init__(
        self,
        rounding: Rounding | str = Rounding.NEAREST_EVEN,
        *,
        accelerator: AcceleratorConfig | AcceleratorFiles | None = None,
        rtl_layers: Iterable[str] | None = None,
        trace: tuple[str, Pass | str, int] | None = None,
        trace_dir: Path | str | None = None,
        host: str = "overlap",
        cache_dir: Path | str | None = None,
        fmt: FixedFormat | str | None = None,
        rows: int | None = None,
        cols: int | None = None,
    ) -> None:
        from sim.verilator_driver import HOSTS

        if accelerator is None:
            raise InputError(
                "rtl backend needs the accelerator: accelerator=AcceleratorConfig or the "
                "files of rtl_out/<net> (barista.manifest.load_accelerator)"
            )
        config = accelerator.config if isinstance(accelerator, AcceleratorFiles) else accelerator
        check_same_design(config, "rtl backend", fmt, rows, cols)
        if host not in HOSTS:
            raise InputError(f"rtl backend: unknown host {host!r} (use {' or '.join(HOSTS)})")
        super().__init__(rounding=rounding, accelerator=accelerator)
        self.rtl_layers = None if rtl_layers is None else frozenset(rtl_layers)
        self.host = host
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if trace is not None:
            layer, kind, iteration = trace
            kind = kind if isinstance(kind, Pass) else Pass(kind)
            trace = (layer, kind, int(iteration))
        self.trace = trace
        self.trace_dir = Path(trace_dir) if trace_dir is not None else None
        self.trace_files: list[Path] = []
        self.records: dict[str, PassCycles] = {}
        self.iteration = 0
        self._first_key: str | None = None
        self._last_key: str | None = None
        self._sims: dict[bool, Any] = {}  # traced build? -> VerilatedAccelerator

    # -- simulator -------------------------------------------------------------------
    def simulator(self, trace: bool = False) -> Any:
        """The loaded simulator (built on first use; cached on disk across runs)."""
        if trace not in self._sims:
            from sim.verilator_driver import simulator

            verilog = self.files.verilog() if self.files is not None else None
            self._sims[trace] = simulator(
                self.accelerator, verilog=verilog, trace=trace, root=self.cache_dir
            )
        return self._sims[trace]

    def for_test_nets(self) -> GemmBackend:
        """Test nets run on the golden model of the same accelerator: the same bits, while
        the simulator's time goes to the training passes."""
        from .hardware import GoldenBackend

        return GoldenBackend(accelerator=self.accelerator, rounding=self.rounding)

    def prepare(self, log: Callable[[str], None]) -> None:
        """Build and load the simulator now (else the first RTL call does it)."""
        log("Building the Verilated accelerator (cached after the first run)")
        self.simulator(trace=False)
        if self.trace is not None:
            self.simulator(trace=True)

    def close(self) -> None:
        for sim in self._sims.values():
            sim.close()
        self._sims.clear()

    def begin_iteration(self) -> None:
        """Start a new iteration explicitly (the automatic rule: the first pass recurs)."""
        self.iteration += 1
        self._first_key = self._last_key = None

    def on_rtl(self, layer: str) -> bool:
        return self.rtl_layers is None or layer in self.rtl_layers

    # -- HardwareBackend -------------------------------------------------------------
    def run(
        self, kind: Pass, layer: str, a: np.ndarray, b: np.ndarray, cmd: GemmCommand
    ) -> np.ndarray:
        key = f"{layer}/{kind.value}"
        if self._first_key is None:
            self._first_key = key
        elif key == self._first_key and self._last_key != key:
            self.iteration += 1  # the first pass came round again (not its next group)
        self._last_key = key
        images = cmd.images
        assert self.accelerator is not None
        if not self.on_rtl(layer):
            out = model.gemm_on_accelerator(a, b, self.accelerator, cmd)
            self._record(key, layer, kind, "model", a.shape[0], a.shape[1], b.shape[1], images)
            return out
        traced = self.trace is not None and self.trace[:2] == (layer, kind)
        traced = traced and self.trace is not None and self.trace[2] == self.iteration
        path = None
        if traced:
            base = self.trace_dir if self.trace_dir is not None else Path("build") / "traces"
            path = base / f"{layer}-{kind.value}-it{self.iteration}.fst"
            if path in self.trace_files:  # a second group of the same pass
                path = path.with_name(f"{path.stem}-{len(self.trace_files)}.fst")
            self.trace_files.append(path)
        sim = self.simulator(trace=traced)
        run = sim.run_gemm(
            np.asarray(a, dtype=np.int32),
            np.asarray(b, dtype=np.int32),
            cmd,
            host=self.host,
            label=f"layer {layer}, {kind.value} pass, iteration {self.iteration}",
            trace=path,
        )
        self._record(key, layer, kind, "rtl", a.shape[0], a.shape[1], b.shape[1], images, run)
        return run.result

    def _record(
        self,
        key: str,
        layer: str,
        kind: Pass,
        source: str,
        m: int,
        kt: int,
        n: int,
        images: int,
        run: Any = None,
    ) -> None:
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = PassCycles(layer, kind, source)
        if run is not None:
            cycles, engine = run.cycles, run.engine_cycles
            rec.wall_seconds += run.wall_seconds
        else:
            cycles = engine = _model_cycles(self.accelerator, m, kt // images, n, images)
        if rec.iteration != self.iteration:
            rec.iteration = self.iteration
            rec.last_cycles = rec.last_macs = rec.last_engine_cycles = rec.last_link_bytes = 0
        assert self.accelerator is not None
        rec.last_link_bytes += gemm_traffic(self.accelerator, m, kt // images, n, images).bytes
        macs = m * kt * n
        rec.source = source
        rec.calls += 1
        rec.last_cycles += cycles
        rec.last_engine_cycles += engine
        rec.last_macs += macs
        rec.total_cycles += cycles
        rec.total_macs += macs

    def cycle_report(self) -> CycleReport:
        """Cycles of the last iteration per layer pass, utilisation and projected time."""
        assert self.accelerator is not None
        return CycleReport(self.accelerator, list(self.records.values()))

    def report(self) -> str:
        return str(self.cycle_report())


def _model_cycles(cfg: AcceleratorConfig | None, m: int, k: int, n: int, images: int) -> int:
    """Cycles the cycle model of :mod:`barista_hw.plan` predicts (same host as the driver)."""
    from barista_hw.plan import simulate_chunks

    assert cfg is not None
    return int(simulate_chunks(cfg, schedule_gemm(cfg, m, k, n, images))["cycles"])
