"""Statically binarised MNIST: the real npz, content checks, and .amat conversion."""

from __future__ import annotations

import numpy as np
import pytest

from hiervae.data import binarized_mnist as bm
from hiervae.data import files
from hiervae.errors import DataError

ONES = {"train": 5118041, "valid": 1028036, "test": 1038896}


@pytest.fixture(scope="module")
def arrays(shared_data):
    with np.load(shared_data / "binarized_mnist" / "binarized_mnist.npz") as z:
        return {k: z[k] for k in ("train", "valid", "test")}


@pytest.fixture(scope="module")
def amat_bytes(arrays):
    """The .amat text files, written as the README says (byte-identical to the originals)."""
    out = {}
    for split, a in arrays.items():
        text = np.full((len(a), 1568), ord(" "), np.uint8)
        text[:, ::2] = a + ord("0")
        text[:, -1] = ord("\n")
        out[split] = text.tobytes()
    return out


def test_real_file_has_the_readme_shapes_and_counts(shared_data):
    raw = bm.load_raw(shared_data, download=False)
    splits = {"train": raw.train, "valid": raw.valid, "test": raw.test}
    for split, x in splits.items():
        assert x.shape == (bm.SPLITS[split], 784) and x.dtype == np.float32
        assert ((x == 0) | (x == 1)).all()
        assert int(x.sum(dtype=np.float64)) == ONES[split]
    assert raw.test.mean(dtype=np.float64) == pytest.approx(0.132512, abs=5e-7)
    assert raw.binary and raw.image_shape == (28, 28) and raw.train_labels is None


def test_resaved_npz_with_the_same_pixels_is_accepted(tmp_path, arrays):
    path = tmp_path / "binarized_mnist.npz"
    np.savez(path, **arrays)  # uncompressed: other bytes, same arrays
    assert files.sha256_of(path) != bm.NPZ.checksum
    raw = bm.load_raw(tmp_path, download=False)
    np.testing.assert_array_equal(raw.valid, arrays["valid"])


def test_npz_with_one_pixel_changed_is_rejected(tmp_path, arrays, one_line):
    changed = dict(arrays, test=arrays["test"].copy())
    changed["test"][1234, 300] ^= 1
    np.savez(tmp_path / "binarized_mnist.npz", **changed)
    with pytest.raises(DataError) as err:
        bm.load_raw(tmp_path, download=False)
    msg = one_line(err)
    assert str(tmp_path / "binarized_mnist.npz") in msg and "expected 350243cb824d" in msg


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_corrupt_npz_is_rejected(tmp_path, shared_data, one_line, damage):
    data = bytearray((shared_data / "binarized_mnist" / "binarized_mnist.npz").read_bytes())
    if damage == "truncated":
        data = data[:100000]
    else:
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    (tmp_path / "binarized_mnist").mkdir()
    path = tmp_path / "binarized_mnist" / "binarized_mnist.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        bm.load_raw(tmp_path, download=False)
    msg = one_line(err)
    assert msg.startswith("binarized_mnist: ") and str(path) in msg and "sha256" in msg


def test_missing_without_download_says_how_to_fix(tmp_path, one_line):
    with pytest.raises(DataError) as err:
        bm.load_raw(tmp_path, download=False)
    msg = one_line(err)
    assert "binarized_mnist.npz not found" in msg and "--data-dir" in msg and "HIERVAE_DATA" in msg


def test_amat_files_are_downloaded_or_used_and_converted(tmp_path, web, amat_bytes, arrays):
    """train is served by the (fake) web, valid/test lie in the data dir: all are converted."""
    spec = bm.AMAT_FILES["train"]
    assert spec.urls == (
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_train.amat",)
    web[spec.urls[0]] = amat_bytes["train"]
    for split in ("valid", "test"):
        (tmp_path / bm.AMAT_FILES[split].name).write_bytes(amat_bytes[split])
    raw = bm.load_raw(tmp_path, download=True)
    assert web.requested == list(spec.urls)
    for split, x in {"train": raw.train, "valid": raw.valid, "test": raw.test}.items():
        np.testing.assert_array_equal(x, arrays[split])
    cache = files.cache_dir() / "binarized_mnist"
    assert [p.name for p in cache.iterdir()] == ["binarized_mnist.npz"]  # the downloaded .amat is gone
    assert all((tmp_path / bm.AMAT_FILES[s].name).is_file() for s in ("valid", "test"))  # the user's stay
    assert files.find("binarized_mnist", "binarized_mnist.npz", tmp_path) == cache / "binarized_mnist.npz"


def test_amat_with_wrong_bytes_is_rejected(tmp_path, web, amat_bytes, one_line):
    for split, spec in bm.AMAT_FILES.items():
        web[spec.urls[0]] = amat_bytes[split]
    web[bm.AMAT_FILES["test"].urls[0]] = amat_bytes["valid"]  # same size, wrong content
    with pytest.raises(DataError) as err:
        bm.load_raw(tmp_path, download=True)
    msg = one_line(err)
    assert "binarized_mnist_test.amat" in msg and "sha256" in msg
    assert not (files.cache_dir() / "binarized_mnist" / "binarized_mnist.npz").exists()


def test_parse_amat(tmp_path):
    path = tmp_path / "x.amat"
    path.write_bytes(b"1 0 1\n0 0 1\n")
    with pytest.raises(DataError):
        bm.parse_amat(path, 2)  # lines are not 784 values
    row = np.zeros(784, np.uint8)
    row[[0, 5, 783]] = 1
    path.write_bytes((" ".join(map(str, row)) + "\n").encode() * 2)
    np.testing.assert_array_equal(bm.parse_amat(path, 2), np.stack([row, row]))

