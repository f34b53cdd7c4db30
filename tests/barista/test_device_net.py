"""``device_net``: a Caffe TRAIN net as the device compiler sees it (device layers, host
layers between segments, the byte-a-pixel input rule) and the nets it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from barista.backends.plan import gemm_layers
from barista.device_net import compile_device, describe, device_design, device_net, device_rank
from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.compiler import compile_net
from barista_hw.device.layers import Conv, HostLayer, Param, Pool, Relu
from barista_hw.device.memory import IM2COL_STAGE, DeviceConfig, packed_bytes
from barista_hw.dse import explore, shortlist
from barista_hw.targets import get_target
from caffe_bridge.datasets import example_dir
from caffe_bridge.net import Net

REPO = Path(__file__).resolve().parents[2]
LENET = REPO / "examples" / "mnist" / "lenet_train_test.prototxt"

DATA = """
name: "Small"
layer {{
  name: "data" type: "Data" top: "data" top: "label"
  transform_param {{ {transform} }}
  data_param {{ source: "{source}" batch_size: 4 backend: LMDB }}
}}
"""
BODY = """
layer {{
  name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 6 weight_filler {{ type: "xavier" }} }}
}}
{middle}
layer {{
  name: "ip2" type: "InnerProduct" bottom: "{ip2_bottom}" top: "ip2"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }}
}}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""
SHAPES = {"data": (4, 1, 5, 5), "label": (4,)}


def _net(
    d: Path,
    *,
    middle: str = "",
    ip2_bottom: str = "ip1",
    transform: str = "scale: 0.00390625",
    source: str = "none",
    shapes: dict | None = SHAPES,
    extra: str = "",
) -> Net:
    text = DATA.format(transform=transform, source=source)
    text += BODY.format(middle=middle, ip2_bottom=ip2_bottom) + extra
    path = d / "net.prototxt"
    path.write_text(text)
    return Net(path, "TRAIN", **({"data_shapes": shapes} if shapes else {}))


def test_lenet() -> None:
    net = Net(LENET, "TRAIN", data_shapes={"data": (4, 1, 28, 28), "label": (4,)})
    dn = device_net(net)
    names = [layer.name for layer in dn.layers]
    assert names == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2"]
    kinds = [type(layer) for layer in dn.layers]
    assert kinds == [Conv, Pool, Conv, Pool, Conv, Relu, Conv]
    assert (dn.first, dn.loss) == (net.layer_names.index("conv1"), net.layer_names.index("loss"))
    assert dn.inputs == {"data": (1, 28, 28)} and dn.output == "ip2" and dn.batch == 4
    conv1, conv2, ip1 = dn.layers[0], dn.layers[2], dn.layers[4]
    assert conv1.geom is not None and conv1.geom.kernel == (5, 5) and conv1.num_output == 20
    assert not conv1.backward_data and conv2.backward_data  # the data needs no gradient
    assert ip1.geom is None and ip1.inputs == 50 * 4 * 4 and ip1.num_output == 500
    assert conv1.weight == Param(1.0, 1.0) and conv1.bias_param == Param(2.0, 1.0)
    assert dn.layers[1].method == "max" and dn.layers[1].geom.stride == (2, 2)
    assert dn.params == {"conv1": [0, 1], "conv2": [2, 3], "ip1": [4, 5], "ip2": [6, 7]}
    assert dn.host_layers == {}
    assert dn.wire8 == {"data": 8}  # uint8 images scaled by 2**-8, no mean
    text = describe(dn)
    assert "on the device: conv1, pool1, conv2, pool2, ip1, relu1, ip2" in text
    assert "between device segments" not in text


