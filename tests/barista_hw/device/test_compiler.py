"""The device compiler: allocation, the program file, segments around host layers, the
end-of-iteration SCALE's dependencies, and the errors it names."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.allocation import (
    ALIGN_BYTES,
    ALIGN_SLOTS,
    TRANSIENT_ROLES,
    reserved_bytes,
    slots,
)
from barista_hw.device.compiler import compile_net
from barista_hw.device.emit import UNIT
from barista_hw.device.geometry import ConvGeometry, PoolGeometry
from barista_hw.device.isa import WIRE8, Op, Program
from barista_hw.device.layers import Conv, HostLayer, Pool, Relu
from barista_hw.device.machine import Machine
from barista_hw.device.memory import DeviceConfig, DramConfig
from barista_hw.device.traffic import program_counts
from barista_hw.device.vector import VecOp, encode_scalar, scalar_from_param

ACC = DEFAULT_ACCELERATOR.derive(rows=4, cols=3, depth=64, acc_depth=16)
CONFIG = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f")
BATCH = 2
IMAGE = (2, 6, 6)


def _net() -> list:
    """conv (padded, its input needs no gradient) -> in-place ReLU (fused) -> max pool ->
    ave pool -> ip."""
    geom = ConvGeometry(*IMAGE, (3, 3), (1, 1), (1, 1))
    conv = Conv("conv", "data", "c", 4, geom=geom, backward_data=False)
    relu = Relu("relu", "c", "c", conv.out_shape)
    pool = Pool("pool", "c", "p", PoolGeometry(4, 6, 6, (2, 2), (2, 2)))
    ave = Pool("ave", "p", "a", PoolGeometry(4, 3, 3, (2, 2), (1, 1)), method="ave")
    ip = Conv("ip", "a", "out", 3, inputs=math.prod(ave.out_shape))
    return [conv, relu, pool, ave, ip]


def _compile(layers: list | None = None, config: DeviceConfig = CONFIG, **kw):
    args = {"batch": BATCH, "inputs": {"data": IMAGE}, "output": "out", **kw}
    return compile_net(_net() if layers is None else layers, config, **args)


def _tensors(program: Program) -> dict[str, dict]:
    return {t["name"]: t for t in program.tensors}


def _spans(program: Program, key: str = "dram") -> list[tuple[int, int]]:
    """Each tensor's reservation, in slots (``dram``) or bytes (``addr``)."""
    size = slots if key == "dram" else reserved_bytes
    return sorted((t[key], t[key] + size(t)) for t in program.tensors)


def test_allocation_places_every_tensor_in_dram_without_overlap() -> None:
    compiled = _compile(share=False)
    tensors = _tensors(compiled.program)
    assert all(t["space"] == "DRAM" for t in tensors.values())
    for key, align, end in (
        ("dram", ALIGN_SLOTS, compiled.dram_slots),
        ("addr", ALIGN_BYTES, compiled.dram_bytes),
    ):
        spans = _spans(compiled.program, key)
        assert all(start % align == 0 for start, _ in spans)
        assert all(e <= nxt for (_, e), (nxt, _) in zip(spans, spans[1:], strict=False))
        assert spans[-1][1] == end
    # Shapes and widths: activations and gradients by the batch in the format's width;
    # masters, momentum and col2im accumulators in 32 bits; argmax masks as window offsets.
    want = {
        "data": ([BATCH, *IMAGE], 16, "input"),
        "c": ([BATCH, 4, 6, 6], 16, "activation"),
        "d:c": ([BATCH, 4, 6, 6], 16, "gradient"),
        "w:conv": ([4, 18], 16, "weight"),
        "m:conv": ([4, 18], 32, "master"),
        "v:conv": ([4, 18], 32, "momentum"),
        "g:conv": ([4, 18], 16, "weight_grad"),
        "wb:conv": ([4], 16, "weight"),
        "mask:pool": ([BATCH, 4, 3, 3], 2, "mask"),
        "a": ([BATCH, 4, 2, 2], 16, "activation"),
        "w:ip": ([3, 16], 16, "weight"),
        "out": ([BATCH, 3], 16, "activation"),
        "d:out": ([BATCH, 3], 16, "gradient"),
    }
    for name, (shape, bits, role) in want.items():
        t = tensors[name]
        assert (t["shape"], t["bits"], t["role"]) == (shape, bits, role), name
    assert "d:data" not in tensors  # conv's input needs no gradient
    assert not any(n.startswith("acc:") for n in tensors)  # ip's input is no image: no col2im
    assert reserved_bytes(tensors["m:conv"]) == 4 * 18 * 4  # packed 32-bit, burst-aligned
    assert reserved_bytes(tensors["c"]) == 2 * 4 * 6 * 6 * 2  # 16-bit, 576 B: aligned
    assert reserved_bytes(tensors["out"]) == 16  # 6 x 16 bits, up to a burst


