"""Benchmark of issue 21: the whole device top Verilated with its C++ host and DRAM model.

Run from the repository: ``python bench/bench_device_rtl.py [--repeat N] [--lenet
[--batch B] [--lenet-repeat N] [--skip-tiny]] [--make-flags VAR=FLAGS ...] [--pgo]``.
Prints, for the device tests' case (:mod:`sim.device_cases`: a tiny net on a 4 x 3
engine, two iterations with SCALE between, the decoder's register writes before each;
the cocotb bench's case):

* the simulation speed of the whole accelerator on one core: clock cycles per second of
  the C++ loop's CPU time (its thread's: the machine is shared; model construction and
  file I/O excluded; the best of ``--repeat`` runs) and its CPU time a cycle, against
  issue 21's goal of 1 M cycles/s, and by wall time, of the loop and of the whole run as
  Python sees it; with ``--make-flags``, the same for a second build compiled with those
  make variables instead of :data:`sim.verilator_build.MAKE_FLAGS`, with ``--pgo`` for a
  build compiled with gcc's profile of the very case it runs (its runs interleaved with the
  current build's), the ratio of their speeds and whether every cycle and bit agrees;
* each iteration's measured cycles (the cycle counter at each SCALE) against the time
  model's iteration (:func:`barista_hw.device.timing.schedule`) with the board's UART
  and with a 300 Mbaud link (the RTL's link unit has no UART), the records fetched from
  DRAM as the top does (``rtl.device.fetch_model``) and, for comparison, not charged;
  behind the memory of :meth:`~sim.device_ports.MemoryTiming.for_config`.

With ``--lenet``: LeNet (examples/mnist) at ``--batch`` (default 2) on the DSE's ULX3S
85F design, compiled for the units the RTL has (``memory.RTL_UNITS``) with tensors
unshared: what the device top refuses in it, by kind and reason; then LeNet's layers
on the RTL top's design (``barista_hw.device.rtl.design.LENET_CONFIG``, 8 x 4 fx16):
one iteration on the Verilated top, bit-exact or not against the model, its cycles (and
each unit's busy cycles) against the time model. Building that simulator takes minutes; batch 2
simulates millions of cycles.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_CYCLES_PER_S = 1e6
FAST_LINK_BAUD = 300_000_000


def model_timing(program, config, baud: int, *, fetch: bool = True):  # noqa: ANN001, ANN201
    """The time model's :class:`~barista_hw.device.timing.Timing` of ``program`` with a
    ``baud`` link; ``fetch``: its records fetched from DRAM as the top does it."""
    from barista_hw.device.memory import LinkConfig
    from barista_hw.device.rtl.device import fetch_model
    from barista_hw.device.timing import schedule
    from barista_hw.device.traffic import program_counts

    linked = dataclasses.replace(config, link=LinkConfig(baud=baud))
    how = fetch_model(program, config) if fetch else None
    return schedule(program, program_counts(program, linked), config.accelerator.clock_mhz, how)


def compare(label: str, measured: int, program, config) -> None:  # noqa: ANN001
    print(f"  {label}: measured {measured:,} cycles (the device's cycle counter)")
    for baud in (config.link.baud, FAST_LINK_BAUD):
        for fetch in (True, False):
            cycles = model_timing(program, config, baud, fetch=fetch).cycles
            how = "fetched from DRAM" if fetch else "fetch not charged"
            print(
                f"    time model, {baud:,} baud link, {how}: {cycles:,} cycles, "
                f"ratio {measured / cycles:.3f}"
            )


def speed(sims: dict, case, timing, repeat: int, max_cycles: int | None = None) -> dict:  # noqa: ANN001
    """Per build in ``sims`` (label -> simulator): (the run of the least loop CPU time of
    ``repeat``, the best whole-run cycles/s by wall time); the builds' runs interleave (a
    shared machine's load changes)."""
    from sim.device_verilator import run

    best: dict = {}
    for _ in range(repeat):
        for label, sim in sims.items():
            t0 = time.perf_counter()
            got = run(sim, case, timing=timing, max_cycles=max_cycles)
            wall = time.perf_counter() - t0
            old, old_wall = best.get(label, (None, float("inf")))
            if old is None or got.loop_cpu_seconds < old.loop_cpu_seconds:
                old = got
            best[label] = (old, min(old_wall, wall))
    return {label: (got, got.edges / wall) for label, (got, wall) in best.items()}


