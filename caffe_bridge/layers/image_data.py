"""ImageData layer (Caffe's ImageDataLayer): images listed in a text file, with labels.

``image_data_param.source`` names a list file of ``<path> <label>`` lines; the label
is the integer after the line's last space, so paths may contain spaces. Each path is
read as ``root_folder + path`` (plain string concatenation, as in Caffe), relative to
the working directory. Images are decoded with Pillow, as colour (3 channels in
Caffe's BGR order; a grey image is repeated) or, with ``is_color: false``, as one
grey channel, resized to ``new_height`` x ``new_width`` when both are given
(OpenCV's ``INTER_LINEAR``: :func:`caffe_bridge.transform.resize_bilinear`) and put
through the ``transform_param`` (mean, scale, crop, mirror).

As in Caffe, a batch takes its shape from its first image, so without resizing the
images of one batch must share a size (``batch_size: 1`` lets every image have its
own); lines are served in order, wrapping around at the end; ``shuffle`` shuffles the
order at setup and at every wrap; ``rand_skip`` skips a random number of lines at
setup. The order and the position are the layer's ``state_dict``, so a resumed run
reads exactly the images the uninterrupted one would have.

At setup the list is parsed and checked (every line has an integer label, every
listed file exists: all of them for lists up to ``FULL_CHECK_LINES`` lines, else the
first ``batch_size`` listed) and the first image is decoded, so a bad list fails when the net is
built, naming the list file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from barista_base.errors import InputError

from ..blob import Blob
from ..images import load_image, parse_image_list
from ..transform import DataTransformer, resize_bilinear
from .base import Layer, register_layer

# Lists up to this many lines have every file's existence checked at setup.
FULL_CHECK_LINES = 100_000


@register_layer("ImageData")
class ImageDataLayer(Layer):
    """Batches of images and labels from a ``path label`` list file (two tops)."""

    exact_bottoms = 0
    exact_tops = 2

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.image_data_param
        where = "image_data_param"
        self.new_height, self.new_width = int(p.new_height), int(p.new_width)
        if (self.new_height > 0) != (self.new_width > 0):
            raise self.error(
                f"{where}: new_height and new_width must be set together (got "
                f"{self.new_height} x {self.new_width})"
            )
        if p.batch_size <= 0:
            raise self.error(f"{where}.batch_size must be positive, got {p.batch_size}")
        self.batch_size = int(p.batch_size)
        self.is_color = bool(p.is_color)
        self.root_folder = str(p.root_folder)
        self.shuffle = bool(p.shuffle)
        if not p.source:
            raise self.error(f"{where}.source (the image list file) is not set")
        self.source = str(p.source)
        self.lines = self._read_list()
        self._check_files()
        src = f"{self.ctx.source_file}: " if self.ctx.source_file else ""
        self._where = f"{src}layer '{self.name}' ({self.type_name})"
        self.transformer = DataTransformer(
            self.param.transform_param, self.ctx.phase, self.ctx.rng, where=self._where
        )
        # Caffe's order of events: shuffle the lines, then skip, then read the first image.
        self.order = np.arange(len(self.lines))
        if self.shuffle:
            self.ctx.rng.shuffle(self.order)
        self.cursor = 0
        if p.rand_skip:
            skip = int(self.ctx.rng.integers(int(p.rand_skip)))
            if skip >= len(self.lines):
                raise self.error(
                    f"{where}.rand_skip drew {skip}, but {self.source} lists only "
                    f"{len(self.lines)} images"
                )
            self.cursor = skip
        first = self._load(int(self.order[self.cursor]))
        self.image_shape: tuple[int, ...] = first.shape
        self.out_shape = self.transformer.output_shape(first.shape)  # type: ignore[arg-type]
        top[0].reshape((self.batch_size, *self.out_shape))
        top[1].reshape((self.batch_size,))

    # -- the list ---------------------------------------------------------------
    def _read_list(self) -> list[tuple[str, int, int]]:
        """``(path, label, line number)`` per image line; blank lines are skipped."""
        try:
            text = Path(self.source).read_text()
        except OSError as exc:
            raise self.error(
                f"image_data_param.source {self.source}: cannot read the image list "
                f"({exc.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise self.error(
                f"image_data_param.source {self.source}: not a text file of 'path label' lines"
            ) from None
        try:
            lines = parse_image_list(text, self.source)
        except InputError as exc:
            raise self.error(f"image_data_param.source {exc}") from None
        if not lines:
            raise self.error(f"image_data_param.source {self.source}: lists no images")
        return lines

    def _path(self, index: int) -> str:
        return self.root_folder + self.lines[index][0]

    def _line_ref(self, index: int) -> str:
        return f"{self._path(index)!r} (listed at {self.source}:{self.lines[index][2]})"

    def _check_files(self) -> None:
        limit = len(self.lines) if len(self.lines) <= FULL_CHECK_LINES else self.batch_size
        for index in range(min(limit, len(self.lines))):
            if not Path(self._path(index)).is_file():
                raise self.error(f"image {self._line_ref(index)} does not exist")

    # -- images -----------------------------------------------------------------
    def _load(self, index: int) -> np.ndarray:
        """Image ``index`` of the list as a (C, H, W) uint8 array, resized if asked."""
        try:
            image = load_image(self._path(index), self.is_color)
        except OSError as exc:  # missing file, unknown format, truncated data
            raise self.error(f"cannot read image {self._line_ref(index)}: {exc}") from None
        if self.new_height > 0:
            image = resize_bilinear(image, self.new_height, self.new_width)
        return image

    # -- position, for exact resumes --------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The line order (when shuffled) and the next position in it."""
        state: dict[str, Any] = {"cursor": int(self.cursor)}
        if self.shuffle:
            state["order"] = self.order.tolist()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = state.get("order")
        if order is not None:
            if sorted(order) != list(range(len(self.lines))):
                raise self.error(
                    f"the saved image order has {len(order)} entries, but {self.source} now "
                    f"lists {len(self.lines)} images"
                )
            self.order = np.asarray(order, dtype=np.int64)
        cursor = int(state["cursor"])
        if not 0 <= cursor < len(self.lines):
            raise self.error(
                f"the saved position {cursor} is past the {len(self.lines)} images of {self.source}"
            )
        self.cursor = cursor

    # -- layer ------------------------------------------------------------------
    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Shapes are set at setup and by every batch's first image, as in Caffe."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        images: np.ndarray | None = None
        labels = np.empty(self.batch_size, dtype=np.float32)
        first_index = int(self.order[self.cursor])
        for item in range(self.batch_size):
            index = int(self.order[self.cursor])
            image = self._load(index)
            if images is None:
                images = np.empty((self.batch_size, *image.shape), dtype=np.uint8)
            elif image.shape != images.shape[1:]:
                raise self.error(
                    f"image {self._line_ref(index)} has shape {image.shape} (C, H, W), but "
                    f"the batch's first image {self._line_ref(first_index)} has "
                    f"{images.shape[1:]}: give image_data_param new_height and new_width, "
                    "or batch_size: 1"
                )
            images[item] = image
            labels[item] = self.lines[index][1]
            self.cursor += 1
            if self.cursor == len(self.lines):
                self.cursor = 0
                if self.shuffle:
                    self.ctx.rng.shuffle(self.order)
        assert images is not None  # batch_size >= 1
        if images.shape[1:] != self.image_shape:
            self.image_shape = images.shape[1:]
            self.out_shape = self.transformer.output_shape(self.image_shape)  # type: ignore[arg-type]
        top[0].reshape((self.batch_size, *self.out_shape))
        self.transformer(images, top[0].data)
        top[1].data[...] = labels