def test_shared_allocation_keeps_persistent_tensors_apart_and_is_smaller() -> None:
    alone, shared = _compile(share=False), _compile()
    assert shared.dram_bytes < alone.dram_bytes and shared.dram_slots < alone.dram_slots
    for key, size in (("dram", slots), ("addr", reserved_bytes)):
        spans = _spans(shared.program, key)
        for t in shared.program.tensors:
            if t["role"] in TRANSIENT_ROLES:
                continue
            lo, hi = t[key], t[key] + size(t)
            others = list(spans)
            others.remove((lo, hi))
            assert all(hi <= a or b <= lo for a, b in others), t["name"]


def test_a_convolution_with_an_input_gradient_accumulates_in_32_bits() -> None:
    layers = _net()
    layers[-1] = Conv("conv2", "a", "out", 3, geom=ConvGeometry(4, 2, 2, (2, 2)))
    tensors = _tensors(_compile(layers).program)
    assert (tensors["acc:a"]["bits"], tensors["acc:a"]["shape"]) == (32, [BATCH, 4, 2, 2])
    assert tensors["d:a"]["bits"] == 16


def test_program_file_round_trips_and_disassembles() -> None:
    program = _compile().program
    data = program.to_bytes()
    back = Program.from_bytes(data)
    assert back == program
    assert back.to_bytes() == data
    listing = program.listing()
    assert back.listing() == listing
    lines = listing.split("# instructions\n")[1].splitlines()
    assert len(lines) == len(program.instructions)
    first = program.instructions[0]
    assert first.op is Op.HOST_IN and lines[0].split()[1] == "HOST_IN"
    assert any(" GEMM " in line for line in lines) and any("VEC.sgd" in line for line in lines)
    assert lines[-1].split()[1] == "SCALE"
    with pytest.raises(InputError, match="header announces"):
        Program.from_bytes(data[:-1])


def test_the_scale_waits_for_every_earlier_instruction() -> None:
    """The end-of-iteration SCALE reads every tensor's statistics: every earlier
    instruction must be ordered before it, by its waits (through SYNCs) or by its unit's
    program order, or the exponents could move before the last writes land."""
    for layers in (_net(), _segmented()):
        instructions = _compile(layers).program.instructions
        scale = len(instructions) - 1
        assert instructions[scale].op is Op.SCALE
        before = _ordered_before(instructions, scale)
        missing = [instructions[i].text() for i in range(scale) if i not in before]
        assert not missing, missing[:3]


def _ordered_before(instructions: list, index: int) -> set[int]:
    """The instructions that finish before instruction ``index`` starts: what it waits
    for, what runs earlier on its unit (units run in program order), transitively."""
    by_token = {inst.token: i for i, inst in enumerate(instructions)}
    previous: dict[int, int] = {}  # instruction -> the one before it on its unit
    last: dict[str, int] = {}
    for i, inst in enumerate(instructions):
        unit = UNIT[inst.op]
        if unit in last:
            previous[i] = last[unit]
        last[unit] = i
    seen: set[int] = set()
    todo = [index]
    while todo:
        i = todo.pop()
        edges = [by_token[w] for w in instructions[i].waits]
        edges += [previous[i]] if i in previous else []
        for j in edges:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def _segmented() -> list:
    """ip1 -> a host layer (Dropout) -> relu -> ip2: two device segments."""
    ip1 = Conv("ip1", "data", "h", 5, inputs=math.prod(IMAGE))
    drop = HostLayer("drop", "Dropout", ("h",), ("hd",), ((5,),))
    relu = Relu("relu", "hd", "r", (5,))
    ip2 = Conv("ip2", "r", "out", 3, inputs=5)
    return [ip1, drop, relu, ip2]