def print_speed(got, whole: float | None = None, label: str = "") -> None:  # noqa: ANN001
    """The loop's speed: cycles/s of its CPU time (the goal's measure) and CPU time per
    simulated cycle; by wall time, the loop's and the whole run's."""
    loop = got.cycles_per_cpu_second
    whole_text = f", whole run (files, process) {whole:,.0f}" if whole else ""
    print(
        f"  speed{label}: {got.edges:,} cycles in {got.loop_cpu_seconds:.3f} s of the C++ loop's "
        f"CPU time = {loop:,.0f} cycles/s on one core, "
        f"{1e6 * got.loop_cpu_seconds / got.edges:.2f} us CPU a cycle "
        f"({loop / GOAL_CYCLES_PER_S:.3f} of the 1 M goal); by wall time (the machine "
        f"shared): loop {got.cycles_per_second:,.0f}{whole_text} cycles/s"
    )


def compare_builds(runs: dict) -> None:
    """Each build's speed and, against the first, the ratio of loop CPU time a cycle;
    every build's cycles and bits the first's."""
    (label0, (first, _)), *rest = runs.items()
    for label, (got, whole) in runs.items():
        print_speed(got, whole, f" [{label}]")
    for label, (got, _) in rest:
        same = (
            got.edges == first.edges
            and got.counters == first.counters
            and got.scale_cycles == first.scale_cycles
            and got.host_out == first.host_out
            and bool((got.memory == first.memory).all())
        )
        ratio = first.loop_cpu_seconds / got.loop_cpu_seconds
        print(
            f"  [{label}] / [{label0}]: {ratio:.3f}x the speed (CPU time); cycles, counters, "
            f"host words and DRAM {'the same' if same else 'DIFFER'}"
        )


def check(got, case) -> str:  # noqa: ANN001
    """Whether the DRAM at each SCALE and at the end and the host's words are the model's."""
    snaps = len(got.snapshots) == len(case.afters) and all(
        (s == a).all() for s, a in zip(got.snapshots, case.afters, strict=False)
    )
    same = snaps and bool((got.memory == case.after).all()) and got.host_out == case.host_out
    return "bit-exact as the model" if same else "DIFFERS from the model"


def built(config, label: str, program, make_flags: list[str], train=None) -> dict:  # noqa: ANN001
    """The simulators to compare: ``{"current": ...}`` (:data:`~sim.verilator_build.MAKE_FLAGS`),
    with ``make_flags`` ``{"flags": ...}`` built with those, with ``train`` (a case and its
    memory) ``{"pgo": ...}`` built with gcc's profile of that case (each built or cached)."""
    from barista_hw.device.rtl.decode import decoder_sizes
    from sim.device_verilator import simulator

    builds = [("current", None, None)]
    builds += [("flags", tuple(make_flags), None)] if make_flags else []
    builds += [("pgo", None, train)] if train else []
    sims = {}
    for name, flags, case in builds:
        t0 = time.perf_counter()
        sims[name] = simulator(
            config,
            on_build=lambda e: print(f"  building {label} ({e.name})...", flush=True),
            make_flags=flags,
            train=case,
            **decoder_sizes(program),
        )
        print(f"  simulator [{name}] ready in {time.perf_counter() - t0:.1f} s")
    if make_flags:
        print(f"  [flags]: {' '.join(make_flags)}")
    return sims


