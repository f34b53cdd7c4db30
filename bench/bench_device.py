"""Benchmark of issue 20: training on the device against the host-driven accelerator.

Run from the repository: ``python bench/bench_device.py [--batch N] [--target T]
[--format SPEC]``. For LeNet (examples/mnist, batch 64) and cifar10_quick
(examples/cifar10, batch 100; ``../shared/caffe-models`` when the project has no copy,
skipped with the reason when neither has it), takes the target's design as
``barista compile`` does (:func:`barista.device_net.device_design`: the exploration's
shortlist ranked by the device's time model, ``--format`` fixing the number format),
compiles one training iteration for the device (nothing is trained) and prints, beside
today's host-driven backend on the same design (every GEMM chunk over the UART,
``boards.traffic``, at the host link's own baud):

* link bytes and link time per iteration, DRAM bytes;
* modelled time per iteration and its roofline: the compute bound (the engine's busy
  cycles; host-driven, the array's cycles), the DRAM bound (the DRAM bus's busy cycles),
  the link bound, which bound applies and the time's ratio to it;
* mJ per image, static and dynamic (host-driven: MACs, link bytes and static power only,
  a lower bound: its operand-buffer traffic is not counted);
* the same for the device with the training images preloaded in its DRAM (``barista
  train --backend device --preload``): each iteration fetches its batch there, and only
  the logits and their gradient cross the link.

Then issue 20's goals, met or missed and by how much: link bytes within the input batch
at its own precision (a byte a pixel: both datasets hold 8-bit images) plus the logits
and their gradient (at the format's width) plus :data:`COMMAND_BYTES` of commands; time
within 1.5x of the compute bound or, where the DRAM bound exceeds that, within 1.2x of
the DRAM bound; under 0.5 mJ per image. A batch whose working set does not fit the
board's DRAM prints the compiler's error and is replaced by the largest batch that fits
on the same design (bisection with the compiler). All figures are models, and the energy
coefficients estimates (``docs/device.md``).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from barista.device_net import DeviceCompilation
    from barista_hw.config import AcceleratorConfig
    from caffe_bridge.net import Net

#: "a few hundred bytes of commands" (issue 20), the link goal's allowance for them.
COMMAND_BYTES = 1000
TIME_COMPUTE_GOAL = 1.5  # x the compute bound
TIME_DRAM_GOAL = 1.2  # x the DRAM bound, where the DRAM makes the compute goal impossible
MJ_PER_IMAGE_GOAL = 0.5


@dataclass(frozen=True)
class Bench:
    """One of the benchmark's nets: its file under examples/, one image's shape, its batch."""

    name: str
    path: str
    image: tuple[int, ...]
    batch: int


NETS = (
    Bench("LeNet", "mnist/lenet_train_test.prototxt", (1, 28, 28), 64),
    Bench("cifar10_quick", "cifar10/cifar10_quick_train_test.prototxt", (3, 32, 32), 100),
)


@dataclass(frozen=True)
class Side:
    """One iteration's figures for one way of running it (seconds, bytes, joules)."""

    link_bytes: int
    link_s: float
    dram_bytes: int
    time_s: float
    compute_s: float
    dram_s: float
    static_j: float
    dynamic_j: float
    images: int

    @property
    def bounds(self) -> dict[str, float]:
        return {"compute": self.compute_s, "DRAM": self.dram_s, "link": self.link_s}

    @property
    def bound(self) -> str:
        """The roofline's bound that applies: the largest."""
        return max(self.bounds, key=lambda k: self.bounds[k])

    def mj_per_image(self, joules: float | None = None) -> float:
        j = self.static_j + self.dynamic_j if joules is None else joules
        return j / self.images * 1e3

    def time_goal(self) -> tuple[float, str]:
        """Issue 20's time goal: 1.5x the compute bound, or 1.2x the DRAM bound where the
        DRAM bound makes the first impossible."""
        if self.dram_s > TIME_COMPUTE_GOAL * self.compute_s:
            return TIME_DRAM_GOAL * self.dram_s, f"{TIME_DRAM_GOAL}x the DRAM bound"
        return TIME_COMPUTE_GOAL * self.compute_s, f"{TIME_COMPUTE_GOAL}x the compute bound"


def find_net(bench: Bench) -> Path | None:
    """The project's copy of the net, else the shared reference copy, else None."""
    for root in (REPO / "examples", REPO.parent / "shared" / "caffe-models"):
        if (root / bench.path).is_file():
            return root / bench.path
    return None


