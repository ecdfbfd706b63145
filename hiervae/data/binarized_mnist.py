"""Statically binarised MNIST (Larochelle & Murray 2011): 50000/10000/10000, values {0, 1}.

The data is read from ``binarized_mnist.npz`` (keys train/valid/test, uint8).  Users
with internet access get it by downloading Larochelle's three ``.amat`` text files
(sha256-checked) and converting them once into the npz in the cache.

Why two checks: the published npz is recognised by its file sha256 (fast).  An npz we
converted ourselves holds the same arrays but not the same bytes (zip timestamps,
compressor version), so a file whose sha256 differs is accepted only if the sha256 of
each array's raw bytes is the published one.  Either way the pixels are exactly the
standard benchmark's.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np

import hiervae.data.files as files
from hiervae.data.base import DATASETS, RawData, Source
from hiervae.data.files import FileSpec
from hiervae.errors import DataError
from hiervae.fileio import atomic_file, file_memo

NAME = "binarized_mnist"
NPZ = FileSpec("binarized_mnist.npz", "350243cb824d66d022e0c3e87cac231231668817ff03f5f6d7b6533017d56b4b", 2966930)
SPLITS = {"train": 50000, "valid": 10000, "test": 10000}
# sha256 of each array's C-order uint8 bytes (the pixels themselves).
CONTENT_SHA256 = {
    "train": "43490d4d6ac9002727af4426d8748609fdb7e4094fa65ad8d681ea60082a7a5a",
    "valid": "069b4f0beb389b776478c3e872b4df71c95ac4be64d7cbe6d32e24ebac8e6d5e",
    "test": "ca0294c3b8d984c7a1dc891015a8eea6f37bae59a34e35ea0fc8c47110a8dd86",
}
AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
AMAT = {
    "train": ("ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d", 78400000),
    "valid": ("1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2", 15680000),
    "test": ("e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c", 15680000),
}
AMAT_FILES = {
    split: FileSpec(f"binarized_mnist_{split}.amat", sha, size, (AMAT_URL.format(split=split),))
    for split, (sha, size) in AMAT.items()
}

log = logging.getLogger(__name__)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in SPLITS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}
    return arrays


def _content_ok(arrays: dict[str, np.ndarray]) -> bool:
    return len(arrays) == len(SPLITS) and all(
        a.dtype == np.uint8 and a.shape == (SPLITS[k], 784)
        and hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() == CONTENT_SHA256[k]
        for k, a in arrays.items()
    )


def read_verified(path: Path) -> dict[str, np.ndarray]:
    """The three uint8 arrays of ``path``; DataError unless they are the published ones."""
    digest = files.sha256_of(path)
    arrays = _read_npz(path)
    checked = digest == NPZ.checksum or file_memo(path, "binarized-mnist-content", lambda p: _content_ok(arrays))
    if not checked or not arrays:
        raise files.checksum_error(NAME, path, NPZ, digest)
    return arrays


def parse_amat(path: Path, rows: int) -> np.ndarray:
    """An .amat file (lines of 784 '0'/'1' separated by spaces) as uint8 ``(rows, 784)``."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size != rows * 1568:
        raise DataError(f"{NAME}: {path} has {raw.size} bytes, expected {rows * 1568}; delete it")
    return (raw.reshape(rows, 1568)[:, ::2] - ord("0")).copy()


def convert_amat(data_dir: str | Path | None, download: bool) -> Path | None:
    """Build the npz in the cache from the three .amat files; None if they are not at hand.

    .amat files already on disk (data root or cache) are used; missing ones are
    downloaded into the cache if allowed, and deleted again after conversion.
    """
    found = {s: files.find(NAME, f.name, data_dir) for s, f in AMAT_FILES.items()}
    if None in found.values() and not download:
        return None
    fetched = [s for s, p in found.items() if p is None]
    amats = {
        s: files.verify(NAME, p, AMAT_FILES[s]) if p is not None else files.download(NAME, AMAT_FILES[s])
        for s, p in found.items()
    }
    arrays = {s: parse_amat(p, SPLITS[s]) for s, p in amats.items()}
    dest = files.cache_dir() / NAME / NPZ.name
    try:
        with atomic_file(dest) as f:
            np.savez_compressed(f, **arrays)
    except OSError as e:
        raise DataError(f"{NAME}: cannot write into {dest.parent}: {e.strerror or e}; set XDG_CACHE_HOME") from None
    for s in fetched:
        amats[s].unlink(missing_ok=True)
    log.info("wrote %s", dest)
    return dest


def load_raw(data_dir: str | Path | None = None, download: bool = True) -> RawData:
    """The fixed binarisation with its given 50000/10000/10000 split (no labels)."""
    path = files.find(NAME, NPZ.name, data_dir) or convert_amat(data_dir, download)
    if path is None:
        raise files.missing_error(NAME, [NPZ.name], data_dir, "binarized_mnist.npz (or the three .amat files)")
    arrays = read_verified(path)
    x = {k: a.astype(np.float32) for k, a in arrays.items()}
    return RawData(x["train"], x["test"], (28, 28), valid=x["valid"], binary=True)


DATASETS.register(NAME)(
    Source(load_raw, default_binarize="static", default_validation=None,
           image_shape=(28, 28), train_pool=50000, fixed_valid=10000,
           description="statically binarised MNIST of Larochelle & Murray (50000/10000/10000), values {0, 1}",
           binary=True)
)
