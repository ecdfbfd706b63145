"""Datasets for hiervae: MNIST, statically binarised MNIST, and offline sklearn digits.

    splits = load_dataset("mnist", data_dir=None, binarize="dynamic")
    for epoch in range(epochs):
        for x in Batches(splits.train, 100, seed=seed, binarize=splits.dynamic).epoch(epoch):
            ...

Importing this package registers every dataset in :data:`DATASETS`.
"""

from hiervae.data import (  # noqa: F401  (registers the datasets)
                                   binarized_mnist,
                                   cifar10,  # noqa: F401  (registers cifar10)
                                   digits,
                                   mnist,
)
from hiervae.data.base import DATASETS, RawData, Source
from hiervae.data.batches import Batches
from hiervae.data.datasets import (
                                   BINARIZE_MODES,
                                   EVAL_SEEDS,
                                   DataSplits,
                                   binarize_fixed,
                                   load_dataset,
                                   place_tensor,
                                   resident_on,
)
from hiervae.data.files import ENV_VAR, cache_dir

__all__ = [
    "BINARIZE_MODES", "Batches", "DATASETS", "DataSplits", "ENV_VAR", "EVAL_SEEDS", "RawData",
    "Source", "binarize_fixed", "cache_dir", "load_dataset", "place_tensor", "resident_on",
]
