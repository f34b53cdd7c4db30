"""Layer implementations. Importing this package registers every layer type."""

from . import data, input, loss, neuron, normalization, python_layer, structure, vision
from .base import LAYER_TYPES, Layer, LayerContext, LayerError, register_layer

__all__ = [
    "LAYER_TYPES",
    "Layer",
    "LayerContext",
    "LayerError",
    "register_layer",
    "data",
    "input",
    "loss",
    "neuron",
    "normalization",
    "python_layer",
    "structure",
    "vision",
]
