"""ModelGraph -> :class:`Program`: torch modules plus Pyro ``model`` / ``guide`` callables.

One mechanism for every architecture: each node of the graph becomes one module from
a registry (:mod:`hiervae.nn`), built with ``from_config(dim, context_features,
options)``, whose context is the concatenation of its inputs.  The model visits nodes
in topological order; the guide visits its factors in sampling order and evaluates
any transform node it conditions on *with the model's own module* (self-reflective
sharing: ``program.transforms[name]`` is the only copy).

The model and the guide are each ONE walk (:meth:`Program.run_model`,
:meth:`Program.run_guide`) parameterised by a site handler (:mod:`hiervae.program.sites`):

* ``program.model`` / ``program.guide`` run them with :class:`PyroSites`: latents are
  ``pyro.sample`` with ``.to_event(1)`` inside ``pyro.plate("data")`` and
  ``poutine.scale(beta)`` (model AND guide: ``TraceMeanField_ELBO`` reads the guide's
  scale, ``Trace_ELBO`` both); transforms are masked-``Delta`` deterministic sites; the
  observation is never scaled.  ``beta`` may be a float or a 0-d tensor.
* :meth:`Program.walk` runs them with :class:`DirectSites` (no Pyro): the training
  objective and the IW estimator use it.  It computes the same numbers as tracing the
  guide and replaying the model (tested in float64), with each shared transform
  evaluated once, and with no Python-level machinery that ``torch.compile`` cannot trace.
"""

from __future__ import annotations

from typing import Any, Mapping

import pyro.distributions as dist
import torch
from torch import nn

import hiervae.nn  # noqa: F401  (registers the families and transforms)
from hiervae.program.kl import KLFunction, resolve_kl
from hiervae.program.sites import DirectSites, PyroSites
from hiervae.errors import SpecError
from hiervae.graph.ir import LATENT, OBSERVED, TRANSFORM, GuideFactor, ModelGraph, ModelNode
from hiervae.nn import FAMILIES, MLP, TRANSFORMS, ResNetEncoder
from hiervae.nn.mlp import cat_context
from hiervae.language.schema import NetworkSpec

# spec network keys -> constructor options of registered classes
_NET_KEYS = {"mlp": "hidden", "activation": "activation", "out_activation": "out_activation",
             "batch_norm": "batch_norm", "dropout": "dropout", "separate": "separate_networks",
             "resnet": "resnet", "scale": "scale", "kernel": "kernel"}
# constructor options the compiler fills from the graph, never written in a spec:
# the observed node's shape (image decoders) and the evidence slice of a guide
# factor's context (residual variational layers)
_FILLED = ("event_shape", "evidence")


def module_options(cls: type, net: NetworkSpec | None, options: Mapping[str, Any], where) -> dict[str, Any]:
    """Constructor options of a registered class from a spec's ``net`` and ``options``.

    Network keys the class does not take are ignored only when they come from a shared
    template; explicit ``options`` must all be known (a typo is an error at its line).
    A convolutional (``resnet``) network is an error for a class that has no
    convolutional variant (silently building an MLP instead would be worse).
    """
    accepted = cls.options()
    if net is not None and net.resnet is not None:
        _check_resnet(net, where)
        if "resnet" not in accepted:
            raise SpecError(f"{cls.__name__} takes no convolutional (resnet) network; resnet networks are for "
                            "evidence encoders of image-shaped observed nodes and the bernoulli decoder", where)
    renames = getattr(cls, "net_keys", _NET_KEYS)
    config: dict[str, Any] = {}
    if net is not None:
        for key, value in net.model_dump(exclude_none=True, exclude={"extends", "out"}).items():
            name = renames.get(key, key)
            if name in accepted:
                config[name] = tuple(value) if isinstance(value, list) else value
    unknown = sorted(set(options) - set(accepted) | set(options) & set(_FILLED))
    if unknown:
        known = [k for k in accepted if k not in _FILLED]
        raise SpecError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__} (known: {', '.join(known) or 'none'})", where)
    config.update(options)
    return config


