"""ImageData: Caffe's image-list data layer.

Cases follow BVLC/caffe's test_image_data_layer.cpp (TestRead, TestResize, TestReshape,
TestShuffle, TestSpace) on images this test writes with Pillow, plus the options it
does not test (is_color, root_folder, rand_skip, transform_param), the errors, and a
solver resume that reads exactly the images the uninterrupted run reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from barista_base.errors import InputError
from caffe_bridge.blob import Blob
from caffe_bridge.layers import LayerError
from caffe_bridge.net import Net
from caffe_bridge.proto import caffe_pb2
from caffe_bridge.solvers import get_solver
from caffe_bridge.testing import make_layer as make
from caffe_bridge.transform import resize_bilinear


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)  # PNG: lossless, so values can be compared exactly
    return path


def as_caffe(pixels: np.ndarray) -> np.ndarray:
    """An (H, W, 3) RGB image as Caffe's (3, H, W) BGR float32."""
    return pixels[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)


@pytest.fixture
def images(tmp_path: Path) -> dict[str, np.ndarray]:
    """cat.png 36x48, 'cat gray.png' 36x48 grey, fish-bike.png 32x48 (Caffe's test images'
    aspect ratios, scaled down)."""
    cat = rgb(36, 48, 1)
    fish = rgb(32, 48, 2)
    gray = np.random.default_rng(3).integers(0, 256, (36, 48), dtype=np.uint8)
    save(tmp_path / "img" / "cat.png", cat)
    save(tmp_path / "img" / "fish-bike.png", fish)
    Image.fromarray(gray).save(tmp_path / "img" / "cat gray.png")
    return {"cat": cat, "fish": fish, "gray": gray}


def layer_for(tmp_path: Path, lines: list[str], body: str = "", phase: str = "TRAIN"):
    source = tmp_path / "list.txt"
    source.write_text("".join(f"{line}\n" for line in lines))
    return make(
        f'name: "images" type: "ImageData" image_data_param {{ source: "{source}" {body} }}',
        phase,
        seed=1701,
    )


def setup(layer) -> list[Blob]:
    top = [Blob(), Blob()]
    layer.check_blob_counts([], top)
    layer.setup([], top)
    layer.reshape([], top)
    return top


def forward(layer, top: list[Blob]) -> tuple[np.ndarray, np.ndarray]:
    layer.reshape([], top)
    layer.forward([], top)
    return top[0].data.copy(), top[1].data.copy()


def test_read_serves_lines_in_order_and_wraps(tmp_path, images):
    # TestRead: five lines of the same image, labels 0..4, batch 5, read twice.
    cat = tmp_path / "img" / "cat.png"
    layer = layer_for(tmp_path, [f"{cat} {i}" for i in range(5)], "batch_size: 5")
    top = setup(layer)
    assert top[0].shape == (5, 3, 36, 48) and top[1].shape == (5,)
    for _ in range(2):
        data, labels = forward(layer, top)
        np.testing.assert_array_equal(labels, np.arange(5))
        np.testing.assert_array_equal(data, np.broadcast_to(as_caffe(images["cat"]), data.shape))
    # A batch of 3 over 5 lines wraps: 0 1 2, 3 4 0, 1 2 3.
    layer = layer_for(tmp_path, [f"{cat} {i}" for i in range(5)], "batch_size: 3")
    top = setup(layer)
    assert [forward(layer, top)[1].tolist() for _ in range(3)] == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]


def test_resize_to_new_height_and_width(tmp_path, images):
    # TestResize: new_height/new_width give every image that size (OpenCV's INTER_LINEAR).
    cat = tmp_path / "img" / "cat.png"
    body = "batch_size: 5 new_height: 25 new_width: 20"
    layer = layer_for(tmp_path, [f"{cat} {i}" for i in range(5)], body)
    top = setup(layer)
    assert top[0].shape == (5, 3, 25, 20)
    data, labels = forward(layer, top)
    np.testing.assert_array_equal(labels, np.arange(5))
    expected = resize_bilinear(as_caffe(images["cat"]).astype(np.uint8), 25, 20)
    np.testing.assert_array_equal(data[0], expected)


