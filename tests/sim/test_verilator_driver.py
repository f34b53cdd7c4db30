"""The Verilated accelerator with its C++ host: bits, cycles, cache and failure modes.

One small accelerator (2 x 3 array, 16-word buffers so that passes split into
output blocks and reduction chunks) is built once for the module; the build is
cached on disk, so later runs load it at once.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from barista_base.cache import LOCKS
from barista_base.errors import InputError
from barista_hw import model, plan
from barista_hw.accelerator import FEED_LATENCY, Accelerator
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.engine import FIRST_TAKE
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.schedule import block_rects, schedule_gemm, share_blocks, tiling
from sim import verilator_driver as vd
from sim.beats import assemble
from sim.pysim import run_accelerator
from sim.tools import SimulatorNotFound, simulator_version
from sim.verilator_build import MARKER, entry_ok, sha256_file
from sim.verilator_ports import PortLayout
from sim.verilator_program import make_program

FMT = FixedFormat(8, 4, 24)
CFG = AcceleratorConfig(EngineConfig(2, 3, FMT, acc_depth=8), a_depth=16, b_depth=16)

# (m, k, n, images): one block; several output blocks; gradient with whole images per
# chunk; a reduction split inside an image; several blocks and a split at once.
CASES = [(5, 4, 7, 1), (5, 6, 9, 1), (3, 5, 4, 3), (2, 11, 3, 1), (7, 9, 8, 2)]


@pytest.fixture(scope="module")
def vsim() -> vd.VerilatedAccelerator:
    try:
        simulator_version("verilator")
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))
    return vd.simulator(CFG)


def _operands(m: int, k: int, n: int, images: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed + 1000 * m + 10 * n + images)
    return FMT.random_operands(rng, (m, k * images)), FMT.random_operands(rng, (k * images, n))


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("m, k, n, images", CASES)
def test_results_are_the_model_bit_for_bit(
    vsim: vd.VerilatedAccelerator, m: int, k: int, n: int, images: int, rounding: Rounding
) -> None:
    a, b = _operands(m, k, n, images)
    cmd = GemmCommand(shift=5, rounding=rounding, seed=17 + m, images=images)
    run = vsim.run_gemm(a, b, cmd)
    want = model.gemm_on_accelerator(a, b, CFG, cmd)
    np.testing.assert_array_equal(run.result, want)
    assert run.out_beats == m * -(-n // CFG.engine.cols)


@pytest.mark.parametrize("rounding", [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC])
def test_a_share_of_the_blocks_is_the_model_bit_for_bit(
    vsim: vd.VerilatedAccelerator, rounding: Rounding
) -> None:
    """What one device of a data-parallel run computes: its blocks, the whole GEMM's bits."""
    m, k, n, images = CASES[4]  # several blocks and a split reduction
    a, b = _operands(m, k, n, images)
    cmd = GemmCommand(shift=5, rounding=rounding, seed=23, images=images)
    want = model.gemm_on_accelerator(a, b, CFG, cmd)
    shares = share_blocks(tiling(CFG, m, k, n, images), 2)
    assert all(shares)
    for share in shares:
        got = vsim.run_gemm(a, b, cmd, blocks=share).result
        for m0, m1, n0, n1 in block_rects(CFG, m, k, n, images, share):
            np.testing.assert_array_equal(got[m0:m1, n0:n1], want[m0:m1, n0:n1])


