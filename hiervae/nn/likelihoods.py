"""Observation models ``p(x | parents)``: a decoder network and a distribution over x.

Registered in :data:`~hiervae.nn.registry.FAMILIES` with the same contract as the
latent families (``from_config(dim, context_features, options)``, ``condition``), so
the compiler builds every site the same way.
"""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn

from hiervae.nn.mlp import ParamNet
from hiervae.nn.registry import FAMILIES, Configurable


@FAMILIES.register("bernoulli")
class BernoulliDecoder(Configurable, ConditionalDistribution, nn.Module):
    """Independent Bernoulli pixels with logits from an MLP of the context (Table 5 decoder)."""

    def __init__(
        self,
        dim: int,
        context_features: int,
        hidden: Sequence[int] = (512, 512),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.dim = dim
        # logits: an MLP of the context, or learned constants (starting at 0) without one
        self.net = ParamNet(context_features, torch.zeros(dim), hidden=tuple(hidden), activation=activation,
                            batch_norm=batch_norm, dropout=dropout)

    def logits(self, context: torch.Tensor | None) -> torch.Tensor:
        return self.net(context)

    def condition(self, context: torch.Tensor | None = None) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=self.logits(context), validate_args=False).to_event(1)
