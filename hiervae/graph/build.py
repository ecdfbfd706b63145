"""Spec -> :class:`ModelGraph`, with the graph-level validation a schema cannot do.

Each rule raises a one-line :class:`SpecError` at the declaration that breaks it:
unknown families or transform kinds, a family in a role it cannot play, options a
family or transform does not take (or of the wrong type), network keys nothing would
read, unknown activations, duplicate names, dangling references, cycles, dimension
mismatches, a latent without exactly one guide factor, a guide factor conditioned on
something not computable before it is sampled, or a merge its families cannot do.  The
facts come from the registered classes themselves (:mod:`hiervae.nn.registry`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import networkx as nx

from hiervae.errors import Location, SpecError
from hiervae.graph.data_check import resolve_data
from hiervae.graph.dsep import Closure
from hiervae.graph.ir import LATENT, OBSERVED, TRANSFORM, GuideFactor, GuideFeature, ModelGraph, ModelNode
from hiervae.language import FactorDecl, FeatureDecl, NodeDecl, Spec
from hiervae.language.load import FEATURE
from hiervae.language.net import Net
from hiervae.language.schema import DataSpec
from hiervae.language.net import BASE
from hiervae.nn import ACTIVATIONS, FAMILIES, NETWORKS, TRANSFORMS
from hiervae.nn.registry import ENCODER_KEYS, Configurable, unused_net_keys
from hiervae.nn.transforms.feature import FEATURE_NET_KEYS

_ROLE = {LATENT: "prior", OBSERVED: "likelihood"}


def families_for(role: str) -> list[str]:
    return [name for name in FAMILIES.names() if role in FAMILIES.get(name).roles]


class NetChecks:
    """Every written network key must be read by what it builds.  A key written inline is
    checked at once; a key of a named template, used by several consumers that read
    different keys, only has to be read by one of them (checked at :meth:`finish`)."""

    def __init__(self) -> None:
        self.unread: dict[tuple[str, str], tuple[Location, str]] = {}  # (template, key) -> where, why
        self.read: set[tuple[str, str]] = set()
        self.shared: dict[str, tuple[tuple[int, ...], int | None, str]] = {}  # template -> in, out, first use

    def shared_use(self, net: Net | None, in_shape: tuple[int, ...], out: int | None, what: str, where: Location) -> None:
        """Every use of a shared network maps the same input shape to the same output size
        (it is one module)."""
        if net is None or net.shared is None:
            return
        first = self.shared.setdefault(net.shared, (in_shape, out, what))
        if first[:2] != (in_shape, out):
            raise SpecError(f"shared network {net.shared!r} is one module: {first[2]} gives it input {list(first[0])} "
                            f"and {first[1]} outputs, {what} input {list(in_shape)} and {out} outputs", where)

    def check(self, net: Net | None, reads: frozenset[str], kinds: frozenset[str], what: str, where: Location) -> None:
        """A one-line error for a network kind the consumer cannot use, a key of another
        kind, an unknown activation, or an inline key nothing reads."""
        if net is None:
            return
        problems = {key: (why, always) for key, why, always in unused_net_keys(net, reads, kinds)}
        for key, (why, always) in problems.items():
            template = net.templates.get(key, "")
            if always or not template:
                raise SpecError(f"{what}: {why}", net.location(key) if key in net.where else where)
            self.unread.setdefault((template, key), (net.location(key), why))
        for key in net.written:
            template = net.templates.get(key, "")
            if template and key not in problems:
                self.read.add((template, key))
        for key in ("activation", "out_activation"):
            value = getattr(net, key)
            if value is not None and value not in ACTIVATIONS:
                raise SpecError(f"unknown activation {value!r} (known: {', '.join(ACTIVATIONS.names())})", net.location(key))

    def finish(self) -> None:
        for (template, key), (where, why) in self.unread.items():
            if (template, key) not in self.read:
                raise SpecError(f"{why}, and no other use of template {template!r} reads it", where)

    def consumer(self, cls: type[Configurable], name: str, net: Net | None, options: dict[str, Any], decl) -> None:
        """The options and network of one registered class, as the compiler will build it."""
        try:
            cls.validate_options(options)
        except ValueError as err:
            key = next((k for k in options if repr(k) in str(err)), None)
            raise SpecError(f"{name}: {err}", decl.at("options", key) if key else decl.at("options")) from None
        if net is not None and "net" not in inspect.signature(cls).parameters:
            raise SpecError(f"{name} has no network (no parameters to compute): remove `net`", decl.at("net"))
        if net is not None and net.shared is not None and name != FEATURE:
            raise SpecError(f"shared network {net.shared!r}: a {name} builds its output heads per node, so its network "
                            f"cannot be one shared module; share encoders and feature nodes' networks (or drop "
                            f"shared: true from the template)", decl.at("net"))
        self.check(net, cls.net_keys, cls.net_kinds, name, decl.at("net"))


def _shape(value: int | list[int]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def _resolve_given(decl: NodeDecl | FactorDecl, declared: set[str]) -> tuple[str, ...]:
    """Drop boundary references (see templates), reject other unknown names."""
    out: dict[str, None] = {}  # ordered set
    for ref in decl.given:
        if ref.name in declared:
            if ref.name in out:
                raise SpecError(f"{ref.name!r} is listed twice in given", decl.at("given"))
            out[ref.name] = None
        elif not ref.soft:
            raise SpecError(f"unknown node {ref.name!r} in given", decl.at("given"))
    return tuple(out)


def _node(decl: NodeDecl, declared: set[str], nodes: dict[str, ModelNode], nets: NetChecks) -> ModelNode:
    spec, loc = decl.spec, decl.location
    given = _resolve_given(decl, declared)
    if decl.kind == TRANSFORM:
        if spec.transform not in TRANSFORMS:
            raise SpecError(f"unknown transform {spec.transform!r} (known: {', '.join(TRANSFORMS.names())})", decl.at("transform"))
        kind = TRANSFORMS.get(spec.transform)
        nets.consumer(kind, spec.transform, decl.net, dict(spec.options), decl)
        if kind.bijective and decl.input is None:
            raise SpecError(f"transform {spec.transform!r} is bijective and needs an `input`", loc)
        if not kind.bijective and decl.input is not None:
            raise SpecError(f"transform {spec.transform!r} is not bijective and takes no `input` "
                            f"(list what it reads in given)", decl.at("input"))
        if decl.input is not None:
            if decl.input not in declared:
                raise SpecError(f"unknown node {decl.input!r} as input", decl.at("input"))
            if decl.input in given:
                raise SpecError(f"{decl.input!r} is the bijective input and cannot also be in given", decl.at("given"))
            source = nodes.get(decl.input)
            if source is None:
                raise SpecError(f"input {decl.input!r} must be declared before {decl.name!r}", decl.at("input"))
            if source.kind == OBSERVED:
                raise SpecError(f"input {decl.input!r} is observed; a transform is bijective in a latent or transform node", decl.at("input"))
            if spec.dim is not None and spec.dim != source.dim:
                raise SpecError(
                    f"dimension mismatch: transform {decl.name!r} has dim {spec.dim} but its bijective input {decl.input!r} has dim {source.dim}",
                    decl.at("dim"),
                )
            shape = source.shape
        elif spec.dim is None:
            raise SpecError("a transform without a bijective input needs `dim`", loc)
        else:
            shape = (spec.dim,)
        parents = ((decl.input,) if decl.input else ()) + given
        return ModelNode(decl.name, TRANSFORM, shape, spec.transform, parents, decl.input, decl.net, dict(spec.options), loc)

    family = spec.dist
    role = _ROLE[decl.kind]
    if family not in FAMILIES or role not in FAMILIES.get(family).roles:
        raise SpecError(f"unknown {role} family {family!r} (known: {', '.join(families_for(role))})", decl.at("dist"))
    cls = FAMILIES.get(family)
    if given and "net" not in inspect.signature(cls).parameters:
        raise SpecError(f"a {family} {role} has no parameters and cannot be conditioned (remove `given`)", decl.at("given"))
    nets.consumer(cls, family, decl.net, dict(spec.options), decl)
    if decl.kind == LATENT and not cls.reparameterized:
        raise SpecError(f"{family} has no reparameterised sampler, and hiervae trains latents by pathwise gradients "
                        f"only; use a reparameterisable family", decl.at("dist"))
    shape = _shape(spec.latent if decl.kind == LATENT else spec.observed)
    return ModelNode(decl.name, decl.kind, shape, family, given, None, decl.net, dict(spec.options), loc,
                     continuous=cls.continuous)


def _in_shape(given: tuple[str, ...], shape_of) -> tuple[int, ...]:
    """A network's input: the one input's shape, or the concatenated flat features of several."""
    return shape_of(given[0]) if len(given) == 1 else (sum(math.prod(shape_of(g)) for g in given),)


def _feature(decl: FeatureDecl, nodes: dict[str, ModelNode], available: set[str], features: dict[str, GuideFeature],
             nets: NetChecks) -> GuideFeature:
    if decl.name in nodes or decl.name in features:
        raise SpecError(f"guide feature {decl.name!r} has the name of a {'model node' if decl.name in nodes else 'guide feature'}",
                        decl.location)
    given = _resolve_given(decl, set(nodes) | set(features))
    if not given:
        raise SpecError(f"guide feature {decl.name!r} needs given (what it is computed from)", decl.location)
    for g in given:
        if g not in available and g not in features:
            raise SpecError(f"{g!r} is not computable before {decl.name!r} (guide order: sample what it depends on first)",
                            decl.at("given"))
    kind = TRANSFORMS.get(FEATURE)
    nets.check(decl.net, FEATURE_NET_KEYS, frozenset({"mlp", "resnet"}), f"feature {decl.name}", decl.at("net"))
    net = kind.network(decl.net)
    shape_of = lambda g: nodes[g].shape if g in nodes else features[g].shape  # noqa: E731
    in_shape = _in_shape(given, shape_of)
    try:
        NETWORKS.get(net.kind).out_features(net, in_shape, (decl.spec.feature,))
    except ValueError as err:
        raise SpecError(f"feature {decl.name}: {err}", decl.at("net")) from None
    nets.shared_use(net, in_shape, decl.spec.feature, f"feature {decl.name}", decl.at("net"))
    return GuideFeature(decl.name, decl.spec.feature, given, decl.net, decl.location)


def _factor(decl: FactorDecl, nodes: dict[str, ModelNode], available: set[str], sampled: set[str],
            nets: NetChecks, features: dict[str, GuideFeature]) -> GuideFactor:
    loc = decl.location
    if decl.latent not in nodes:
        raise SpecError(f"guide factor for {decl.latent!r}, which the model does not declare", loc)
    if nodes[decl.latent].kind != LATENT:
        raise SpecError(f"guide factors are for latent nodes; {decl.latent!r} is {nodes[decl.latent].kind}", loc)
    if decl.latent in sampled:
        raise SpecError(f"a second guide factor for {decl.latent!r}", loc)
    spec = decl.spec
    if spec.dist not in FAMILIES or "guide" not in FAMILIES.get(spec.dist).roles:
        raise SpecError(f"unknown guide family {spec.dist!r} (known: {', '.join(families_for('guide'))})", decl.at("dist"))
    cls = FAMILIES.get(spec.dist)
    nets.consumer(cls, spec.dist, decl.net, dict(spec.options), decl)
    if not cls.reparameterized:
        raise SpecError(f"{spec.dist} has no reparameterised sampler, and hiervae trains latents by pathwise "
                        f"gradients only; use a reparameterisable family", decl.at("dist"))
    given = _resolve_given(decl, set(nodes) | set(features))
    shape_of = lambda g: nodes[g].shape if g in nodes else features[g].shape  # noqa: E731
    for g in given:
        if g == decl.latent:
            raise SpecError(f"factor {decl.latent!r} cannot be conditioned on itself", decl.at("given"))
        if g not in available and g not in features:
            raise SpecError(
                f"{g!r} is not computable before {decl.latent!r} is sampled (guide order: sample what it depends on first)",
                decl.at("given"),
            )
    dropped = {r.name for r in decl.given if r.soft and r.name not in nodes}  # boundary references
    encoders = {k: v for k, v in decl.encoders.items() if k not in dropped}
    for key, net in encoders.items():
        if key not in given:
            raise SpecError(f"encoder for {key!r}, which is not in given", decl.at("encoders", decl.encoder_keys.get(key, key)))
        nets.check(net, ENCODER_KEYS, frozenset({"mlp", "resnet"}), f"encoder of {key}",
                   decl.at("encoders", decl.encoder_keys.get(key, key)))
    if spec.merge == "prior":
        prior = nodes[decl.latent].family
        if prior not in cls.merges_with:
            partners = ", ".join(sorted(cls.merges_with)) or "nothing"
            raise SpecError(f"merge: prior combines the guide's {spec.dist} with the prior's {prior}, and {spec.dist} "
                            f"merges with {partners}", decl.at("merge"))
        missing = [p for p in nodes[decl.latent].parents if p not in given]
        if missing:
            raise SpecError(f"merge: prior needs the prior's inputs in given (missing {', '.join(missing)})", decl.at("merge"))
    sizes, evidence = [], None
    for g in given:
        if g in encoders:
            net = encoders[g].over(BASE)
            key = decl.encoder_keys.get(g, g)
            try:
                sizes.append(NETWORKS.get(net.kind).out_features(net, shape_of(g), None if net.out is None else (net.out,)))
            except ValueError as err:
                raise SpecError(f"encoder of {g}: {err}", decl.at("encoders", key)) from None
            nets.shared_use(net, shape_of(g), sizes[-1], f"the encoder of {g} in factor {decl.latent}",
                            decl.at("encoders", key))
        else:
            sizes.append(math.prod(shape_of(g)))
        if g in nodes and nodes[g].kind == OBSERVED and evidence is None:
            evidence = (sum(sizes[:-1]), sum(sizes))
    try:
        cls.check_build(nodes[decl.latent].dim, sum(sizes), cls.network(decl.net), dict(spec.options), {"evidence": evidence})
    except ValueError as err:
        raise SpecError(f"{spec.dist}: {err}", loc) from None
    return GuideFactor(decl.latent, spec.dist, given, encoders, decl.net, spec.merge, dict(spec.options), loc)


MAX_NODE_SIZE = 1 << 24  # values per data point of one node (16.7M: a 3 x 2048 x 2048 image fits)


def build_graph(spec: Spec) -> ModelGraph:
    declared = {d.name for d in spec.nodes}
    nets = NetChecks()
    nodes: dict[str, ModelNode] = {}
    for decl in spec.nodes:
        if decl.name in nodes:
            raise SpecError(f"node {decl.name!r} is declared twice (first at line {nodes[decl.name].location.line})", decl.location)
        nodes[decl.name] = _node(decl, declared, nodes, nets)

    dag = nx.DiGraph()
    dag.add_nodes_from(nodes)
    for node in nodes.values():
        dag.add_edges_from((p, node.name) for p in node.parents)
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [u for u, _ in cycle] + [cycle[0][0]]
        raise SpecError(f"the model has a cycle: {' -> '.join(names)}", nodes[cycle[0][1]].location)
    order = {n: i for i, n in enumerate(nx.topological_sort(dag))}
    nodes = dict(sorted(nodes.items(), key=lambda kv: order[kv[0]]))
    for name, node in list(nodes.items()):
        cls = TRANSFORMS.get(node.family) if node.kind == TRANSFORM else FAMILIES.get(node.family)
        context = sum(nodes[p].dim for p in node.conditioners)
        if node.family == FEATURE:
            nets.shared_use(cls.network(node.net), (context,), node.dim, f"feature {name}", node.location)
        try:
            cls.check_build(node.dim, context, cls.network(node.net), node.options, {"event_shape": node.shape})
            if node.kind == TRANSFORM:
                nodes[name] = dataclasses.replace(node, applied_to=cls.applied_to(name, nodes))
        except ValueError as err:
            raise SpecError(f"{node.family}: {err}" if node.kind != TRANSFORM or "refine" not in str(err) else str(err),
                            node.location) from None
    if not any(n.kind == OBSERVED for n in nodes.values()):
        raise SpecError("the model has no observed node", spec.source.at(("model",)))

    for node in nodes.values():
        if node.dim > MAX_NODE_SIZE:
            raise SpecError(f"{node.name!r} has {node.dim} values per data point; at most {MAX_NODE_SIZE} are supported",
                            node.location)
    graph = ModelGraph(spec.name, nodes, (), spec.document.data, spec.document.train, spec.document.eval, spec.source.file)
    available = Closure(graph.dag, invert=False)  # what the guide can compute so far
    available.add(n for n, v in nodes.items() if v.kind == OBSERVED)
    sampled: set[str] = set()
    factors: list[GuideFactor] = []
    features: dict[str, GuideFeature] = {}
    for decl in spec.guide:
        if isinstance(decl, FeatureDecl):
            features[decl.name] = _feature(decl, nodes, available.members, features, nets)
            continue
        factors.append(_factor(decl, nodes, available.members, sampled, nets, features))
        sampled.add(decl.latent)
        available.add([decl.latent])
    nets.finish()
    missing = [n for n, v in nodes.items() if v.kind == LATENT and n not in sampled]
    if missing:
        raise SpecError(f"no guide factor for latent {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""), spec.source.at(("guide",)))
    data = resolve_data(spec, nodes)
    return ModelGraph(spec.name, nodes, tuple(factors), data, graph.train, graph.eval, graph.source, features)
