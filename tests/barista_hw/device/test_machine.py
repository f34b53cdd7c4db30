"""The device model: its GEMMs bit-identical to the engine model, its counts equal to the
traffic model's, and one training iteration of a small net end to end."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pytest

from barista_hw import model
from barista_hw.command import GemmCommand
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device import gemm_lowering
from barista_hw.device.compiler import compile_net
from barista_hw.device.geometry import ConvGeometry, PoolGeometry
from barista_hw.device.isa import ON_C, Op, View
from barista_hw.device.layers import Conv, Pool, Relu
from barista_hw.device.machine import Machine, iteration_seed
from barista_hw.device.memory import DeviceConfig
from barista_hw.device.traffic import program_counts, tile_index
from barista_hw.device.vector import Rounder, VecOp, bias_add, convert, relu
from barista_hw.numfmt import Rounding
from barista_hw.schedule import ScheduleOptions
from caffe_bridge.im2col import col2im, im2col

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=64, acc_depth=16)


class Host:
    """Sends fixed random integers; keeps what the device sends back."""

    def __init__(self, tensors: dict[str, tuple[np.ndarray, int]]) -> None:
        self.tensors = tensors
        self.got: dict[str, tuple[np.ndarray, int]] = {}

    def send(self, name: str) -> tuple[np.ndarray, int]:
        return self.tensors[name]

    def receive(self, name: str, q: np.ndarray, frac: int) -> None:
        self.got[name] = (q, frac)


def _net(geom: ConvGeometry) -> list:
    """conv (2 groups) -> max pool -> ReLU -> conv2 (its input's gradient by col2im, its
    bias and an in-place ReLU in its GEMM's epilogue) -> ip."""
    conv = Conv("conv", "data", "c", 6, geom=geom, bias=False, backward_data=False)
    pool = Pool("pool", "c", "p", PoolGeometry(6, geom.out_height, geom.out_width, (2, 2), (2, 2)))
    relu = Relu("relu", "p", "r", pool.out_shape)
    g2 = ConvGeometry(*pool.out_shape, (2, 2), (1, 1), (1, 1))
    conv2 = Conv("conv2", "r", "c2", 4, geom=g2)
    relu2 = Relu("relu2", "c2", "c2", (4, g2.out_height, g2.out_width))  # fused into conv2
    ip = Conv("ip", "c2", "out", 5, inputs=4 * g2.pixels)
    return [conv, pool, relu, conv2, relu2, ip]


def _setup(rounding: Rounding, seed: int = 0, *, share: bool = True, **units: object):
    """The net, its program for a device with the scratchpad settings ``units``, and a
    machine with random weights and host data."""
    rng = np.random.default_rng(seed)
    geom = ConvGeometry(4, 9, 8, (3, 2), (1, 2), (1, 0), (1, 1), group=2)
    layers = _net(geom)
    config = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f", **units)
    batch = 3
    compiled = compile_net(
        layers,
        config,
        batch=batch,
        inputs={"data": (4, 9, 8)},
        output="out",
        rounding=rounding,
        share=share,
    )
    m = Machine(compiled.program, config)
    fmt = ACC.engine.fmt
    for name in ("conv", "conv2", "ip"):
        shape = m.tensor(f"w:{name}").shape
        w = rng.integers(fmt.min_int // 4, fmt.max_int // 4, shape)
        m.write(f"w:{name}", w, 14)
        m.write(f"m:{name}", w << 16, 30)
        m.write(f"v:{name}", np.zeros(shape, dtype=np.int64), 30)
    for name in ("conv2", "ip"):
        n = m.tensor(f"wb:{name}").shape
        m.write(f"wb:{name}", rng.integers(-99, 99, n), 10)
        m.write(f"mb:{name}", np.zeros(n, dtype=np.int64), 30)
        m.write(f"vb:{name}", np.zeros(n, dtype=np.int64), 30)
    x = rng.integers(fmt.min_int, fmt.max_int, (batch, 4, 9, 8))
    dlogits = rng.integers(-2000, 2000, (batch, 5))
    host = Host({"data": (x, 12), "d:out": (dlogits, 15)})
    return layers, config, compiled, m, host, x, geom


def _gemm(program, a, b, shift, rounding, layer, kind, images=1):
    """The engine model's result for the same operands and commands: the pass's seed and
    the blocks the compiler chose (reduction chunk limit and block shape: its descriptor
    says which), run in the default order without operand reuse (neither changes a bit)."""
    seed = iteration_seed(zlib.crc32(f"{layer}/{kind}".encode()), 3)
    (d,) = [d for d in program.descriptors if d.get("layer") == layer and d["gemm"] == kind]
    options = ScheduleOptions(d["limit"], d["tiles_m"], d["tiles_n"])
    cmd = GemmCommand(shift, rounding, seed, images)
    return model.gemm_on_accelerator(a, b, ACC, cmd, options)


def _folded(t: np.ndarray) -> np.ndarray:
    """(B, C, ...) -> C x (B * pixels)."""
    return t.reshape(t.shape[0], t.shape[1], -1).transpose(1, 0, 2).reshape(t.shape[1], -1)


@pytest.mark.parametrize(
    ("rounding", "forced"),
    [
        (Rounding.NEAREST_EVEN, {}),
        (Rounding.STOCHASTIC, {}),
        # the other loop order, one-tile blocks, short chunks: other loads, same bits
        (Rounding.STOCHASTIC, {"stationary": "b", "tiles_m": 1, "limit": 8}),
        (Rounding.STOCHASTIC, {"stationary": "a", "tiles_n": 1, "limit": 8}),
    ],
)
def test_gemms_are_the_engine_models(rounding: Rounding, forced: dict, monkeypatch) -> None:
    """Every GEMM the program runs returns the engine model's bits for the same operands
    and command: forward by group, weight gradients of conv (im2col transposed) and ip;
    whatever schedule the compiler takes (``forced`` overrides its choice)."""
    choose = gemm_lowering.schedule_options
    monkeypatch.setattr(gemm_lowering, "schedule_options", lambda *a: replace(choose(*a), **forced))
    layers, config, compiled, m, host, x, geom = _setup(rounding, share=False)  # reads transients
    w, fw = m.tensor("w:conv").copy(), m.scales.stored("w:conv")  # before the update
    m.run(host, {"momentum": 0.9, **_rates(compiled)}, iteration=3)
    f = m.scales.stored
    cols = im2col(x, geom.kernel, geom.pad, geom.stride, geom.dilation)  # (B, C*kh*kw, P)
    y, dy = _folded(m.tensor("c")), _folded(m.tensor("d:c"))
    k = geom.k
    for g in range(2):
        xg = cols[:, g * k : (g + 1) * k, :].transpose(1, 0, 2).reshape(k, -1)
        rows = slice(g * 3, g * 3 + 3)
        fwd = _gemm(
            compiled.program, w[rows], xg, fw + f("data") - f("c"), rounding, "conv", "forward"
        )
        np.testing.assert_array_equal(y[rows], fwd)
        shift = f("d:c") + f("data") - f("g:conv")
        grad = _gemm(
            compiled.program, dy[rows], xg.T, shift, rounding, "conv", "weight_grad", images=3
        )
        np.testing.assert_array_equal(m.tensor("g:conv")[rows], grad)
    p = m.tensor("c2").reshape(3, -1)
    shift = f("d:out") + f("c2") - f("g:ip")
    grad = _gemm(
        compiled.program, m.tensor("d:out").T, p, shift, rounding, "ip", "weight_grad", images=3
    )
    np.testing.assert_array_equal(m.tensor("g:ip"), grad)


def test_backward_data_is_col2im_of_the_engine_model() -> None:
    """conv2's input gradient: the engine model's W^T dY, col2im-summed, converted."""
    layers, config, compiled, m, host, x, geom = _setup(Rounding.NEAREST_EVEN, share=False)
    w, fw = m.tensor("w:conv2").copy(), m.scales.stored("w:conv2")
    m.run(host, {"momentum": 0.9, **_rates(compiled)}, iteration=3)
    f = m.scales.stored
    g2 = layers[3].geom
    dy = _folded(m.tensor("d:c2"))
    dcol = _gemm(
        compiled.program,
        w.T,
        dy,
        fw + f("d:c2") - f("acc:r"),
        Rounding.NEAREST_EVEN,
        "conv2",
        "backward_data",
    )
    dcol = dcol.reshape(-1, 3, g2.pixels).transpose(1, 0, 2).astype(np.int64)
    acc = col2im(dcol, g2_shape(g2), g2.kernel, g2.pad, g2.stride, g2.dilation)
    want, _ = convert(acc, f("acc:r"), f("d:r"), 16, Rounder(Rounding.NEAREST_EVEN))
    np.testing.assert_array_equal(m.tensor("d:r"), want)
    assert not m.tensor("acc:r").any()  # read and cleared


@pytest.mark.parametrize("epilogues", [True, False])
def test_epilogue_adds_the_bias_and_applies_the_relu_before_the_store(epilogues: bool) -> None:
    """conv2's bias and in-place ReLU on its requantised GEMM result: in C before the STORE
    (an epilogue, ``isa.ON_C``), or without epilogues as VECs over the stored result in
    DRAM, which gives the same bits."""
    layers, config, compiled, m, host, x, geom = _setup(
        Rounding.NEAREST_EVEN, share=False, epilogues=epilogues
    )
    w, fw = m.tensor("w:conv2").copy(), m.scales.stored("w:conv2")
    bias, fb = m.tensor("wb:conv2").copy(), m.scales.stored("wb:conv2")
    m.run(host, {"momentum": 0.9, **_rates(compiled)}, iteration=3)
    f = m.scales.stored
    g2 = layers[3].geom
    r = m.tensor("r")
    cols = im2col(r, g2.kernel, g2.pad, g2.stride, g2.dilation)
    xg = cols.transpose(1, 0, 2).reshape(g2.k, -1)
    y = _gemm(
        compiled.program, w, xg, fw + f("r") - f("c2"), Rounding.NEAREST_EVEN, "conv2", "forward"
    )
    y = y.astype(np.int64)[None]
    nearest = Rounder(Rounding.NEAREST_EVEN)
    y, _ = bias_add(y, f("c2"), bias, fb, 16, nearest)
    y, _ = relu(y, 16)
    np.testing.assert_array_equal(_folded(m.tensor("c2")), y[0])
    program = compiled.program
    c2 = program.tensors.index(next(t for t in program.tensors if t["name"] == "c2"))
    relus = [i for i in program.instructions if i.op is Op.VEC and i.sub == VecOp.RELU]
    on_c2 = [i for i in relus if i["dst"] == c2]
    if epilogues:
        assert on_c2 and all(i["desc"] == ON_C for i in on_c2)  # no stream over c2 of its own
    else:
        assert not any(i.op is Op.VEC and i["desc"] == ON_C for i in program.instructions)
        adds = [i for i in program.instructions if i.op is Op.VEC and i.sub == VecOp.BIAS_ADD]
        for ops in (on_c2, [i for i in adds if i["dst"] == c2]):
            assert sum(i["images"] for i in ops) == 3  # the whole batch, from memory
            assert all(i["src"] == i["dst"] == c2 for i in ops)


def g2_shape(g: ConvGeometry) -> tuple[int, int, int]:
    return (g.channels, g.height, g.width)


def _rates(compiled) -> dict[str, float]:
    return {s: (0.01 if s.startswith("lr") else 0.0005) for s in compiled.program.scalars}


def test_counts_taken_running_equal_the_traffic_model() -> None:
    layers, config, compiled, m, host, x, geom = _setup(Rounding.NEAREST_EVEN)
    ran = m.run(host, {"momentum": 0.9, **_rates(compiled)}, iteration=0)
    modelled = program_counts(compiled.program, config)
    assert ran.total == modelled.total
    assert ran.sections == modelled.sections
    assert modelled.total.link_bytes == 2 * (3 * 4 * 9 * 8) + 2 * 2 * (3 * 5)


def test_col2im_stores_cut_to_fit_the_accumulator_change_no_bit() -> None:
    """With a col2im accumulator of 16 elements, conv2's col2im STOREs are cut into parts
    whose footprints fit it (parts of one block in C); two iterations compute every bit
    as with whole blocks (no accumulator saturates here)."""
    runs = []
    for depth in (1024, 16):
        _, config, compiled, m, host, _, _ = _setup(
            Rounding.STOCHASTIC, seed=5, share=False, col2im_elements=depth
        )
        for it in range(2):
            m.run(host, {"momentum": 0.9, **_rates(compiled)}, iteration=it)
        stores = [
            i for i in compiled.program.instructions if i.op is Op.STORE and i.sub == View.IM2COL
        ]
        for inst in stores:
            index = tile_index(inst, compiled.program)
            valid = index[index >= 0]
            assert valid.max() - valid.min() < depth, inst.text()
        tensors = {t["name"]: m.tensor(t["name"]).copy() for t in compiled.program.tensors}
        runs.append((len(stores), tensors, host.got["out"]))
    (whole, a, out_a), (cut, b, out_b) = runs
    assert cut > 2 * whole
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    np.testing.assert_array_equal(out_a[0], out_b[0])


def test_bias_gradients_cut_into_rows_of_channels_change_no_bit() -> None:
    """With rings of 8 elements conv2's BIAS_GRAD runs as rows of ``vector_lanes`` (3)
    channels (``channels`` descriptors); two iterations (nearest-even: the VECs' seeds
    move) compute every bit as with one BIAS_GRAD."""
    runs = []
    for ring in (None, 8):
        _, config, compiled, m, host, _, _ = _setup(
            Rounding.NEAREST_EVEN, seed=6, share=False, vec_ring=ring
        )
        for it in range(2):
            m.run(host, {"momentum": 0.9, **_rates(compiled)}, iteration=it)
        grads = [
            compiled.program.descriptors[i["desc"]] if i["desc"] != 0xFF else None
            for i in compiled.program.instructions
            if i.op is Op.VEC and i.sub == VecOp.BIAS_GRAD
        ]
        tensors = {t["name"]: m.tensor(t["name"]).copy() for t in compiled.program.tensors}
        scales = {t["name"]: m.scales.stored(t["name"]) for t in compiled.program.tensors}
        runs.append((grads, tensors, scales))
    (whole, a, fa), (rows, b, fb) = runs
    assert whole == [None, None]  # ip, conv2 (backward order)
    assert rows == [
        None,
        {"kind": "channels", "c0": 0, "channels": 3},
        {"kind": "channels", "c0": 3, "channels": 1},
    ]
    assert fa == fb
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_tensors_sharing_memory_change_no_bit() -> None:
    """Two iterations with transients sharing DRAM compute every bit as with each tensor in
    memory of its own; the shared program is smaller."""
    runs = []
    for share in (True, False):
        _, _, compiled, m, host, _, _ = _setup(Rounding.STOCHASTIC, seed=3, share=share)
        for it in range(2):
            m.run(host, {"momentum": 0.9, **_rates(compiled)}, iteration=it)
        persistent = {
            t["name"]: m.tensor(t["name"]).copy()
            for t in compiled.program.tensors
            if t["role"] in ("weight", "master", "momentum", "accumulator")
        }
        scales = {t["name"]: m.scales.stored(t["name"]) for t in compiled.program.tensors}
        runs.append((compiled, persistent, scales, host.got["out"]))
    (shared, *a), (alone, *b) = runs
    assert shared.dram_bytes < alone.dram_bytes
    assert a[0].keys() == b[0].keys() and a[1] == b[1]
    for name in a[0]:
        np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)
    np.testing.assert_array_equal(a[2][0], b[2][0])
    assert a[2][1] == b[2][1]
