"""What every dataset module hands to :func:`hiervae.data.load_dataset`.

A dataset module only knows how to get its arrays; splitting off validation data and
binarising are done once, in ``datasets.py``, so every dataset behaves the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hiervae.registry import Registry


@dataclass(frozen=True)
class RawData:
    """Arrays as published: float32 ``(N, D)`` values in [0, 1].

    ``valid is None`` means the data has no given validation split: ``load_dataset``
    carves it from the tail of ``train``.  ``binary`` means the values already are a
    fixed, published binarisation (so no further binarising is allowed).
    """

    train: np.ndarray
    test: np.ndarray
    image_shape: tuple[int, ...]  # (H, W) grey or (C, H, W) colour
    valid: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    valid_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    binary: bool = False


@dataclass(frozen=True)
class Source:
    """A registered dataset: how to load it and its defaults."""

    load: Callable[[str | Path | None, bool], RawData]  # (data_dir, download) -> RawData
    default_binarize: str
    default_validation: int | None  # None: the validation split is given by the data
    description: str
    binary: bool = False  # already a fixed binarisation: dynamic binarisation is refused
    binarize_modes: tuple[str, ...] | None = None  # allowed modes (None: all)
    image_shape: tuple[int, ...] | None = None  # (H, W) or (C, H, W), known before loading (None: unknown)
    train_pool: int | None = None  # training examples before validation is carved out (None: unknown)
    fixed_valid: int | None = None  # size of a given validation split (with default_validation None)
    classes: int | None = None  # the labels' classes (None: no labels)


DATASETS: Registry[Source] = Registry("dataset")
