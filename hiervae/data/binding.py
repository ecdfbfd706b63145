"""Binding a dataset's arrays to a model's observed nodes: :func:`bind` -> :class:`BoundData`.

A dataset holds named arrays (``images`` and ``labels`` for the built-in ones; a file's own
names for a user's data).  ``data.arrays`` in the spec says which array each observed node
is (``{x: images, y: labels}``); a model with one observed node takes the dataset's first
array unless told otherwise.  Per split, every observed node gets an ``(N, D)`` float
tensor: images flattened, labels of a ``categorical`` node as one-hot rows.

Noise (dynamic binarisation, dequantisation) applies to the arrays that hold pixels (not
to labels): training re-samples them in every batch, validation and test hold one fixed
sample (see :mod:`hiervae.data.datasets`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from hiervae.data.datasets import EVAL_SEEDS, DataSplits, binarize_fixed, place_tensor
from hiervae.data.dequantize import dequantize_fixed
from hiervae.data.observations import Observations
from hiervae.errors import SpecError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class BoundData:
    """The run's data as the model sees it: per split, one ``(N, D)`` tensor per observed node."""

    name: str
    train: Observations
    valid: Observations
    test: Observations
    noisy: tuple[str, ...]  # observed nodes whose training values are re-sampled every batch
    binarize: str
    dequantize: str
    image_node: str | None = None  # the node drawn in sample grids
    image_shape: tuple[int, ...] | None = None
    source: dict | None = None  # a user's files and their sha256 (recorded in the run directory)

    @property
    def dynamic(self) -> bool:
        return self.binarize == "dynamic" and bool(self.noisy)

    @property
    def dequantized(self) -> bool:
        return self.dequantize == "uniform" and bool(self.noisy)

    def fixed(self, split: str) -> Observations:
        """``split`` as models are scored on it: ``train``'s noisy nodes with the fixed noise
        of ``EVAL_SEEDS["train"]``; ``valid`` and ``test`` as stored (fixed at load)."""
        data = getattr(self, split)
        if split != "train" or not (self.dynamic or self.dequantized):
            return data
        fix = binarize_fixed if self.dynamic else dequantize_fixed
        return Observations({k: torch.from_numpy(fix(v.cpu().numpy(), EVAL_SEEDS["train"])).to(v.device)
                             if k in self.noisy else v for k, v in data.items()})

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, s).nbytes for s in SPLITS)

    def place(self, device: torch.device | str) -> "BoundData":
        """Every tensor where a run on ``device`` should keep it (:func:`place_tensor`)."""
        return replace(self, **{s: Observations({k: place_tensor(v, device) for k, v in getattr(self, s).items()})
                                for s in SPLITS})


def _one_hot(labels: torch.Tensor, classes: int, node: str, where) -> torch.Tensor:
    labels = labels.reshape(len(labels), -1)
    if labels.shape[1] == classes:  # already one-hot
        return labels.float()
    if labels.shape[1] != 1:
        raise SpecError(f"observed node {node!r} is categorical with {classes} classes; its array holds "
                        f"{labels.shape[1]} values per example (expected one label)", where)
    labels = labels[:, 0].long()
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise SpecError(f"observed node {node!r} has {classes} classes but its labels run from "
                        f"{int(labels.min())} to {int(labels.max())}", where)
    return torch.nn.functional.one_hot(labels, classes).float()


def bind(splits: DataSplits, graph) -> BoundData:
    """The dataset's arrays as ``graph``'s observed nodes (see the module docstring)."""
    arrays = dict(graph.data.arrays or {})
    if not arrays:
        arrays = {graph.observed[0]: splits.primary}
    bound: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    noisy = []
    for name in graph.observed:
        node = graph.nodes[name]
        array = arrays.get(name)
        if array is None:
            raise SpecError(f"observed node {name!r} is bound to no array of dataset {splits.name!r}: set "
                            f"data.arrays.{name} (arrays: {', '.join(splits.array_names)})", node.location)
        if array not in splits.array_names:
            raise SpecError(f"dataset {splits.name!r} has no array {array!r} for {name!r} "
                            f"(arrays: {', '.join(splits.array_names)})", node.location)
        for split in SPLITS:
            values = splits.array(split, array)
            if node.family == "categorical":
                values = _one_hot(values, node.dim, name, node.location)
            else:
                values = values.reshape(len(values), -1).float()
                if values.shape[1] != node.dim:
                    raise SpecError(f"observed node {name!r} has {node.dim} features but array {array!r} of "
                                    f"{splits.name!r} has {values.shape[1]} per example: set `observed: "
                                    f"[{values.shape[1]}]`", node.location)
            bound[split][name] = values
        if array in splits.noisy_arrays and node.family != "categorical":
            noisy.append(name)
        if (array == splits.primary and splits.pixels and not splits.dequantized
                and node.continuous):
            raise SpecError(f"observed node {name!r} has a continuous density ({node.family}) but dataset "
                            f"{splits.name!r} holds pixels that are not dequantised: set data.dequantize: uniform "
                            f"(with binarize: none), or use a discrete likelihood", node.location)
    image = next((n for n in graph.observed if arrays.get(n) == splits.primary), None)
    return BoundData(splits.name, *(Observations(bound[s]) for s in SPLITS), tuple(noisy), splits.binarize,
                     splits.dequantize, image, splits.image_shape if image is not None else None, splits.source)
