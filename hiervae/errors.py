"""Errors a user can act on.

Every error caused by bad input (a spec, a data directory, a run directory) is a
:class:`HiervaeError`.  The CLI prints ``str(err)`` as one line and exits with code 2;
nothing else is printed, no traceback.  The message says *what* is wrong and *where*
(file, line, key) so the user can fix it without reading our code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """Where something was written: a file, a 1-based line, and a dotted key path."""

    file: str | None = None
    line: int | None = None
    key: str | None = None

    def with_key(self, key: str) -> "Location":
        return Location(self.file, self.line, key)

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(str(self.file))
        if self.line is not None:
            parts.append(str(self.line))
        where = ":".join(parts)
        if self.key:
            where = f"{where}: {self.key}" if where else self.key
        return where


class HiervaeError(Exception):
    """Base class of user-facing errors (exit code 2, one line, no traceback)."""

    exit_code = 2


class SpecError(HiervaeError):
    """A spec is malformed: the message names the file, line and key."""

    def __init__(self, message: str, location: Location | None = None):
        self.message = message
        self.location = location or Location()
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.location)
        return f"{where}: {self.message}" if where else self.message


class DataError(HiervaeError):
    """A dataset is missing, corrupt or cannot be downloaded."""


class RunError(HiervaeError):
    """A run directory or checkpoint is unusable, or training cannot go on."""


def display_path(path: str | Path) -> str:
    """A path as the user typed it (relative where possible), for messages."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # not below the cwd, or a path that cannot be resolved (a link loop)
        return str(p)
