"""Scikit-learn's bundled handwritten digits: a real dataset that needs no download.

1797 real 8x8 digits (UCI optical recognition data) ship inside scikit-learn, so the
quickstart and the CPU smoke tests can train on real images offline.  Intensities
0..16 become ``/16`` in [0, 1].  The split is fixed: a permutation by a frozen legacy
``RandomState(0)`` stream (stable across numpy versions), last 200 for test, and by
default the 200 before that for validation, leaving 1397 for training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hiervae.data.base import DATASETS, RawData, Source

NAME = "digits"
SPLIT_SEED = 0
N_TEST = 200


def load_raw(data_dir: str | Path | None = None, download: bool = True) -> RawData:
    """All 1797 digits, permuted once; ``data_dir`` and ``download`` are not needed."""
    from sklearn.datasets import load_digits  # imported lazily: sklearn is slow to import

    digits = load_digits()
    order = np.random.RandomState(SPLIT_SEED).permutation(len(digits.data))
    x = (digits.data[order] / 16.0).astype(np.float32)
    y = digits.target[order].astype(np.int64)
    return RawData(x[:-N_TEST], x[-N_TEST:], (8, 8), train_labels=y[:-N_TEST], test_labels=y[-N_TEST:])


DATASETS.register(NAME)(
    Source(load_raw, default_binarize="dynamic", default_validation=200,
           image_shape=(8, 8), train_pool=1597, classes=10,
           description="scikit-learn's 1797 8x8 digits (1397/200/200), offline, intensities in [0, 1]")
)