class _Host:
    """Sends fixed integers, keeps what the device sends, and runs the Dropout as identity."""

    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.got: dict[str, np.ndarray] = {}
        self.sent = {
            "data": rng.integers(-500, 500, (BATCH, *IMAGE)),
            "d:out": rng.integers(-500, 500, (BATCH, 3)),
        }

    def send(self, name: str) -> tuple[np.ndarray, int]:
        if name in self.sent:
            return self.sent[name], 10
        source = {"hd": "h", "d:h": "d:hd"}[name]
        return self.got[source], 10

    def receive(self, name: str, q: np.ndarray, frac: int) -> None:
        self.got[name] = q


def test_a_host_layer_splits_the_net_into_segments() -> None:
    compiled = _compile(_segmented())
    assert compiled.segments == [["ip1"], ["relu", "ip2"]]
    assert compiled.host_layers == ["drop (Dropout)"]
    assert "run by the host between segments: drop (Dropout)" in compiled.summary()
    assert "device segment 1: relu, ip2" in compiled.summary()
    program = compiled.program
    names = [t["name"] for t in program.tensors]
    link = [
        (i.op.name, names[i["tensor"]])
        for i in program.instructions
        if i.op in (Op.HOST_IN, Op.HOST_OUT)
    ]
    # The boundary's tensors cross the link both ways, forward and backward.
    assert link == [
        ("HOST_IN", "data"),
        ("HOST_OUT", "h"),
        ("HOST_IN", "hd"),
        ("HOST_OUT", "out"),
        ("HOST_IN", "d:out"),
        ("HOST_OUT", "d:hd"),
        ("HOST_IN", "d:h"),
    ]
    # Counted in the traffic model, the same as while running (with the host layer).
    modelled = program_counts(program, CONFIG)
    assert modelled.total.link_bytes == 2 * (
        BATCH * math.prod(IMAGE) + 4 * BATCH * 5 + 2 * BATCH * 3
    )
    m = Machine(program, CONFIG)
    scalars = {s: 0.01 for s in program.scalars} | {"momentum": 0.9}
    ran = m.run(_Host(), scalars, iteration=0)
    assert ran.total == modelled.total and ran.sections == modelled.sections


def test_wire8_inputs_cross_the_link_a_byte_a_value() -> None:
    plain = _compile().program
    wired = _compile(wire8=["data"]).program
    (a,) = [i for i in plain.instructions if i.op is Op.HOST_IN and i["tensor"] == 0]
    (b,) = [i for i in wired.instructions if i.op is Op.HOST_IN and i["tensor"] == 0]
    assert not a.sub & WIRE8 and b.sub & WIRE8
    assert (a["bytes"], b["bytes"]) == (2 * BATCH * math.prod(IMAGE), BATCH * math.prod(IMAGE))


def test_a_preloaded_input_is_fetched_from_its_dataset_in_dram() -> None:
    """With ``preload`` the batch comes from the dataset (5 records, a byte a value) at the
    record the host names: the FETCH wraps around its end; no image crosses the link, and
    the counts taken running equal the traffic model's."""
    compiled = _compile(wire8=["data"], preload={"data": 5})
    program = compiled.program
    (fetch,) = [i for i in program.instructions if i.op is Op.FETCH]
    t = _tensors(program)
    assert (t["set:data"]["shape"], t["set:data"]["bits"]) == ([5, *IMAGE], 8)
    assert program.scalars[fetch["scalar"]] == "record:data" and fetch["records"] == 5
    assert not [i for i in program.instructions if i.op is Op.HOST_IN and i["tensor"] == 0]
    assert Program.from_bytes(program.to_bytes()).instructions == program.instructions
    m = Machine(program, CONFIG)
    dataset = np.arange(5 * math.prod(IMAGE)).reshape(5, *IMAGE) % 256
    m.write("set:data", dataset, 8)
    scalars = {s: 0.01 for s in program.scalars} | {"momentum": 0.9, "record:data": 4}
    ran = m.run(_Host(), scalars, iteration=0)
    modelled = program_counts(program, CONFIG)
    assert ran.total == modelled.total and ran.sections == modelled.sections
    assert modelled.total.link_bytes == 2 * 2 * BATCH * 3  # the logits and their gradient
    np.testing.assert_array_equal(m.tensor("data"), dataset[[4, 0]])
    assert m.scales.stored("data") == 8


