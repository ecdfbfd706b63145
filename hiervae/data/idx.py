"""MNIST-format datasets: four gzipped IDX files (images and labels, train and test).

:class:`IdxDataset` reads any dataset published in that format (MNIST, Fashion-MNIST,
KMNIST, a user's own): the files are checked against their published checksums before
use (``files.py`` says where they are looked for and how they are downloaded), or, for a
user's own files (``dataset: idx`` with ``checksum: none``), not checked, which the spec
says explicitly.  Images come back as float32 intensities ``pixel / 255`` in [0, 1],
flattened row-major, labels as int64.  Parsed files are kept per process (read-only), so
loading a dataset twice in one run, for training and then for evaluation, parses it once.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import hiervae.data.files as files
from hiervae.data.base import DATASETS, RawData, Source
from hiervae.data.files import FileSpec
from hiervae.errors import DataError
from hiervae.fileio import file_memo

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
KEYS = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}


def _corrupt(path: Path, what: str, name: str = "idx") -> DataError:
    return DataError(f"{name}: {path} {what}; delete it or point --data-dir at a good copy")


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


@dataclass(frozen=True)
class IdxDataset:
    """One dataset in the IDX format: its name, the four files (with checksums, or None for
    a user's own, unchecked files), the example counts and the number of classes."""

    name: str
    files: dict[str, FileSpec] | None
    train: int | None = 60000
    test: int | None = 10000
    classes: int = 10
    what: str = "the four .gz files"

    def _split(self, paths: dict[str, Path], prefix: str, count: int | None) -> tuple[np.ndarray, np.ndarray]:
        images = _parsed(paths[f"{prefix}_images"], IMAGE_MAGIC)
        labels = _parsed(paths[f"{prefix}_labels"], LABEL_MAGIC)
        count = len(images) if count is None else count
        if images.ndim != 3 or images.shape[0] != count:
            raise _corrupt(paths[f"{prefix}_images"], f"holds images of shape {images.shape}, expected {count} images", self.name)
        if labels.shape != (count,) or labels.max() >= self.classes:
            raise _corrupt(paths[f"{prefix}_labels"], f"does not hold {count} labels in 0-{self.classes - 1}", self.name)
        x = images.reshape(count, -1).astype(np.float32) / np.float32(255)
        return x, labels.astype(np.int64)

    def locate(self, data_dir: str | Path | None = None, download: bool = True) -> dict[str, Path]:
        """Paths of the four files, verified (downloading missing ones if allowed)."""
        names = {k: (self.files[k].name if self.files else n) for k, n in KEYS.items()}
        found = {k: files.find(self.name, n, data_dir) for k, n in names.items()}
        missing = [names[k] for k, p in found.items() if p is None]
        if missing and (not download or not self.files):
            raise files.missing_error(self.name, missing, data_dir, self.what)
        if not self.files:  # the user's own files: not checked (the spec says checksum: none)
            return found  # type: ignore[return-value]
        return {k: files.verify(self.name, p, self.files[k]) if p is not None else files.download(self.name, self.files[k])
                for k, p in found.items()}

    def load_raw(self, data_dir: str | Path | None = None, download: bool = True) -> RawData:
        paths = self.locate(data_dir, download)
        train, train_labels = self._split(paths, "train", self.train)
        test, test_labels = self._split(paths, "test", self.test)
        side = int(round(np.sqrt(train.shape[1])))
        shape = (side, side) if side * side == train.shape[1] else (train.shape[1],)
        return RawData(train, test, shape, train_labels=train_labels, test_labels=test_labels)

    def register(self, description: str, image_shape: tuple[int, ...] | None = (28, 28)) -> None:
        DATASETS.register(self.name)(
            Source(self.load_raw, default_binarize="dynamic", default_validation=10000 if self.train else 0,
                   image_shape=image_shape, train_pool=self.train, classes=self.classes, description=description))


def published(base_urls: tuple[str, ...], checksums: dict[str, tuple[str, int]], algorithm: str = "sha256") -> dict[str, FileSpec]:
    """The four files of a published dataset: ``key -> (checksum, size)``, downloaded from ``base_urls``."""
    return {k: FileSpec(KEYS[k], c, size, tuple(u + KEYS[k] for u in base_urls), algorithm) for k, (c, size) in checksums.items()}


MNIST = IdxDataset("mnist", published(
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    {"train_images": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
     "train_labels": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
     "test_images": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
     "test_labels": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542)}),
    what="the four MNIST .gz files")
MNIST.register("MNIST 28x28 grey-scale digits (60000 train, 10000 test), intensities in [0, 1]")

OWN = IdxDataset("idx", None, train=None, test=None, what="the four IDX .gz files (train-images-idx3-ubyte.gz, ...)")
OWN.register("a user's own IDX files (MNIST's format and file names) in data_dir, unchecked (checksum: none)",
             image_shape=None)

# the module-level functions of MNIST, as before
FILES = MNIST.files
NAME = MNIST.name
locate = MNIST.locate
load_raw = MNIST.load_raw
