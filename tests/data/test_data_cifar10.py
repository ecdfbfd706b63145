"""CIFAR-10 loading from small generated files in CIFAR-10's own pickle format (no network)."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hiervae.data import DATASETS, cifar10, files, load_dataset
from hiervae.errors import DataError

PER_BATCH = 3  # images per generated batch: 15 training, 3 test


def _batch(seed: int, n: int = PER_BATCH) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


BATCHES = {name: _batch(i) for i, name in enumerate((*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH))}


def _pickled(batches: dict) -> dict[str, bytes]:
    return {name: pickle.dumps(b, protocol=2) for name, b in batches.items()}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _write_dir(root: Path, blobs: dict[str, bytes]) -> Path:
    folder = root / cifar10.FOLDER
    folder.mkdir(parents=True)
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
    return folder


def _archive_bytes(blobs: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("batches.meta", b"meta"), *blobs.items()]:
            info = tarfile.TarInfo(f"{cifar10.FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def blobs() -> dict[str, bytes]:
    return _pickled(BATCHES)


@pytest.fixture
def trust(monkeypatch):
    """Make the generated files the 'published' ones: patch the pinned checksums."""

    def apply(blobs: dict[str, bytes] | None = None, archive: bytes | None = None):
        if blobs is not None:
            monkeypatch.setattr(cifar10, "BATCH_MD5", {n: _md5(b) for n, b in blobs.items()})
        if archive is not None:
            spec = files.FileSpec(cifar10.ARCHIVE.name, hashlib.sha256(archive).hexdigest(), len(archive),
                                  cifar10.ARCHIVE.urls)
            monkeypatch.setattr(cifar10, "ARCHIVE", spec)
            monkeypatch.setattr(cifar10, "ARCHIVE_MD5", _md5(archive))

    return apply


def _expected():
    train = np.concatenate([BATCHES[n][b"data"] for n in cifar10.TRAIN_BATCHES]) / np.float32(255)
    labels = np.concatenate([BATCHES[n][b"labels"] for n in cifar10.TRAIN_BATCHES])
    return train.astype(np.float32), labels


def test_published_checksums_and_registration():
    assert cifar10.ARCHIVE.urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    assert cifar10.ARCHIVE_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar10.ARCHIVE.size == 170498071
    assert set(cifar10.BATCH_MD5) == {*cifar10.TRAIN_BATCHES, "test_batch"}
    source = DATASETS.get("cifar10")
    assert source.default_binarize == "none" and source.default_validation == 5000


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_extracted_directory_loads_in_chw_order(tmp_path, blobs, trust, layout):
    trust(blobs=blobs)
    root = tmp_path / "data"
    _write_dir(root / "cifar10" if layout == "nested" else root, blobs)
    raw = cifar10.load_raw(root, download=False)
    train, labels = _expected()
    assert raw.train.shape == (5 * PER_BATCH, 3072) and raw.train.dtype == np.float32
    np.testing.assert_array_equal(raw.train, train)
    np.testing.assert_array_equal(raw.train_labels, labels)
    np.testing.assert_array_equal(raw.test, BATCHES["test_batch"][b"data"] / np.float32(255))
    assert raw.test_labels.tolist() == BATCHES["test_batch"][b"labels"] and raw.test_labels.dtype == np.int64
    assert raw.image_shape == (3, 32, 32) and raw.valid is None and not raw.binary
    # CHW: channel c, row h, column w of image 0 is data[0, c*1024 + h*32 + w]
    image = raw.test[0].reshape(raw.image_shape)
    assert image[2, 5, 7] == BATCHES["test_batch"][b"data"][0, 2 * 1024 + 5 * 32 + 7] / np.float32(255)


def test_archive_loads_the_same_arrays(tmp_path, blobs, trust):
    archive = _archive_bytes(blobs)
    trust(blobs=blobs, archive=archive)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / cifar10.ARCHIVE.name).write_bytes(archive)
    _write_dir(tmp_path / "d", blobs)
    from_archive = cifar10.load_raw(tmp_path / "a", download=False)
    from_dir = cifar10.load_raw(tmp_path / "d", download=False)
    np.testing.assert_array_equal(from_archive.train, from_dir.train)
    np.testing.assert_array_equal(from_archive.test_labels, from_dir.test_labels)


def test_load_dataset_splits_validation_from_the_tail(tmp_path, blobs, trust):
    trust(blobs=blobs)
    _write_dir(tmp_path, blobs)
    s = load_dataset("cifar10", data_dir=tmp_path, validation=4, download=False)
    train, labels = _expected()
    assert s.binarize == "none" and s.event_shape == (3072,) and s.image_shape == (3, 32, 32)
    assert s.train.shape == (11, 3072) and s.valid.shape == (4, 3072) and s.test.shape == (3, 3072)
    assert torch.equal(s.valid, torch.from_numpy(train[-4:])) and torch.equal(s.train, torch.from_numpy(train[:-4]))
    assert s.valid_labels.tolist() == labels[-4:].tolist() and s.train_labels.tolist() == labels[:-4].tolist()
    assert s.train.min() >= 0 and s.train.max() <= 1


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_binarizing_cifar10_is_refused(tmp_path, blobs, trust, mode):
    trust(blobs=blobs)
    _write_dir(tmp_path, blobs)
    with pytest.raises(DataError, match="binarize"):
        load_dataset("cifar10", data_dir=tmp_path, validation=4, binarize=mode, download=False)


def test_published_checksums_reject_other_files(tmp_path, blobs, one_line):
    folder = _write_dir(tmp_path / "d", blobs)
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path / "d", download=False)
    msg = one_line(err)
    assert msg.startswith("cifar10: ") and str(folder / "data_batch_1") in msg
    assert "expected c99cafc152244af753f735de768cd75f" in msg
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / cifar10.ARCHIVE.name).write_bytes(_archive_bytes(blobs))
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path / "a", download=False)
    assert "expected 6d958be07457" in one_line(err)


def test_archive_with_right_sha256_but_wrong_md5_is_refused(tmp_path, blobs, trust, monkeypatch, one_line):
    archive = _archive_bytes(blobs)
    trust(archive=archive)
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", "0" * 32)
    (tmp_path / cifar10.ARCHIVE.name).write_bytes(archive)
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path, download=False)
    assert f"has md5 {_md5(archive)}, expected {'0' * 32}" in one_line(err)


def test_missing_files_are_named_without_downloading(tmp_path, one_line):
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path, download=False)
    msg = one_line(err)
    assert "cifar-10-python.tar.gz, cifar-10-batches-py/ not found" in msg and str(tmp_path) in msg


def test_incomplete_directory_names_the_missing_batch(tmp_path, blobs, trust, one_line):
    trust(blobs=blobs)
    folder = _write_dir(tmp_path, blobs)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path, download=False)
    assert f"{folder} has no data_batch_4" in one_line(err)


@pytest.mark.parametrize(
    "blob, fragment",
    [
        (b"not a pickle at all", "is not a CIFAR-10 batch"),
        (pickle.dumps([1, 2, 3], protocol=2), "holds a list"),
        (pickle.dumps({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, protocol=2), "expected uint8 (N, 3072)"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2), "2 labels in 0-9"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2), "2 labels in 0-9"),
    ],
)
def test_corrupt_batches_are_one_line_errors(tmp_path, blobs, trust, one_line, blob, fragment):
    blobs = {**blobs, "data_batch_2": blob}
    trust(blobs=blobs)
    folder = _write_dir(tmp_path, blobs)
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path, download=False)
    msg = one_line(err)
    assert str(folder / "data_batch_2") in msg and fragment in msg


class _Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_may_only_build_numpy_arrays(tmp_path, blobs, trust, one_line, capsys):
    blobs = {**blobs, "test_batch": pickle.dumps({b"data": _Boom(), b"labels": []}, protocol=2)}
    trust(blobs=blobs)
    _write_dir(tmp_path, blobs)
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path, download=False)
    msg = one_line(err)
    assert "refusing to load" in msg and "print" in msg
    assert "must never run" not in capsys.readouterr().out


def test_batches_pickled_by_numpy_1_load_too(tmp_path, blobs, trust):
    """The published files name numpy.core.multiarray (numpy 1), not numpy._core."""
    old = {n: b.replace(b"numpy._core.multiarray", b"numpy.core.multiarray") for n, b in blobs.items()}
    assert all(b"numpy.core.multiarray" in b for b in old.values())
    trust(blobs=old)
    _write_dir(tmp_path, old)
    np.testing.assert_array_equal(cifar10.load_raw(tmp_path, download=False).train, _expected()[0])


def test_truncated_archive_is_a_one_line_error(tmp_path, blobs, trust, one_line):
    archive = _archive_bytes(blobs)[:-200]
    trust(archive=archive)
    (tmp_path / cifar10.ARCHIVE.name).write_bytes(archive)
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path, download=False)
    assert "is not a readable .tar.gz" in one_line(err)


def test_archive_without_a_batch_is_a_one_line_error(tmp_path, blobs, trust, one_line):
    archive = _archive_bytes({k: v for k, v in blobs.items() if k != "test_batch"})
    trust(archive=archive)
    (tmp_path / cifar10.ARCHIVE.name).write_bytes(archive)
    with pytest.raises(DataError) as err:
        cifar10.load_raw(tmp_path, download=False)
    assert "has no cifar-10-batches-py/test_batch" in one_line(err)


def test_download_goes_to_the_cache_and_is_verified(tmp_path, blobs, trust, web):
    archive = _archive_bytes(blobs)
    trust(archive=archive)
    web[cifar10.URL] = archive
    raw = cifar10.load_raw(None, download=True)
    assert web.requested == [cifar10.URL]
    assert (files.cache_dir() / "cifar10" / cifar10.ARCHIVE.name).read_bytes() == archive
    np.testing.assert_array_equal(raw.train, _expected()[0])
    # second load: found in the cache, no request
    cifar10.load_raw(None, download=True)
    assert web.requested == [cifar10.URL]


def test_download_with_wrong_md5_is_refused(tmp_path, blobs, trust, web, monkeypatch, one_line):
    archive = _archive_bytes(blobs)
    trust(archive=archive)
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", "f" * 32)
    web[cifar10.URL] = archive
    with pytest.raises(DataError) as err:
        cifar10.load_raw(None, download=True)
    assert "expected ffffffff" in one_line(err)
