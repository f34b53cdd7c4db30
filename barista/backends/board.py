"""The ``board`` backend: every GEMM runs on an FPGA over the UART host link.

:class:`BoardBackend` is a :class:`~barista.backends.hardware.HardwareBackend` (same
quantisation, scales, shifts and seeds as ``golden`` and ``rtl``); ``run`` hands the
integer GEMM to :class:`boards.host.BoardLink`, which follows the accelerator's
schedule, so the results are the bits of the other hardware backends. The board must
hold the bitstream of the accelerator the manifest describes (checked by IDENT).

Options: ``port`` (a serial device such as ``/dev/ttyUSB0``, or a pyserial URL such
as ``socket://127.0.0.1:PORT`` for :class:`boards.sim_board.SimulatedBoard`),
``accelerator`` (an ``AcceleratorConfig``, or the
:class:`~barista.manifest.AcceleratorFiles` of a ``barista build`` directory, whose
report gives the baud rate), ``baudrate``, ``timeout`` and ``retries`` of the link.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, Pass
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.scaling import DYNAMIC

from ..manifest import AcceleratorFiles
from .hardware import HardwareBackend, check_same_design


class BoardBackend(HardwareBackend):
    """GEMMs on a board (see the module docstring); ``cycles`` per ``layer/pass``."""

    name = "board"

    def __init__(
        self,
        rounding: Rounding | str = Rounding.NEAREST_EVEN,
        *,
        port: Any = None,
        accelerator: AcceleratorConfig | AcceleratorFiles | None = None,
        baudrate: int | None = None,
        timeout: float = 0.5,
        retries: int = 8,
        fmt: FixedFormat | str | None = None,
        rows: int | None = None,
        cols: int | None = None,
        scaling: str = DYNAMIC,
    ) -> None:
        from boards.host import DEFAULT_BAUD, BoardLink

        if port is None:
            raise InputError("board backend needs port= (e.g. /dev/ttyUSB0)")
        if accelerator is None:
            raise InputError(
                "board backend needs the accelerator: the files of its build (barista "
                "build -o DIR) or of rtl_out/<net> (barista.manifest.load_accelerator)"
            )
        super().__init__(rounding=rounding, accelerator=accelerator, scaling=scaling)
        assert self.accelerator is not None
        check_same_design(self.accelerator, "board backend", fmt, rows, cols)
        baud = self.files.baud if self.files is not None else None
        self.link = BoardLink(
            port,
            self.accelerator,
            baudrate=baudrate or baud or DEFAULT_BAUD,
            timeout=timeout,
            retries=retries,
        )
        self.cycles: dict[str, int] = {}  # latest call per "layer/pass"
        self.total_cycles = 0

    def close(self) -> None:
        self.link.close()

    def run(
        self,
        kind: Pass,
        layer: str,
        a: np.ndarray,
        b: np.ndarray,
        cmd: GemmCommand,
        blocks: Collection[int] | None = None,
    ) -> np.ndarray:
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        r = self.link.gemm(a, b, cmd, blocks=blocks)
        self.cycles[f"{layer}/{kind.value}"] = r.cycles
        self.total_cycles += r.cycles
        return r.result