def test_a_layer_the_device_cannot_run_becomes_a_host_layer(tmp_path) -> None:
    middle = 'layer { name: "tanh" type: "TanH" bottom: "ip1" top: "t" }'
    net = _net(tmp_path, middle=middle, ip2_bottom="t")
    dn = device_net(net)
    tanh = dn.layers[1]
    assert isinstance(tanh, HostLayer)
    assert (tanh.type, tanh.bottoms, tanh.tops, tanh.top_shapes) == (
        "TanH",
        ("ip1",),
        ("t",),
        ((6,),),
    )
    index = net.layer_names.index("tanh")
    assert dn.host_layers == {"t": index, "d:ip1": index}
    assert "on the host between device segments: tanh (TanH)" in describe(dn)
    config = DeviceConfig.for_accelerator(DEFAULT_ACCELERATOR, target="ulx3s-85f")
    compiled = compile_net(
        dn.layers, config, batch=dn.batch, inputs=dn.inputs, output=dn.output, wire8=dn.wire8
    )
    assert compiled.segments == [["ip1"], ["ip2"]]
    assert compiled.host_layers == ["tanh (TanH)"]


@pytest.mark.parametrize(
    ("transform", "frac"),
    [
        ("scale: 0.00390625", 8),
        ("", 0),
        ("scale: 0.25", 2),
        ("scale: 0.01", None),  # not a power of two
        ("scale: 2", None),  # a power of two above one: no fraction bits
        ("scale: 0.00390625 mean_value: 128", 8),  # bytes; the device subtracts the mean
        ("mean_value: 128 mirror: true", 0),  # a mean per channel stays put under a flip
        ('mean_file: "m.binaryproto" crop_size: 4', None),  # the mean image would move
    ],
)
def test_wire8_rule(tmp_path, transform: str, frac: int | None) -> None:
    dn = device_net(_net(tmp_path, transform=transform))
    assert dn.wire8 == ({} if frac is None else {"data": frac})
    with_mean = frac is not None and "mean" in transform
    assert dn.means == ({"data": None} if with_mean else {})  # no data: the mean is unknown


def test_wire8_follows_the_records_of_a_real_data_layer(tmp_path, datum_lmdb) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 1, 5, 5), dtype=np.uint8)
    datum_lmdb(tmp_path / "bytes", images)
    datum_lmdb(tmp_path / "floats", images.astype(np.float32))
    wired = device_net(_net(tmp_path, source=str(tmp_path / "bytes"), shapes=None))
    floats = device_net(_net(tmp_path, source=str(tmp_path / "floats"), shapes=None))
    assert wired.wire8 == {"data": 8} and floats.wire8 == {}
    mean = "scale: 0.00390625 mean_value: 128"
    centred = device_net(
        _net(tmp_path, source=str(tmp_path / "bytes"), shapes=None, transform=mean)
    )
    assert centred.wire8 == {"data": 8}
    np.testing.assert_array_equal(centred.means["data"], np.full((1, 5, 5), 128.0))


def test_a_host_layer_with_parameters_to_learn_is_refused(tmp_path) -> None:
    middle = 'layer { name: "prelu" type: "PReLU" bottom: "ip1" top: "p" }'
    with pytest.raises(InputError, match=r"layer prelu \(PReLU\) has parameters to learn"):
        device_net(_net(tmp_path, middle=middle, ip2_bottom="p"))
    # Frozen (lr_mult 0), the host runs it and nothing needs training.
    frozen = 'layer { name: "prelu" type: "PReLU" bottom: "ip1" top: "p" param { lr_mult: 0 } }'
    dn = device_net(_net(tmp_path, middle=frozen, ip2_bottom="p"))
    assert isinstance(dn.layers[1], HostLayer) and dn.params["prelu"] == [2]


def test_shared_parameters_are_refused(tmp_path) -> None:
    twin = """
layer {
  name: "ip1b" type: "InnerProduct" bottom: "ip1" top: "ip1b"
  param { name: "w2" } param { name: "b2" }
  inner_product_param { num_output: 6 }
}
layer {
  name: "ip1c" type: "InnerProduct" bottom: "ip1b" top: "ip1c"
  param { name: "w2" } param { name: "b2" }
  inner_product_param { num_output: 6 }
}"""
    with pytest.raises(InputError, match="layer ip1c shares a parameter with layer ip1b"):
        device_net(_net(tmp_path, middle=twin, ip2_bottom="ip1c"))


