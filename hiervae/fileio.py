"""Writing files so that a reader never sees half of one, and remembering what was read.

:func:`atomic_file` is the one way hiervae writes a file that someone may read while it
is written (checkpoints, metrics, plots, reports, converted datasets): the bytes go to a
temporary file in the same directory, are flushed and fsync'ed, get the permissions an
ordinary new file would get (``mkstemp`` makes it 0600), and are renamed over the target
in one step.  If writing fails, even half way (a full disk, a kill), the target keeps its
previous content and the temporary file is removed.

:func:`file_memo` caches a value computed from a file (a digest, a parsed array) per
process, keyed by the file's resolved path, size and modification time, so a run that
loads the same dataset several times hashes and parses it once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, TypeVar

T = TypeVar("T")
TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", fsync: bool = True) -> Iterator[IO[Any]]:
    """An open temporary file that replaces ``path`` when the block ends without error.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8).  The temporary file is named
    ``.<name>.<random>.tmp`` beside ``path`` (see :func:`stale_temporaries`).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes with mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files :func:`atomic_file` left beside ``path`` when its process was killed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}") if p.is_file())


_MEMO: dict[tuple[Any, ...], Any] = {}


def file_key(path: str | Path) -> tuple[str, int, int]:
    """``(resolved path, size, mtime_ns)``: changes whenever the file is replaced or edited."""
    path = Path(path)
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def file_memo(path: str | Path, what: str, compute: Callable[[Path], T]) -> T:
    """``compute(path)``, computed at most once per process per version of the file;
    ``what`` names the kind of value (``"sha256"``, ``"idx"``), so one file can hold several."""
    key = (what, *file_key(path))
    if key not in _MEMO:
        _MEMO[key] = compute(Path(path))
    return _MEMO[key]


def remember(path: str | Path, what: str, value: T) -> T:
    """Store ``value`` as :func:`file_memo`'s result for ``(path, what)`` (e.g. a digest
    computed while the file was downloaded)."""
    _MEMO[(what, *file_key(path))] = value
    return value
