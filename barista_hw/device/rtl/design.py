"""The device top's design: the engine and units the RTL top is built and tested with.

LeNet (examples/mnist's layers) on an 8 x 4 fx16 engine whose units are the RTL's
(:data:`~barista_hw.device.memory.RTL_UNITS`: no epilogue on C, VECs from memory, rings
of 512): fx16 so that the 32-bit col2im accumulators are whole elements and HOST_IN moves
bus words; 4 columns divide conv2's 64 output pixels, so no C strip of a col2im STORE
spans two images, and an 8 x 4 top fits a ULX3S 85F by the estimate where 8 x 8 does not
(``barista.device_top.compile_for_top`` takes the widest engine that fits). With the
512-element rings conv1's BIAS_GRAD is cut into rows of as many channels as vector lanes
(20 VECs of one channel). ``barista train --backend device-rtl`` and ``barista generate
--device`` derive a net's design from it (``barista.device_top``).
"""

from __future__ import annotations

from ...config import DEFAULT_ACCELERATOR
from ..memory import RTL_UNITS, DeviceConfig

#: The top's LeNet engine: 8 x 4 fx16, A and B 1024 deep, a 64-row accumulator memory.
LENET_ACC = DEFAULT_ACCELERATOR.derive(rows=8, cols=4, depth=1024, acc_depth=64)
#: :data:`LENET_ACC` on a ULX3S 85F with the RTL's units and one vector lane: the top's
#: vector work is bound by its 16-bit port (LeNet's modelled iteration at batch 64 takes
#: 0.05% longer than with 4 lanes, at batch 2 0.015%), and a lane is ~18.7k logic cells.
LENET_CONFIG = DeviceConfig.for_accelerator(
    LENET_ACC, target="ulx3s-85f", vector_lanes=1, **RTL_UNITS
)
