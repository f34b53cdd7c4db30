"""The Python layer: pycaffe's layer protocol for user modules."""
