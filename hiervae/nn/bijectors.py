"""Conditional bijectors ``z = f(eps | context)`` and the IAF guide family.

Pyro idiom throughout: a module's ``condition(context)`` returns a plain
``torch.distributions.Transform`` (bijectors) or a Pyro distribution (families), so
the compiler can put them straight into ``pyro.sample`` sites and
``TransformedDistribution``\\ s.
"""

from __future__ import annotations

from functools import cached_property, partialmethod
from typing import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.conditional import ConditionalDistribution, ConditionalTransformModule
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn
from torch.distributions import Transform, constraints

from hiervae.nn.gaussian import VARIANCE_FLOOR, DiagonalGaussianHead, raw_of_one, softplus_elu
from hiervae.nn.mlp import ParamNet, make_activation
from hiervae.nn.registry import FAMILIES, TRANSFORMS, Configurable


class LowRankAffineTransform(Transform):
    """``z = shift + (diag(d) + U U^T) eps`` for given parameters.

    Shapes: ``shift, d: (..., n)``, ``U: (..., n, r)``; batch dims broadcast against
    those of ``eps``.  Nothing ``n x n`` is ever formed: the inverse uses the Woodbury
    identity and the log-determinant the matrix determinant lemma, both through the
    ``r x r`` capacitance ``C = I_r + U^T D^-1 U`` (symmetric positive definite because
    ``d > 0``), so the cost is O(n r^2 + r^3) per sample.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self, shift: torch.Tensor, diag: torch.Tensor, factor: torch.Tensor, cache_size: int = 0
    ):
        super().__init__(cache_size=cache_size)
        self.shift, self.diag, self.factor = shift, diag, factor

    def with_cache(self, cache_size: int = 1) -> "LowRankAffineTransform":
        if cache_size == self._cache_size:
            return self
        return LowRankAffineTransform(self.shift, self.diag, self.factor, cache_size)

    @cached_property
    def _capacitance_tril(self) -> torch.Tensor:
        """Cholesky factor of ``C = I_r + U^T D^-1 U``."""
        r = self.factor.shape[-1]
        eye = torch.eye(r, dtype=self.factor.dtype, device=self.factor.device)
        return torch.linalg.cholesky(eye + self.factor.mT @ (self.factor / self.diag.unsqueeze(-1)))

    def _call(self, eps: torch.Tensor) -> torch.Tensor:
        # U (U^T eps) elementwise: at rank 1-2 two tiny batched matmuls (bmm) cost more
        # than the arithmetic; rank 1 (the paper's layer) is u * <u, eps>.
        z = self.shift + self.diag * eps
        rank = self.factor.shape[-1]
        if rank == 1:
            u = self.factor.squeeze(-1)
            return z + u * (u * eps).sum(-1, keepdim=True)
        if rank == 0:
            return z
        w = (self.factor * eps.unsqueeze(-1)).sum(-2)  # U^T eps: (..., r)
        return z + (self.factor * w.unsqueeze(-2)).sum(-1)

    def _inverse(self, z: torch.Tensor) -> torch.Tensor:
        # Woodbury: (D + U U^T)^-1 = D^-1 - D^-1 U C^-1 U^T D^-1.
        y = (z - self.shift) / self.diag
        w = torch.cholesky_solve(self.factor.mT @ y.unsqueeze(-1), self._capacitance_tril)
        return y - (self.factor @ w).squeeze(-1) / self.diag

    def log_abs_det_jacobian(self, eps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # Determinant lemma: log|D + U U^T| = sum log d + log det C.
        log_det_c = 2 * self._capacitance_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        log_det = self.diag.log().sum(-1) + log_det_c
        return log_det.expand(torch.broadcast_shapes(log_det.shape, eps.shape[:-1]))


@TRANSFORMS.register("affine_lowrank")
class AffineLowRank(Configurable, ConditionalTransformModule):
    """The paper's shared transformational layer ``z^l = f^l(eps^l | z^{l-1})``.

    ``f(eps) = shift + (diag(d) + U U^T) eps`` ("diagonal plus unit-rank affine",
    Table 5; ``rank`` generalises it, ``rank=0`` is :class:`AffineDiag`).  shift, d
    and U come from three identical MLPs of the context (Table 5: 2 x 20 units, tanh,
    tanh output; ``separate_networks=False`` shares one), or are learned constants
    when ``context_features == 0``.
    ``d = softplus(elu(raw)) + diag_floor > 0`` keeps ``f`` invertible (appendix 7:
    "a similar parametrization is used for the scale" of these layers).

    Constants start at the identity map except U, which starts Glorot-normal: at
    ``U = 0`` every gradient with respect to U vanishes and it would never move.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self,
        dim: int,
        context_features: int,
        rank: int = 1,
        hidden: Sequence[int] = (20, 20),
        activation: str = "tanh",
        out_activation: str | None = "tanh",
        batch_norm: bool = False,
        dropout: float = 0.0,
        separate_networks: bool = True,
        diag_floor: float = VARIANCE_FLOOR,
    ):
        super().__init__()
        self.dim, self.context_features = dim, context_features
        self.rank, self.diag_floor = rank, diag_floor
        mlp = dict(hidden=hidden, activation=activation, out_activation=out_activation,
                   batch_norm=batch_norm, dropout=dropout)
        inits = [torch.zeros(dim), torch.full((dim,), raw_of_one(diag_floor))]
        if rank:
            inits.append(nn.init.xavier_normal_(torch.empty(dim, rank)).flatten())
        if not separate_networks:
            inits = [torch.cat(inits)]
        self.nets = nn.ModuleList(ParamNet(context_features, init, **mlp) for init in inits)

    def condition(self, context: torch.Tensor | None = None) -> LowRankAffineTransform:
        if len(self.nets) == 1:
            params = self.nets[0](context).split([self.dim, self.dim, self.dim * self.rank], -1)
        else:  # separate networks: no cat/split round trip
            params = [net(context) for net in self.nets]
        shift, raw_diag = params[0], params[1]
        factor = params[2].unflatten(-1, (self.dim, self.rank)) if self.rank else params[0].new_zeros(*params[0].shape, 0)
        return LowRankAffineTransform(shift, softplus_elu(raw_diag) + self.diag_floor, factor)


