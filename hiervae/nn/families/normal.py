"""The ``normal`` family: diagonal Gaussian priors, guide factors and likelihoods.

A network output ``raw`` becomes a scale through a *scale map* (option ``scale_map``):

* ``softplus`` (the default): ``sigma = softplus(raw)``, any positive value;
* ``exp``: ``sigma = exp(raw)``;
* ``softplus_elu``: the paper's map (appendix 7, eq. 11), ``sigma^2 = softplus(elu(raw))``.
  Negative ``raw`` is squashed by elu to ``> -1``, so this map is bounded below by
  ``softplus(-1) ~= 0.3133``: **every scale is at least ~0.56**.  The paper's specs say
  it explicitly; a posterior or a decoder that needs smaller scales cannot have them.

``variance_floor`` (default 1e-4) is added to the variance under every map.  A likelihood's
scale (option ``sigma``) may also be one learned value per dimension (``learned``) or a
fixed number, instead of a network of the parents (``network``).  The bijectors reuse
:func:`softplus_elu` for their diagonal scale, as the paper does.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pydantic import Field
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn

from hiervae.language.net import Net
from hiervae.nn.networks.evidence_residual import EvidenceResidualNet
from hiervae.nn.networks.params import ParamNet
from hiervae.nn.registry import FAMILIES, Family

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


SCALE_MAPS = ("softplus", "exp", "softplus_elu")


def variance_map(raw: torch.Tensor, scale_map: str, floor: float) -> torch.Tensor:
    """The variance a network output ``raw`` stands for under ``scale_map`` (see the module)."""
    if scale_map == "softplus_elu":
        return softplus_elu(raw) + floor
    sigma = F.softplus(raw) if scale_map == "softplus" else torch.exp(raw)
    return sigma.square() + floor


def raw_of_unit_scale(scale_map: str, floor: float) -> float:
    """The raw value that ``scale_map`` (with ``floor``) maps to a variance of exactly 1."""
    if scale_map == "softplus_elu":
        return raw_of_one(floor)
    sigma = math.sqrt(1.0 - floor)
    return math.log(math.expm1(sigma)) if scale_map == "softplus" else math.log(sigma)


def diag_normal(loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
    """``Normal(loc, scale)`` with the last dim as event: one vector-valued latent."""
    return dist.Normal(loc, scale).to_event(1)


HEAD_KEYS = frozenset({"mlp", "activation", "out_activation", "batch_norm", "dropout", "separate"})
"""The network keys of a family or transform whose parameters are MLP heads of its context."""


@FAMILIES.register("normal")
class DiagonalGaussianHead(Family, ConditionalDistribution, nn.Module):
    """``q(eps | context)`` or ``p(eps | context)`` = N(loc(context), diag scale(context)^2).

    As in Table 5 loc and scale come from two identical networks of the context
    (``net.separate: false`` shares one network with a ``2*dim`` output instead).  With
    ``context_features == 0`` (first layer of the hierarchy) loc and raw scale are
    learned constants, starting at N(0, I).  ``forward`` maps context
    ``(..., context_features)`` (or ``None`` at the root) to ``(loc, scale)``, each
    ``(..., dim)``; ``condition`` wraps them in :func:`diag_normal`.

    ``residual=True`` is the residual variational layer of the ResNet SeRe-VAE (appendix
    8): each parameter network becomes an :class:`EvidenceResidualNet`,
    ``phi_1(u) + r(e, h(u))``, with ``h`` of ``max(1, dim // 3)`` features.  It needs
    ``evidence = (start, stop)``, the slice of the context holding the evidence
    features, which the compiler fills for guide factors given an observed node.

    ``merge: prior`` (Ladder VAE) combines a guide factor with the prior by precision
    weighting (:meth:`merge`).  ``scale_map`` and ``sigma``: see the module docstring.
    """

    roles = frozenset({"prior", "guide", "likelihood"})
    continuous = True
    analytic_kl_with = frozenset({"normal", "std_normal"})
    merges_with = frozenset({"normal", "std_normal"})
    net_keys = HEAD_KEYS
    net_defaults = Net(layers=(256, 256), activation="relu")
    doc = "diagonal Gaussian; scale maps softplus (default), exp, softplus_elu (the paper's, sigma >= 0.56)"

    @classmethod
    def check_build(cls, dim, context_features, net, options, filled) -> None:
        if options.get("residual") and filled.get("evidence") is None:
            raise ValueError("residual: true needs evidence in the context: use it on a guide factor given an observed node")
        sigma = options.get("sigma", "network")
        if not isinstance(sigma, str) and sigma <= 0:
            raise ValueError(f"sigma must be network, learned or a positive number, got {sigma!r}")

    def __init__(
        self,
        dim: int,
        context_features: int,
        net: Net | None = None,
        scale_map: Literal["softplus", "exp", "softplus_elu"] = "softplus",
        variance_floor: Annotated[float, Field(ge=0)] = VARIANCE_FLOOR,
        sigma: Literal["network", "learned"] | Annotated[float, Field(gt=0)] = "network",
        residual: bool = False,
        evidence: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.check_build(dim, context_features, net, {"residual": residual, "sigma": sigma}, {"evidence": evidence})
        net = self.network(net)
        self.dim = dim
        self.context_features = context_features
        self.variance_floor, self.scale_map, self.sigma = variance_floor, scale_map, sigma
        loc0, raw0 = torch.zeros(dim), torch.full((dim,), raw_of_unit_scale(scale_map, variance_floor))
        if sigma == "network":
            inits = [loc0, raw0] if net.separate else [torch.cat([loc0, raw0])]
        else:
            inits = [loc0]
            if sigma == "learned":  # one free raw scale per dimension
                self.raw_sigma = nn.Parameter(raw0.clone())
            else:
                self.register_buffer("fixed_variance", torch.full((dim,), float(sigma) ** 2 + variance_floor))
        if residual:
            hidden_features = max(1, dim // 3)
            nets = [EvidenceResidualNet(context_features, tuple(evidence), init, hidden_features, net) for init in inits]
        else:
            nets = [ParamNet(context_features, init, net) for init in inits]
        self.nets = nn.ModuleList(nets)

    def forward(self, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sigma != "network":
            loc = self.nets[0](context)
            if self.sigma == "learned":
                variance = variance_map(self.raw_sigma, self.scale_map, self.variance_floor)
            else:
                variance = self.fixed_variance
            return loc, variance.sqrt().expand(loc.shape)
        if len(self.nets) == 2:  # separate networks: no cat/split round trip
            loc, raw = self.nets[0](context), self.nets[1](context)
        else:
            loc, raw = self.nets[0](context).split(self.dim, -1)
        return loc, variance_map(raw, self.scale_map, self.variance_floor).sqrt()

    def condition(self, context: torch.Tensor | None = None) -> dist.TorchDistribution:
        return diag_normal(*self(context))

    @classmethod
    def merge(cls, q: dist.TorchDistribution, p: dist.TorchDistribution) -> dist.TorchDistribution:
        """Ladder VAE merge: N(mu, s^2) with 1/s^2 = 1/s_q^2 + 1/s_p^2, mu = s^2 (mu_q/s_q^2 + mu_p/s_p^2)."""
        qn, pn = q.base_dist, p.base_dist
        prec_q, prec_p = qn.scale.pow(-2), pn.scale.pow(-2)
        var = 1.0 / (prec_q + prec_p)
        loc = var * (qn.loc * prec_q + pn.loc * prec_p)
        return dist.Normal(loc, var.sqrt()).to_event(1)