def _build(registry, name: str, dim: int, context: int, net, options, where, filled: Mapping[str, Any] | None = None) -> nn.Module:
    """The registered module ``name``; ``filled`` are compiler-known options (see ``_FILLED``)
    passed to the classes that take them.  A constructor's ValueError (a shape or option it
    cannot build) becomes a SpecError at the spec line."""
    try:
        cls = registry.get(name)
    except KeyError:
        raise SpecError(f"{name!r} is declared but not implemented by the compiler yet (implemented: {', '.join(registry.names())})", where) from None
    config = module_options(cls, net, options, where)
    accepted = cls.options()
    config.update({k: v for k, v in (filled or {}).items() if k in accepted})
    try:
        return cls.from_config(dim, context, config)
    except ValueError as err:
        raise SpecError(f"{name}: {err}", where) from None


def _check_resnet(net: NetworkSpec, where) -> None:
    if net.mlp is not None:
        raise SpecError("a network is either convolutional (resnet) or an mlp, not both", where)


def _encoder(net: NetworkSpec, node: ModelNode, where) -> nn.Module:
    """An encoder of one guide input: an MLP, or a ResNet for an image-shaped observed node."""
    if net.resnet is None:
        return MLP(node.dim, tuple(net.mlp or ()), net.out, activation=net.activation or "relu",
                   out_activation=net.out_activation, batch_norm=bool(net.batch_norm), dropout=net.dropout or 0.0)
    _check_resnet(net, where)
    if node.kind != OBSERVED or len(node.shape) not in (2, 3):
        raise SpecError(f"a resnet encoder needs an image-shaped observed node ([C, H, W] or [H, W]); "
                        f"{node.name!r} is {node.kind} with shape {list(node.shape)}", where)
    try:
        return ResNetEncoder(node.shape, tuple(net.resnet), net.out, kernel=net.kernel or 3, scale=net.scale,
                             activation=net.activation or "relu", out_activation=net.out_activation,
                             batch_norm=bool(net.batch_norm))
    except ValueError as err:
        raise SpecError(f"encoder of {node.name}: {err}", where) from None


Sites = PyroSites | DirectSites
_PASS = DirectSites(())  # default for direct calls of transform/posterior: values pass through


