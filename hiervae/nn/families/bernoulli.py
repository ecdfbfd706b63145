"""The ``bernoulli`` likelihood: independent Bernoulli pixels with logits from a network."""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn

from hiervae.language.net import Net
from hiervae.nn.networks.params import ParamNet
from hiervae.nn.registry import FAMILIES, NETWORKS, Family


@FAMILIES.register("bernoulli")
class BernoulliDecoder(Family, ConditionalDistribution, nn.Module):
    """Independent Bernoulli values with logits from a network of the context.

    The logit network is an MLP (Table 5 decoder), or, with a ``resnet`` network, the
    transposed-convolution :class:`~hiervae.nn.networks.resnet.ResNetDecoder` of Table 6,
    which needs the image's ``event_shape`` (``[C, H, W]`` or ``[H, W]``; the compiler
    passes the observed node's shape).  Without a context the logits are learned constants
    (starting at 0) whatever the network.  Logits are flat ``(..., dim)`` either way.
    """

    roles = frozenset({"likelihood"})
    net_keys = frozenset({"mlp", "resnet", "activation", "batch_norm", "dropout", "scale", "kernel"})
    net_kinds = frozenset({"mlp", "resnet"})
    net_defaults = Net(layers=(512, 512), activation="relu")
    doc = "independent Bernoulli with logits"

    @classmethod
    def check_build(cls, dim, context_features, net, options, filled) -> None:
        if net.kind == "resnet" and context_features:
            if filled.get("event_shape") is None:
                raise ValueError("a resnet decoder needs the image shape (event_shape)")
            NETWORKS.get("resnet").check(net, (context_features,), tuple(filled["event_shape"]))

    def __init__(self, dim: int, context_features: int, net: Net | None = None,
                 event_shape: Sequence[int] | None = None):
        super().__init__()
        net = self.network(net)
        self.check_build(dim, context_features, net, {}, {"event_shape": event_shape})
        self.dim = dim
        image = tuple(event_shape) if net.kind == "resnet" and event_shape is not None else None
        self.net = ParamNet(context_features, torch.zeros(dim), net, out_shape=image)

    def logits(self, context: torch.Tensor | None) -> torch.Tensor:
        return self.net(context)

    def condition(self, context: torch.Tensor | None = None) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=self.logits(context), validate_args=False).to_event(1)