def test_resize_bilinear_follows_opencv_geometry():
    # Pixel centres aligned; upscaling 2x interpolates at 1/4 and 3/4, edges replicated.
    img = np.array([[[0, 100]]], np.uint8)  # (1, 1, 2)
    np.testing.assert_array_equal(resize_bilinear(img, 1, 4), [[[0, 25, 75, 100]]])
    # Shrinking 2x averages pixel pairs (no smoothing beyond the two neighbours).
    row = np.array([[[10, 20, 30, 40]]], np.uint8)
    np.testing.assert_array_equal(resize_bilinear(row, 1, 2), [[[15, 35]]])


def test_batch_size_one_lets_every_image_have_its_size(tmp_path, images):
    # TestReshape: cat (360x480 in Caffe) then fish-bike (323x481): the top follows each.
    d = tmp_path / "img"
    layer = layer_for(tmp_path, [f"{d / 'cat.png'} 0", f"{d / 'fish-bike.png'} 1"])
    top = setup(layer)
    assert top[1].shape == (1,)
    assert forward(layer, top)[0].shape == (1, 3, 36, 48)
    data, labels = forward(layer, top)
    assert data.shape == (1, 3, 32, 48) and labels.tolist() == [1]
    np.testing.assert_array_equal(data[0], as_caffe(images["fish"]))


def test_shuffle_serves_every_line_once_per_pass_out_of_order(tmp_path, images):
    # TestShuffle: no duplicates within a pass, and not in the listed order.
    cat = tmp_path / "img" / "cat.png"
    layer = layer_for(tmp_path, [f"{cat} {i}" for i in range(8)], "batch_size: 8 shuffle: true")
    top = setup(layer)
    orders = [forward(layer, top)[1].tolist() for _ in range(3)]
    for order in orders:
        assert sorted(order) == list(range(8)) and order != list(range(8))
    assert orders[0] != orders[1]  # reshuffled at the wrap


def test_paths_with_spaces_and_grey_images_as_colour(tmp_path, images):
    # TestSpace: the label follows the last space; a grey image is read as 3 equal channels.
    d = tmp_path / "img"
    layer = layer_for(tmp_path, [f"{d / 'cat.png'} 0", f"{d / 'cat gray.png'} 1"])
    top = setup(layer)
    forward(layer, top)
    data, labels = forward(layer, top)
    assert data.shape == (1, 3, 36, 48) and labels.tolist() == [1]
    np.testing.assert_array_equal(data[0], np.broadcast_to(images["gray"], (3, 36, 48)))