def train_net(path: Path, bench: Bench, batch: int) -> Net:
    """The net's TRAIN phase at ``batch``, its data layers standing in for absent data."""
    from barista.commands.generate import train_net_at

    return train_net_at(str(path), {"data": (batch, *bench.image), "label": (batch,)})


def largest_fitting(
    path: Path, bench: Bench, batch: int, acc: AcceleratorConfig, target: str
) -> int:
    """The largest batch below ``batch`` the compiler accepts on ``acc`` (0: none),
    by bisection (a larger batch only needs more DRAM)."""
    from barista.device_net import compile_device
    from barista_base.errors import InputError

    lo, hi = 0, batch  # lo fits (0 trivially), hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            compile_device(train_net(path, bench, mid), acc, target=target)
            lo = mid
        except InputError:
            hi = mid
    return lo


def device_side(dc: DeviceCompilation) -> Side:
    cost = dc.cost
    t, c = cost.timing, cost.counts.total
    hz = t.clock_mhz * 1e6
    b = t.bounds
    return Side(
        link_bytes=c.link_bytes,
        link_s=b["link"] / hz,
        dram_bytes=c.dram_bytes,
        time_s=t.seconds,
        compute_s=b["compute"] / hz,
        dram_s=b["dram"] / hz,
        static_j=cost.energy.static_j,
        dynamic_j=cost.energy.dynamic_j,
        images=cost.images,
    )


def host_side(acc: AcceleratorConfig, layers: list, target: str) -> Side:
    """Today's host-driven backend on ``acc``: the array's planned cycles, then every
    chunk's frames over the UART at the host link's baud, one after the other."""
    from barista_hw.device.energy import ENERGY, Actions, energy, link_coefficient
    from barista_hw.device.memory import LinkConfig
    from barista_hw.plan import plan_net
    from barista_hw.targets import get_target
    from boards.protocol import BITS_PER_BYTE, DEFAULT_BAUD
    from boards.traffic import iteration_traffic

    plan = plan_net(acc, layers)
    traffic = iteration_traffic(plan)
    link = LinkConfig(baud=DEFAULT_BAUD, bits_per_byte=BITS_PER_BYTE)
    link_s = traffic.seconds(DEFAULT_BAUD)
    time_s = plan.seconds + link_s
    model = ENERGY[get_target(target).family]
    model = replace(model, link_j_per_byte=link_coefficient(link))
    e = energy(Actions(macs=plan.macs, link_bytes=traffic.bytes), time_s, model)
    return Side(
        link_bytes=traffic.bytes,
        link_s=link_s,
        dram_bytes=0,
        time_s=time_s,
        compute_s=plan.seconds,
        dram_s=0.0,
        static_j=e.static_j,
        dynamic_j=e.dynamic_j,
        images=plan.batch,
    )


def link_goal(dc: DeviceCompilation, bench: Bench) -> int:
    """Issue 20's link bytes: the input batch a byte a pixel, the logits and their
    gradient at the format's width, and :data:`COMMAND_BYTES` of commands."""
    from barista_hw.device.memory import packed_bytes

    batch = dc.net.batch
    logits = next(t for t in dc.compiled.program.tensors if t["name"] == dc.net.output)
    width = dc.config.accelerator.engine.fmt.width
    return (
        batch * math.prod(bench.image)
        + 2 * packed_bytes(math.prod(logits["shape"]), width)
        + COMMAND_BYTES
    )


def verdict(value: float, goal: float) -> str:
    """ "met" or "missed", and the value as a multiple of the goal."""
    return f"{'met' if value <= goal else 'MISSED'} ({value / goal:.3g}x the goal)"


def _ms(s: float) -> str:
    return f"{s * 1e3:,.2f} ms" if s < 10 else f"{s:,.1f} s"


