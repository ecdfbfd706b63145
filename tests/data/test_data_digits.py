"""The offline sklearn digits dataset: real images, fixed split, no files, no network."""

from __future__ import annotations

import numpy as np
import torch

from hiervae.data import digits, load_dataset


def test_loads_offline_with_the_fixed_split_sizes():
    splits = load_dataset("digits", download=False)
    assert splits.train.shape == (1397, 64) and splits.valid.shape == (200, 64) and splits.test.shape == (200, 64)
    assert splits.event_shape == (64,) and splits.image_shape == (8, 8) and splits.binarize == "dynamic"
    assert splits.train.dtype == torch.float32
    assert 0 <= splits.train.min() and splits.train.max() <= 1
    assert not torch.all((splits.train == 0) | (splits.train == 1))  # means, sampled per epoch
    assert torch.all((splits.test == 0) | (splits.test == 1))  # fixed evaluation sample
    assert splits.train_labels.shape == (1397,) and set(splits.test_labels.tolist()) <= set(range(10))


def test_split_is_deterministic_and_a_partition_of_the_real_data():
    from sklearn.datasets import load_digits

    a = load_dataset("digits", binarize="none")
    b = load_dataset("digits", binarize="none")
    for name in ("train", "valid", "test", "train_labels", "test_labels"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    ours = torch.cat([a.train, a.valid, a.test]).numpy()
    ref = (load_digits().data / 16.0).astype(np.float32)
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(ref, axis=0))
    assert not np.array_equal(ours, ref)  # permuted, not the sklearn order
    assert ours.max() == 1.0 and set(np.unique(ours * 16).tolist()) <= set(range(17))


def test_split_is_pinned():
    raw = digits.load_raw()
    assert raw.test.shape == (200, 64) and raw.train.shape == (1597, 64)
    assert digits.SPLIT_SEED == 0 and raw.test_labels[:10].tolist() == [9, 7, 2, 6, 2, 1, 6, 9, 9, 3]
