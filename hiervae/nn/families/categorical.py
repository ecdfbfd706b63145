"""The ``categorical`` likelihood: a label among ``dim`` classes, as a one-hot vector.

Observed values are one-hot rows (the data pipeline turns integer labels into them), so a
label enters encoders and decoders as features like any other node, and
``log_prob(one_hot)`` is the log-probability of its class.  Logits come from a network of
the parents (learned constants without parents).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn

from hiervae.language.net import Net
from hiervae.nn.families.normal import HEAD_KEYS
from hiervae.nn.networks.params import ParamNet
from hiervae.nn.registry import FAMILIES, Family


@FAMILIES.register("categorical")
class CategoricalDecoder(Family, ConditionalDistribution, nn.Module):
    """One of ``dim`` classes (one-hot), logits from a network of the context."""

    roles = frozenset({"likelihood"})
    net_keys = HEAD_KEYS - {"separate"}
    net_defaults = Net(layers=(64,), activation="relu")
    doc = "a class label among `observed` classes (one-hot values)"

    def __init__(self, dim: int, context_features: int, net: Net | None = None):
        super().__init__()
        self.dim = dim
        self.net = ParamNet(context_features, torch.zeros(dim), self.network(net))

    def condition(self, context: torch.Tensor | None = None) -> dist.TorchDistribution:
        return dist.OneHotCategorical(logits=self.net(context), validate_args=False)
