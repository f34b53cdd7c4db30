"""Image lists and image files as Caffe reads them (``ImageData`` layer, ``convert_imageset``).

A list file has one ``<path> <label>`` line per image: the label is the integer
after the line's last space, so paths may contain spaces. Images are decoded with
Pillow into Caffe's layout: (C, H, W) uint8, colour in OpenCV's BGR order (a grey
image repeated), or one grey channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from barista_base.errors import InputError


def parse_image_list(text: str, source: str) -> list[tuple[str, int, int]]:
    """``(path, label, line number)`` per line of a list file; blank lines are skipped.

    A line without a path and an integer label is an ``InputError`` naming
    ``source`` and the line.
    """
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        path, sep, label = line.rpartition(" ")
        try:
            value = int(label)
        except ValueError:
            value = None
        if not sep or not path or value is None:
            raise InputError(
                f"{source}:{number}: expected '<image path> <integer label>', got {line!r}"
            )
        lines.append((path, value, number))
    return lines


def load_image(path: str | Path, is_color: bool) -> np.ndarray:
    """An image file as Caffe's ``cv::imread`` gives it: (3, H, W) BGR with ``is_color``,
    else (1, H, W) grey; uint8. A missing or undecodable file raises ``OSError``."""
    from PIL import Image

    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB" if is_color else "L"), dtype=np.uint8)
    if arr.ndim == 2:
        return arr[None]
    return np.ascontiguousarray(arr[:, :, ::-1].transpose(2, 0, 1))
