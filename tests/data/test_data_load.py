"""load_dataset: registry, validation split, binarisation modes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiervae.data import DATASETS, EVAL_SEEDS, DataSplits, binarize_fixed, load_dataset, mnist
from hiervae.errors import DataError


def _binary(t: torch.Tensor) -> bool:
    return bool(torch.all((t == 0) | (t == 1)))


def _mean(t: torch.Tensor) -> float:
    return (t.sum(dtype=torch.float64) / t.numel()).item()


@pytest.fixture(scope="module")
def raw(shared_data):
    return mnist.load_raw(shared_data / "mnist", download=False)


@pytest.fixture(scope="module")
def dynamic(shared_data):
    return load_dataset("mnist", data_dir=shared_data, download=False)


def test_registry_names():
    assert DATASETS.names() == ["binarized_mnist", "cifar10", "digits", "fashion_mnist", "idx", "kmnist", "mnist"]


def test_mnist_default_is_dynamic_with_the_standard_split(dynamic, raw):
    s = dynamic
    assert isinstance(s, DataSplits) and s.name == "mnist" and s.binarize == "dynamic" and s.dynamic
    assert s.train.shape == (50000, 784) and s.valid.shape == (10000, 784) and s.test.shape == (10000, 784)
    assert s.event_shape == (784,) and s.image_shape == (28, 28)
    assert s.train.dtype == s.valid.dtype == s.test.dtype == torch.float32
    np.testing.assert_array_equal(s.train.numpy(), raw.train[:50000])  # real-valued means
    assert not _binary(s.train)
    assert _binary(s.valid) and _binary(s.test)  # one fixed evaluation sample
    # the fixed streams are row-major, so a prefix can be re-derived cheaply
    np.testing.assert_array_equal(s.valid[:500].numpy(), binarize_fixed(raw.train[50000:50500], EVAL_SEEDS["valid"]))
    np.testing.assert_array_equal(s.test[:500].numpy(), binarize_fixed(raw.test[:500], EVAL_SEEDS["test"]))
    assert _mean(s.test) == pytest.approx(0.132515, abs=2e-3)
    assert torch.equal(s.valid_labels, torch.from_numpy(raw.train_labels[50000:]))
    assert s.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_validation_size_takes_the_tail_of_train(shared_data, raw):
    s = load_dataset("mnist", data_dir=shared_data, download=False, validation=5000, binarize="none")
    assert s.train.shape == (55000, 784) and s.valid.shape == (5000, 784)
    np.testing.assert_array_equal(s.valid.numpy(), raw.train[55000:])
    np.testing.assert_array_equal(s.train[-3:].numpy(), raw.train[54997:55000])
    np.testing.assert_array_equal(s.test.numpy(), raw.test)
    assert torch.equal(s.valid_labels, torch.from_numpy(raw.train_labels[55000:]))


def test_validation_zero_keeps_all_training_data():
    s = load_dataset("digits", validation=0)
    assert s.train.shape == (1597, 64) and s.valid.shape == (0, 64) and s.valid_labels.shape == (0,)


def test_static_mnist_binarises_every_split_with_fixed_seeds(shared_data, raw, dynamic):
    s = load_dataset("mnist", data_dir=shared_data, download=False, binarize="static")
    assert s.binarize == "static" and not s.dynamic
    assert _binary(s.train) and _binary(s.valid) and _binary(s.test)
    np.testing.assert_array_equal(s.train[:100].numpy(), binarize_fixed(raw.train[:100], EVAL_SEEDS["train"]))
    assert torch.equal(s.test, dynamic.test)  # evaluation data is the same in both modes
    assert _mean(s.train) == pytest.approx(raw.train[:50000].mean(dtype=np.float64), abs=1e-3)


def test_binarize_fixed_is_reproducible_and_seeded():
    p = np.linspace(0, 1, 5 * 9000, dtype=np.float32).reshape(9000, 5)  # spans two chunks
    a, b, c = binarize_fixed(p, 1), binarize_fixed(p, 1), binarize_fixed(p, 2)
    assert a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(a[p == 0] == 0) and np.all(a[p == 1] == 1)
    assert a.mean() == pytest.approx(p.mean(), abs=0.01)
    np.testing.assert_array_equal(binarize_fixed(p[:10], 1), a[:10])  # row-major stream: prefix-stable


def test_binarized_mnist_uses_its_given_split(shared_data):
    s = load_dataset("binarized_mnist", data_dir=shared_data, download=False)
    assert s.binarize == "static" and not s.dynamic and s.train_labels is None
    assert s.train.shape == (50000, 784) and s.valid.shape == (10000, 784) and s.test.shape == (10000, 784)
    assert _mean(s.valid) == pytest.approx(0.131127, abs=5e-7)


def test_binarized_mnist_refuses_dynamic_binarisation(tmp_path, one_line):
    with pytest.raises(DataError) as err:  # refused before looking for any file
        load_dataset("binarized_mnist", data_dir=tmp_path, binarize="dynamic", download=False)
    msg = one_line(err)
    assert msg.startswith("binarized_mnist: ") and "'static'" in msg and "'mnist'" in msg


def test_binarized_mnist_refuses_another_validation_size(shared_data, one_line):
    with pytest.raises(DataError) as err:
        load_dataset("binarized_mnist", data_dir=shared_data, validation=5000)
    assert "fixed validation split of 10000 examples" in one_line(err)


def test_unknown_dataset(one_line):
    with pytest.raises(DataError) as err:
        load_dataset("cifar")
    msg = one_line(err)
    assert "'cifar'" in msg and "binarized_mnist, cifar10, digits, fashion_mnist, idx, kmnist, mnist" in msg


@pytest.mark.parametrize("binarize", ["Dynamic", "yes", ""])
def test_unknown_binarize_mode(binarize, one_line):
    with pytest.raises(DataError) as err:
        load_dataset("digits", binarize=binarize)
    assert "dynamic, static, none" in one_line(err)


@pytest.mark.parametrize("validation", [-1, 1597, 2.5, True])
def test_bad_validation_size(validation, one_line):
    with pytest.raises(DataError) as err:
        load_dataset("digits", validation=validation)
    assert "validation must be an integer in [0, 1596]" in one_line(err)


def test_missing_mnist_through_load_dataset(tmp_path, one_line):
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = one_line(err)
    assert "--data-dir" in msg and "HIERVAE_DATA" in msg


def test_to_moves_every_tensor():
    s = load_dataset("digits")
    moved = s.to("meta")
    assert moved.train.device.type == "meta" and moved.test_labels.device.type == "meta"
    assert moved.valid_labels.device.type == "meta" and s.train.device.type == "cpu"
    assert moved.binarize == s.binarize and moved.image_shape == s.image_shape
