""":class:`Program`: every module of a spec (built by :mod:`hiervae.program.build`) and the
two walks that use them, as Pyro ``model`` / ``guide`` callables or directly.

The model visits nodes in topological order; the guide visits its factors in sampling
order and evaluates any transform node it conditions on *with the model's own module*
(self-reflective sharing: ``program.sites[name]`` is the only copy).

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

from typing import Mapping

import pyro
import torch
from torch import nn
from torch.distributions import Distribution

from hiervae.data.observations import Observations
from hiervae.errors import SpecError
from hiervae.graph.ir import LATENT, TRANSFORM, ModelGraph, ModelNode
from hiervae.nn.networks.params import cat_context
from hiervae.nn.networks.instances import NetworkBuilder
from hiervae.program.build import GuideFactorModule, feature_module, site_module
from hiervae.program.kl import KLFunction, resolve_kl
from hiervae.program.sites import DirectSites, PyroSites

Sites = PyroSites | DirectSites
PYRO_NAME = "hiervae"  # the module name of a program's parameters in Pyro's param store
_PASS = DirectSites(())  # default for direct calls of transform/posterior: values pass through


class Program(nn.Module):
    """Every network of a spec, held once, and the two walks that use them (Pyro program, direct evaluation)."""

    def __init__(self, graph: ModelGraph):
        super().__init__()
        self.graph = graph
        networks = NetworkBuilder()  # shared templates: one module for every use
        self.sites = nn.ModuleDict({node.name: site_module(graph, node, networks) for node in graph.nodes.values()})
        self.features = nn.ModuleDict({name: feature_module(graph, f, networks) for name, f in graph.features.items()})
        self.factors = nn.ModuleDict({f.latent: GuideFactorModule(graph, f, networks) for f in graph.guide})
        self.shared = nn.ModuleDict(networks.instances)  # also reachable from each use
        self.latents = graph.latents
        self.observed = graph.observed
        self._kl_plans: dict[bool, dict[str, KLFunction]] = {}

    # -------------------------------------------------------------- evaluation
    def _context(self, node: ModelNode, values: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        return cat_context([values[p] for p in node.conditioners])

    def prior(self, name: str, values: Mapping[str, torch.Tensor]) -> Distribution:
        return self.sites[name].condition(self._context(self.graph.nodes[name], values))

    def transform(self, name: str, values: dict[str, torch.Tensor], sites: Sites = _PASS) -> torch.Tensor:
        """Value of a transform node, computing (and recording) its missing inputs first;
        ``sites`` records it (a deterministic site under :class:`PyroSites`)."""
        node = self.graph.nodes[name]
        for p in node.parents:
            if p not in values:
                self.transform(p, values, sites)
        value = self.sites[name].condition(self._context(node, values))(values.get(node.applied_to))
        values[name] = sites.deterministic(name, value)
        return value

    def feature(self, name: str, values: dict[str, torch.Tensor], sites: Sites = _PASS) -> torch.Tensor:
        """Value of a guide feature node, computing its missing inputs first (once per pass)."""
        for g in self.graph.features[name].given:
            if g not in values:
                self._compute(g, values, sites)
        values[name] = value = self.features[name](cat_context([values[g] for g in self.graph.features[name].given]))
        return value

    def _compute(self, name: str, values: dict[str, torch.Tensor], sites: Sites) -> None:
        if name in self.graph.features:
            self.feature(name, values, sites)
        else:
            self.transform(name, values, sites)

    def posterior(self, name: str, values: dict[str, torch.Tensor], sites: Sites = _PASS) -> Distribution:
        factor = self.factors[name]
        for g in factor.inputs:
            if g not in values:
                self._compute(g, values, sites)
        q = factor.family.condition(factor.context(values))
        if factor.merge == "prior":
            q = factor.family.merge(q, self.prior(name, values))
        return q

    # -------------------------------------------------------------- the two walks
    def observations(self, data: torch.Tensor | Mapping[str, torch.Tensor]) -> Observations:
        """``data`` as one tensor per observed node (a plain tensor for a model with one)."""
        return Observations.of(data, self.observed)

    def run_model(self, data: torch.Tensor | Mapping[str, torch.Tensor], sites: Sites,
                  values: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """p(observed, latents) in topological order, each site handled by ``sites``.
        ``values`` (the guide's, when replaying directly) are known already: transforms
        among them are not recomputed."""
        data = self.observations(data)
        values = dict(values or {})
        with sites.plate(data.size):
            for name, node in self.graph.nodes.items():
                if node.kind == LATENT:
                    values[name] = sites.sample(name, self.prior(name, values))
                elif node.kind == TRANSFORM:
                    if name not in values:
                        self.transform(name, values, sites)
                else:
                    values[name] = sites.observe(name, self.prior(name, values), data[name])
        return values

    def run_guide(self, data: torch.Tensor | Mapping[str, torch.Tensor], sites: Sites) -> dict[str, torch.Tensor]:
        """q(latents | observed) in the guide's sampling order, sharing the model's transforms."""
        data = self.observations(data)
        values: dict[str, torch.Tensor] = dict(data)
        with sites.plate(data.size):
            for name in self.factors:
                values[name] = sites.sample(name, self.posterior(name, values, sites))
        return values

    # -------------------------------------------------------------- Pyro program
    def model(self, data: torch.Tensor | Mapping[str, torch.Tensor], beta: float | torch.Tensor = 1.0) -> dict[str, torch.Tensor]:
        """p(observed, latents): latents scaled by ``beta``, observations unscaled."""
        self.register_pyro()
        return self.run_model(data, PyroSites(beta, in_guide=False))

    def guide(self, data: torch.Tensor | Mapping[str, torch.Tensor], beta: float | torch.Tensor = 1.0) -> dict[str, torch.Tensor]:
        """q(latents | observed) in the guide's sampling order, sharing the model's transforms."""
        self.register_pyro()
        return self.run_guide(data, PyroSites(beta, in_guide=True))

    def register_pyro(self) -> None:
        """``pyro.module(PYRO_NAME, self)``: every parameter in Pyro's param store, so an
        ``SVI`` of ``program.model`` / ``program.guide`` trains them as written.  The store
        is made to hold *this* program's tensors first: an entry of the same name left by
        another program (an earlier one in the same process) would otherwise be what the
        optimiser steps, while the loss reads this program's parameters."""
        store = pyro.get_param_store()
        for name, param in self.named_parameters():
            key = f"{PYRO_NAME}$$${name}"
            if key not in store or store[key] is not param:
                store[key] = param
        pyro.module(PYRO_NAME, self)

    # -------------------------------------------------------------- direct evaluation
    def walk(self, data: torch.Tensor | Mapping[str, torch.Tensor], particles: int | None = None) -> tuple[DirectSites, DirectSites]:
        """The guide's sample and the model on it, without Pyro: ``(guide, model)`` site
        records, each ``name -> distribution`` (``.dists``) at the sampled values (``values``).

        The same computation as tracing ``self.guide`` and replaying ``self.model`` on it
        (same noise for the same seed), except that every transform is evaluated once.
        ``particles``: latents drawn at ``(particles, B)``; the data stay ``(B, D)``, so
        the networks of the data alone run once.
        """
        data = self.observations(data)
        batch = torch.Size((data.size,))
        shape = batch if particles is None else torch.Size((particles, *batch))
        guide = DirectSites(shape)
        guide.values = self.run_guide(data, guide)
        model = DirectSites(shape, replay=guide.values)
        model.values = self.run_model(data, model, guide.values)
        return guide, model

    def probe_value(self, name: str, n: int, like: torch.Tensor) -> torch.Tensor:
        """``n`` values an observed node can take (zeros; a class's one-hot for a label)."""
        value = torch.zeros(n, self.graph.nodes[name].dim, dtype=like.dtype, device=like.device)
        if self.graph.nodes[name].family == "categorical":
            value[:, 0] = 1
        return value

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
        x = Observations({o: self.probe_value(o, 2, ref) for o in self.observed})
        devices = [ref.device] if ref.device.type == "cuda" else []
        was_training = self.training
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                self.eval()
                guide, model = self.walk(x)
        finally:
            self.train(was_training)
        return {name: resolve_kl(guide.dists[name], model.dists[name], analytic) for name in self.latents}


def build_program(graph: ModelGraph) -> Program:
    return Program(graph)
