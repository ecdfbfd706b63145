"""The importance-weighted bound as a training objective (``train.elbo: iwae``), with the
doubly-reparameterised gradient (DReG, Tucker et al. 2019) as an option.

With K guide samples per data point (:meth:`Program.walk` at ``particles=K``), the log
weights are ``log p(x | z_k) + beta (log p(z_k) - log q(z_k | x))`` (``beta`` scales the
latent sites, as ``poutine.scale`` does in the Pyro program) and the bound is
``logsumexp_k(log w_k) - log K`` per data point: the number and gradient of Pyro's
``RenyiELBO(alpha=0, num_particles=K)`` (tested in float64).

DReG replaces the guide parameters' gradient by
``sum_k w~_k^2 d log w_k / d z_k * d z_k / d phi`` (normalised weights ``w~``): the same
expectation with far less variance at large K.  It is computed from a second evaluation
of ``log q`` at the same samples with every parameter detached (the shared transforms
too: holding the samples fixed, they are part of the density), so only the path through
the samples carries gradient; the model's parameters keep the IWAE gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from hiervae.program.program import Program


@dataclass
class IwTerms:
    """Per particle and data point, each ``(K, B)``."""

    log_likelihood: torch.Tensor  # log p(x | z_k), every observed node
    log_ratio: dict[str, torch.Tensor]  # latent -> log q(z_k) - log p(z_k)
    values: dict[str, torch.Tensor]  # the guide's samples (latents), for DReG
    log_q: torch.Tensor | float = 0.0  # log q(z_k | x), summed over latents, for DReG

    def log_weights(self, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        ratio = torch.stack(list(self.log_ratio.values())).sum(0) if self.log_ratio else 0.0
        return self.log_likelihood - beta * ratio

    def bound(self, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        """``(B,)``: the importance-weighted bound per data point."""
        lw = self.log_weights(beta)
        return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


def iw_terms(program: Program, data, particles: int) -> IwTerms:
    data = program.observations(data)
    guide, model = program.walk(data, particles)
    ll = sum(model.dists[o].log_prob(data[o]) for o in program.observed)
    ll = ll.expand(particles, data.size)
    log_q = {n: guide.dists[n].log_prob(guide.values[n]) for n in program.latents}
    ratio = {n: log_q[n] - model.dists[n].log_prob(guide.values[n]) for n in program.latents}
    return IwTerms(ll, ratio, {n: guide.values[n] for n in program.latents}, sum(log_q.values(), 0.0))


class _GuideLogProb(nn.Module):
    """``log q(latents | data)`` summed over the guide's factors, for :func:`functional_call`."""

    def __init__(self, program: Program):
        super().__init__()
        self.program = program

    def forward(self, data, latents: dict[str, torch.Tensor]) -> torch.Tensor:
        values = {**dict(data), **latents}
        return sum(self.program.posterior(n, values).log_prob(latents[n]) for n in self.program.latents)


def guide_parameters(program: Program) -> list[nn.Parameter]:
    """The parameters only the guide uses (its factors and features): DReG's ``phi``."""
    seen: dict[int, nn.Parameter] = {}
    for module in (*program.factors.values(), *program.features.values()):
        for p in module.parameters():
            seen[id(p)] = p
    return [p for p in seen.values() if p.requires_grad]


def dreg_surrogate(program: Program, data, terms: IwTerms, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """A scalar whose gradient with respect to the guide's parameters is DReG's (summed
    over the batch, negated: a loss)."""
    data = program.observations(data)
    frozen = {f"program.{k}": v.detach() for k, v in program.named_parameters()}
    buffers = [b.clone() for b in program.buffers()]
    log_q = functional_call(_GuideLogProb(program), frozen, (data, terms.values))
    for b, saved in zip(program.buffers(), buffers):  # batch norm: the second pass leaves no trace
        b.copy_(saved)
    lw = terms.log_weights(beta)
    weights = torch.softmax(lw.detach(), 0) ** 2
    log_w_stop = lw + beta * (terms.log_q - log_q)  # log q's explicit parameter dependence removed
    return -(weights * log_w_stop).sum()
