"""The device's DMA: address generation for LOAD and STORE, and what a transfer costs.

The model holds DRAM as one flat int64 array of *slots* (an address counts slots, a slot
holds one element); the DRAM itself holds each tensor packed at its width, a bit stream
on the bus, and :func:`transfer` counts the bus words a transfer moves. A DMA
instruction moves a tile between DRAM and a scratchpad; its addresses are
``base + index`` with ``index`` an int64 array of the tile's shape:

* a dense tile (:func:`dense_index`): ``r * row_stride + c * col_stride``; a transposed
  read swaps the strides;
* an im2col tile (:func:`im2col_index`): the rows ``k = (c kh + i) kw + j`` and columns
  ``img pixels + p`` of one group's ``Xcol`` read straight from the (images, C, H, W)
  tensor; no expanded ``Xcol`` ever exists in memory. Entries that read the padding
  are ``-1``: a LOAD delivers 0 there, a STORE drops them.

col2im is the same index used by a STORE (:func:`scatter_add`), which sums every
contribution to an address at full width before it saturates the slot once.
:func:`transfer` counts the distinct elements, bus words, bursts, DRAM rows and words
merged of one instruction: the SDRAM's share of the time model (its DRAM bytes are the
port's words, ``traffic.dma_port``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from barista_base.errors import InputError

from .geometry import ConvGeometry

PADDING = -1  # the index of an entry that reads the convolution's zero padding


def dense_index(rows: int, cols: int, row_stride: int, col_stride: int = 1) -> np.ndarray:
    """The int64 ``(rows, cols)`` slot offsets of a dense tile: ``r row_stride + c col_stride``.

    A row-major ``M x K`` tile with leading dimension ``ld`` is ``(M, K, ld)``; its
    transpose, read as a ``K x M`` tile, is ``(K, M, 1, ld)``.
    """
    if rows < 1 or cols < 1:
        raise InputError(f"dense DMA tile of {rows} x {cols}: sizes must be positive")
    if row_stride < 0 or col_stride < 0:
        raise InputError(
            f"dense DMA tile strides ({row_stride}, {col_stride}) must not be negative"
        )
    r = np.arange(rows, dtype=np.int64)[:, None]
    c = np.arange(cols, dtype=np.int64)[None, :]
    return r * row_stride + c * col_stride


def _span(name: str, span: tuple[int, int] | None, size: int) -> tuple[int, int]:
    """A ``[lo, hi)`` range of ``[0, size)``, checked (``None`` is all of it)."""
    if span is None:
        return 0, size
    lo, hi = span
    if not 0 <= lo < hi <= size:
        raise InputError(f"im2col {name} range [{lo}, {hi}) is not a non-empty part of [0, {size})")
    return lo, hi


def im2col_index(
    geom: ConvGeometry,
    *,
    images: int,
    group: int = 0,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
) -> np.ndarray:
    """The int64 ``(k1 - k0, c1 - c0)`` offsets of a tile of group ``group``'s ``Xcol``.

    ``Xcol_g`` is ``geom.k x images * geom.pixels``: row ``k = (c kh + i) kw + j`` is
    channel ``group * C/group + c`` through kernel offset ``(i, j)`` (Caffe's order),
    column ``img * pixels + oy * out_width + ox`` is an output pixel. The offsets point
    into the contiguous ``(images, C, H, W)`` tensor; ``-1`` where the window reads the
    padding. ``rows`` and ``cols`` select ``[k0, k1)`` and ``[c0, c1)`` (``None``: all).

    The weight gradient reads the transposed tile: ``im2col_index(...).T``. col2im
    uses this same index with :func:`scatter_add` (it is the adjoint of the gather).
    """
    if images < 1:
        raise InputError(f"im2col over {images} images: need at least one")
    if not 0 <= group < geom.group:
        raise InputError(f"im2col group {group} is not one of the {geom.group} groups")
    k0, k1 = _span("row", rows, geom.k)
    n0, n1 = _span("column", cols, images * geom.pixels)
    kh, kw = geom.kernel
    # Separable: a row (channel, kernel offset) and a column (image, output pixel) part.
    k = np.arange(k0, k1, dtype=np.int64)
    n = np.arange(n0, n1, dtype=np.int64)
    chan = group * geom.group_channels + k // (kh * kw)
    yr = (k // kw) % kh * geom.dilation[0]
    xr = k % kw * geom.dilation[1]
    img, pix = n // geom.pixels, n % geom.pixels
    yc = pix // geom.out_width * geom.stride[0] - geom.pad[0]
    xc = pix % geom.out_width * geom.stride[1] - geom.pad[1]
    y = yr[:, None] + yc[None, :]
    x = xr[:, None] + xc[None, :]
    # Unsigned, a negative coordinate compares above the bound: one test a side.
    inside = (y.view(np.uint64) < geom.height) & (x.view(np.uint64) < geom.width)
    rowbase = (chan * geom.height + yr) * geom.width + xr
    colbase = img * geom.channels * geom.height * geom.width + yc * geom.width + xc
    offset = rowbase[:, None] + colbase[None, :]
    return np.where(inside, offset, PADDING)


def _addresses(op: str, mem_slots: int | None, base: int, index: np.ndarray) -> np.ndarray:
    """The DRAM addresses of ``index``'s valid entries, checked against the memory."""
    if not np.issubdtype(index.dtype, np.integer):
        raise InputError(f"{op}: the DMA index must be integers, not {index.dtype}")
    addr = base + index[index >= 0].astype(np.int64)
    if addr.size:
        lo, hi = int(addr.min()), int(addr.max())
        if lo < 0 or (mem_slots is not None and hi >= mem_slots):
            bad = lo if lo < 0 else hi
            size = "" if mem_slots is None else f" of {mem_slots} slots"
            raise InputError(f"{op} at base {base} reaches slot {bad}, outside the memory{size}")
    return addr


def _check_memory(op: str, mem: np.ndarray) -> None:
    if mem.ndim != 1:
        raise InputError(f"{op}: the memory must be a flat array of slots, not {mem.shape}")


def gather(mem: np.ndarray, base: int, index: np.ndarray) -> np.ndarray:
    """A LOAD: ``mem[base + index]``, 0 where ``index < 0``; the shape of ``index``."""
    _check_memory("LOAD", mem)
    addr = _addresses("LOAD", mem.size, base, index)
    out = np.zeros(index.shape, dtype=mem.dtype)
    out[index >= 0] = mem[addr]
    return out


def scatter_add(
    mem: np.ndarray, base: int, index: np.ndarray, values: np.ndarray, bits: int
) -> int:
    """A COL2IM STORE: add ``values`` into ``mem[base + index]``; the saturated slot count.

    Entries with ``index < 0`` (padding) are dropped. The DMA's write-combining adder
    sums every contribution of this STORE to one address at full width, adds the sum
    to the slot and saturates once to ``bits``-bit signed, so contributions that
    cancel never saturate. With :func:`im2col_index` as ``index`` this is col2im.
    """
    _check_memory("STORE", mem)
    if not np.issubdtype(mem.dtype, np.integer):
        raise InputError(f"STORE: the memory must hold integers, not {mem.dtype}")
    if values.shape != index.shape or not np.issubdtype(values.dtype, np.integer):
        raise InputError(
            f"STORE: values {values.shape} {values.dtype} must be integers "
            f"of the index's shape {index.shape}"
        )
    if not 2 <= bits <= 63:
        raise InputError(f"STORE: a slot of {bits} bits is not between 2 and 63 bits")
    addr = _addresses("STORE", mem.size, base, index)
    slots, where = np.unique(addr, return_inverse=True)
    sums = np.zeros(slots.size, dtype=np.int64)
    np.add.at(sums, where, values[index >= 0].astype(np.int64))
    total = mem[slots].astype(np.int64) + sums
    limit = 1 << (bits - 1)
    stored = np.clip(total, -limit, limit - 1)
    mem[slots] = stored
    return int(np.count_nonzero(stored != total))


@dataclass(frozen=True)
class Transfer:
    """What one DMA instruction costs."""

    elements: int  # elements delivered to / taken from the scratchpad (the tile's size)
    dram_elements: int  # distinct DRAM elements read or written (im2col reads each once)
    words: int  # distinct bus words moved: the packed elements' bits, whole words
    bursts: int  # distinct aligned bursts of ``burst_words`` words touched
    rows_opened: int  # distinct DRAM rows (pages) of ``row_words`` words touched
    merged: int = 0  # words a store only partly covers: read first, merged, written


def transfer(
    index: np.ndarray,
    base: int,
    *,
    burst_words: int,
    row_words: int,
    bits: int = 16,
    bus_bits: int = 16,
    first_bit: int = 0,
    size: int | None = None,
    store: bool = False,
) -> Transfer:
    """The counts of a DMA instruction moving the elements ``base + index`` of a tensor
    of ``size`` elements packed at ``bits`` bits from DRAM bit ``first_bit`` (a bit stream
    on the ``bus_bits`` bus: element ``e`` is bits ``[first_bit + e bits, first_bit +
    (e+1) bits)``). A transfer moves whole bus words: every word holding a bit of an
    element it moves, once. A ``store`` also reads the words it covers only in part (a
    neighbour's bits share them; bits past the tensor's end are padding), to merge.

    Padding entries (``index < 0``) are elements of the tile but touch no DRAM. Each
    distinct word counts once: the floor of what the SDRAM serves (its bursts and rows);
    what the RTL's port moves, a word read again counted again (an im2col LOAD without
    the stage buffer reads an element once per tap), is ``traffic.dma_port``'s count.
    """
    if burst_words < 1 or row_words < 1 or not 1 <= bits <= 2 * bus_bits:
        raise InputError(
            f"DMA transfer: burst of {burst_words}, row of {row_words} words and "
            f"{bits}-bit elements on a {bus_bits}-bit bus"
        )
    elems = np.unique(_addresses("DMA transfer", None, base, index))
    lo = (first_bit + elems * bits) // bus_bits
    hi = (first_bit + (elems + 1) * bits - 1) // bus_bits
    span = -(-bits // bus_bits) + 1  # the most words one element touches
    words = np.unique(np.concatenate([np.minimum(lo + j, hi) for j in range(span)]))
    merged = 0
    if store and words.size:
        last = (size if size is not None else int(elems[-1]) + 1) - 1
        e_lo = np.maximum(0, (words * bus_bits - first_bit) // bits)
        e_hi = np.minimum(last, ((words + 1) * bus_bits - 1 - first_bit) // bits)
        partial = np.zeros(words.size, dtype=bool)
        for j in range(bus_bits // bits + 2):  # the most elements one word holds
            e = e_lo + j
            partial |= (e <= e_hi) & ~np.isin(e, elems)
        merged = int(np.count_nonzero(partial))
    return Transfer(
        elements=int(index.size),
        dram_elements=int(elems.size),
        words=int(words.size),
        bursts=int(np.unique(words // burst_words).size),
        rows_opened=int(np.unique(words // row_words).size),
        merged=merged,
    )