@TRANSFORMS.register("affine_diag")
class AffineDiag(AffineLowRank):
    """``z = shift + d * eps``: :class:`AffineLowRank` with ``rank`` pinned to 0."""

    fixed_options = {"rank": 0}
    __init__ = partialmethod(AffineLowRank.__init__, **fixed_options)


@FAMILIES.register("iaf")
class ConditionalIAF(Configurable, ConditionalDistribution, nn.Module):
    """Guide factor ``q(eps | context)``: a conditional inverse autoregressive flow.

    A diagonal Gaussian of the context (:class:`DiagonalGaussianHead`) followed by
    ``steps`` conditional affine autoregressive steps (Kingma et al. 2016, eq. 10),
    each a conditional MADE of ``(eps, context)``.  We use Pyro's
    ``ConditionalAffineAutoregressive`` + ``ConditionalAutoRegressiveNN`` rather than
    nflows' MADE because they are already Pyro transforms: ``condition`` yields a
    Pyro ``TransformedDistribution`` usable in a ``pyro.sample`` site with no adapter,
    and each step caches its last (input, output) pair, so ``log_prob`` of the guide's
    own ``rsample`` costs one pass (scoring any other value inverts sequentially,
    O(dim) passes).  There is no closed-form KL: sites with this family need a Monte
    Carlo ELBO term.

    Permutations between steps: step ``k`` orders the variables by ``arange(dim)``,
    reversed for odd ``k`` (as in the IAF paper).  This is done through the MADE's
    ``permutation`` (its autoregressive order), which is equivalent to permuting
    before and un-permuting after the step, without extra transforms.  Each MADE
    hidden width must be ``>= dim`` (Pyro requires it); the default is ``[10 * dim]``.
    The MADE layers keep Pyro's default initialisation.
    """

    def __init__(
        self,
        dim: int,
        context_features: int,
        steps: int = 2,
        hidden: Sequence[int] | None = None,
        base_hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        batch_norm: bool = False,
        variance_floor: float = VARIANCE_FLOOR,
    ):
        super().__init__()
        self.dim, self.context_features = dim, context_features
        self.base = DiagonalGaussianHead(
            dim, context_features, hidden=base_hidden, activation=activation,
            batch_norm=batch_norm, variance_floor=variance_floor,
        )
        order = torch.arange(dim)
        self.steps = nn.ModuleList(
            ConditionalAffineAutoregressive(
                ConditionalAutoRegressiveNN(
                    dim, context_features, list(hidden or [10 * dim]),
                    permutation=order.flip(0) if k % 2 else order,
                    nonlinearity=make_activation(activation),
                )
            )
            for k in range(steps)
        )

    def condition(self, context: torch.Tensor | None = None) -> dist.TransformedDistribution:
        base = self.base.condition(context)
        if context is None:  # root: the MADEs still want a (0-feature) context tensor
            context = base.mean.new_zeros(0)
        return dist.TransformedDistribution(base, [step.condition(context) for step in self.steps])
