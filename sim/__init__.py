"""Simulation of the generated RTL: Amaranth pysim drivers and the cocotb suite's runner and TB."""