@pytest.mark.parametrize(("m", "k", "n", "images"), CASES)
def test_raw_read_out_is_every_accumulator_bit(
    vsim: vd.VerilatedAccelerator, m: int, k: int, n: int, images: int
) -> None:
    """The accumulator read-out through the accelerator and its C++ host: blocks, chunked
    reductions through the accumulator memory, stalls on ``o`` and the writes; the sums
    of two halves of the images, requantised once, are the one-run result."""
    a, b = _operands(m, k, n, images, seed=7)
    raw = vsim.run_gemm(
        a, b, GemmCommand(0, images=images, raw=True), o_stall=0.3, wr_gap=0.2, stall_seed=m
    )
    np.testing.assert_array_equal(raw.result, model.accumulators(a, b, CFG.engine))
    assert (
        raw.out_beats == m * -(-n // CFG.engine.cols) * CFG.engine.raw_beats == m * 3 * -(-n // 3)
    )
    if images < 2:
        return
    cut = images // 2 * k
    halves = [
        vsim.run_gemm(a[:, s], b[s], GemmCommand(0, images=i, raw=True)).result
        for s, i in ((slice(0, cut), images // 2), (slice(cut, None), images - images // 2))
    ]
    cmd = GemmCommand(shift=5, rounding=Rounding.STOCHASTIC, seed=31, images=images)
    once = model.requantize_on_accelerator(halves[0] + halves[1], CFG, k, cmd)
    np.testing.assert_array_equal(once, vsim.run_gemm(a, b, cmd).result)


def test_cases_really_chunk() -> None:
    for m, k, n, images in CASES[1:]:
        chunks = schedule_gemm(CFG, m, k, n, images)
        assert len(chunks) > 1
    assert any(not c.acc_last for c in schedule_gemm(CFG, 2, 11, 3, 1))  # reduction split


@pytest.mark.parametrize("m, k, n, images", [CASES[1], CASES[4]])
def test_stalls_change_cycles_not_bits(
    vsim: vd.VerilatedAccelerator, m: int, k: int, n: int, images: int
) -> None:
    a, b = _operands(m, k, n, images, seed=3)
    cmd = GemmCommand(shift=4, rounding=Rounding.STOCHASTIC, seed=5, images=images)
    calm = vsim.run_gemm(a, b, cmd)
    rough = vsim.run_gemm(a, b, cmd, o_stall=0.4, wr_gap=0.3, stall_seed=9)
    np.testing.assert_array_equal(rough.result, calm.result)
    assert rough.cycles > calm.cycles


def test_assembly_matches_sim_beats(vsim: vd.VerilatedAccelerator) -> None:
    """One output block: the driver's vectorised assembly agrees with ``sim.beats.assemble``
    fed the beats in the engine's documented order (tiles row-major, valid rows each)."""
    m, k, n = 3, 2, 5  # one block of 2 x 2 tiles, partial in both directions
    a, b = _operands(m, k, n, 1, seed=4)
    prog = make_program(CFG, a, b, GemmCommand(shift=3, rounding=Rounding.FLOOR))
    assert len(prog.chunks) == 1
    run = vsim.run_program(prog)
    q = model.gemm(a, b, CFG.engine, shift=3, rounding=Rounding.FLOOR)
    R, C = CFG.engine.rows, CFG.engine.cols
    padded = np.zeros((m, 2 * C), dtype=np.int64)
    padded[:, :n] = q
    beats = [
        padded[tm * R + r, tn * C : tn * C + C].tolist()
        for tm in range(2)
        for tn in range(2)
        for r in range(min(R, m - tm * R))
    ]
    np.testing.assert_array_equal(run.result, assemble(beats, m, n, R, C))


@pytest.mark.parametrize("m, k, n, images", [CASES[0], CASES[2], CASES[3]])
def test_cycles_equal_pysim_with_the_same_host(
    vsim: vd.VerilatedAccelerator, m: int, k: int, n: int, images: int
) -> None:
    """pysim's host writes, commands, then waits for ``busy`` low; it counts the cycles from
    each command's acceptance to ``busy`` low, which is ``engine_cycles`` here; the whole
    serial program adds one cycle per write beat and one per command handshake."""
    a, b = _operands(m, k, n, images, seed=5)
    cmd = GemmCommand(shift=5, rounding=Rounding.STOCHASTIC, seed=2, images=images)
    pysim = run_accelerator(Accelerator(CFG), a, b, cmd, host="serial")
    got, pysim_cycles = pysim.result, pysim.engine_cycles
    serial = vsim.run_gemm(a, b, cmd, host="serial")
    np.testing.assert_array_equal(serial.result, got)
    assert serial.engine_cycles == pysim_cycles
    n_chunks = len(schedule_gemm(CFG, m, k, n, images))
    assert serial.cycles == serial.write_beats + n_chunks + serial.engine_cycles
    overlap = vsim.run_gemm(a, b, cmd)
    assert overlap.engine_cycles == pysim_cycles  # per-command cycles do not depend on the host
    assert overlap.cycles < serial.cycles


@pytest.mark.parametrize("raw", [False, True], ids=["requantised", "read-out"])
@pytest.mark.parametrize("m, k, n, images", [*CASES, (6, 2, 6, 1)])
def test_overlapped_host_is_the_plan_cycle_model(
    vsim: vd.VerilatedAccelerator, m: int, k: int, n: int, images: int, raw: bool
) -> None:
    a, b = _operands(m, k, n, images, seed=6)
    cmd = GemmCommand(shift=2, rounding=Rounding.NEAREST_EVEN, images=images, raw=raw)
    run = vsim.run_gemm(a, b, cmd)
    predicted = plan.simulate_chunks(CFG, schedule_gemm(CFG, m, k, n, images), raw=raw)
    assert run.cycles == predicted["cycles"]
    assert run.engine_cycles == predicted["engine_cycles"]
    assert run.write_beats == predicted["words_a"] + predicted["words_b"]
    assert run.out_beats == predicted["beats_out"]


def test_double_buffering_overlaps_writes_with_commands(vsim: vd.VerilatedAccelerator) -> None:
    a, b = _operands(5, 6, 9, 1, seed=7)
    run = vsim.run_gemm(a, b, GemmCommand(shift=2, rounding=Rounding.FLOOR))
    # Some command is accepted before the previous one finished its writes... i.e. the
    # accept of chunk i+1 follows chunk i's done by one edge: the writes were hidden.
    gaps = run.chunk_accept[1:] - run.chunk_done[:-1]
    assert (gaps == 1).any()
    assert (run.chunk_accept[1:] > run.chunk_done[:-1]).all()  # one command at a time


def test_cycle_budget_overrun_raises_timeout(vsim: vd.VerilatedAccelerator) -> None:
    a, b = _operands(5, 6, 9, 1)
    with pytest.raises(vd.SimulationTimeout, match=r"conv9, forward.*budget.*chunk 1 of"):
        vsim.run_gemm(a, b, GemmCommand(shift=2), margin=0.2, label="conv9, forward")
    # The next pass starts from a fresh model and is right again.
    run = vsim.run_gemm(a, b, GemmCommand(shift=2))
    np.testing.assert_array_equal(run.result, model.gemm_on_accelerator(a, b, CFG, GemmCommand(2)))


def test_result_stream_never_ready_is_a_timeout_not_a_hang(vsim: vd.VerilatedAccelerator) -> None:
    a, b = _operands(3, 4, 4, 1)
    t0 = time.monotonic()
    with pytest.raises(vd.SimulationTimeout, match="ip1"):
        vsim.run_gemm(a, b, GemmCommand(shift=2), o_stall=1.0, label="ip1")
    assert time.monotonic() - t0 < 30


def test_more_beats_than_the_schedule_expects_is_a_protocol_error(
    vsim: vd.VerilatedAccelerator,
) -> None:
    a, b = _operands(5, 6, 9, 1)
    prog = make_program(CFG, a, b, GemmCommand(shift=2))
    prog.expect = prog.expect.copy()
    prog.expect[0] -= 1
    with pytest.raises(vd.ProtocolError, match=r"L/gradient.*chunk 0 emitted more"):
        vsim.run_program(prog, label="L/gradient")


def test_fewer_beats_than_expected_is_a_protocol_error(vsim: vd.VerilatedAccelerator) -> None:
    a, b = _operands(2, 11, 3, 1)
    prog = make_program(CFG, a, b, GemmCommand(shift=2))
    first = next(i for i, c in enumerate(prog.chunks) if not c.acc_last)
    prog.expect = prog.expect.copy()
    prog.expect[first] = 1  # a partial-sum chunk emits nothing
    with pytest.raises(vd.ProtocolError, match="o beats"):
        vsim.run_program(prog, label="x")


def test_simulator_fatal_raises_and_the_model_recovers(vsim: vd.VerilatedAccelerator) -> None:
    a, b = _operands(5, 4, 7, 1)
    with pytest.raises(vd.SimulatorCrash, match=r"conv2/backward.*injected fatal"):
        vsim.run_gemm(a, b, GemmCommand(shift=1), fatal_at=20, label="conv2/backward")
    run = vsim.run_gemm(a, b, GemmCommand(shift=1))
    np.testing.assert_array_equal(run.result, model.gemm_on_accelerator(a, b, CFG, GemmCommand(1)))


def test_bad_host_and_misfit_fields_are_input_errors(vsim: vd.VerilatedAccelerator) -> None:
    a, b = _operands(2, 3, 2, 1)
    with pytest.raises(InputError, match="host"):
        make_program(CFG, a, b, GemmCommand(shift=1), host="eager")
    with pytest.raises(InputError, match="seed"):
        make_program(CFG, a, b, GemmCommand(shift=1, seed=1 << 40))
    with pytest.raises(InputError, match="trace"):
        vsim.run_gemm(a, b, GemmCommand(shift=1), trace="x.fst")


def test_second_build_is_a_cache_hit(vsim: vd.VerilatedAccelerator) -> None:
    t0 = time.monotonic()
    again = vd.simulator(CFG)
    assert time.monotonic() - t0 < 10
    assert again.build.path == vsim.build.path
    verilog, top = vd.accelerator_verilog(CFG)
    lay = PortLayout.from_config(CFG)
    key = vd.build_library(verilog, top, lay).key
    assert key == vsim.build.key
    assert vd.build_entry(verilog + "\n// changed\n", top, lay).name != vsim.build.path.parent.name
    assert vd.build_entry(verilog, top, lay, trace=True).name != vsim.build.path.parent.name


def _corrupt_copy(vsim: vd.VerilatedAccelerator, root: Path) -> Path:
    """A copy of the cache entry whose library is garbage but matches its recorded hash."""
    entry = root / vsim.build.path.parent.name
    shutil.copytree(vsim.build.path.parent, entry)
    lib = entry / vd.LIBRARY
    assert entry_ok(entry)
    lib.write_bytes(lib.read_bytes()[:1000])  # truncated: the hash no longer matches
    assert not entry_ok(entry)
    lib.write_bytes(b"not a shared library")
    marker = json.loads((entry / MARKER).read_text())
    marker["sha256"] = sha256_file(lib)
    (entry / MARKER).write_text(json.dumps(marker))
    assert entry_ok(entry)
    return entry


def test_corrupt_cache_entries_are_detected(vsim: vd.VerilatedAccelerator, tmp_path: Path) -> None:
    entry = _corrupt_copy(vsim, tmp_path)
    build = dataclasses.replace(vsim.build, path=entry / vd.LIBRARY)
    with pytest.raises(vd.VerilatorBuildError, match="cannot load"):
        vd.VerilatedAccelerator(CFG, build)


@pytest.mark.slow
def test_corrupt_cache_entries_are_rebuilt(vsim: vd.VerilatedAccelerator, tmp_path: Path) -> None:
    """A library that passes the hash check but does not load is discarded and rebuilt."""
    entry = _corrupt_copy(vsim, tmp_path)
    shutil.copytree(vd.cache_root() / "verilog", tmp_path / "verilog")  # the same Verilog text
    rebuilt = vd.simulator(CFG, root=tmp_path)
    assert rebuilt.build.path == entry / vd.LIBRARY and entry_ok(entry)
    a, b = _operands(5, 6, 9, 1)
    cmd = GemmCommand(shift=3, rounding=Rounding.STOCHASTIC, seed=1)
    run = rebuilt.run_gemm(a, b, cmd)
    want = model.gemm_on_accelerator(a, b, CFG, cmd)
    np.testing.assert_array_equal(run.result, want)
    left = [p for p in tmp_path.glob(".*") if p.name != LOCKS]
    assert not left  # no temporary or discarded directories left


def test_stale_layout_is_refused(vsim: vd.VerilatedAccelerator) -> None:
    other = dataclasses.replace(vsim.build, layout=dataclasses.replace(vsim.build.layout, o_last=0))
    with pytest.raises(vd.VerilatorBuildError, match="port layout"):
        vd.VerilatedAccelerator(CFG, other)


@pytest.mark.slow
def test_fst_trace_of_one_pass(tmp_path: Path) -> None:
    traced = vd.simulator(CFG, trace=True)
    a, b = _operands(5, 4, 7, 1)
    path = tmp_path / "pass.fst"
    run = traced.run_gemm(a, b, GemmCommand(shift=2), trace=path)
    np.testing.assert_array_equal(run.result, model.gemm_on_accelerator(a, b, CFG, GemmCommand(2)))
    assert path.stat().st_size > 100 and path.read_bytes()[:1] == b"\x00"  # FST header block


def test_engine_cycles_equal_the_cocotb_suite(vsim: vd.VerilatedAccelerator, sim: str) -> None:
    """The same GEMM on the same engine RTL: the engine cycle counter the driver reads is the
    one the cocotb suite reads, plus the cycles of the accelerator's feed pipeline."""
    from barista_hw import model
    from barista_hw.config import Pass
    from sim.runner import GemmCase, build, run_cases

    shapes = [(2, 4, 3, 2), (4, 4, 3, 1), (2, 1, 2, 5)]  # each fits one chunk
    cases, runs = [], []
    for i, (m, k, n, images) in enumerate(shapes):
        a, b = _operands(m, k, n, images, seed=i)
        cmd = {"shift": 3, "rounding": Rounding.STOCHASTIC, "seed": 11 + i}
        assert len(schedule_gemm(CFG, m, k, n, images)) == 1
        runs.append(vsim.run_gemm(a, b, GemmCommand(**cmd, images=images)))
        expected = model.gemm(a, b, CFG.engine, **cmd)
        cases.append(GemmCase(f"c{i}", a, b, images=images, expected=expected, **cmd))
    # The gradient engine with this config is the accelerator's engine (batched commands).
    sim_run = run_cases(build(Pass.WEIGHT_GRAD, CFG.engine, sim), cases)
    for run, res in zip(runs, sim_run.results, strict=True):
        np.testing.assert_array_equal(run.result, res.got)
        # The accelerator's feed pipeline (buffer read, operand FIFO) delivers the first
        # operands later than the testbench, and the engine counts those cycles too.
        assert run.last_counter == res.cycles + FEED_LATENCY - FIRST_TAKE
        assert run.engine_cycles == run.last_counter
