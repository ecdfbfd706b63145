"""Where dataset files live, how they are checked, and how they are fetched.

Every dataset file is found the same way, so users learn one rule:

1. the *data root*: the explicit ``data_dir`` (the CLI's ``--data-dir``), else the
   environment variable ``HIERVAE_DATA``;
2. the *cache*: ``$XDG_CACHE_HOME/hiervae`` (default ``~/.cache/hiervae``), which is
   also the only place downloads are written, so a read-only data root is fine.

In each place both ``<root>/<dataset>/<file>`` and ``<root>/<file>`` are accepted; the
first existing file wins.  A file that exists but has the wrong sha256 is an error, never
skipped: silently training on another copy would hide the problem.

Hashes are remembered per process (:func:`hiervae.fileio.file_memo`), because a training
run loads the same files several times and hashing them each time is wasted work.

Downloads stream to a temporary file in the destination directory, are hashed while
they stream, and are renamed into place only when the sha256 matches, so an interrupted
or corrupted download never leaves a file that looks valid.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hiervae.errors import DataError
from hiervae.fileio import file_memo, remember

ENV_VAR = "HIERVAE_DATA"
_CHUNK = 1 << 20
_TIMEOUT_S = 60

log = logging.getLogger(__name__)

# Tests replace this to serve bytes without a network.
_urlopen = urllib.request.urlopen



@dataclass(frozen=True)
class FileSpec:
    """One published file: its name on disk, checksum, size and download URLs.

    The checksum is the file's sha256, or, where only that is published, its md5
    (``algorithm``); ``size`` may be unknown (0)."""

    name: str
    checksum: str
    size: int = 0
    urls: tuple[str, ...] = ()
    algorithm: str = "sha256"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hiervae``, or ``~/.cache/hiervae`` when that is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hiervae"


def data_roots(dataset: str, data_dir: str | Path | None) -> list[Path]:
    """The directories searched, in order: data root (if any), then the cache.

    A data root given explicitly or through ``HIERVAE_DATA`` must exist: a typo
    should fail loudly rather than quietly fall through to the cache.
    """
    roots: list[Path] = []
    if data_dir is not None:
        root, origin = Path(data_dir).expanduser(), "--data-dir"
    elif os.environ.get(ENV_VAR):
        root, origin = Path(os.environ[ENV_VAR]).expanduser(), ENV_VAR
    else:
        root = origin = None
    if root is not None:
        if not root.is_dir():
            raise DataError(
                f"{dataset}: data directory {root} (from {origin}) does not exist; "
                f"create it or point --data-dir (or {ENV_VAR}) at an existing directory"
            )
        roots.append(root)
    cache = cache_dir()
    if cache not in roots:
        roots.append(cache)
    return roots


def candidates(dataset: str, name: str, data_dir: str | Path | None) -> list[Path]:
    """Every path where ``name`` may be, in search order."""
    return [p for root in data_roots(dataset, data_dir) for p in (root / dataset / name, root / name)]


def find(dataset: str, name: str, data_dir: str | Path | None) -> Path | None:
    """The first existing candidate path for ``name``, or None."""
    return next((p for p in candidates(dataset, name, data_dir) if p.is_file()), None)


def digest(path: Path, algorithm: str = "sha256") -> str:
    """The file's hex digest (``sha256``, ``md5``), computed at most once per process per version."""

    def compute(p: Path) -> str:
        h = hashlib.new(algorithm)
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    return file_memo(path, algorithm, compute)


def sha256_of(path: Path) -> str:
    return digest(path, "sha256")


def checksum_error(dataset: str, path: Path, spec: FileSpec, digest: str) -> DataError:
    """The one-line error for a file whose checksum is not the published one."""
    size = path.stat().st_size
    sizes = f" ({size} bytes, expected {spec.size})" if spec.size and size != spec.size else ""
    return DataError(
        f"{dataset}: {path} has {spec.algorithm} {digest[:12]}…, expected {spec.checksum[:12]}…{sizes}; "
        f"delete it or point --data-dir at a good copy"
    )


def verify(dataset: str, path: Path, spec: FileSpec) -> Path:
    """Return ``path`` if its checksum is the published one, else raise DataError."""
    try:
        found = digest(path, spec.algorithm)
    except OSError as e:
        raise DataError(f"{dataset}: cannot read {path}: {e.strerror or e}") from None
    if found != spec.checksum:
        raise checksum_error(dataset, path, spec, found)
    return path


def missing_error(dataset: str, names: list[str], data_dir: str | Path | None, what: str) -> DataError:
    """The one-line error for files that are nowhere and may not be downloaded."""
    where = ", ".join(str(r) for r in data_roots(dataset, data_dir))
    return DataError(
        f"{dataset}: {', '.join(names)} not found under {where} "
        f"(as <dir>/{dataset}/<file> or <dir>/<file>); put {what} there, "
        f"point --data-dir (or {ENV_VAR}) at a directory holding them, or allow downloading"
    )


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        text = f"HTTP {err.code}"
    elif isinstance(err, urllib.error.URLError):
        text = str(err.reason)
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def _stream_to_temp(url: str, dest_dir: Path, spec: FileSpec) -> tuple[Path, str]:
    """Copy ``url`` into a temp file in ``dest_dir``; return (temp path, sha256)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    h, n = hashlib.new(spec.algorithm), 0
    try:
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=_TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK):
                n += len(chunk)
                if spec.size and n > spec.size:
                    raise ValueError(f"more than the expected {spec.size} bytes")
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, h.hexdigest()


def download(dataset: str, spec: FileSpec) -> Path:
    """Fetch ``spec`` into ``<cache>/<dataset>/`` from the first mirror that serves it intact."""
    dest_dir = cache_dir() / dataset
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{dataset}: cannot create cache directory {dest_dir}: {e.strerror or e}; "
            f"set XDG_CACHE_HOME or point --data-dir (or {ENV_VAR}) at the files"
        ) from None
    dest = dest_dir / spec.name
    failures = []
    for url in spec.urls:
        log.info("downloading %s", url)
        try:
            tmp, digest = _stream_to_temp(url, dest_dir, spec)
        except (OSError, http.client.HTTPException, ValueError) as e:
            failures.append(f"{url}: {_reason(e)}")
            continue
        if digest != spec.checksum:
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: {spec.algorithm} {digest[:12]}…, expected {spec.checksum[:12]}…")
            continue
        os.replace(tmp, dest)
        remember(dest, spec.algorithm, digest)
        return dest
    raise DataError(
        f"{dataset}: could not download {spec.name} ({'; '.join(failures) or 'no mirrors'}); "
        f"download it by hand into {dest_dir}, or point --data-dir (or {ENV_VAR}) at a directory holding it"
    )


def fetch(dataset: str, spec: FileSpec, data_dir: str | Path | None, allow_download: bool) -> Path:
    """The verified local path of ``spec``: found, else downloaded; else DataError."""
    path = find(dataset, spec.name, data_dir)
    if path is not None:
        return verify(dataset, path, spec)
    if not allow_download:
        raise missing_error(dataset, [spec.name], data_dir, "the file")
    return download(dataset, spec)
