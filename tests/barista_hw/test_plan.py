"""Workloads, tiling and the cycle model of barista_hw.plan (cycles checked in pysim)."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.accelerator import Accelerator
from barista_hw.config import AcceleratorConfig, EngineConfig, Pass
from barista_hw.numfmt import FixedFormat
from barista_hw.plan import (
    GemmLayer,
    Workload,
    gemm_cycles,
    plan_net,
    plan_pass,
    simulate_chunks,
    tiling,
)
from barista_hw.schedule import block_seed, pack_a, pack_b, schedule_gemm
from sim.beats import assemble

FMT = FixedFormat(8, 4, 24)


def test_lenet_like_workloads() -> None:
    conv = GemmLayer("conv2", "conv", batch=64, m=50, k=500, p=64)
    fwd, bwd, grad = conv.workloads()
    assert (fwd.kind, fwd.m, fwd.k, fwd.n, fwd.images) == (Pass.FORWARD, 50, 500, 64 * 64, 1)
    assert (bwd.kind, bwd.m, bwd.k, bwd.n) == (Pass.BACKWARD_DATA, 500, 50, 64 * 64)
    assert (grad.kind, grad.m, grad.k, grad.n, grad.images) == (Pass.WEIGHT_GRAD, 50, 64, 500, 64)
    assert fwd.macs == bwd.macs == grad.macs == 50 * 500 * 64 * 64
    assert fwd.bytes_moved(16) == {"a": 50 * 500 * 2, "b": 500 * 4096 * 2, "c": 50 * 4096 * 2}
    first = GemmLayer("conv1", "conv", batch=64, m=20, k=25, p=576, backward_data=False)
    assert [w.kind for w in first.workloads()] == [Pass.FORWARD, Pass.WEIGHT_GRAD]
    # InnerProduct: the batch is the forward N and the gradient's reduction (images = 1).
    fc = GemmLayer("ip1", "fc", batch=64, m=500, k=800)
    f, b, g = fc.workloads()
    assert (f.m, f.k, f.n) == (500, 800, 64)
    assert (b.m, b.k, b.n) == (800, 500, 64)
    assert (g.m, g.k, g.n, g.images) == (500, 64, 800, 1)


def test_grouped_conv_is_one_gemm_per_group() -> None:
    conv = GemmLayer("conv2", "conv", batch=8, m=128, k=48 * 25, p=27 * 27, group=2)
    fwd = conv.workloads()[0]
    assert (fwd.m, fwd.k, fwd.n, fwd.groups) == (128, 1200, 8 * 729, 2)
    assert fwd.macs == 2 * 128 * 1200 * 8 * 729
    cfg = AcceleratorConfig(EngineConfig(4, 4, FMT, acc_depth=32), a_depth=256, b_depth=256)
    p = plan_pass(cfg, fwd)
    single = gemm_cycles(cfg, fwd)
    assert p.cycles == 2 * single["cycles"] and p.chunks == 2 * single["chunks"]


def test_bad_layers_are_named() -> None:
    with pytest.raises(InputError, match="layer x"):
        GemmLayer("x", "pool", batch=1, m=1, k=1)
    with pytest.raises(InputError, match="layer y.*group"):
        GemmLayer("y", "fc", batch=1, m=1, k=1, group=2)


def _measure(cfg: AcceleratorConfig, a: np.ndarray, b: np.ndarray, images: int) -> int:
    """Cycles of the double-buffered host of the plan's docstring, on the RTL in pysim.

    Writes go in one per cycle as soon as the last chunk that read the target
    buffer half has finished; a command is offered with its last write. Checks the
    result against the model as well.
    """
    R, C = cfg.engine.rows, cfg.engine.cols
    m, kt = a.shape
    n = b.shape[1]
    chunks = schedule_gemm(cfg, m, kt // images, n, images)
    half, readers = [1, 1], [[None, None], [None, None]]
    writes, counts = [], []
    for i, c in enumerate(chunks):
        count = 0
        for sel, flag, base in ((0, c.write_a, c.a_base), (1, c.write_b, c.b_base)):
            if not flag:
                continue
            half[sel] ^= 1
            dep = readers[sel][half[sel]]
            if sel == 0:
                words = pack_a(a[c.m0 : c.m1, c.kt0 : c.kt1], R)
            else:
                words = pack_b(b[c.kt0 : c.kt1, c.n0 : c.n1], C)
            for j, word in enumerate(words.tolist()):
                writes.append((i, sel, base + j, word + [0] * (max(R, C) - len(word)), dep))
                count += 1
        readers[0][half[0]] = readers[1][half[1]] = i
        counts.append(count)
    acc = Accelerator(cfg)
    done: dict[int, int] = {}
    result = np.zeros((m, n), dtype=np.int64)
    cmd_extra = {}

    async def host(ctx) -> None:  # noqa: ANN001
        t = wi = ci = 0
        running, beats, written = None, [], [0] * len(chunks)
        ctx.set(acc.o.ready, 1)
        while ci < len(chunks) or running is not None:
            wv = wi < len(writes) and (writes[wi][4] is None or writes[wi][4] in done)
            if wv:
                _, sel, addr, word, _ = writes[wi]
                ctx.set(acc.wr.payload, {"sel": sel, "addr": addr, "data": word})
                written[writes[wi][0]] += 1
            ctx.set(acc.wr.valid, wv)
            cv = running is None and ci < len(chunks) and written[ci] == counts[ci]
            if cv:
                c = chunks[ci]
                if cfg.engine.acc_depth:
                    cmd_extra.update(acc_first=c.acc_first, acc_last=c.acc_last)
                ctx.set(
                    acc.cmd.payload,
                    {
                        "m": c.m,
                        "k": c.k,
                        "n": c.n,
                        "images": c.images,
                        "shift": 3,
                        "rounding": 0,
                        "seed": block_seed(5, c.block),
                        "a_base": c.a_base,
                        "b_base": c.b_base,
                        **cmd_extra,
                    },
                )
            ctx.set(acc.cmd.valid, cv)
            await ctx.delay(1e-10)
            accepted = cv and ctx.get(acc.cmd.ready)
            if ctx.get(acc.o.valid):
                beats.append([int(x) for x in ctx.get(acc.o.payload).data])
            await ctx.tick()
            t += 1
            wi += wv
            if accepted:
                running, ci = ci, ci + 1
            elif running is not None and not ctx.get(acc.busy):
                done[running] = t
                c = chunks[running]
                if c.acc_last:
                    result[c.m0 : c.m1, c.n0 : c.n1] = assemble(beats, c.m, c.n, R, C)
                running, beats = None, []

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    np.testing.assert_array_equal(
        result, model.gemm_on_accelerator(a, b, cfg, images=images, shift=3, rounding=0, seed=5)
    )
    return done[len(chunks) - 1]


@pytest.mark.parametrize(
    "rows, cols, acc_depth, a_depth, b_depth, m, k, n, images",
    [
        (2, 3, 8, 64, 64, 5, 4, 7, 1),  # one chunk
        (2, 3, 8, 16, 16, 5, 6, 9, 1),  # several output blocks, A reused across them
        (2, 3, 8, 16, 16, 3, 5, 4, 3),  # gradient: whole images per chunk, accumulated
        (2, 3, 8, 12, 12, 2, 11, 3, 1),  # reduction split inside an image
        (2, 2, 4, 8, 8, 3, 5, 5, 3),  # per-image pieces, accumulating drains
        (3, 2, 6, 20, 12, 7, 3, 10, 1),  # unequal buffers, partial tiles
        (2, 2, 0, 64, 64, 4, 20, 4, 1),  # no accumulator memory
    ],
)
def test_cycle_model_matches_rtl(rows, cols, acc_depth, a_depth, b_depth, m, k, n, images) -> None:
    cfg = AcceleratorConfig(
        EngineConfig(rows, cols, FMT, acc_depth=acc_depth), a_depth=a_depth, b_depth=b_depth
    )
    rng = np.random.default_rng(m * 7 + n)
    a = FMT.random_operands(rng, (m, k * images))
    b = FMT.random_operands(rng, (k * images, n))
    measured = _measure(cfg, a, b, images)
    predicted = gemm_cycles(cfg, Workload("t", Pass.FORWARD, m, k, n, images))["cycles"]
    assert predicted == measured


def test_compressed_model_equals_chunk_by_chunk() -> None:
    """The run-compressed model agrees with the model stepped over schedule_gemm's chunks."""
    rnd = random.Random(7)
    checked = 0
    while checked < 150:
        R, C = rnd.randint(1, 5), rnd.randint(1, 5)
        cfg = AcceleratorConfig(
            EngineConfig(R, C, FMT, acc_depth=rnd.choice([0, R, 3 * R, 64])),
            a_depth=rnd.randint(2, 80),
            b_depth=rnd.randint(2, 80),
        )
        m, k, n = rnd.randint(1, 30), rnd.randint(1, 30), rnd.randint(1, 150)
        images = rnd.choice([1, 2, 5])
        try:
            chunks = schedule_gemm(cfg, m, k, n, images)
        except InputError:
            with pytest.raises(InputError):
                tiling(cfg, m, k, n, images)
            continue
        t = tiling(cfg, m, k, n, images)
        assert t.chunks == len(chunks)
        assert t.block_m == max(c.m for c in chunks) or t.blocks_m == 1
        fast = gemm_cycles(cfg, Workload("t", Pass.FORWARD, m, k, n, images))
        assert fast == simulate_chunks(cfg, chunks), (R, C, cfg.a_depth, m, k, n, images)
        checked += 1


