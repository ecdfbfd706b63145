"""The affine bijectors ``affine_lowrank`` and ``affine_diag``: ``z = f(eps | context)``.

Pyro idiom: a module's ``condition(context)`` returns a plain
``torch.distributions.Transform``, so the compiler can put it straight into Pyro sites and
``TransformedDistribution``\\ s.
"""

from __future__ import annotations

from functools import cached_property, partialmethod
from typing import Annotated

import torch
from pydantic import Field
from pyro.distributions.conditional import ConditionalTransformModule
from torch import nn
from torch.distributions import Transform, constraints

from hiervae.language.net import Net
from hiervae.language.schema import MAX_SIZE
from hiervae.nn.families.normal import HEAD_KEYS, VARIANCE_FLOOR, raw_of_one, softplus_elu
from hiervae.nn.networks.params import ParamNet
from hiervae.nn.registry import TRANSFORMS, TransformModule


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
class AffineLowRank(TransformModule, ConditionalTransformModule):
    """The paper's shared transformational layer ``z^l = f^l(eps^l | z^{l-1})``.

    ``f(eps) = shift + (diag(d) + U U^T) eps`` ("diagonal plus unit-rank affine",
    Table 5; ``rank`` generalises it, ``rank=0`` is :class:`AffineDiag`).  shift, d
    and U come from three identical networks of the context (Table 5: 2 x 20 units, tanh,
    tanh output; ``net.separate: false`` shares one), or are learned constants
    when ``context_features == 0``.
    ``d = softplus(elu(raw)) + diag_floor > 0`` keeps ``f`` invertible (appendix 7:
    "a similar parametrization is used for the scale" of these layers).

    Constants start at the identity map except U, which starts Glorot-normal: at
    ``U = 0`` every gradient with respect to U vanishes and it would never move.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    net_keys = HEAD_KEYS
    net_defaults = Net(layers=(20, 20), activation="tanh", out_activation="tanh")
    doc = "z = shift + (diag(d) + U U^T) eps, d > 0 (Rezende et al. 2014, eq. 19)"

    def __init__(
        self,
        dim: int,
        context_features: int,
        net: Net | None = None,
        rank: Annotated[int, Field(ge=0, le=MAX_SIZE)] = 1,
        diag_floor: Annotated[float, Field(gt=0)] = VARIANCE_FLOOR,
    ):
        super().__init__()
        net = self.network(net)
        self.dim, self.context_features = dim, context_features
        self.rank, self.diag_floor = rank, diag_floor
        inits = [torch.zeros(dim), torch.full((dim,), raw_of_one(diag_floor))]
        if rank:
            inits.append(nn.init.xavier_normal_(torch.empty(dim, rank)).flatten())
        if not net.separate:
            inits = [torch.cat(inits)]
        self.nets = nn.ModuleList(ParamNet(context_features, init, net) for init in inits)

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
    doc = "z = shift + d * eps, d > 0"
    __init__ = partialmethod(AffineLowRank.__init__, **fixed_options)
