"""``barista compile``'s shared step, :func:`compile_device`, on the project's Caffe nets."""

from __future__ import annotations

import pytest

from barista.commands.compile import compile_device
from barista_base.errors import InputError
from barista_hw.config import DEFAULT_ACCELERATOR
from barista_hw.device.memory import DeviceConfig
from caffe_bridge.datasets import example_dir
from caffe_bridge.net import Net

# Wide command fields: LeNet at batch 512 has GEMMs of N = 294,912.
ACC = DEFAULT_ACCELERATOR.derive(rows=8, cols=8, depth=512, acc_depth=32, dim_bits=20)


def _net(model: str, name: str, image: tuple[int, ...], batch: int) -> Net:
    shapes = {"data": (batch, *image), "label": (batch,)}
    return Net(str(example_dir(model) / name), "TRAIN", data_shapes=shapes)


def test_lenet_link_carries_bytes_and_logits() -> None:
    dc = compile_device(_net("mnist", "lenet_train_test.prototxt", (1, 28, 28), 2), ACC)
    assert dc.net.batch == 2 and dc.compiled.program.meta["batch"] == 2
    assert dc.net.wire8 == {"data": 8}  # scale 1/256: the pixels cross as bytes
    slot = DeviceConfig.slot_bytes(ACC.engine.fmt.width)
    # The batch a byte a pixel, then the logits (2 x 10) out and their gradient in.
    assert dc.cost.counts.total.link_bytes == 2 * 784 + 2 * (2 * 10 * slot)
    assert dc.cost.images == 2


def test_working_set_beyond_the_dram_names_the_tensor() -> None:
    net = _net("mnist", "lenet_train_test.prototxt", (1, 28, 28), 512)  # about 70 MB
    with pytest.raises(InputError, match=r"tensor '.+' .* does not fit the DRAM: .* needs"):
        compile_device(net, ACC, target="ulx3s-85f")
