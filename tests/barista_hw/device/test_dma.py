"""barista_hw.device.dma: im2col/col2im address generation against Caffe's, and DMA costs."""

from __future__ import annotations

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.device.dma import (
    Transfer,
    dense_index,
    gather,
    im2col_index,
    scatter_add,
    transfer,
)
from barista_hw.device.geometry import ConvGeometry
from caffe_bridge.im2col import col2im, im2col


def _random_geometry(rng: np.random.Generator) -> ConvGeometry:
    """A random valid geometry (non-square kernels, stride, pad, dilation, groups)."""
    while True:
        group = int(rng.choice([1, 1, 2, 3]))
        kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pad = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        height, width = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        if (
            min(
                height + 2 * pad[0] - dilation[0] * (kernel[0] - 1),
                width + 2 * pad[1] - dilation[1] * (kernel[1] - 1),
            )
            < 1
        ):
            continue
        return ConvGeometry(
            channels=group * int(rng.integers(1, 4)),
            height=height,
            width=width,
            kernel=kernel,
            stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            pad=pad,
            dilation=dilation,
            group=group,
        )


def _caffe_cols(x: np.ndarray, geom: ConvGeometry, group: int) -> np.ndarray:
    """Caffe's ``Xcol_g`` of a batch with the batch folded: ``K x images*pixels``."""
    cg = geom.group_channels
    cols = im2col(
        x[:, group * cg : (group + 1) * cg], geom.kernel, geom.pad, geom.stride, geom.dilation
    )
    return cols.transpose(1, 0, 2).reshape(geom.k, -1)


def _caffe_col2im(dcol: np.ndarray, geom: ConvGeometry, group: int, images: int) -> np.ndarray:
    """Caffe's col2im of one group's ``K x images*pixels`` gradient into the whole tensor."""
    cg = geom.group_channels
    cols = dcol.reshape(geom.k, images, geom.pixels).transpose(1, 0, 2)
    out = np.zeros((images, geom.channels, geom.height, geom.width), dtype=np.int64)
    out[:, group * cg : (group + 1) * cg] = col2im(
        cols, (cg, geom.height, geom.width), geom.kernel, geom.pad, geom.stride, geom.dilation
    )
    return out


