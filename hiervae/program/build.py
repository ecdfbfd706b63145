"""ModelGraph -> the modules of a :class:`~hiervae.program.program.Program`.

One mechanism for every architecture: each node of the graph becomes one module from
a registry (:mod:`hiervae.nn`), built with ``from_config(dim, context_features, net,
options, filled)``, whose context is the concatenation of its inputs; each guide factor
is its encoders (one network per encoded input) and a family of the concatenated,
encoded inputs.  What a spec may ask for was checked when the graph was built; a
constructor's ValueError that still gets here (a shape it cannot build) becomes a
one-line SpecError at the spec line.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from hiervae.errors import Location, SpecError
from hiervae.graph.ir import OBSERVED, TRANSFORM, GuideFactor, GuideFeature, ModelGraph, ModelNode
from hiervae.language.net import BASE, Net
from hiervae.language.load import FEATURE
from hiervae.nn import FAMILIES, TRANSFORMS
from hiervae.nn.networks.instances import NetworkBuilder
from hiervae.nn.networks.params import cat_context
from hiervae.nn.registry import Registry


def build_module(registry: Registry, name: str, dim: int, context: int, net: Net | None, options: Mapping[str, Any],
                 where: Location, filled: Mapping[str, Any] | None = None) -> nn.Module:
    """The registered module ``name`` built for one site."""
    try:
        return registry.get(name).from_config(dim, context, options, net, filled)
    except ValueError as err:
        raise SpecError(f"{name}: {err}", where) from None


def build_encoder(net: Net, name: str, shape: tuple[int, ...], where: Location, networks: NetworkBuilder) -> nn.Module:
    """An encoder of one guide input: a network from the input's shape to ``net.out`` features."""
    net = net.over(BASE)
    try:
        return networks.build(net, shape, net.out)
    except ValueError as err:
        raise SpecError(f"encoder of {name}: {err}", where) from None


def site_module(graph: ModelGraph, node: ModelNode, networks: NetworkBuilder) -> nn.Module:
    """The prior, transform or likelihood module of a model node."""
    context = sum(graph.nodes[p].dim for p in node.conditioners)
    registry = TRANSFORMS if node.kind == TRANSFORM else FAMILIES
    return build_module(registry, node.family, node.dim, context, node.net, node.options, node.location,
                        {"event_shape": node.shape, "networks": networks})


def feature_module(graph: ModelGraph, feature: GuideFeature, networks: NetworkBuilder) -> nn.Module:
    """The network of a guide feature node: its inputs (one, or several concatenated) -> ``dim`` features."""
    net = TRANSFORMS.get(FEATURE).network(feature.net)
    shapes = [graph.shape_of(g) for g in feature.given]
    in_shape = shapes[0] if len(shapes) == 1 else (sum(math.prod(s) for s in shapes),)
    try:
        return networks.build(net, in_shape, feature.dim)
    except ValueError as err:
        raise SpecError(f"feature {feature.name}: {err}", feature.location) from None


class GuideFactorModule(nn.Module):
    """Encoders of a factor's inputs and the family of q(latent | encoded inputs)."""

    def __init__(self, graph: ModelGraph, factor: GuideFactor, networks: NetworkBuilder):
        super().__init__()
        self.inputs = list(factor.given)
        self.encoders = nn.ModuleDict({g: build_encoder(net, g, graph.shape_of(g), factor.location, networks)
                                       for g, net in factor.encoders.items()})
        sizes = [self.encoders[g].out_features if g in self.encoders else math.prod(graph.shape_of(g)) for g in self.inputs]
        # the evidence: the context slice of the (one) observed input, for families that
        # treat it apart from the latent stream (residual variational layer)
        filled = {"evidence": (sum(sizes[:i]), sum(sizes[:i + 1]))
                  for i, g in enumerate(self.inputs) if g in graph.nodes and graph.nodes[g].kind == OBSERVED}
        node = graph.nodes[factor.latent]
        self.family = build_module(FAMILIES, factor.family, node.dim, sum(sizes), factor.net, factor.options,
                                   factor.location, filled)
        self.merge = factor.merge

    def context(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        return cat_context([self.encoders[g](values[g]) if g in self.encoders else values[g] for g in self.inputs])
