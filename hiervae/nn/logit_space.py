"""Logit space for pixel intensities: ``y = logit(alpha + (1 - alpha) v)`` and back.

A continuous density of 8-bit images (the ``maf`` likelihood with ``logit_alpha``) models
dequantised pixels ``v`` in [0, 1]^D through this map, the paper's (appendix 9.1,
alpha = 0.05)::

    log p(v) = log p(y) + log|dy/dv|,  log|dy/dv| = sum_i log(1 - alpha) - log s_i - log(1 - s_i),
    s = alpha + (1 - alpha) v
"""

from __future__ import annotations

import math

import torch

from hiervae.data.dequantize import dequantize


def logit_transform(v: torch.Tensor, alpha: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = logit(alpha + (1 - alpha) v)`` and ``log|dy/dv|`` summed over the last dim."""
    s = alpha + (1 - alpha) * v
    y = torch.log(s) - torch.log1p(-s)
    log_det = (math.log1p(-alpha) - torch.log(s) - torch.log1p(-s)).sum(-1)
    return y, log_det


def from_logit_space(y: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """Inverse of :func:`logit_transform`: ``v = (sigmoid(y) - alpha) / (1 - alpha)``.

    ``v`` lies in ``(-alpha / (1 - alpha), 1)``; clip to [0, 1] only for display.
    """
    return (torch.sigmoid(y) - alpha) / (1 - alpha)


def to_logit_space(
    x: torch.Tensor,
    alpha: float = 0.05,
    noise: float | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels (uint8, or floats ``k/255``) -> ``(y, log|dy/dv|)``: :func:`dequantize` then
    :func:`logit_transform`.  ``log p(v) = log p(y) + log|dy/dv|`` for ``v`` in [0, 1]^D."""
    return logit_transform(dequantize(x, noise, generator), alpha)