def table(sides: dict[str, Side]) -> str:
    """The figures of each way of running the iteration, a column each (the host-driven
    one last)."""

    def row(label: str, cell) -> tuple[str, ...]:  # noqa: ANN001 - Side -> str
        return (label, *(cell(name, side) for name, side in sides.items()))

    def host(name: str) -> bool:
        return name == "host-driven"

    rows = [
        row("link bytes / iteration", lambda n, s: f"{s.link_bytes:,}"),
        row("link time / iteration", lambda n, s: _ms(s.link_s)),
        row("DRAM bytes / iteration", lambda n, s: "-" if host(n) else f"{s.dram_bytes:,}"),
        row("modelled time / iteration", lambda n, s: _ms(s.time_s)),
        row("  compute bound", lambda n, s: _ms(s.compute_s)),
        row("  DRAM bound", lambda n, s: "-" if host(n) else _ms(s.dram_s)),
        row("  link bound", lambda n, s: _ms(s.link_s)),
        row("  bound that applies", lambda n, s: s.bound),
        row("  time / that bound", lambda n, s: f"{s.time_s / s.bounds[s.bound]:.3f}x"),
        row(
            "mJ / image",
            lambda n, s: f"{s.mj_per_image():,.1f} (>=)" if host(n) else f"{s.mj_per_image():.3f}",
        ),
        row(
            "  static / dynamic",
            lambda n, s: f"{s.mj_per_image(s.static_j):,.3f} / {s.mj_per_image(s.dynamic_j):,.3f}",
        ),
    ]
    rows = [("", *sides), *rows]
    widths = [max(len(r[k]) for r in rows) for k in range(len(sides) + 1)]
    return "\n".join(
        "  ".join(
            [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        )
        for r in rows
    )


def goals(sides: dict[str, Side], link_budget: int) -> str:
    lines = [
        f"goals (issue 20; link: {link_budget:,} B = input a byte a pixel, logits and "
        f"their gradient, {COMMAND_BYTES} B of commands)"
    ]
    for label, side in sides.items():
        goal_s, which = side.time_goal()
        lines.append(
            f"  {label:17s} link bytes {verdict(side.link_bytes, link_budget)}; "
            f"time vs {which} {verdict(side.time_s, goal_s)}; "
            f"mJ/image < {MJ_PER_IMAGE_GOAL} {verdict(side.mj_per_image(), MJ_PER_IMAGE_GOAL)}"
        )
    return "\n".join(lines)


def run_net(bench: Bench, batch: int, target: str, fmt: str | None) -> None:
    from barista.backends.plan import gemm_layers
    from barista.device_net import compile_device, device_design
    from barista_base.errors import InputError
    from boards.protocol import DEFAULT_BAUD

    path = find_net(bench)
    if path is None:
        print(f"{bench.name}: skipped, no {bench.path} under examples/ or ../shared/caffe-models/")
        return
    net = train_net(path, bench, batch)
    name = net.name or bench.name
    files, _ = device_design(net, target=target, fmt=fmt, name=name)
    acc = files.config
    e = acc.engine
    head = (
        f"{bench.name} ({path.relative_to(path.parents[2])}) on {target}: the device's design for "
        f"batch {batch}, {e.rows}x{e.cols} {e.fmt.name}, {acc.clock_mhz:g} MHz"
    )
    try:
        dc = compile_device(net, acc, target=target)
    except InputError as exc:
        print(f"{head}\n  batch {batch} does not compile: {exc}")
        batch = largest_fitting(path, bench, batch, acc, target)
        if not batch:
            print("  no smaller batch compiles on this design either")
            return
        print(f"  the largest batch that fits (bisection with the compiler): {batch}")
        net = train_net(path, bench, batch)
        dc = compile_device(net, acc, target=target)
        head = f"{bench.name} on {target} at batch {batch}, the same design"
    sides = {
        "device": device_side(dc),
        "device, preloaded": device_side(compile_device(net, acc, target=target, preload=True)),
        "host-driven": host_side(acc, gemm_layers(net), target),
    }
    print(head)
    print(
        f"  device: {len(dc.compiled.program.instructions):,} instructions, DRAM "
        f"{dc.compiled.dram_bytes / 2**20:.2f} of {dc.config.dram.size_bytes / 2**20:g} MiB, "
        f"link {dc.config.link.baud:,} baud; host-driven link {DEFAULT_BAUD:,} baud "
        f"(at the device's baud its link time would be "
        f"{_ms(sides['host-driven'].link_s * DEFAULT_BAUD / dc.config.link.baud)}); "
        "preloaded: the images in DRAM, fetched there (the stand-in dataset holds one batch)"
    )
    print(table(sides))
    print(goals(sides, link_goal(dc, bench)))
    print()


def main() -> int:
    from barista_hw.targets import TARGETS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, help="batch of both nets (default: LeNet 64, cifar 100)")
    ap.add_argument("--target", default="ulx3s-85f", choices=sorted(TARGETS))
    ap.add_argument("--format", metavar="SPEC", help="fix the number format (default: the DSE's)")
    args = ap.parse_args()
    if args.batch is not None and args.batch < 1:
        ap.error(f"--batch {args.batch} must be at least 1")
    for bench in NETS:
        run_net(bench, args.batch or bench.batch, args.target, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
