"""``load_data``: a spec's ``data:`` section to the tensors its observed nodes take.

A registered dataset (``mnist``, ``fashion_mnist``, ...) loads through
:func:`~hiervae.data.datasets.load_dataset`; a user's files (``dataset: my.npz`` or
``dataset: files``) through :mod:`hiervae.data.own`.  Either way :func:`~hiervae.data.binding.bind`
then gives every observed node its ``(N, D)`` tensor per split.
"""

from __future__ import annotations

from pathlib import Path

from hiervae.data import own
from hiervae.data.binding import BoundData, bind
from hiervae.data.datasets import DataSplits, load_dataset


def load_splits(data, *, base: Path | None = None, data_dir=None, download: bool = True) -> DataSplits:
    """The arrays named by ``data`` (a resolved DataSpec); ``base`` anchors relative file paths."""
    if own.is_own(data.dataset):
        return own.load(data, base)
    return load_dataset(data.dataset, data_dir=data_dir if data_dir is not None else data.data_dir,
                        binarize=data.binarize, validation=data.validation, download=download,
                        dequantize=data.dequantize)


def load_data(graph, *, data_dir=None, download: bool = True) -> BoundData:
    """``graph``'s data, bound to its observed nodes (relative paths: from the spec's directory)."""
    base = Path(graph.source).parent if graph.source else None
    return bind(load_splits(graph.data, base=base, data_dir=data_dir, download=download), graph)