class GuideFactorModule(nn.Module):
    """Encoders of a factor's inputs and the family of q(latent | encoded inputs)."""

    def __init__(self, graph: ModelGraph, factor: GuideFactor):
        super().__init__()
        self.inputs = list(factor.given)
        self.encoders = nn.ModuleDict({g: _encoder(net, graph.nodes[g], factor.location) for g, net in factor.encoders.items()})
        sizes = [self.encoders[g].out_features if g in self.encoders else graph.nodes[g].dim for g in self.inputs]
        # the evidence: the context slice of the (one) observed input, for families that
        # treat it apart from the latent stream (residual variational layer)
        filled = {"evidence": (sum(sizes[:i]), sum(sizes[:i + 1]))
                  for i, g in enumerate(self.inputs) if graph.nodes[g].kind == OBSERVED}
        node = graph.nodes[factor.latent]
        self.family = _build(FAMILIES, factor.family, node.dim, sum(sizes), factor.net, factor.options, factor.location, filled)
        self.merge = factor.merge

    def context(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        return cat_context([self.encoders[g](values[g]) if g in self.encoders else values[g] for g in self.inputs])


class Program(nn.Module):
    """Every network of a spec, held once, and the two walks that use them (Pyro program, direct evaluation)."""

    def __init__(self, graph: ModelGraph):
        super().__init__()
        self.graph = graph
        self.sites = nn.ModuleDict()  # model node -> prior / transform / likelihood module
        for node in graph.nodes.values():
            context = sum(graph.nodes[p].dim for p in node.conditioners)
            registry = TRANSFORMS if node.kind == TRANSFORM else FAMILIES
            self.sites[node.name] = _build(registry, node.family, node.dim, context, node.net, node.options, node.location,
                                           {"event_shape": node.shape})
        self.factors = nn.ModuleDict({f.latent: GuideFactorModule(graph, f) for f in graph.guide})
        # what each transform is applied to: its bijective input, or h_prev for a residual node
        self.transform_inputs = {n: transform_input(graph, n) for n in graph.transforms}
        self.latents = graph.latents
        self.observed = graph.observed
        self._kl_plans: dict[bool, dict[str, KLFunction]] = {}

    # -------------------------------------------------------------- evaluation
    def _context(self, node: ModelNode, values: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        return cat_context([values[p] for p in node.conditioners])

    def prior(self, name: str, values: Mapping[str, torch.Tensor]) -> dist.TorchDistribution:
        return self.sites[name].condition(self._context(self.graph.nodes[name], values))

    def transform(self, name: str, values: dict[str, torch.Tensor], sites: Sites = _PASS) -> torch.Tensor:
        """Value of a transform node, computing (and recording) its missing inputs first;
        ``sites`` records it (a deterministic site under :class:`PyroSites`)."""
        node = self.graph.nodes[name]
        for p in node.parents:
            if p not in values:
                self.transform(p, values, sites)
        value = sites.known(name)
        if value is None:
            value = self.sites[name].condition(self._context(node, values))(values.get(self.transform_inputs[name]))
        values[name] = sites.deterministic(name, value)
        return value

    def posterior(self, name: str, values: dict[str, torch.Tensor], sites: Sites = _PASS) -> dist.TorchDistribution:
        factor = self.factors[name]
        for g in factor.inputs:
            if g not in values:
                self.transform(g, values, sites)
        q = factor.family.condition(factor.context(values))
        if factor.merge == "prior":
            q = _precision_weighted(q, self.prior(name, values))
        return q

    # -------------------------------------------------------------- the two walks
    def run_model(self, x: torch.Tensor, sites: Sites, values: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """p(x, latents) in topological order, each site handled by ``sites``.  ``values``
        (the guide's, when replaying directly) are known already: transforms among them
        are not recomputed."""
        values = dict(values or {})
        with sites.plate(x):
            for name, node in self.graph.nodes.items():
                if node.kind == LATENT:
                    values[name] = sites.sample(name, self.prior(name, values))
                elif node.kind == TRANSFORM:
                    if name not in values:
                        self.transform(name, values, sites)
                else:
                    values[name] = sites.observe(name, self.prior(name, values), x)
        return values

    def run_guide(self, x: torch.Tensor, sites: Sites) -> dict[str, torch.Tensor]:
        """q(latents | x) in the guide's sampling order, sharing the model's transforms."""
        values: dict[str, torch.Tensor] = {self.observed[0]: x}
        with sites.plate(x):
            for name in self.factors:
                values[name] = sites.sample(name, self.posterior(name, values, sites))
        return values

    # -------------------------------------------------------------- Pyro program
    def model(self, x: torch.Tensor, beta: float | torch.Tensor = 1.0) -> dict[str, torch.Tensor]:
        """p(x, latents): latents scaled by ``beta``, the observation unscaled."""
        return self.run_model(x, PyroSites(beta, in_guide=False))

    def guide(self, x: torch.Tensor, beta: float | torch.Tensor = 1.0) -> dict[str, torch.Tensor]:
        """q(latents | x) in the guide's sampling order, sharing the model's transforms."""
        return self.run_guide(x, PyroSites(beta, in_guide=True))

    # -------------------------------------------------------------- direct evaluation
    def walk(self, x: torch.Tensor, particles: int | None = None) -> tuple[DirectSites, DirectSites]:
        """The guide's sample and the model on it, without Pyro: ``(guide, model)`` site
        records, each ``name -> distribution`` (``.dists``) at the sampled values (``values``).

        The same computation as tracing ``self.guide`` and replaying ``self.model`` on it
        (same noise for the same seed), except that every transform is evaluated once.
        ``particles``: latents drawn at ``(particles, B)``; ``x`` stays ``(B, D)``, so the
        networks of ``x`` alone run once.
        """
        shape = x.shape[:-1] if particles is None else torch.Size((particles, *x.shape[:-1]))
        guide = DirectSites(shape)
        guide.values = self.run_guide(x, guide)
        model = DirectSites(shape, replay=guide.values)
        model.values = self.run_model(x, model, guide.values)
        return guide, model

    def kl_functions(self, analytic: bool) -> dict[str, KLFunction]:
        """latent -> its KL term function, resolved once per program (and ``analytic``).

        Resolution needs the distribution types, so the first call evaluates the program
        once on a probe batch of two zero inputs (eval mode, no autograd, the RNG state
        restored: no effect on training).  Later calls are a dict lookup, which is what
        ``torch.compile`` sees when this was called before compiling."""
        plan = self._kl_plans.get(analytic)
        if plan is None:
            plan = self._kl_plans[analytic] = self._resolve_kl(analytic)
        return plan

    def _resolve_kl(self, analytic: bool) -> dict[str, KLFunction]:
        ref = next(iter((*self.parameters(), *self.buffers())), torch.zeros(()))
        x = torch.zeros(2, self.graph.nodes[self.observed[0]].dim, dtype=ref.dtype, device=ref.device)
        devices = [ref.device] if ref.device.type == "cuda" else []
        was_training = self.training
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                self.eval()
                guide, model = self.walk(x)
        finally:
            self.train(was_training)
        return {name: resolve_kl(guide.dists[name], model.dists[name], analytic) for name in self.latents}


def transform_input(graph: ModelGraph, name: str) -> str | None:
    """The node a transform is applied to: ``t = module.condition(context); value = t(input)``.

    A bijective transform is applied to its bijective ``input``.  A transform without
    one (``residual``: ``h = h_prev + r(given)``, paper Fig. 5) is applied to ``h_prev``:
    the conditioner of the same dimension that is itself a ``residual`` node of the same
    kind (``gamma(l-1)`` for ``gamma(l)``), or ``None`` (``h = r(given)``) when there is
    none, e.g. at the first layer where ``gamma(0)`` is a dropped boundary reference.
    ``h_prev`` stays in the context too (``r`` reads ``gamma(l-1)`` and ``z(l)``).
    Inferred from the graph rather than declared, so the spec says each fact once.
    """
    node = graph.nodes[name]
    if node.bijective_input is not None:
        return node.bijective_input
    chain = [p for p in node.conditioners
             if graph.nodes[p].kind == TRANSFORM and graph.nodes[p].family == node.family and graph.nodes[p].dim == node.dim]
    if len(chain) > 1:
        raise SpecError(f"{name!r} ({node.family}) has several conditioners it could refine ({', '.join(chain)}); "
                        f"give it one {node.family} node of dim {node.dim} in given", node.location)
    return chain[0] if chain else None


def _precision_weighted(q: dist.TorchDistribution, p: dist.TorchDistribution) -> dist.TorchDistribution:
    """Ladder VAE merge: N(mu, s^2) with 1/s^2 = 1/s_q^2 + 1/s_p^2, mu = s^2 (mu_q/s_q^2 + mu_p/s_p^2)."""
    qn, pn = q.base_dist, p.base_dist
    prec_q, prec_p = qn.scale.pow(-2), pn.scale.pow(-2)
    var = 1.0 / (prec_q + prec_p)
    loc = var * (qn.loc * prec_q + pn.loc * prec_p)
    return dist.Normal(loc, var.sqrt()).to_event(1)


def build_program(graph: ModelGraph) -> Program:
    if len(graph.observed) != 1:
        raise SpecError(f"the compiler supports one observed node, this model has {len(graph.observed)}", graph.nodes[graph.observed[-1]].location)
    return Program(graph)
