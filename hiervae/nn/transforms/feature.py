"""The ``feature`` transform: a deterministic, NOT bijective node ``h = f(given)``.

What a model declares as ``h2: {feature: 64, given: [z3, h3], net: td}``: a top-down state
that any number of later nodes read, computed once per pass.  ``f`` is an ``mlp`` of the
concatenated ``given`` with ``feature`` outputs; without ``given`` it is a learned constant.
A guide's feature nodes (a bottom-up pass of the data) use the same networks
(:func:`build_feature_network`; there a ``resnet`` of one image-shaped input too).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from hiervae.language.net import Net
from hiervae.nn.registry import NETWORKS, TRANSFORMS, TransformModule

FEATURE_NET_KEYS = frozenset({"mlp", "resnet", "activation", "out_activation", "batch_norm", "dropout", "scale", "kernel"})


class Computed:
    """A transform's value computed from the context alone (its input is ignored)."""

    bijective = False

    def __init__(self, value: torch.Tensor):
        self.value = value

    def __call__(self, _input: torch.Tensor | None = None) -> torch.Tensor:
        return self.value


@TRANSFORMS.register("feature")
class Feature(TransformModule, nn.Module):
    """``h = f(context)``: features of the ``given`` nodes (a network with ``dim`` outputs)."""

    bijective = False
    needs_dim = True
    net_keys = FEATURE_NET_KEYS - {"resnet", "scale", "kernel"}
    net_defaults = Net(layers=(256,), activation="relu")
    doc = "deterministic features h = f(given) (written `feature: DIM`): shared top-down or bottom-up states"

    def __init__(self, dim: int, context_features: int, net: Net | None = None, networks: Any = None):
        """``networks``: the program's :class:`~hiervae.nn.networks.instances.NetworkBuilder`
        (a shared template's one instance); None builds a module of its own."""
        super().__init__()
        self.dim, self.context_features = dim, context_features
        if context_features == 0:
            self.const = nn.Parameter(torch.zeros(dim))
            self.net = None
        elif networks is not None:
            self.net = networks.build(self.network(net), (context_features,), dim)
        else:
            self.net = build_feature_network(self.network(net), (context_features,), dim)

    @classmethod
    def check_build(cls, dim: int, context_features: int, net: Net, options: Mapping[str, Any],
                    filled: Mapping[str, Any]) -> None:
        if context_features:
            NETWORKS.get(net.kind or "mlp").check(net, (context_features,), (dim,))

    def condition(self, context: torch.Tensor | None = None) -> Computed:
        if self.net is None:
            return Computed(self.const if context is None else self.const.expand(*context.shape[:-1], self.dim))
        return Computed(self.net(context))

    @classmethod
    def applied_to(cls, name: str, nodes: Mapping[str, Any]) -> str | None:
        return None


def build_feature_network(net: Net, in_shape: tuple[int, ...], dim: int) -> nn.Module:
    """The network of a feature node: ``in_shape`` -> ``dim`` features."""
    return NETWORKS.get(net.kind or "mlp").build(net, in_shape, (dim,))
