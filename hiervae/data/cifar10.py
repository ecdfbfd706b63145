"""CIFAR-10 from the official python distribution (``cifar-10-python.tar.gz``).

The archive holds ``cifar-10-batches-py/data_batch_1..5`` (training, 5 x 10000) and
``test_batch`` (10000): pickled dicts with ``b"data"``, a ``(N, 3072)`` uint8 array
whose rows are the 1024 red, then green, then blue values of a 32 x 32 image, each
channel row-major, and ``b"labels"``, N integers in 0-9.  Images come back as float32
``pixel / 255`` in [0, 1], flattened in that CHW order (``image_shape = (3, 32, 32)``);
labels as int64.  Values are continuous intensities: only ``binarize: none`` makes
sense (a flow likelihood needs them dequantised, see :mod:`hiervae.data.dequantize`).

Where the files may be (see ``files.py`` for the roots ``--data-dir`` /
``HIERVAE_DATA`` / cache, each as ``<root>/cifar10/...`` or ``<root>/...``): the
archive ``cifar-10-python.tar.gz``, or the extracted directory ``cifar-10-batches-py/``;
in each place the directory is tried first.  Downloads fetch the archive into the cache.

Checks before anything is unpickled (unpickling runs code named in the file, so only
verified files are opened, and then with an unpickler that only builds numpy arrays):

* archive: sha256 (``files.verify``, as for every dataset) AND the md5 published on
  https://www.cs.toronto.edu/~kriz/cifar.html, ``c58f30108f718f92721af3b95e74349a``.
  The sha256 and size are those Keras's ``cifar10.load_data`` pins for the same URL.
* extracted directory: the md5 of each batch file (the values torchvision pins).
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

import hiervae.data.files as files
from hiervae.data.base import DATASETS, RawData, Source
from hiervae.data.files import FileSpec
from hiervae.errors import DataError
from hiervae.fileio import file_memo

NAME = "cifar10"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = FileSpec(
    "cifar-10-python.tar.gz",
    checksum="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    size=170498071,
    urls=(URL,),
)
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
IMAGE_SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32
BINARIZE_MODES = ("none",)  # real-valued data: the only mode load_dataset should accept

def md5_of(path: Path) -> str:
    return files.digest(path, "md5")


def _check_md5(path: Path, expected: str) -> None:
    try:
        digest = md5_of(path)
    except OSError as e:
        raise DataError(f"{NAME}: cannot read {path}: {e.strerror or e}") from None
    if digest != expected:
        raise DataError(
            f"{NAME}: {path} has md5 {digest}, expected {expected}; delete it or point --data-dir at a good copy"
        )


class _NumpyOnly(pickle.Unpickler):
    """Builds dicts, lists, bytes and numpy arrays; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _corrupt(where: str, what: str) -> DataError:
    return DataError(f"{NAME}: {where} {what}; delete it or point --data-dir at a good copy")


def parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> ``(uint8 (N, 3072), int64 (N,))``; DataError if it is not one."""
    try:
        batch = _NumpyOnly(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any malformed pickle: UnpicklingError, EOFError, ValueError, ...
        raise _corrupt(where, f"is not a CIFAR-10 batch ({type(e).__name__}: {' '.join(str(e).split())})") from None
    if not isinstance(batch, dict):
        raise _corrupt(where, f"holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise _corrupt(where, f"has 'data' {got}, expected uint8 (N, {PIXELS})")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        labels = None
    if labels is None or labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise _corrupt(where, f"does not hold {len(data)} labels in 0-9")
    return data, labels


def locate(data_dir: str | Path | None = None, download: bool = True) -> tuple[str, Path]:
    """``("dir", path)`` of a verified ``cifar-10-batches-py`` or ``("archive", path)``."""
    for root in files.data_roots(NAME, data_dir):
        for base in (root / NAME, root):
            folder = base / FOLDER
            if folder.is_dir():
                for name in (*TRAIN_BATCHES, TEST_BATCH):
                    path = folder / name
                    if not path.is_file():
                        raise DataError(
                            f"{NAME}: {folder} has no {name}; restore it (or remove the directory to use "
                            f"{ARCHIVE.name}), or point --data-dir at a complete copy"
                        )
                    _check_md5(path, BATCH_MD5[name])
                return "dir", folder
            archive = base / ARCHIVE.name
            if archive.is_file():
                files.verify(NAME, archive, ARCHIVE)
                _check_md5(archive, ARCHIVE_MD5)
                return "archive", archive
    if not download:
        raise files.missing_error(NAME, [ARCHIVE.name, f"{FOLDER}/"], data_dir,
                                  f"{ARCHIVE.name} or the extracted {FOLDER}/ directory")
    archive = files.download(NAME, ARCHIVE)
    _check_md5(archive, ARCHIVE_MD5)
    return "archive", archive


def _read_batches(kind: str, path: Path) -> dict[str, bytes]:
    names = (*TRAIN_BATCHES, TEST_BATCH)
    if kind == "dir":
        return {n: (path / n).read_bytes() for n in names}
    wanted = {f"{FOLDER}/{n}": n for n in names}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:  # one pass over the stream
                if member.name in wanted and member.isfile():
                    out[wanted[member.name]] = tar.extractfile(member).read()
    except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
        raise _corrupt(str(path), f"is not a readable .tar.gz ({' '.join(str(e).split())})") from None
    missing = [n for n in names if n not in out]
    if missing:
        raise _corrupt(str(path), f"has no {', '.join(f'{FOLDER}/{n}' for n in missing)}")
    return out


def _load(kind: str, path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """Parsed uint8 batches, kept per process (:func:`hiervae.fileio.file_memo`)."""

    def parse(path: Path):
        raw = _read_batches(kind, path)
        where = (lambda n: str(path / n)) if kind == "dir" else (lambda n: f"{path} member {FOLDER}/{n}")
        train = [parse_batch(raw[n], where(n)) for n in TRAIN_BATCHES]
        return train, parse_batch(raw[TEST_BATCH], where(TEST_BATCH))

    return file_memo(path, f"cifar10-{kind}", parse)


def load_raw(data_dir: str | Path | None = None, download: bool = True) -> RawData:
    """All of CIFAR-10: 50000 training images (batches 1-5 in order) and 10000 test images."""
    batches, (test, test_labels) = _load(*locate(data_dir, download))
    train = np.concatenate([x for x, _ in batches]).astype(np.float32) / np.float32(255)
    train_labels = np.concatenate([y for _, y in batches])
    return RawData(train, test.astype(np.float32) / np.float32(255), IMAGE_SHAPE,
                   train_labels=train_labels, test_labels=test_labels.copy())


DATASETS.register(NAME)(
    Source(load_raw, default_binarize="none", default_validation=5000, binarize_modes=BINARIZE_MODES,
           image_shape=IMAGE_SHAPE, train_pool=50000,
           description="CIFAR-10 32x32 colour images (50000 train, 10000 test), CHW intensities in [0, 1]")
)
