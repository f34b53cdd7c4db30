"""The basics every Barista package shares: the input-error type and the cache.

It sits beneath everything (``caffe_bridge``, ``barista_hw``, ``sim``,
``boards`` and the ``barista`` application import it) and imports nothing of
Barista's.
"""

from .cache import atomic_directory, cache_dir, cache_root, write_text_atomic
from .errors import InputError

__all__ = ["InputError", "atomic_directory", "cache_dir", "cache_root", "write_text_atomic"]
