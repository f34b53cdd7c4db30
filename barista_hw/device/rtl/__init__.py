"""The device's units in Amaranth (docs/device.md)."""
