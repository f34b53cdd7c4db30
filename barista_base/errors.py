"""The one exception type for bad user input, and the log tail that tool failures quote."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input (file, layer, parameter, argument). The message names what is at fault.

    The ``barista`` command prints it as one line and exits with status 2.
    """


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a tool's log for an error message (or a note: no log)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