def test_is_color_false_and_root_folder(tmp_path, images):
    # root_folder is prepended as a string, as in Caffe; is_color: false gives one channel.
    root = f"{tmp_path / 'img'}/"
    layer = layer_for(tmp_path, ["cat.png 7"], f'root_folder: "{root}" is_color: false')
    top = setup(layer)
    data, labels = forward(layer, top)
    assert data.shape == (1, 1, 36, 48) and labels.tolist() == [7]
    grey = np.asarray(Image.fromarray(images["cat"]).convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(data[0, 0], grey)


def test_transform_param_applies(tmp_path, images):
    cat = tmp_path / "img" / "cat.png"
    body = "batch_size: 2 } transform_param { crop_size: 16 mean_value: 100 scale: 0.5"
    layer = layer_for(tmp_path, [f"{cat} 0", f"{cat} 1"], body, phase="TEST")
    top = setup(layer)
    assert top[0].shape == (2, 3, 16, 16)
    data, _ = forward(layer, top)
    centre = as_caffe(images["cat"])[:, 10:26, 16:32]  # TEST crops the centre
    np.testing.assert_array_equal(data[0], (centre - 100) * np.float32(0.5))


def test_rand_skip_starts_inside_the_list(tmp_path, images):
    cat = tmp_path / "img" / "cat.png"
    layer = layer_for(tmp_path, [f"{cat} {i}" for i in range(6)], "rand_skip: 6")
    top = setup(layer)
    first = forward(layer, top)[1][0]
    expected = int(np.random.default_rng(1701).integers(6))  # the layer's seeded draw
    assert first == expected


def test_state_dict_resumes_at_the_same_image(tmp_path, images):
    cat = tmp_path / "img" / "cat.png"
    lines = [f"{cat} {i}" for i in range(7)]
    a = layer_for(tmp_path, lines, "batch_size: 3 shuffle: true")
    top_a = setup(a)
    forward(a, top_a)
    state, rng = a.state_dict(), a.ctx.rng.bit_generator.state
    expected = [forward(a, top_a)[1].tolist() for _ in range(3)]  # crosses two wraps
    b = layer_for(tmp_path, lines, "batch_size: 3 shuffle: true")
    top_b = setup(b)
    b.load_state_dict(state)
    b.ctx.rng.bit_generator.state = rng
    assert [forward(b, top_b)[1].tolist() for _ in range(3)] == expected


IMAGE_NET = """
name: "img"
layer {{ name: "images" type: "ImageData" top: "data" top: "label"
  image_data_param {{ source: "{source}" batch_size: 3 shuffle: true }}
  transform_param {{ mirror: true crop_size: 8 scale: 0.00390625 }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param {{ num_output: 4 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""


def test_solver_resume_reads_the_same_images(tmp_path):
    # Seven images of different content over batches of 3 with shuffle, random crops and
    # mirrors: a run resumed from its snapshot ends with the weights of the full run.
    lines = []
    for i in range(7):
        lines.append(f"{save(tmp_path / 'img' / f'{i}.png', rgb(10, 12, 10 + i))} {i % 4}")
    source = tmp_path / "list.txt"
    source.write_text("\n".join(lines) + "\n")
    p = caffe_pb2.SolverParameter()
    text_format.Parse(IMAGE_NET.format(source=source), p.net_param)
    p.base_lr, p.lr_policy, p.max_iter, p.random_seed = 0.1, "fixed", 100, 1701
    p.snapshot, p.snapshot_prefix, p.snapshot_after_train = 2, str(tmp_path / "s"), False
    full = get_solver(p)
    full.step(5)
    resumed = get_solver(p)
    resumed.restore(tmp_path / "s_iter_2.solverstate")
    resumed.step(3)
    for a, b in zip(full.net.params["ip"], resumed.net.params["ip"], strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_image_data_feeds_a_net(tmp_path, images):
    cat = tmp_path / "img" / "cat.png"
    (tmp_path / "list.txt").write_text(f"{cat} 1\n{cat} 2\n")
    proto = tmp_path / "net.prototxt"
    proto.write_text(IMAGE_NET.format(source=tmp_path / "list.txt"))
    net = Net(proto, "TRAIN", seed=0)
    assert net.blobs["data"].shape == (3, 3, 8, 8)
    net.forward()
    labels = net.blobs["label"].data.tolist()
    assert sorted(labels[:2]) == [1, 2] and labels[2] in (1, 2)  # one pass, then a reshuffle
    assert np.isfinite(net.blobs["loss"].data)


@pytest.mark.parametrize(
    "lines,body,match",
    [
        ([], "", "lists no images"),
        (["{cat}"], "", r"list.txt:1: expected '<image path> <integer label>'"),
        (["{cat} 0", "{cat} x"], "", r"list.txt:2: expected"),
        (["{cat} 0", "{missing} 1"], "", r"missing.png' \(listed at .*list.txt:2\) does not exist"),
        (["{cat} 0"], "new_height: 10", "new_height and new_width must be set together"),
        (["{cat} 0"], "batch_size: 0", "batch_size must be positive"),
        (["{cat} 0"], "} transform_param { crop_size: 50", "crop_size 50 is larger"),
    ],
)
def test_bad_lists_fail_at_setup(tmp_path, images, lines, body, match):
    d = tmp_path / "img"
    names = {"cat": d / "cat.png", "missing": d / "missing.png"}
    layer = layer_for(tmp_path, [line.format(**names) for line in lines], body)
    with pytest.raises(InputError, match=match):  # the layer's, or its transformer's
        setup(layer)


def test_errors_when_reading(tmp_path, images):
    d = tmp_path / "img"
    (d / "broken.png").write_bytes(b"not an image")
    layer = layer_for(tmp_path, [f"{d / 'cat.png'} 0", f"{d / 'broken.png'} 1"])
    top = setup(layer)
    forward(layer, top)
    with pytest.raises(LayerError, match=r"cannot read image .*broken.png' \(listed at .*:2\)"):
        forward(layer, top)
    # Without resizing, a batch's images must share a size.
    layer = layer_for(tmp_path, [f"{d / 'cat.png'} 0", f"{d / 'fish-bike.png'} 1"], "batch_size: 2")
    top = setup(layer)
    with pytest.raises(LayerError, match=r"fish-bike.png' .* has shape \(3, 32, 48\).*new_height"):
        forward(layer, top)
    with pytest.raises(LayerError, match="cannot read the image list"):
        setup(make(f'type: "ImageData" image_data_param {{ source: "{tmp_path / "none"}" }}'))