def test_utilisation_and_errors() -> None:
    cfg = AcceleratorConfig(EngineConfig(4, 4, FMT, acc_depth=32), a_depth=512, b_depth=512)
    layers = [
        GemmLayer("conv1", "conv", 8, 20, 25, 576, backward_data=False),
        GemmLayer("ip1", "fc", 8, 500, 800),
    ]
    plan = plan_net(cfg, layers)
    for p in plan.passes:
        assert 0 < p.utilisation <= 1
        assert p.utilisation == pytest.approx(p.workload.macs / (16 * p.cycles))
        assert p.cycles >= p.engine_cycles / p.workload.groups / p.chunks  # sanity: positive
    assert plan.utilisation == pytest.approx(plan.macs / (16 * plan.cycles))
    assert plan.images_per_second == pytest.approx(8 / (plan.cycles / 50e6))
    small = AcceleratorConfig(EngineConfig(2, 2, FMT, dim_bits=8, acc_depth=0), 64, 64)
    with pytest.raises(
        InputError, match=r"layer ip1, forward pass: K = 800 exceeds.*dim_bits >= 10"
    ):
        plan_net(small, [GemmLayer("ip1", "fc", 8, 50, 800)])
    with pytest.raises(InputError, match=r"layer ip1, forward pass: a reduction of 200.*acc_depth"):
        plan_net(small, [GemmLayer("ip1", "fc", 8, 50, 200)])
