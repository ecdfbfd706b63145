""":class:`Observations`: the values of a model's observed nodes for a batch of data points.

A model may observe several nodes (an image ``x`` and its label ``y``); every batch is
then one tensor per observed node, all with the same leading size.  Functions that take
data accept either an :class:`Observations` or, for a model with one observed node, a
plain tensor (:meth:`Observations.of`).
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import torch


class Observations(dict):
    """``node name -> (N, D)`` tensor, every tensor with the same ``N``."""

    @classmethod
    def of(cls, data: "torch.Tensor | Mapping[str, torch.Tensor]", observed: Sequence[str]) -> "Observations":
        """``data`` as observations of ``observed`` (a tensor only for a model with one)."""
        if isinstance(data, Observations):
            return data
        if isinstance(data, torch.Tensor):
            if len(observed) != 1:
                raise ValueError(f"this model observes {', '.join(observed)}: pass one tensor per observed node")
            return cls({observed[0]: data})
        missing = [o for o in observed if o not in data]
        if missing:
            raise ValueError(f"no data for observed node(s) {', '.join(missing)}")
        return cls({o: data[o] for o in observed})

    @property
    def size(self) -> int:
        """The number of data points (the leading size of every tensor)."""
        return next(iter(self.values())).shape[0]

    @property
    def first(self) -> torch.Tensor:
        return next(iter(self.values()))

    def rows(self, index: "slice | torch.Tensor") -> "Observations":
        return Observations({k: v[index] for k, v in self.items()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Observations":
        return Observations({k: v.to(device, non_blocking=non_blocking) for k, v in self.items()})

    def chunks(self, size: int) -> Iterator["Observations"]:
        for start in range(0, self.size, size):
            yield self.rows(slice(start, start + size))

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.values())
