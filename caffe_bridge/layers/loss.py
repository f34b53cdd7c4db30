"""Softmax, the loss layers and Accuracy."""
