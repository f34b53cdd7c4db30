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
accelerator's clock. Iterations are numbered as the solver (and Caffe's log) numbers
them, from 0: :meth:`RtlBackend.begin_iteration` gives the number; without it, an
iteration starts whenever the first layer pass ever seen comes round again.

``trace=(layer, pass, iteration)`` writes an FST waveform of that layer pass in that
iteration and says where (through the log :meth:`RtlBackend.prepare` was given);
:meth:`RtlBackend.check_trace` rejects, before training, a trace that cannot happen,
and :meth:`RtlBackend.missing_trace` says afterwards why none was written.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, Pass
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.scaling import DYNAMIC
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
    iteration)`` writes an FST waveform of that pass (``forward``, ``backward`` or
    ``gradient``) in that iteration (counted from 0) into ``trace_dir``;
    ``host`` the host protocol of :mod:`sim.verilator_driver`; ``cache_dir`` the
    build cache; ``scaling`` ``"dynamic"`` or ``"static"`` as for the golden backend.
    ``fmt``/``rows``/``cols`` are accepted for CLI compatibility and must agree with the
    accelerator.
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
        scaling: str = DYNAMIC,
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
        super().__init__(rounding=rounding, accelerator=accelerator, scaling=scaling)
        self.rtl_layers = None if rtl_layers is None else frozenset(rtl_layers)
        self.host = host
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.trace = None if trace is None else _trace_request(trace)
        if self.trace is not None and not self.on_rtl(self.trace[0]):
            raise InputError(
                f"trace {_spec(self.trace)}: layer {self.trace[0]!r} is not one of the layers "
                f"run on the RTL ({', '.join(sorted(self.rtl_layers or ()))})"
            )
        self.trace_dir = Path(trace_dir) if trace_dir is not None else None
        self.trace_files: list[Path] = []
        self.records: dict[str, PassCycles] = {}
        self.iteration = 0
        self._begun = False  # begin_iteration was called
        self._ran: set[tuple[str, Pass]] = set()  # layer passes run on the RTL so far
        self._seen: set[int] = set()  # iterations in which a layer pass ran
        self._log: Callable[[str], None] | None = None
        self._first_key: str | None = None
        self._last_key: str | None = None
        self._sims: dict[bool, Any] = {}  # traced build? -> VerilatedAccelerator

    # -- simulator -------------------------------------------------------------------
    def simulator(self, trace: bool = False, on_build: Callable[[Path], None] | None = None) -> Any:
        """The loaded simulator (built on first use; cached on disk across runs);
        ``on_build(entry)`` is called if it has to be built."""
        if trace not in self._sims:
            from sim.verilator_driver import simulator

            verilog = self.files.verilog() if self.files is not None else None
            self._sims[trace] = simulator(
                self.accelerator,
                verilog=verilog,
                trace=trace,
                root=self.cache_dir,
                on_build=on_build,
            )
        return self._sims[trace]

    def for_test_nets(self) -> GemmBackend:
        """Test nets run on the golden model of the same accelerator: the same bits, while
        the simulator's time goes to the training passes."""
        from .hardware import GoldenBackend

        return GoldenBackend(
            accelerator=self.accelerator, rounding=self.rounding, scaling=self.scaling
        )

    def prepare(self, log: Callable[[str], None]) -> None:
        """Build (or take from the cache) and load the simulator now, else the first RTL
        call does it. ``log`` hears whether it is built or taken from the cache (a build
        takes minutes; a cached one a moment), and later where each waveform went."""
        self._log = log
        for trace in (False, True) if self.trace is not None else (False,):
            what = "the Verilated accelerator" + (" with waveform tracing" if trace else "")
            built: list[Path] = []

            def building(entry: Path, what: str = what, built: list[Path] = built) -> None:
                built.append(entry)
                log(f"Building {what} (once: it is cached in {entry.parent})")

            sim = self.simulator(trace=trace, on_build=building)
            if not built:
                log(f"Using the cached build of {what} ({sim.build.path.parent})")

    def close(self) -> None:
        for sim in self._sims.values():
            sim.close()
        self._sims.clear()

    def begin_iteration(self, iteration: int | None = None) -> None:
        """An iteration starts: ``iteration`` is its number as the solver counts (from 0,
        as in Caffe's log); without it, the one after the last (0 if none ran yet)."""
        if iteration is not None:
            self.iteration = int(iteration)
        elif self._begun or self._first_key is not None:
            self.iteration += 1
        self._begun = True
        self._first_key = self._last_key = None

    def check_trace(self, passes: Iterable[tuple[str, Pass]], iterations: range) -> None:
        """Reject a trace that cannot happen, before training: ``passes`` are the layer
        passes the training net runs, ``iterations`` the iterations it will run."""
        if self.trace is None:
            return
        layer, kind, iteration = self.trace
        passes = set(passes)
        layers = sorted({name for name, _ in passes})
        if layer not in layers:
            raise InputError(
                f"trace {_spec(self.trace)}: the net has no Convolution or InnerProduct "
                f"layer {layer!r} (it has {', '.join(layers) or 'none'})"
            )
        if (layer, kind) not in passes:
            why = " (its bottom needs no gradient)" if kind is Pass.BACKWARD_DATA else ""
            raise InputError(
                f"trace {_spec(self.trace)}: layer {layer!r} has no {kind.value} pass in "
                f"training{why}"
            )
        if iteration not in iterations:
            ran = (
                f"iterations {iterations.start} to {iterations.stop - 1}"
                if len(iterations)
                else "no iterations"
            )
            raise InputError(
                f"trace {_spec(self.trace)}: iteration {iteration} is not run (training "
                f"runs {ran}, counted from 0 as in the log)"
            )

    def missing_trace(self) -> str | None:
        """Why no waveform was written for ``trace`` (None: one was, or none was asked)."""
        if self.trace is None or self.trace_files:
            return None
        layer, kind, iteration = self.trace
        if not self._seen:
            return "no iteration ran"
        if iteration not in self._seen:
            first, last = min(self._seen), max(self._seen)
            if iteration > last:
                return f"iteration {iteration} never ran (the last was {last})"
            if iteration < first:
                return f"iteration {iteration} never ran (the first was {first})"
            return f"iteration {iteration} never ran"
        if (layer, kind) not in self._ran:
            return f"layer {layer!r} never ran its {kind.value} pass on the RTL"
        return f"layer {layer!r} did not run its {kind.value} pass in iteration {iteration}"

    def on_rtl(self, layer: str) -> bool:
        return self.rtl_layers is None or layer in self.rtl_layers

    # -- HardwareBackend -------------------------------------------------------------
    def run(
        self,
        kind: Pass,
        layer: str,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        blocks: Collection[int] | None = None,
    ) -> np.ndarray:
        key = f"{layer}/{kind.value}"
        if self._first_key is None:
            self._first_key = key
        elif key == self._first_key and self._last_key != key:
            self.iteration += 1  # the first pass came round again (not its next group)
        self._last_key = key
        self._seen.add(self.iteration)
        images = cmd.images
        assert self.accelerator is not None
        if not self.on_rtl(layer):
            out = model.gemm_on_accelerator(a, b, self.accelerator, cmd, blocks=blocks)
            self._record(key, layer, kind, "model", a.shape[0], a.shape[1], b.shape[1], images)
            return out
        self._ran.add((layer, kind))
        traced = self.trace == (layer, kind, self.iteration)
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
            blocks=blocks,
        )
        self._record(key, layer, kind, "rtl", a.shape[0], a.shape[1], b.shape[1], images, run)
        if path is not None and self._log is not None:
            self._log(
                f"Wrote the waveform of layer {layer}, {kind.value} pass, iteration "
                f"{self.iteration}: {path}"
            )
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


def _trace_request(trace: tuple[str, Pass | str, int]) -> tuple[str, Pass, int]:
    """``(layer, pass, iteration)`` checked: a known pass, an iteration >= 0."""
    layer, kind, iteration = trace
    if not isinstance(kind, Pass):
        try:
            kind = Pass(kind)
        except ValueError:
            names = ", ".join(p.value for p in Pass)
            raise InputError(
                f"trace {layer},{kind},{iteration}: pass {kind!r} is not one of {names}"
            ) from None
    if int(iteration) < 0:
        raise InputError(f"trace {layer},{kind.value},{iteration}: iteration must be >= 0")
    return layer, kind, int(iteration)


def _spec(trace: tuple[str, Pass, int]) -> str:
    """A trace request as ``--trace`` spells it: ``layer,pass,iteration``."""
    return f"{trace[0]},{trace[1].value},{trace[2]}"


def _model_cycles(cfg: AcceleratorConfig | None, m: int, k: int, n: int, images: int) -> int:
    """Cycles the cycle model of :mod:`barista_hw.plan` predicts (same host as the driver)."""
    from barista_hw.plan import simulate_chunks

    assert cfg is not None
    return int(simulate_chunks(cfg, schedule_gemm(cfg, m, k, n, images))["cycles"])
