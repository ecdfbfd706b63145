"""The ``std_normal`` family: a fixed N(0, I) prior with no parameters."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn

from hiervae.nn.families.normal import diag_normal
from hiervae.nn.registry import FAMILIES, Family


@FAMILIES.register("std_normal")
class StandardNormal(Family, ConditionalDistribution, nn.Module):
    """Fixed N(0, I), no parameters; same interface as the ``normal`` family.

    The context (if given) only sets the batch shape of the result; a prior of this
    family has no ``given`` and no ``net`` (the graph builder says so).
    """

    roles = frozenset({"prior"})
    analytic_kl_with = frozenset({"normal", "std_normal"})
    doc = "standard normal N(0, I), no parameters"

    def __init__(self, dim: int, context_features: int):
        super().__init__()
        self.dim = dim
        self.context_features = context_features
        # Buffers (not parameters) so .to(device/dtype) moves them; not checkpointed.
        self.register_buffer("loc", torch.zeros(dim), persistent=False)
        self.register_buffer("scale", torch.ones(dim), persistent=False)

    def forward(self, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (*(() if context is None else context.shape[:-1]), self.dim)
        return self.loc.expand(shape), self.scale.expand(shape)

    def condition(self, context: torch.Tensor | None = None) -> dist.TorchDistribution:
        return diag_normal(*self(context))
