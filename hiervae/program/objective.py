"""The training objective, computed by the direct (Pyro-free) evaluation of the program.

``elbo_terms`` draws the guide's sample and evaluates the model on it
(:meth:`Program.walk`), and returns, per data point, the observation
log-likelihood and one KL term per latent: the closed form ``KL(q || p)`` where the
family pair has one and analytic KL is valid for the model/guide pair (``hiervae
check``), else the one-sample estimate ``log q - log p``.  The KL function of each
latent is resolved once per program (:mod:`hiervae.program.kl`), not per step.  From
these terms, :func:`loss` builds the annealed objective with free bits per latent.

It is the same number as Pyro's ``TraceMeanField_ELBO`` / ``Trace_ELBO``
``differentiable_loss`` of ``program.model`` / ``program.guide`` with
``poutine.scale(beta)`` on the latents (tested in float64 with fixed noise), but without
tracing, replay or a second evaluation of the shared transforms, and it exposes the
per-layer KL (for logging and free bits) without a second pass.  :func:`compile_loss`
is how ``train.compile: true`` (and the benchmark) compile a loss built on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from hiervae.program.program import Program


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


def elbo_terms(program: Program, data, analytic_kl: bool = True) -> ElboTerms:
    """The terms for ``data`` (one tensor per observed node, or a tensor for a model with one):
    the log-likelihood sums every observed node's."""
    data = program.observations(data)
    kl_of = program.kl_functions(analytic_kl)
    guide, model = program.walk(data)
    kl = {name: kl_of[name](guide.dists[name], model.dists[name], guide.values[name]) for name in program.latents}
    log_likelihood = sum(model.dists[o].log_prob(data[o]) for o in program.observed)
    return ElboTerms(log_likelihood, kl)


def compile_loss(fn: Callable, program: Program, analytic_kl: bool) -> Callable:
    """``torch.compile(fn)`` for a loss built on :func:`elbo_terms` of ``program``.

    The per-latent KL functions are resolved first, eagerly, so the compiled code sees a
    dict lookup (one graph, no break).  ``dynamic=False``: static shapes (a smaller last
    batch compiles once more, then both graphs are cached); ``beta`` must be a 0-d
    tensor so that annealing never recompiles."""
    program.kl_functions(analytic_kl)
    return torch.compile(fn, dynamic=False)


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
