"""Datasets for hiervae: MNIST, statically binarised MNIST, CIFAR-10 and offline sklearn digits.

    splits = load_dataset("mnist", data_dir=None, binarize="dynamic")
    for epoch in range(epochs):
        for x in Batches(splits.train, 100, seed=seed, binarize=splits.dynamic).epoch(epoch):
            ...

Importing this package registers every dataset in :data:`DATASETS` (one module each).
"""

from hiervae.data import binarized_mnist, cifar10, digits, idx, mnist_variants  # noqa: F401  (registers the datasets)
from hiervae.data import idx as mnist  # noqa: F401  (MNIST lives in the IDX module)
from hiervae.data.base import DATASETS, RawData, Source
from hiervae.data.batches import Batches
from hiervae.data.datasets import (BINARIZE_MODES, EVAL_SEEDS, DataOptionError, DataSplits, binarize_fixed,
                                   load_dataset, place_tensor, resident_on, resolve_options)
from hiervae.data.files import ENV_VAR, cache_dir

__all__ = [
    "BINARIZE_MODES", "Batches", "DATASETS", "DataOptionError", "DataSplits", "ENV_VAR", "EVAL_SEEDS", "RawData",
    "Source", "binarize_fixed", "cache_dir", "load_dataset", "place_tensor", "resident_on", "resolve_options",
]
