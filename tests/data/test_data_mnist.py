"""MNIST IDX loading against the real files and the README's measured values."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from hiervae.data import files, mnist
from hiervae.errors import DataError


@pytest.fixture(scope="module")
def raw(shared_data):
    return mnist.load_raw(shared_data / "mnist", download=False)


def _copy_with(tmp_path: Path, shared_data: Path, replace: dict[str, bytes] | None = None) -> Path:
    """A data dir of symlinks to the real files, with some files replaced by given bytes."""
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    for spec in mnist.FILES.values():
        dest = root / "mnist" / spec.name
        if replace and spec.name in replace:
            dest.write_bytes(replace[spec.name])
        else:
            dest.symlink_to(shared_data / "mnist" / spec.name)
    return root


def test_shapes_range_and_means_match_the_readme(raw):
    assert raw.train.shape == (60000, 784) and raw.test.shape == (10000, 784)
    assert raw.train.dtype == np.float32 and raw.test.dtype == np.float32
    assert raw.train.min() == 0.0 and raw.train.max() == 1.0
    assert raw.train.mean(dtype=np.float64) == pytest.approx(0.130660, abs=5e-7)
    assert raw.test.mean(dtype=np.float64) == pytest.approx(0.132515, abs=5e-7)
    assert raw.image_shape == (28, 28) and raw.valid is None and not raw.binary


def test_labels_match_the_readme(raw):
    assert raw.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(raw.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(raw.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_pixels_are_row_major_intensities(raw, shared_data):
    with gzip.open(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        first = np.frombuffer(f.read(16 + 784), np.uint8, offset=16)
    np.testing.assert_array_equal(raw.test[0], first / np.float32(255))


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_both_directory_layouts_are_found(tmp_path, shared_data, layout):
    root = tmp_path / "root"
    where = root / "mnist" if layout == "nested" else root
    where.mkdir(parents=True)
    for spec in mnist.FILES.values():
        (where / spec.name).symlink_to(shared_data / "mnist" / spec.name)
    paths = mnist.locate(root, download=False)
    assert {p.name for p in paths.values()} == {s.name for s in mnist.FILES.values()}
    assert all(p.parent == where for p in paths.values())


def test_hiervae_data_env_var_is_used(monkeypatch, shared_data):
    monkeypatch.setenv("HIERVAE_DATA", str(shared_data))
    assert mnist.locate(None, download=False)["test_images"] == shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"


def test_truncated_file_is_named_in_one_line(tmp_path, shared_data, one_line):
    name = "t10k-labels-idx1-ubyte.gz"
    root = _copy_with(tmp_path, shared_data, {name: (shared_data / "mnist" / name).read_bytes()[:2000]})
    with pytest.raises(DataError) as err:
        mnist.load_raw(root, download=False)
    msg = one_line(err)
    assert msg.startswith("mnist: ") and str(root / "mnist" / name) in msg
    assert "expected f7ae60f92e00" in msg and "(2000 bytes, expected 4542)" in msg and "--data-dir" in msg


def test_garbled_file_of_the_right_size_fails_its_checksum(tmp_path, shared_data, one_line):
    name = "train-labels-idx1-ubyte.gz"
    data = bytearray((shared_data / "mnist" / name).read_bytes())
    data[5000] ^= 0xFF
    root = _copy_with(tmp_path, shared_data, {name: bytes(data)})
    with pytest.raises(DataError) as err:
        mnist.load_raw(root, download=False)
    msg = one_line(err)
    assert name in msg and "sha256" in msg and "expected 3552534a0a55" in msg


def _gz(tmp_path: Path, payload: bytes, name: str = "x-idx.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(payload))
    return path


@pytest.mark.parametrize(
    "payload, magic, complaint",
    [
        (struct.pack(">IIII", 2049, 1, 28, 28) + bytes(784), mnist.IMAGE_MAGIC, "magic number 2049, expected 2051"),
        (struct.pack(">II", 2051, 3) + bytes(3), mnist.LABEL_MAGIC, "magic number 2051, expected 2049"),
        (b"\x00\x00", mnist.LABEL_MAGIC, "magic number None"),
        (struct.pack(">IIII", 2051, 2, 28, 28) + bytes(784), mnist.IMAGE_MAGIC, "holds 784 data bytes"),
        (struct.pack(">II", 2049, 3) + bytes(4), mnist.LABEL_MAGIC, "holds 4 data bytes"),
    ],
)
def test_read_idx_rejects_bad_headers(tmp_path, one_line, payload, magic, complaint):
    path = _gz(tmp_path, payload)
    with pytest.raises(DataError) as err:
        mnist.read_idx(path, magic)
    msg = one_line(err)
    assert str(path) in msg and complaint in msg


def test_read_idx_parses_a_good_file(tmp_path):
    path = _gz(tmp_path, struct.pack(">IIII", 2051, 2, 28, 28) + bytes(range(256)) * 6 + bytes(32))
    images = mnist.read_idx(path, mnist.IMAGE_MAGIC)
    assert images.shape == (2, 28, 28) and images[0, 0, :3].tolist() == [0, 1, 2]


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_read_idx_rejects_broken_gzip(tmp_path, one_line, damage):
    good = gzip.compress(struct.pack(">II", 2049, 1000) + bytes(1000))
    path = tmp_path / "labels.gz"
    path.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"plain text, not gzip" * 10)
    with pytest.raises(DataError) as err:
        mnist.read_idx(path, mnist.LABEL_MAGIC)
    msg = one_line(err)
    assert str(path) in msg and "not a readable gzip file" in msg


def test_missing_files_without_download_say_how_to_fix(tmp_path, one_line):
    with pytest.raises(DataError) as err:
        mnist.load_raw(tmp_path, download=False)
    msg = one_line(err)
    assert all(s.name in msg for s in mnist.FILES.values())
    assert str(tmp_path) in msg and "--data-dir" in msg and "HIERVAE_DATA" in msg
    assert not files.cache_dir().exists()


def test_download_serves_the_cache_and_is_verified(tmp_path, shared_data, web):
    for spec in mnist.FILES.values():
        web[spec.urls[0]] = OSError("connection reset")  # first mirror broken: falls back
        web[spec.urls[1]] = (shared_data / "mnist" / spec.name).read_bytes()
    (tmp_path / "empty").mkdir()
    paths = mnist.locate(tmp_path / "empty", download=True)
    cache = files.cache_dir() / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(s.name for s in mnist.FILES.values())
    for key, path in paths.items():
        assert path.parent == cache
        assert path.read_bytes() == (shared_data / "mnist" / mnist.FILES[key].name).read_bytes()
    assert mnist.locate(tmp_path / "empty", download=False) == paths  # now found offline
    labels = mnist.read_idx(paths["train_labels"], mnist.LABEL_MAGIC)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_download_failure_is_a_data_error(tmp_path, web, one_line):
    with pytest.raises(DataError) as err:
        mnist.load_raw(tmp_path, download=True)  # every URL answers HTTP 404
    msg = one_line(err)
    assert msg.startswith("mnist: could not download ") and "HTTP 404" in msg
    assert "storage.googleapis.com/cvdf-datasets/mnist/" in msg and "ossci-datasets" in msg


def test_download_of_wrong_bytes_is_a_checksum_error(tmp_path, web, one_line, shared_data):
    for spec in mnist.FILES.values():
        for url in spec.urls:
            web[url] = (shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()  # wrong file
    with pytest.raises(DataError) as err:
        mnist.locate(tmp_path, download=True)
    msg = one_line(err)
    assert "could not download" in msg and "sha256 f7ae60f92e00" in msg
    assert list((files.cache_dir() / "mnist").glob("*")) == []


def test_mirrors_are_the_public_ones():
    urls = mnist.FILES["train_images"].urls
    assert urls == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
    )


def test_a_directory_in_place_of_a_file_counts_as_missing(tmp_path, shared_data, one_line):
    root = _copy_with(tmp_path, shared_data)
    (root / "mnist" / "train-images-idx3-ubyte.gz").unlink()
    (root / "mnist" / "train-images-idx3-ubyte.gz").mkdir()  # a directory, not a file
    with pytest.raises(DataError) as err:
        mnist.load_raw(root, download=False)
    msg = one_line(err)
    assert "train-images-idx3-ubyte.gz not found" in msg and "t10k-images" not in msg
