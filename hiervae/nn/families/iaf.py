"""The ``iaf`` guide family: a Gaussian followed by conditional inverse autoregressive flow steps."""

from __future__ import annotations

from typing import Annotated, Literal, Sequence

import pyro.distributions as dist
import torch
from pydantic import Field
from pyro.distributions.conditional import ConditionalDistribution
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from hiervae.language.net import Net
from hiervae.language.schema import MAX_COUNT, MAX_SIZE
from hiervae.nn.families.normal import HEAD_KEYS, VARIANCE_FLOOR, DiagonalGaussianHead
from hiervae.nn.networks.base import float32_output
from hiervae.nn.networks.mlp import make_activation
from hiervae.nn.registry import FAMILIES, Family

float32_output(ConditionalAutoRegressiveNN)  # its matmuls may run in bf16; the flow's arithmetic stays float32


@FAMILIES.register("iaf")
class ConditionalIAF(Family, ConditionalDistribution, nn.Module):
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

    Networks: ``net`` is the base Gaussian's (as for a ``normal`` factor); the MADEs have
    ``hidden`` units (an option) and the network's ``activation``.
    """

    roles = frozenset({"guide"})
    net_keys = HEAD_KEYS
    net_defaults = Net(layers=(256, 256), activation="relu")
    doc = "diagonal Gaussian followed by conditional inverse autoregressive flow steps"

    @classmethod
    def check_build(cls, dim, context_features, net, options, filled) -> None:
        hidden = options.get("hidden")
        if hidden is not None and (not hidden or any(h < dim for h in hidden)):
            raise ValueError(f"hidden: every MADE hidden width must be >= the latent's dimension {dim}, got {list(hidden)}")

    def __init__(
        self,
        dim: int,
        context_features: int,
        net: Net | None = None,
        steps: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 2,
        hidden: Sequence[Annotated[int, Field(ge=1, le=MAX_SIZE)]] | None = None,
        scale_map: Literal["softplus", "exp", "softplus_elu"] = "softplus",
        variance_floor: Annotated[float, Field(ge=0)] = VARIANCE_FLOOR,
    ):
        super().__init__()
        net = self.network(net)
        self.check_build(dim, context_features, net, {"hidden": hidden}, {})
        activation = net.activation
        self.dim, self.context_features = dim, context_features
        self.base = DiagonalGaussianHead(dim, context_features, net, scale_map=scale_map, variance_floor=variance_floor)
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
