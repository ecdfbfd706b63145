"""The KL term of one latent, resolved once from the distribution types, not per step.

``torch.distributions.kl_divergence`` looks its function up by the pair of types at
every call (and Pyro's ``Independent`` rule calls it again on the base distributions);
``torch.compile`` cannot trace that lookup, so each latent would break the graph.
:func:`resolve_kl` does the lookup once, eagerly, and returns a plain function of
``(q, p, value)``:

* analytic (when the caller asks for it, i.e. ``hiervae check`` says analytic KL is
  valid for this model) and the pair has a registered closed form: that closed form,
  summed over the event dims of ``Independent`` pairs (what Pyro's rule computes);
* otherwise the one-sample Monte Carlo estimate ``log q(value) - log p(value)``.

For the pairs the registries produce (``Independent`` pairs of the same event rank)
this gives the terms of the previous per-step code (try ``kl_divergence``, fall back
to Monte Carlo on ``NotImplementedError``); mixed pairs go to Monte Carlo.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.distributions import Distribution, Independent
from torch.distributions.kl import _dispatch_kl
from torch.distributions.utils import _sum_rightmost

KLFunction = Callable[[Distribution, Distribution, torch.Tensor], torch.Tensor]


def monte_carlo_kl(q: Distribution, p: Distribution, value: torch.Tensor) -> torch.Tensor:
    return q.log_prob(value) - p.log_prob(value)


class ClosedFormKL:
    """``KL(q || p)`` by a registered closed form, over ``event_dims`` reinterpreted dims."""

    def __init__(self, fn: Callable, event_dims: int):
        self.fn, self.event_dims = fn, event_dims

    def __call__(self, q: Distribution, p: Distribution, value: torch.Tensor) -> torch.Tensor:
        if self.event_dims:
            return _sum_rightmost(self.fn(q.base_dist, p.base_dist), self.event_dims)
        return self.fn(q, p)

    def __repr__(self) -> str:
        return f"ClosedFormKL({self.fn.__name__}, event_dims={self.event_dims})"


def resolve_kl(q: Distribution, p: Distribution, analytic: bool) -> KLFunction:
    """The KL term function for distributions of the types of ``q`` and ``p``."""
    if analytic:
        independent = isinstance(q, Independent) and isinstance(p, Independent)
        if independent and q.reinterpreted_batch_ndims == p.reinterpreted_batch_ndims:
            fn = _dispatch_kl(type(q.base_dist), type(p.base_dist))
            if fn is not NotImplemented:
                return ClosedFormKL(fn, q.reinterpreted_batch_ndims)
        elif not isinstance(q, Independent) and not isinstance(p, Independent):
            fn = _dispatch_kl(type(q), type(p))
            if fn is not NotImplemented:
                return ClosedFormKL(fn, 0)
    return monte_carlo_kl