@pytest.mark.parametrize("c_depth", [1024, 16])
def test_every_result_block_fits_half_the_c_scratchpad(c_depth: int) -> None:
    """The schedule's blocks are cut to C's halves (``c_depth // 2`` words of the engine's
    ``cols`` lanes, one a row per column tile); one too small for a tile is an error."""
    config = dataclasses.replace(
        CONFIG, scratchpads=dataclasses.replace(CONFIG.scratchpads, c_depth=c_depth)
    )
    e = config.accelerator.engine
    program = _compile(config=config).program
    for inst in (i for i in program.instructions if i.op is Op.GEMM):
        words = -(-inst["m"] // e.rows) * e.rows * -(-inst["n"] // e.cols)
        assert words <= c_depth // 2, inst.text()
    tiny = dataclasses.replace(config.scratchpads, c_depth=2 * e.rows - 2)
    with pytest.raises(InputError, match=r"layer conv forward: a result block of one tile"):
        _compile(config=dataclasses.replace(config, scratchpads=tiny))


def test_a_leaky_relu_sends_its_slope_encoded() -> None:
    """Fused into the GEMM's epilogue and on its own, forward and backward, a ReLU's VEC
    instructions carry the slope as the device multiplies with it."""
    net = _net()
    conv, relu, pool, ave, ip = net
    leaky = [conv, dataclasses.replace(relu, negative_slope=0.1), pool, ave, ip]
    unfused = [*leaky[:1], dataclasses.replace(leaky[1], top="r"), *leaky[2:]]
    unfused[2] = dataclasses.replace(pool, bottom="r")
    mantissa, exp = encode_scalar(0.1)
    want = math.ldexp(mantissa, -exp)
    for layers in (leaky, unfused):
        program = _compile(layers).program
        relus = [
            i
            for i in program.instructions
            if i.op is Op.VEC and i.sub in (VecOp.RELU, VecOp.RELU_BACK)
        ]
        assert relus and all(scalar_from_param(i["param"]) == want for i in relus)


def test_only_byte_images_can_be_preloaded() -> None:
    with pytest.raises(InputError, match="input 'data': only a batch of 8-bit images"):
        _compile(preload={"data": 5})


def test_a_working_set_larger_than_the_dram_names_the_tensor_and_the_bytes() -> None:
    big = _compile(batch=8)
    need, tensors = big.dram_bytes, big.program.tensors
    size = 4096  # one row of each of the 4 banks: smaller than the working set
    assert need > size
    beyond = [t for t in tensors if t["addr"] + reserved_bytes(t) > size]
    first = max(beyond, key=reserved_bytes)["name"]
    small = DeviceConfig.for_accelerator(ACC, target="ulx3s-85f", dram=DramConfig(size_bytes=size))
    message = f"tensor {first!r} .* does not fit the DRAM: the working set needs {need:,} bytes"
    with pytest.raises(InputError, match=re.escape(message).replace(r"\.\*", ".*")) as e:
        _compile(config=small, batch=8)
    assert f"the device has {size:,}" in str(e.value)


def test_bad_nets_are_named() -> None:
    with pytest.raises(InputError, match="batch 0 must be at least 1"):
        _compile(batch=0)
    layers = _net()
    layers[2] = Pool("pool", "nowhere", "p", PoolGeometry(4, 6, 6, (2, 2), (2, 2)))
    with pytest.raises(InputError, match="layer pool reads blob 'nowhere'"):
        _compile(layers)
    host = _segmented()
    host[1] = HostLayer("drop", "Dropout", ("nowhere",), ("hd",), ((5,),))
    with pytest.raises(InputError, match="layer drop reads blob 'nowhere'"):
        _compile(host)
    with pytest.raises(InputError, match="output blob 'logits'"):
        _compile(output="logits")
    fanout = [*_segmented()[:1], Relu("r1", "h", "x", (5,)), Relu("r2", "h", "y", (5,))]
    with pytest.raises(InputError, match="blob 'h' is read by layers 'r1' and 'r2'"):
        _compile(fanout, output="y")