def tiny(repeat: int, make_flags: list[str], pgo: bool) -> None:
    from sim.device_cases import CONFIG, iteration, program
    from sim.device_ports import MemoryTiming
    from sim.gemm_path_run import BUS_BITS

    e = CONFIG.accelerator.engine
    print(f"tiny net (sim.device_cases) on a {e.rows}x{e.cols} {e.fmt.name} device top")
    case = iteration(0.0)
    timing = MemoryTiming.for_config(CONFIG, BUS_BITS)
    train = (case, timing) if pgo else None
    sims = built(CONFIG, "the tiny device top", program(), make_flags, train)
    runs = speed(sims, case, timing, repeat)
    got = runs["current"][0]
    print(
        f"  memory: latency {timing.latency}, {timing.rate} words/cycle, burst {timing.burst}; "
        f"{len(case.afters)} iterations, {len(case.writes)} prog writes; {check(got, case)}"
    )
    compare_builds(runs)
    at = [0, *got.scale_cycles]
    for i in range(len(got.scale_cycles)):
        compare(f"tiny iteration {i + 1}", at[i + 1] - at[i], program(), CONFIG)


def lenet_program(batch: int, units: dict):  # noqa: ANN201 - (Program, DeviceConfig)
    """LeNet (examples/mnist) at ``batch`` on the DSE's ULX3S 85F design, compiled for the
    unit capacities ``units`` (e.g. :data:`~barista_hw.device.memory.RTL_UNITS`), tensors
    unshared."""
    sys.path.insert(0, str(REPO / "bench"))
    from bench_device import NETS, find_net, train_net

    from barista.backends.plan import gemm_layers
    from barista.device_net import compile_device
    from barista.manifest import cached_rtl_dir

    bench = next(b for b in NETS if b.name == "LeNet")
    path = find_net(bench)
    if path is None:
        raise FileNotFoundError(f"no {bench.path} under examples/ or ../shared/caffe-models/")
    net = train_net(path, bench, batch)
    files, _ = cached_rtl_dir(gemm_layers(net), name="lenet", target="ulx3s-85f", fmt=None)
    # Unshared tensors: the DRAM image is built tensor by tensor.
    dc = compile_device(net, files.config, target="ulx3s-85f", share=False, units=units)
    return dc.compiled.program, dc.config


def refusals(program, config) -> collections.Counter:  # noqa: ANN001
    """What the device top refuses in ``program``: (op and kind, reason) -> instructions,
    from every instruction's static command (what the host sends) and its command built
    in turn on the model (:func:`command`, the decoder's reference; random data)."""
    import numpy as np

    from barista_base.errors import InputError
    from barista_hw.device.isa import Op
    from barista_hw.device.machine import Machine
    from barista_hw.device.rtl.decode import static_command
    from barista_hw.device.rtl.device import command
    from barista_hw.device.vector import VecOp
    from sim.device_cases import random_inputs, scalars
    from sim.device_run import RecordingHost
    from sim.gemm_path_run import BUS_BITS

    m = Machine(program, config)
    m.host = RecordingHost(random_inputs(program, np.random.default_rng(0)))
    m.scalars = scalars(program)
    out: collections.Counter = collections.Counter()
    for inst in program.instructions:
        try:
            static_command(inst, program, config, BUS_BITS)
            command(inst, m, BUS_BITS)
        except InputError as exc:
            kind = VecOp(inst.sub).name if inst.op is Op.VEC else inst.op.name
            out[(kind, str(exc).rsplit(": ", 1)[-1])] += 1
        m.execute(inst)
    return out


def print_busy(counters: dict, prog, config) -> None:  # noqa: ANN001
    """Each unit's busy cycles (the sequencer's counters) beside the time model's (with
    the fast link), and the model's DRAM bus."""
    timing = model_timing(prog, config, FAST_LINK_BAUD)
    print("  busy cycles, RTL / time model (300 Mbaud link):")
    for unit, cycles in counters.items():
        if unit != "cycles":
            model = timing.busy.get(unit, 0)
            ratio = f"{cycles / model:.2f}x" if model else "-"
            print(f"    {unit}: {cycles:,} / {model:,} ({ratio})")
    print(f"    (the model's DRAM bus: {timing.busy.get('dram', 0):,})")


