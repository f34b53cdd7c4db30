"""Layer implementations. Importing this package registers every layer type."""

from . import (
    data,
    hdf5_data,
    image_data,
    input,
    loss,
    memory_data,
    neuron,
    normalization,
    python_layer,
    structure,
    vision,
)
from .base import LAYER_TYPES, Layer, LayerContext, LayerError, register_layer

__all__ = [
    "LAYER_TYPES",
    "Layer",
    "LayerContext",
    "LayerError",
    "register_layer",
    "data",
    "hdf5_data",
    "image_data",
    "input",
    "memory_data",
    "loss",
    "neuron",
    "normalization",
    "python_layer",
    "structure",
    "vision",
]
