"""The training device: the accelerator with its memories, a small ISA, and its bit-exact model.

The design is ``docs/device.md``. Tensors stay in the device's memory; the host sends
the input batch and the logits' gradient and reads the logits. This package defines
the device (memory model, ISA, the numerics of its units) and models it bit-exactly.
"""
