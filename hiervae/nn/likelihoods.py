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
from hiervae.nn.resnet import ResNetDecoder


@FAMILIES.register("bernoulli")
class BernoulliDecoder(Configurable, ConditionalDistribution, nn.Module):
    """Independent Bernoulli pixels with logits from a network of the context.

    The logit network is an MLP (Table 5 decoder), or, with ``resnet`` filters, the
    transposed-convolution :class:`~hiervae.nn.resnet.ResNetDecoder` of Table 6, which
    needs the image's ``event_shape`` (``[C, H, W]`` or ``[H, W]``; the compiler passes
    the observed node's shape).  Without a context the logits are learned constants
    (starting at 0) whatever the network.  Logits are flat ``(..., dim)`` either way.
    """

    def __init__(
        self,
        dim: int,
        context_features: int,
        hidden: Sequence[int] = (512, 512),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        resnet: Sequence[int] | None = None,
        scale: str | None = None,
        kernel: int = 3,
        event_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        self.dim = dim
        if resnet and context_features:
            if event_shape is None:
                raise ValueError("a resnet decoder needs the image shape (event_shape)")
            self.net = ResNetDecoder(context_features, event_shape, tuple(resnet), kernel=kernel, scale=scale,
                                     activation=activation, batch_norm=batch_norm)
        else:
            self.net = ParamNet(context_features, torch.zeros(dim), hidden=tuple(hidden), activation=activation,
                                batch_norm=batch_norm, dropout=dropout)

    def logits(self, context: torch.Tensor | None) -> torch.Tensor:
        return self.net(context)

    def condition(self, context: torch.Tensor | None = None) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=self.logits(context), validate_args=False).to_event(1)
