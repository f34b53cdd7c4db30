"""Barista, the application: the ``barista`` command, the training backends, the manifest.

It alone imports across the libraries beneath it: :mod:`caffe_bridge` (a pure
Caffe runtime), :mod:`barista_hw` (numerics, RTL, model, planning), :mod:`sim`
(simulator drivers) and :mod:`boards` (board builds and the host link).
"""
