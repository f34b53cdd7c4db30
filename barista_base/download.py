"""Downloads checked against a SHA-256 before anything uses them, kept in the cache.

:func:`fetch` puts a file under ``<cache>/downloads/<sha256>/<name>``: the file is
streamed into a temporary file beside that place, hashed as it arrives and renamed
there only when its hash is the expected one, so the cache never holds a partial or
wrong file. A cached file is hashed again before each use (a disk can rot, a user
can edit). A wrong hash is an :class:`~barista_base.errors.InputError` naming the
file, the URL and both hashes; network failures are too.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .cache import cache_dir
from .errors import InputError

CHUNK = 1 << 20
TIMEOUT_S = 60.0


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 lower-case hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def join_url(base: str, name: str) -> str:
    """``base`` and a file name with exactly one ``/`` between them."""
    return base.rstrip("/") + "/" + name


def fetch(
    url: str,
    sha256: str,
    *,
    name: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> Path:
    """The file at ``url`` with SHA-256 ``sha256``, from the cache or downloaded into it.

    ``name``: the file's name in the cache (default: the URL's last part). ``log``
    receives a line when a download starts.
    """
    want = sha256.strip().lower()
    name = name or url.rstrip("/").rsplit("/", 1)[-1]
    final = cache_dir("downloads") / want / name
    if final.is_file():
        if sha256_file(final) == want:
            return final
        final.unlink()  # damaged since it was verified: fetch it again
    final.parent.mkdir(parents=True, exist_ok=True)
    log(f"downloading {url}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _download(url, out)
        if got != want:
            raise InputError(
                f"{name}: SHA-256 of the download from {url} is {got}, expected {want}; "
                "the file was discarded"
            )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def _download(url: str, out) -> str:  # noqa: ANN001 - a binary file object
    """Stream ``url`` into ``out``; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            while block := response.read(CHUNK):
                digest.update(block)
                out.write(block)
    except urllib.error.HTTPError as exc:
        raise InputError(f"{url}: cannot download: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"{url}: cannot download: {reason}") from None
    return digest.hexdigest()


def read_sha256sums(path: Path) -> dict[str, str]:
    """``{file name: sha256}`` from a ``sha256sum``-style file (``HASH  NAME`` lines; a
    ``*`` before the name, blank lines and ``#`` comments are allowed)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the checksum file: {exc}") from None
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, rest = line.partition(" ")
        file_name = rest.strip().lstrip("*")
        if not file_name or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise InputError(f"{path}:{number}: expected '<sha256>  <file name>', got {line!r}")
        sums[Path(file_name).name] = digest.lower()
    return sums


__all__ = ["fetch", "join_url", "read_sha256sums", "sha256_file"]
