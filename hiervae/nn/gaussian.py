"""Diagonal Gaussian layers (priors and variational factors) and the paper's scale map.

Appendix 7, eq. (11): ``sigma^2 = softplus(elu(raw))``.  Large positive ``raw`` is
left (almost) unchanged; negative ``raw`` is squashed by elu to ``> -1`` and then
mapped by softplus to a positive value.  The map is bounded below by
``softplus(-1) ~= 0.3133`` (a standard deviation of at least ~0.56), so on its own it
never reaches zero.  The extra ``floor``, added to the *variance* (default 1e-4), is
therefore redundant with this map: it shifts the bound to ``0.3133 + floor``, and is
configurable so a spec can raise the minimum variance explicitly.  The bijectors
reuse :func:`softplus_elu` for their diagonal scale.
"""

from __future__ import annotations

import math
from typing import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn

from hiervae.nn.mlp import ParamNet
from hiervae.nn.registry import FAMILIES, Configurable
from hiervae.nn.residual_layer import ResidualParamNet

VARIANCE_FLOOR = 1e-4


def softplus_elu(raw: torch.Tensor) -> torch.Tensor:
    """``softplus(elu(raw))``: positive, increasing, > softplus(-1), ~identity for large raw."""
    return F.softplus(F.elu(raw))


def variance_from_raw(raw: torch.Tensor, floor: float = VARIANCE_FLOOR) -> torch.Tensor:
    """Eq. (11) plus ``floor``: the variance a network output ``raw`` stands for."""
    return softplus_elu(raw) + floor


def scale_from_raw(raw: torch.Tensor, floor: float = VARIANCE_FLOOR) -> torch.Tensor:
    """Standard deviation ``sqrt(variance_from_raw(raw, floor))``."""
    return variance_from_raw(raw, floor).sqrt()


def raw_of_one(floor: float) -> float:
    """The raw value that ``softplus_elu(raw) + floor`` maps to exactly 1.

    Learned constants start there, so an unconditioned layer starts as N(0, I) and an
    unconditioned bijector with a unit diagonal.  (``softplus^-1(1 - floor) > 0``,
    where elu is the identity, so inverting softplus is enough.)
    """
    return math.log(math.expm1(1.0 - floor))


def diag_normal(loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
    """``Normal(loc, scale)`` with the last dim as event: one vector-valued latent."""
    return dist.Normal(loc, scale).to_event(1)


@FAMILIES.register("normal")
class DiagonalGaussianHead(Configurable, ConditionalDistribution, nn.Module):
    """``q(eps | context)`` or ``p(eps | context)`` = N(loc(context), diag scale(context)^2).

    As in Table 5 loc and scale come from two identical MLPs of the context
    (``separate_networks=False`` shares one MLP with a ``2*dim`` output instead).  With
    ``context_features == 0`` (first layer of the hierarchy) loc and raw scale are
    learned constants, starting at N(0, I).  ``forward`` maps context
    ``(..., context_features)`` (or ``None`` at the root) to ``(loc, scale)``, each
    ``(..., dim)``; ``condition`` wraps them in :func:`diag_normal`.

    ``residual=True`` is the residual variational layer of the ResNet SeRe-VAE (appendix
    8): each parameter network becomes a :class:`ResidualParamNet`,
    ``phi_1(u) + r(e, h(u))``, with ``h`` of ``max(1, dim // 3)`` features.  It needs
    ``evidence = (start, stop)``, the slice of the context holding the evidence
    features, which the compiler fills for guide factors given an observed node.
    """

    def __init__(
        self,
        dim: int,
        context_features: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        out_activation: str | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
        separate_networks: bool = True,
        variance_floor: float = VARIANCE_FLOOR,
        residual: bool = False,
        evidence: tuple[int, int] | None = None,
    ):
        super().__init__()
        if residual and evidence is None:
            raise ValueError("residual: true needs evidence in the context: use it on a guide factor given an observed node")
        self.dim = dim
        self.context_features = context_features
        self.variance_floor = variance_floor
        mlp = dict(hidden=hidden, activation=activation, out_activation=out_activation,
                   batch_norm=batch_norm, dropout=dropout)
        loc0, raw0 = torch.zeros(dim), torch.full((dim,), raw_of_one(variance_floor))
        inits = [loc0, raw0] if separate_networks else [torch.cat([loc0, raw0])]
        if residual:
            hidden_features = max(1, dim // 3)
            nets = [ResidualParamNet(context_features, tuple(evidence), init, hidden_features, **mlp) for init in inits]
        else:
            nets = [ParamNet(context_features, init, **mlp) for init in inits]
        self.nets = nn.ModuleList(nets)

    def forward(self, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.nets) == 2:  # separate networks: no cat/split round trip
            loc, raw = self.nets[0](context), self.nets[1](context)
        else:
            loc, raw = self.nets[0](context).split(self.dim, -1)
        return loc, scale_from_raw(raw, self.variance_floor)

    def condition(self, context: torch.Tensor | None = None) -> dist.TorchDistribution:
        return diag_normal(*self(context))


@FAMILIES.register("std_normal")
class StandardNormal(Configurable, ConditionalDistribution, nn.Module):
    """Fixed N(0, I), no parameters; same interface as :class:`DiagonalGaussianHead`.

    The context (if given) only sets the batch shape of the result.
    """

    def __init__(self, dim: int, context_features: int):
        super().__init__()
        self.dim = dim
        self.context_features = context_features
        # Buffers (not parameters) so .to(device/dtype) moves them; not checkpointed.
        self.register_buffer("loc", torch.zeros(dim), persistent=False)
        self.register_buffer("scale", torch.ones(dim), persistent=False)

    def forward(self, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (*(() if context is None else context.shape[:-1]), self.dim)
        return self.loc.expand(shape), self.scale.expand(shape)

    def condition(self, context: torch.Tensor | None = None) -> dist.TorchDistribution:
        return diag_normal(*self(context))