def describe(prog, config) -> None:  # noqa: ANN001
    from barista_hw.device.isa import count_ops
    from barista_hw.device.rtl.decode import decoder_sizes

    e = config.accelerator.engine
    s = config.scratchpads
    print(
        f"  {e.rows}x{e.cols} {e.fmt.name}, {s.vector_lanes} vector lanes, rings of "
        f"{s.vec_ring}, col2im accumulator {s.col2im_elements}; decoder {decoder_sizes(prog)}"
    )
    print(f"  {len(prog.instructions):,} instructions: {count_ops(prog.instructions)}")


def lenet(batch: int, repeat: int, make_flags: list[str], pgo: bool) -> None:
    """The DSE's design: what the top refuses; then LeNet on the RTL's test design."""
    from barista_base.errors import InputError
    from barista_hw.device.memory import RTL_UNITS
    from barista_hw.device.rtl.design import LENET_CONFIG
    from sim.device_cases import lenet_program as rtl_lenet
    from sim.device_cases import random_iteration
    from sim.device_ports import MemoryTiming
    from sim.gemm_path_run import BUS_BITS

    print(f"\nLeNet batch {batch} (examples/mnist) on the DSE's ulx3s-85f design, RTL units")
    try:
        prog, config = lenet_program(batch, RTL_UNITS)
    except InputError as exc:
        print(f"  the compiler cannot fit the RTL's units: {exc}")
        print("  compiled without the col2im bound instead:")
        prog, config = lenet_program(batch, {**RTL_UNITS, "col2im_elements": None})
    describe(prog, config)
    refused = refusals(prog, config)
    print("  what the device top refuses (instruction kind, reason: instructions):")
    for (kind, why), n in sorted(refused.items()):
        print(f"    {kind}, {why}: {n}")
    if not refused:
        print("    nothing")

    print(f"\nLeNet batch {batch} on the RTL top's design (rtl.design.LENET_CONFIG)")
    prog, config = rtl_lenet(batch), LENET_CONFIG
    describe(prog, config)
    t0 = time.perf_counter()
    case = random_iteration("lenet", prog, config)
    print(
        f"  the case built: every instruction decodes ({time.perf_counter() - t0:.0f} s of model)"
    )
    timing = MemoryTiming.for_config(config, BUS_BITS)
    sims = built(config, "LeNet's device top", prog, make_flags, (case, timing) if pgo else None)
    board = model_timing(prog, config, config.link.baud).cycles
    runs = speed(sims, case, timing, repeat, max_cycles=20 * board)
    got = runs["current"][0]
    print(f"  {check(got, case)}")
    compare_builds(runs)
    print_busy(got.counters, prog, config)
    compare("LeNet iteration", got.counters["cycles"], prog, config)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of the tiny iteration")
    parser.add_argument("--lenet", action="store_true", help="also LeNet (long)")
    parser.add_argument("--batch", type=int, default=2, help="LeNet's batch (default 2)")
    parser.add_argument("--skip-tiny", action="store_true", help="only LeNet")
    parser.add_argument("--lenet-repeat", type=int, default=1, help="runs of LeNet's iteration")
    parser.add_argument(
        "--make-flags",
        nargs="+",
        default=[],
        metavar="VAR=FLAGS",
        help="also a build with these make variables instead of MAKE_FLAGS (e.g. "
        "'OPT_FAST=-O3 -march=native'), its runs interleaved with the current build's",
    )
    parser.add_argument(
        "--pgo",
        action="store_true",
        help="also a build with gcc's profile of the case it runs (trained on that case)",
    )
    args = parser.parse_args()
    if not args.skip_tiny:
        tiny(args.repeat, args.make_flags, args.pgo)
    if args.lenet:
        lenet(args.batch, args.lenet_repeat, args.make_flags, args.pgo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
