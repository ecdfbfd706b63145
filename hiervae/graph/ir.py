"""The graph IR: :class:`ModelGraph`, the single source of truth for check, render, compile.

A ``networkx.DiGraph`` of model nodes (edges parent -> child) whose node attributes are
``kind`` ("latent" | "transform" | "observed"), ``dim`` (flattened size) and, for
transforms, ``bijective_input`` (the parent it is invertible in, or None).  These plain
attributes are all the d-separation code needs, so it can be tested on random graphs.
The guide is a tuple of :class:`GuideFactor` in sampling order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx

from hiervae.errors import Location
from hiervae.language import schema as S
from hiervae.language.net import Net

LATENT, TRANSFORM, OBSERVED = "latent", "transform", "observed"


@dataclass(frozen=True)
class ModelNode:
    """A node of the generative model.

    ``parents`` lists every parent; for a transform the bijective input comes first and
    ``conditioners`` are the others (the inputs of its parameter networks).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    family: str  # distribution family (latent, observed) or transform kind
    parents: tuple[str, ...]
    bijective_input: str | None = None
    net: Net | None = None
    options: dict[str, Any] = field(default_factory=dict)
    location: Location = Location()
    applied_to: str | None = None  # transforms: the node whose value the transform maps
    continuous: bool = False  # a density over real values (its family's, for data checks)

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def conditioners(self) -> tuple[str, ...]:
        return tuple(p for p in self.parents if p != self.bijective_input)


@dataclass(frozen=True)
class GuideFactor:
    """q(latent | given): one factor of the guide, in sampling order."""

    latent: str
    family: str
    given: tuple[str, ...]
    encoders: dict[str, Net]
    net: Net | None
    merge: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    location: Location = Location()


@dataclass(frozen=True)
class GuideFeature:
    """A deterministic node of the guide only: ``f(given)``, features of the data (and of
    earlier samples), computed once per pass and read by any number of factors."""

    name: str
    dim: int
    given: tuple[str, ...]
    net: Net | None
    location: Location = Location()

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim,)


@dataclass(frozen=True)
class ModelGraph:
    name: str
    nodes: dict[str, ModelNode]  # in declaration order (a topological order)
    guide: tuple[GuideFactor, ...]
    data: S.DataSpec
    train: S.TrainSpec
    eval: S.EvalSpec
    source: str | None = None
    features: dict[str, GuideFeature] = field(default_factory=dict)  # the guide's own deterministic nodes

    def shape_of(self, name: str) -> tuple[int, ...]:
        """The value shape of a model node or a guide feature."""
        return self.nodes[name].shape if name in self.nodes else self.features[name].shape

    def reads(self, given: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        """The model nodes a guide factor reading ``given`` sees: a guide feature stands for
        what it is computed from (a feature of the data is as good as the data, no better)."""
        out: dict[str, None] = {}
        stack = list(reversed(given))
        while stack:
            name = stack.pop()
            if name in self.features:
                stack.extend(reversed(self.features[name].given))
            else:
                out[name] = None
        return tuple(out)

    @cached_property
    def dag(self) -> nx.DiGraph:
        g = nx.DiGraph(name=self.name)
        for node in self.nodes.values():
            attrs: dict[str, Any] = {"kind": node.kind, "dim": node.dim}
            if node.kind == TRANSFORM:
                attrs["bijective_input"] = node.bijective_input
            g.add_node(node.name, **attrs)
        for node in self.nodes.values():
            g.add_edges_from((p, node.name) for p in node.parents)
        return g

    def of_kind(self, kind: str) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind == kind]

    @property
    def latents(self) -> list[str]:
        return self.of_kind(LATENT)

    @property
    def observed(self) -> list[str]:
        return self.of_kind(OBSERVED)

    @property
    def transforms(self) -> list[str]:
        return self.of_kind(TRANSFORM)

    @property
    def pixel_dims(self) -> int | None:
        """``D`` for bits/dim when the data are 8-bit pixels dequantised to [0, 1]^D
        (``data.dequantize: uniform``): the observation's size; else None (no bits/dim)."""
        if self.data.dequantize == "none":
            return None
        return self.nodes[self.observed[0]].dim

    def factor(self, latent: str) -> GuideFactor:
        return next(f for f in self.guide if f.latent == latent)
