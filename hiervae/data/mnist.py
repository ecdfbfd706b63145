"""MNIST from the four original gzipped IDX files.

The files are the public distribution, checked by sha256 before use (see
``files.py`` for where they are looked for and how they are downloaded).  Images come
back as float32 intensities ``pixel / 255`` in [0, 1], flattened row-major to 784
values, which is the Bernoulli mean used for dynamic binarisation.

Parsed files are kept per process (read-only) so that loading MNIST twice in one run,
e.g. for training and then for evaluation, does not decompress 47 MB again.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

import hiervae.data.files as files
from hiervae.data.base import DATASETS, RawData, Source
from hiervae.data.files import FileSpec
from hiervae.errors import DataError
from hiervae.fileio import file_memo

NAME = "mnist"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def _spec(name: str, sha256: str, size: int) -> FileSpec:
    return FileSpec(name, sha256, size, tuple(m + name for m in MIRRORS))


FILES = {
    "train_images": _spec("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train_labels": _spec("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "test_images": _spec("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "test_labels": _spec("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(f"{NAME}: {path} {what}; delete it or point --data-dir at a good copy")


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse one gzipped IDX file of unsigned bytes; DataError if it is not one.

    ``magic`` is 2051 for images (3 dimensions) or 2049 for labels (1 dimension).
    The length must match the header exactly, so truncation is always caught.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, f"is not a readable gzip file ({' '.join(str(e).split())})") from None
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise _corrupt(path, f"has IDX magic number {found}, expected {magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise _corrupt(path, f"holds {len(data) - header} data bytes, header {dims} says {int(np.prod(dims))}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _parsed(path: Path, magic: int) -> np.ndarray:
    return file_memo(path, f"idx{magic}", lambda p: read_idx(p, magic))  # frombuffer over bytes: read-only


def _split(paths: dict[str, Path], prefix: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    images = _parsed(paths[f"{prefix}_images"], IMAGE_MAGIC)
    labels = _parsed(paths[f"{prefix}_labels"], LABEL_MAGIC)
    if images.shape != (count, 28, 28):
        raise _corrupt(paths[f"{prefix}_images"], f"holds images of shape {images.shape}, expected {(count, 28, 28)}")
    if labels.shape != (count,) or labels.max() > 9:
        raise _corrupt(paths[f"{prefix}_labels"], f"does not hold {count} labels in 0-9")
    x = images.reshape(count, 784).astype(np.float32) / np.float32(255)
    return x, labels.astype(np.int64)


def locate(data_dir: str | Path | None = None, download: bool = True) -> dict[str, Path]:
    """Verified paths of the four files (downloading missing ones if allowed)."""
    found = {k: files.find(NAME, s.name, data_dir) for k, s in FILES.items()}
    missing = [FILES[k].name for k, p in found.items() if p is None]
    if missing and not download:
        raise files.missing_error(NAME, missing, data_dir, "the four MNIST .gz files")
    return {
        k: files.verify(NAME, p, FILES[k]) if p is not None else files.download(NAME, FILES[k])
        for k, p in found.items()
    }


def load_raw(data_dir: str | Path | None = None, download: bool = True) -> RawData:
    """All of MNIST: 60000 training and 10000 test images with labels."""
    paths = locate(data_dir, download)
    train, train_labels = _split(paths, "train", 60000)
    test, test_labels = _split(paths, "test", 10000)
    return RawData(train, test, (28, 28), train_labels=train_labels, test_labels=test_labels)


DATASETS.register(NAME)(
    Source(load_raw, default_binarize="dynamic", default_validation=10000,
           image_shape=(28, 28), train_pool=60000,
           description="MNIST 28x28 grey-scale digits (60000 train, 10000 test), intensities in [0, 1]")
)
