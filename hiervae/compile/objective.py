"""The training objective, computed from Pyro traces of the compiled program.

``elbo_terms`` runs the guide, replays the model on the guide's samples and returns,
per data point, the observation log-likelihood and one KL term per latent: the closed
form ``KL(q || p)`` where the family pair has one and analytic KL is valid for the
model/guide pair (``hiervae check``), else the one-sample estimate ``log q - log p``.
From these, :func:`loss` builds the annealed objective with free bits per latent.

It is the same number as Pyro's ``TraceMeanField_ELBO`` / ``Trace_ELBO``
``differentiable_loss`` with ``poutine.scale(beta)`` on the latents (tested in float64
with fixed noise), but also exposes the per-layer KL (for logging and free bits)
without a second pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from torch.distributions import kl_divergence

from hiervae.compile.program import Program


@dataclass
class ElboTerms:
    """Per-data-point terms, each a tensor of shape (batch,)."""

    log_likelihood: torch.Tensor
    kl: dict[str, torch.Tensor]  # latent -> KL (analytic) or log q - log p (Monte Carlo)

    @property
    def kl_total(self) -> torch.Tensor:
        return torch.stack(list(self.kl.values())).sum(0) if self.kl else torch.zeros_like(self.log_likelihood)

    @property
    def elbo(self) -> torch.Tensor:
        return self.log_likelihood - self.kl_total


def _kl(q, p, value: torch.Tensor, analytic: bool) -> torch.Tensor:
    if analytic:
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            pass
    return q.log_prob(value) - p.log_prob(value)


def elbo_terms(program: Program, x: torch.Tensor, analytic_kl: bool = True) -> ElboTerms:
    guide = poutine.trace(program.guide).get_trace(x)
    shared = {n: s["value"] for n, s in guide.nodes.items() if s["type"] == "sample" and s["infer"].get("_deterministic")}
    with program.reusing(shared):  # the guide already evaluated these shared transforms
        model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x)
    kl = {}
    for name in program.latents:
        q, p = guide.nodes[name], model.nodes[name]
        kl[name] = _kl(q["fn"], p["fn"], q["value"], analytic_kl)
    obs = model.nodes[program.observed[0]]
    return ElboTerms(obs["fn"].log_prob(obs["value"]), kl)


def loss(terms: ElboTerms, beta: float | torch.Tensor = 1.0, free_bits: float = 0.0) -> torch.Tensor:
    """Negative annealed ELBO summed over the batch (Pyro's convention).

    Free bits (Kingma et al. 2016, appendix C.8): each latent's batch-mean KL is
    charged at least ``free_bits`` nats, so the gradient stops pushing a layer's KL
    below that; with ``free_bits = 0`` this is exactly ``-sum(ll - beta * KL)``.
    """
    n = terms.log_likelihood.shape[0]
    if free_bits > 0:
        kl = sum(torch.clamp(k.mean(), min=free_bits) for k in terms.kl.values()) * n
    else:
        kl = terms.kl_total.sum()
    return -(terms.log_likelihood.sum() - beta * kl)
