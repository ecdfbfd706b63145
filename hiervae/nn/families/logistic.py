"""The ``logistic`` likelihood: 8-bit pixels under a discretized mixture of logistics.

Each pixel value ``v = k / 255`` (``k`` in 0..255) gets the probability of its bin under a
mixture of ``mixtures`` logistic distributions (Salimans et al. 2017, PixelCNN++, without
the channel coupling): with ``c = 2 v - 1`` in [-1, 1] and bins of half-width ``1/255``,

    P(k) = sum_j pi_j [sigmoid((c + 1/255 - mu_j) / s_j) - sigmoid((c - 1/255 - mu_j) / s_j)],

the first and last bins extended to -inf and +inf.  It is a *discrete* likelihood: it
scores 8-bit pixels as they are, so no dequantisation is needed (``binarize: none``).
Means, log-scales and mixture logits come from one network of the parents (``3 *
mixtures`` values per pixel).  ``mean`` is the mixture mean, clipped to [0, 1].
"""

from __future__ import annotations

import math
from typing import Annotated

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pydantic import Field
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn
from torch.distributions import constraints

from hiervae.language.net import Net
from hiervae.nn.families.normal import HEAD_KEYS
from hiervae.nn.networks.params import ParamNet
from hiervae.nn.registry import FAMILIES, Family

LOG_SCALE_MIN = -7.0  # scales below exp(-7) add nothing at 1/255 resolution and only risk overflow


class DiscretizedLogistic(dist.TorchDistribution):
    """Independent pixels ``(..., D)``, each a discretized mixture of ``K`` logistics; event dim 1."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.unit_interval, 1)

    def __init__(self, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, bins: int = 256,
                 validate_args: bool | None = False):
        # (..., D, K) each
        self.logits, self.means, self.log_scales, self.bins = logits, means, log_scales.clamp(min=LOG_SCALE_MIN), bins
        super().__init__(means.shape[:-2], means.shape[-2:-1], validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        c = (2 * value - 1).unsqueeze(-1)  # (..., D, 1) in [-1, 1]
        half = 1.0 / (self.bins - 1)
        inv = torch.exp(-self.log_scales)
        centered = c - self.means
        upper = torch.sigmoid(inv * (centered + half))
        lower = torch.sigmoid(inv * (centered - half))
        log_upper = F.logsigmoid(inv * (centered + half))  # bin 0 extends to -inf: log P = log sigmoid(upper)
        log_one_minus_lower = -F.softplus(inv * (centered - half))  # bin 255 extends to +inf
        mid = torch.log((upper - lower).clamp(min=1e-12))
        # where the bin is tiny and the difference underflows, use the density times the bin width
        log_density = -inv * centered.abs() - 2 * F.softplus(-inv * centered.abs()) - self.log_scales + math.log(2 * half)
        mid = torch.where(upper - lower > 1e-5, mid, log_density)
        log_p = torch.where(c < -1 + half / 2, log_upper, torch.where(c > 1 - half / 2, log_one_minus_lower, mid))
        return torch.logsumexp(log_p + F.log_softmax(self.logits, -1), -1).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        weights = torch.softmax(self.logits, -1)
        return ((weights * self.means).sum(-1).clamp(-1, 1) + 1) / 2

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.means.shape[:-1]
            k = torch.distributions.Categorical(logits=self.logits.expand(*shape, -1)).sample().unsqueeze(-1)
            mu = self.means.expand(*shape, -1).gather(-1, k).squeeze(-1)
            s = self.log_scales.expand(*shape, -1).gather(-1, k).squeeze(-1).exp()
            u = torch.rand_like(mu).clamp(1e-5, 1 - 1e-5)
            c = (mu + s * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
            return torch.round((c + 1) / 2 * (self.bins - 1)) / (self.bins - 1)


@FAMILIES.register("logistic")
class LogisticDecoder(Family, ConditionalDistribution, nn.Module):
    """8-bit pixels: a discretized mixture of ``mixtures`` logistics per pixel (see the module)."""

    roles = frozenset({"likelihood"})
    net_keys = HEAD_KEYS - {"separate"}
    net_defaults = Net(layers=(512, 512), activation="relu")
    doc = "8-bit pixels, a discretized mixture of logistics per pixel (no dequantisation needed)"

    def __init__(self, dim: int, context_features: int, net: Net | None = None,
                 mixtures: Annotated[int, Field(ge=1, le=32)] = 1):
        super().__init__()
        self.dim, self.mixtures = dim, mixtures
        init = torch.zeros(3, dim, mixtures)
        init[1] = torch.linspace(-0.5, 0.5, mixtures) if mixtures > 1 else 0.0  # spread the means apart
        init[2] = math.log(0.2)
        self.net = ParamNet(context_features, init, self.network(net))

    def condition(self, context: torch.Tensor | None = None) -> DiscretizedLogistic:
        params = self.net(context).unflatten(-1, (3, self.dim, self.mixtures))
        return DiscretizedLogistic(params[..., 0, :, :], params[..., 1, :, :], params[..., 2, :, :])
