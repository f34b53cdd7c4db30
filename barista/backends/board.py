"""The ``board`` backend: every GEMM runs on an FPGA over the UART host link.

:class:`BoardBackend` is a :class:`~barista.backends.hardware.HardwareBackend` (same
quantisation, scales, shifts and seeds as ``golden`` and ``rtl``); ``run`` hands the
integer GEMM to :class:`boards.host.BoardLink`, which follows the accelerator's
schedule, so the results are the bits of the other hardware backends. The board must
hold the bitstream of the accelerator the manifest describes (checked by IDENT).

Options: ``port`` (a serial device such as ``/dev/ttyUSB0``, or a pyserial URL such
as ``socket://127.0.0.1:PORT`` for :class:`boards.sim_board.SimulatedBoard`),
``manifest`` (``rtl_out/<net>/manifest.json``, a ``barista build`` report.json, or
their directory), ``baudrate``, ``timeout`` and ``retries`` of the link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, Pass
from barista_hw.numfmt import FixedFormat, Rounding

from .hardware import HardwareBackend, check_same_design


def load_board_manifest(path: Path | str) -> tuple[AcceleratorConfig, int | None]:
    """(configuration, baud rate if the file is a build report) of a manifest or report."""
    from barista_hw.generate import read_manifest

    cfg, doc = read_manifest(path)
    return cfg, doc.get("baud")


class BoardBackend(HardwareBackend):
    """GEMMs on a board (see the module docstring); ``cycles`` per ``layer/pass``."""

    name = "board"

    def __init__(
        self,
        rounding: Rounding | str = Rounding.NEAREST_EVEN,
        *,
        port: Any = None,
        manifest: Path | str | None = None,
        accelerator: AcceleratorConfig | None = None,
        baudrate: int | None = None,
        timeout: float = 0.5,
        retries: int = 8,
        fmt: FixedFormat | str | None = None,
        rows: int | None = None,
        cols: int | None = None,
    ) -> None:
        from boards.host import DEFAULT_BAUD, BoardLink

        if port is None:
            raise InputError("board backend needs port= (e.g. /dev/ttyUSB0)")
        baud = None
        if manifest is not None:
            cfg, baud = load_board_manifest(manifest)
            if accelerator is not None and accelerator != cfg:
                raise InputError(f"board backend: {manifest} describes another accelerator")
            accelerator = cfg
        if accelerator is None:
            raise InputError("board backend needs manifest= (rtl_out/<net>/manifest.json)")
        check_same_design(accelerator, "board backend", fmt, rows, cols)
        super().__init__(rounding=rounding, accelerator=accelerator)
        self.link = BoardLink(
            port,
            accelerator,
            baudrate=baudrate or baud or DEFAULT_BAUD,
            timeout=timeout,
            retries=retries,
        )
        self.cycles: dict[str, int] = {}  # latest call per "layer/pass"
        self.total_cycles = 0

    def close(self) -> None:
        self.link.close()

    def run(
        self, kind: Pass, layer: str, a: np.ndarray, b: np.ndarray, cmd: GemmCommand
    ) -> np.ndarray:
        r = self.link.gemm(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), cmd)
        self.cycles[f"{layer}/{kind.value}"] = r.cycles
        self.total_cycles += r.cycles
        return r.result