def _cases(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        geom = _random_geometry(rng)
        yield rng, geom, int(rng.integers(1, 4)), int(rng.integers(0, geom.group))


def _sub_range(rng: np.random.Generator, size: int) -> tuple[int, int]:
    lo = int(rng.integers(0, size))
    return lo, int(rng.integers(lo + 1, size + 1))


def test_im2col_gather_equals_caffes_im2col() -> None:
    for rng, geom, images, group in _cases(30, seed=20):
        shape = (images, geom.channels, geom.height, geom.width)
        base = int(rng.integers(0, 50))
        mem = rng.integers(-(2**15), 2**15, size=base + int(np.prod(shape)) + 7, dtype=np.int64)
        x = mem[base : base + int(np.prod(shape))].reshape(shape)
        expected = _caffe_cols(x, geom, group)
        index = im2col_index(geom, images=images, group=group)
        assert index.dtype == np.int64 and index.shape == expected.shape
        np.testing.assert_array_equal(gather(mem, base, index), expected)
        # The weight gradient's B operand: the transposed tile.
        np.testing.assert_array_equal(gather(mem, base, index.T), expected.T)
        for _ in range(3):
            (k0, k1), (n0, n1) = _sub_range(rng, geom.k), _sub_range(rng, expected.shape[1])
            tile = im2col_index(geom, images=images, group=group, rows=(k0, k1), cols=(n0, n1))
            np.testing.assert_array_equal(gather(mem, base, tile), expected[k0:k1, n0:n1])


def test_padding_reads_zero_and_is_marked() -> None:
    geom = ConvGeometry(1, 2, 2, kernel=(3, 3), pad=(1, 1))
    index = im2col_index(geom, images=1)
    # The centre tap (k = 4) sees every pixel; a corner tap sees one of the four.
    np.testing.assert_array_equal(index[4], [0, 1, 2, 3])
    np.testing.assert_array_equal(index[0], [-1, -1, -1, 0])
    np.testing.assert_array_equal(gather(np.array([5, 6, 7, 8]), 0, index[0:1]), [[0, 0, 0, 5]])


def test_scatter_add_equals_caffes_col2im() -> None:
    for rng, geom, images, group in _cases(30, seed=21):
        size = images * geom.channels * geom.height * geom.width
        base = int(rng.integers(0, 50))
        mem = rng.integers(-1000, 1000, size=base + size + 5, dtype=np.int64)
        before = mem.copy()
        index = im2col_index(geom, images=images, group=group)
        dcol = rng.integers(-1000, 1000, size=index.shape, dtype=np.int64)
        assert scatter_add(mem, base, index, dcol, bits=32) == 0
        expected = before.copy()
        expected[base : base + size] += _caffe_col2im(dcol, geom, group, images).ravel()
        np.testing.assert_array_equal(mem, expected)


def test_scatter_add_saturates_each_slot_once_against_col2im() -> None:
    for rng, geom, images, group in _cases(10, seed=22):
        size = images * geom.channels * geom.height * geom.width
        mem = rng.integers(-128, 128, size=size, dtype=np.int64)
        dcol = rng.integers(-100, 100, size=(geom.k, images * geom.pixels), dtype=np.int64)
        full = mem + _caffe_col2im(dcol, geom, group, images).ravel()
        saturated = scatter_add(mem, 0, im2col_index(geom, images=images, group=group), dcol, 8)
        np.testing.assert_array_equal(mem, np.clip(full, -128, 127))
        assert saturated == np.count_nonzero((full < -128) | (full > 127))


def test_scatter_add_saturation_counts() -> None:
    mem = np.array([100, -100, 120, 0], dtype=np.int64)
    # The first STORE lands exactly on the top of the 8-bit range: no saturation.
    assert scatter_add(mem, 0, np.array([0, 0, -1]), np.array([20, 7, 99]), 8) == 0
    np.testing.assert_array_equal(mem, [127, -100, 120, 0])
    # The second goes one above it, and one slot below the bottom: two saturated slots.
    assert scatter_add(mem, 0, np.array([[0, 1], [1, 3]]), np.array([[1, -20], [-9, 5]]), 8) == 2
    np.testing.assert_array_equal(mem, [127, -128, 120, 5])
    # Contributions that cancel are summed at full width first: no saturation, unlike
    # adding them to the slot one at a time (120 + 100 would saturate).
    assert scatter_add(mem, 1, np.array([1, 1, 1]), np.array([100, -100, 3]), 8) == 0
    np.testing.assert_array_equal(mem, [127, -128, 123, 5])


def test_dense_index_against_numpy_slicing() -> None:
    rng = np.random.default_rng(23)
    mat = rng.integers(-99, 99, size=(7, 11), dtype=np.int64)
    mem = np.concatenate([np.zeros(13, dtype=np.int64), mat.ravel()])
    # The (2:6, 3:8) tile of the row-major 7 x 11 matrix at slot 13.
    tile = dense_index(4, 5, row_stride=11)
    np.testing.assert_array_equal(gather(mem, 13 + 2 * 11 + 3, tile), mat[2:6, 3:8])
    # Its transpose, read as a 5 x 4 tile.
    tile_t = dense_index(5, 4, row_stride=1, col_stride=11)
    np.testing.assert_array_equal(gather(mem, 13 + 2 * 11 + 3, tile_t), mat[2:6, 3:8].T)
    np.testing.assert_array_equal(gather(mem, 13, dense_index(7, 11, 11)), mat)
    np.testing.assert_array_equal(gather(mem, 13, dense_index(11, 7, 1, 11)), mat.T)
    assert dense_index(2, 3, 10).dtype == np.int64


def test_transfer_of_a_3x3_window_over_a_5x5_image() -> None:
    index = im2col_index(ConvGeometry(1, 5, 5, kernel=(3, 3)), images=1)
    assert transfer(index, 0, burst_words=8, row_words=16) == Transfer(
        elements=81, dram_elements=25, words=25, bursts=4, rows_opened=2
    )
    # At base 5 the 25 slots are 5..29: bursts 0..3, rows 0 and 1.
    assert transfer(index, 5, burst_words=8, row_words=16) == Transfer(81, 25, 25, 4, 2)
    # At base 7 they are 7..31: still bursts 0..3; rows of 8 slots: 0..3.
    assert transfer(index, 7, burst_words=8, row_words=8) == Transfer(81, 25, 25, 4, 4)
    # At base 4 with bursts of 4: slots 4..28 touch bursts 1..7.
    assert transfer(index, 4, burst_words=4, row_words=32) == Transfer(81, 25, 25, 7, 1)


def test_transfer_of_a_dense_tile() -> None:
    # A 3 x 4 tile of a matrix with 10-slot rows at base 2: slots 2..5, 12..15, 22..25,
    # in bursts of 4: {0, 1}, {3}, {5, 6}; in rows of 20: {0}, {0}, {1}.
    counts = transfer(dense_index(3, 4, 10), 2, burst_words=4, row_words=20)
    assert counts == Transfer(elements=12, dram_elements=12, words=12, bursts=5, rows_opened=2)


def test_transfer_counts_distinct_valid_input_slots() -> None:
    for _, geom, images, group in _cases(15, seed=24):
        index = im2col_index(geom, images=images, group=group)
        # The input slots the window reads, independently: where col2im of ones lands.
        ones = np.ones(index.shape, dtype=np.int64)
        read = np.count_nonzero(_caffe_col2im(ones, geom, group, images))
        counts = transfer(index, 3, burst_words=1, row_words=1)
        assert counts.elements == index.size
        assert counts.dram_elements == read == counts.words == counts.bursts == counts.rows_opened


def test_bad_geometry_and_tiles_are_named() -> None:
    with pytest.raises(InputError, match="do not split into 2 groups"):
        ConvGeometry(3, 5, 5, kernel=(3, 3), group=2)
    geom = ConvGeometry(4, 5, 5, kernel=(3, 2), group=2)
    with pytest.raises(InputError, match="group 2 is not one of the 2 groups"):
        im2col_index(geom, images=1, group=2)
    with pytest.raises(InputError, match="at least one"):
        im2col_index(geom, images=0)
    with pytest.raises(InputError, match=r"row range \[3, 13\)"):
        im2col_index(geom, images=1, rows=(3, 13))
    with pytest.raises(InputError, match=r"column range \[5, 5\)"):
        im2col_index(geom, images=2, cols=(5, 5))
    with pytest.raises(InputError, match="sizes must be positive"):
        dense_index(0, 3, 3)
    with pytest.raises(InputError, match="must not be negative"):
        dense_index(2, 3, -3)


def test_an_index_outside_the_memory_is_named() -> None:
    geom = ConvGeometry(1, 5, 5, kernel=(3, 3))
    index = im2col_index(geom, images=2)  # slots 0..49
    mem = np.zeros(49, dtype=np.int64)
    with pytest.raises(InputError, match="LOAD at base 0 reaches slot 49, outside the memory"):
        gather(mem, 0, index)
    with pytest.raises(InputError, match="STORE at base -1 reaches slot -1"):
        scatter_add(mem, -1, index, np.ones_like(index), 16)
    with pytest.raises(InputError, match="values"):
        scatter_add(mem, 0, index[:1], np.ones((2, 2), dtype=np.int64), 16)
    with pytest.raises(InputError, match="between 2 and 63 bits"):
        scatter_add(mem, 0, index[:1], np.ones_like(index[:1]), 64)
    with pytest.raises(InputError, match="must be integers"):
        gather(mem, 0, index.astype(float))
    with pytest.raises(InputError, match="burst of 0"):
        transfer(index, 0, burst_words=0, row_words=8)
    # A STORE that fails its checks leaves the memory untouched.
    assert not mem.any()


def test_packed_transfer_moves_whole_bus_words() -> None:
    """18-bit elements on a 16-bit bus: element e is bits [18e, 18e + 18)."""
    # Elements 0..7: bits 0..143, words 0..8 (9 words, the last one in part).
    t = transfer(dense_index(1, 8, 1), 0, burst_words=8, row_words=512, bits=18)
    assert (t.dram_elements, t.words, t.bursts, t.merged) == (8, 9, 2, 0)
    # Element 1 alone: bits 18..35 touch words 1 and 2 (and element 7: bits 126..143,
    # words 7 and 8); element 0 of a tensor starting at bit 16: word 1 and 2.
    assert transfer(np.array([1, 7]), 0, burst_words=8, row_words=512, bits=18).words == 4
    assert transfer(np.array([0]), 0, burst_words=1, row_words=1, bits=18, first_bit=16).words == 2
    # An element touches three words when it straddles two boundaries: 32 bits at bit 8.
    assert transfer(np.array([0]), 0, burst_words=1, row_words=1, bits=32, first_bit=8).words == 3


def test_a_packed_store_merges_the_words_it_covers_in_part() -> None:
    """A store reads first the words a neighbour's bits share; padding past the end is free."""
    store = dict(burst_words=8, row_words=512, bits=18, size=8, store=True)
    assert transfer(dense_index(1, 8, 1), 0, **store).merged == 0  # all of the tensor
    # Elements 0..3: bits 0..71, words 0..4; word 4 (bits 64..79) holds element 4's bits.
    assert transfer(dense_index(1, 4, 1), 0, **store).merged == 1
    # Elements 4..7: bits 72..143, words 4..8; word 4 holds element 3's; word 8's rest is
    # past the tensor's end.
    assert transfer(dense_index(1, 4, 1), 4, **store).merged == 1
    # Element 2 alone: bits 36..53, words 2 and 3, both shared.
    assert transfer(np.array([2]), 0, **store).merged == 2
    # 16-bit elements never share a word.
    assert transfer(np.array([2]), 0, burst_words=8, row_words=512, size=8, store=True).merged == 0


def test_the_rtl_walk_and_its_port_commands() -> None:
    """The time model's view of the RTL DMA: the walk visits every lane of every
    scratchpad word (lanes past the tile's edge too), and port commands are runs of
    consecutive elements cut at padding and at the burst limit."""
    from barista_hw.device.traffic import port_runs, run_words, walk_order

    index = np.arange(10).reshape(2, 5)  # 2 x 5, lanes along the columns: words of 3
    order = walk_order(index, 3, 1)
    assert order.tolist() == [0, 1, 2, 5, 6, 7, 3, 4, -1, 8, 9, -1]
    first, n = port_runs(np.array([4, 5, 6, -1, 7, 8, 9, 10, 11, 3]), 3)
    assert first.tolist() == [4, 7, 10, 3] and n.tolist() == [3, 3, 2, 1]
    # 12-bit elements from bit 4: [4, 7) spans bits 52..88, words 3..5; both ends shared.
    words, merged = run_words(np.array([4]), np.array([3]), 12, 4, 16)
    assert words.tolist() == [3] and merged.tolist() == [2]


def _runs(off: list[int], n: list[int], at: list[int], bits: int = 12):  # noqa: ANN202
    from barista_hw.device.traffic import PortRuns

    off_, n_ = np.array(off), np.array(n)
    words = (off_ + n_ * bits - 1) // 16 + 1
    return PortRuns(np.array(at), n_, words, 0 * words, off_, bits)


def test_packed_port_waits_the_model_charges() -> None:
    """fx12 on a 16-bit port: a LOAD run whose first element ends past its first word
    waits a cycle for the unpacker, unless padding walked just before hides it; the writer
    takes an element a cycle plus its start, a part-covered tail and the last whole word
    cost it a cycle each, and a part-covered first word waits for its read."""
    from barista_hw.config import DEFAULT_ACCELERATOR
    from barista_hw.device.memory import DeviceConfig
    from barista_hw.device.traffic import store_write_cycles, unpack_waits, write_cycles

    # Runs of 3 at bits 0, 8, 12, 4: the runs at 8 and 12 wait; one pad hides a wait.
    assert unpack_waits(_runs([0, 8, 12, 4], [3] * 4, [0, 3, 6, 9]), 16) == 2
    assert unpack_waits(_runs([0, 8, 12, 4], [3] * 4, [0, 4, 7, 10]), 16) == 1
    assert unpack_waits(_runs([0] * 3, [16] * 3, [0, 16, 32], bits=16), 16) == 0
    assert write_cycles(0, 5, 16, 16) == (6, False)  # fx16: its words and the start
    assert write_cycles(0, 3, 12, 16) == (5, True)  # 36 bits: 2 whole words, then a tail
    assert write_cycles(12, 3, 12, 16) == (4, False)  # bits 12 to 48: ends on a word
    cfg = DeviceConfig.for_accelerator(DEFAULT_ACCELERATOR)
    start, last = store_write_cycles(_runs([0, 0], [3, 3], [0, 3]), cfg, 3)
    assert (start, last) == (3 + 6 + 5, 5)  # the first's tail pops an old word: + 1
    start, _ = store_write_cycles(_runs([0, 4], [3, 3], [0, 3]), cfg, 3)
    assert start == 3 + 5 + cfg.port.old_wait + 5  # the second's first word is read first
    start, _ = store_write_cycles(_runs([4], [3], [0]), cfg, 3)
    assert start == 3 + 3 + 1 + 5  # the first command's old word: the read latency
