"""Where Barista keeps what it builds, and how it puts a build in place atomically.

Every cache (elaborated Verilog, cocotb and Verilator builds, board builds)
lives under one root: ``$BARISTA_CACHE``, else ``$XDG_CACHE_HOME/barista``, else
``~/.cache/barista``. Never inside the package or the checkout: an installed
Barista runs from any directory.

:func:`atomic_directory` is the one way an entry (or an output directory) comes
into being: it is filled in a temporary directory beside its final place and
renamed there only when complete, so a reader never sees half an entry, a
failed build leaves nothing behind, and two processes racing for the same entry
both end up with a whole one. :func:`entry_lock` lets the second of two processes
wanting the same entry wait for the first's build instead of repeating it (parallel test
workers, Ray actors, sweep points building one simulator).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "BARISTA_CACHE"
#: The directory beside cache entries that holds their locks (:func:`entry_lock`).
LOCKS = ".locks"


def cache_root() -> Path:
    """``$BARISTA_CACHE``, else ``$XDG_CACHE_HOME/barista``, else ``~/.cache/barista``."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "barista"


def cache_dir(kind: str) -> Path:
    """The part of the cache for one kind of build (``"verilator"``, ``"boards"`` ...)."""
    return cache_root() / kind


@contextlib.contextmanager
def atomic_directory(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``final`` when the block succeeds.

    If the block raises, the temporary directory is removed and nothing changes.
    ``replace=False`` (a cache entry): when another process put ``final`` in place
    first, its entry is kept and this one discarded. ``replace=True`` (an output
    directory): an existing ``final`` is swapped out, and put back if the swap fails.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; an entry is as readable as a mkdir
        if replace and (final.exists() or final.is_symlink()):
            _swap(tmp, final)
        else:
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def entry_lock(final: Path) -> Iterator[None]:
    """Hold an exclusive lock on cache entry ``final`` (blocking) while the block runs.

    Check for the entry and build it inside the block: a process arriving while another
    builds waits, then finds the entry whole. The lock is advisory (``flock`` on a file in
    :data:`LOCKS` beside the entry) and released when the process dies, so a killed build
    never blocks the next one; :func:`atomic_directory` still keeps entries whole.
    """
    final = Path(final)
    locks = final.parent / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{final.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _swap(new: Path, final: Path) -> None:
    """Rename ``new`` to ``final``, moving the old ``final`` aside first and deleting it after."""
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
    os.replace(final, aside / "prev")
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(aside / "prev", final)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sources_hash(root: Path, pattern: str = "*.py", seed: bytes = b"") -> str:
    """SHA-256 of ``seed`` and of the files under ``root`` that match ``pattern`` (each one's
    path relative to ``root`` and its bytes, in path order): a cache key of source code."""
    h = hashlib.sha256(seed)
    for path in sorted(root.glob(pattern)):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