def test_nets_the_device_cannot_take_are_named(tmp_path) -> None:
    two = 'layer { name: "loss2" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "l2" }'
    with pytest.raises(InputError, match="exactly one SoftmaxWithLoss layer, the net has 2"):
        device_net(_net(tmp_path, extra=two))
    transposed = """
layer {
  name: "ipt" type: "InnerProduct" bottom: "ip1" top: "ipt"
  inner_product_param { num_output: 6 transpose: true }
}"""
    with pytest.raises(InputError, match="layer ipt: the device runs InnerProduct with axis 1"):
        device_net(_net(tmp_path, middle=transposed, ip2_bottom="ipt"))
    path = tmp_path / "empty.prototxt"
    path.write_text(
        DATA.format(transform="", source="none")
        + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" '
        'top: "loss" }'
    )
    with pytest.raises(InputError, match="no layer between the data and the loss"):
        device_net(Net(path, "TRAIN", data_shapes={"data": (4, 3), "label": (4,)}))


# Wide command fields: LeNet at batch 512 has GEMMs of N = 294,912.
WIDE = DEFAULT_ACCELERATOR.derive(rows=8, cols=8, depth=512, acc_depth=32, dim_bits=20)


def _example(model: str, name: str, image: tuple[int, ...], batch: int) -> Net:
    shapes = {"data": (batch, *image), "label": (batch,)}
    return Net(str(example_dir(model) / name), "TRAIN", data_shapes=shapes)


def test_compile_device_lenet_link_carries_bytes_and_logits() -> None:
    dc = compile_device(_example("mnist", "lenet_train_test.prototxt", (1, 28, 28), 2), WIDE)
    assert dc.net.batch == 2 and dc.compiled.program.meta["batch"] == 2
    assert dc.net.wire8 == {"data": 8}  # scale 1/256: the pixels cross as bytes
    logits = packed_bytes(2 * 10, WIDE.engine.fmt.width)
    # The batch a byte a pixel, then the logits (2 x 10) out and their gradient in, packed.
    assert dc.cost.counts.total.link_bytes == 2 * 784 + 2 * logits
    assert dc.cost.images == 2


def test_compile_device_working_set_beyond_the_dram_names_the_tensor() -> None:
    net = _example("mnist", "lenet_train_test.prototxt", (1, 28, 28), 1024)
    with pytest.raises(InputError, match=r"tensor '.+' .* does not fit the DRAM: .* needs"):
        compile_device(net, WIDE, target="ulx3s-85f")


def test_the_device_design_is_the_device_models_winner(tmp_path, monkeypatch) -> None:
    """The design the device trains on is the shortlisted one the device's time model puts
    first, not the engine's fastest (here they disagree: the link carries the narrower
    format's bytes faster); cached; ranked for the batch the net trains. (The Verilog, which
    takes a minute to elaborate and does not choose the design, is a stand-in.)"""
    import barista_hw.generate

    monkeypatch.setenv("BARISTA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(barista_hw.generate, "to_verilog", lambda c, top: f"module {top};\n")
    net = _net(tmp_path)
    files, made = device_design(net, target="ulx3s-85f")
    assert made and files.config.target == "ulx3s-85f" and files.config.name == "Small"
    budget = get_target("ulx3s-85f").budget
    engine = explore(gemm_layers(net), budget, name="Small", im2col_stage=IM2COL_STAGE)
    rank = device_rank(net, "ulx3s-85f")
    short = shortlist(engine.candidates)
    seconds = {c.config: rank(c)[0] for c in [engine.best, *short]}
    assert seconds[files.config] == min(seconds[c.config] for c in short)
    assert files.config != engine.best.config
    assert seconds[files.config] < seconds[engine.best.config] * 0.9
    assert compile_device(net, files.config).cost.timing.seconds == seconds[files.config]
    assert device_design(net, target="ulx3s-85f") == (files, False)
    bigger, made = device_design(_net(tmp_path, shapes={"data": (16, 1, 5, 5), "label": (16,)}))
    assert made and bigger.path != files.path
