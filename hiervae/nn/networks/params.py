"""Parameters of a conditional layer as a function of its context: :class:`ParamNet`.

A parameter of a conditional layer (a Gaussian's loc, a bijector's shift) is a network of
its parents, except at the root of the hierarchy (``context_features == 0``), where it is
a learned constant starting at ``init``; having both cases behind one interface keeps the
families and transforms free of root special cases.  :func:`cat_context` builds a
context from its parts.
"""

from __future__ import annotations

import torch
from torch import nn

from hiervae.language.net import BASE, Net
from hiervae.nn.registry import NETWORKS


def cat_context(parts: list[torch.Tensor]) -> torch.Tensor | None:
    """Concatenate context parts on the last dim (``None`` for no parts), broadcasting the
    batch dims only when they differ (IW particles: ``(n, B, F)`` latent features next to
    ``(B, F)`` evidence features, which are computed once and expanded, not recomputed)."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    first = parts[0].shape[:-1]
    if all(p.shape[:-1] == first for p in parts):
        return torch.cat(parts, -1)
    shape = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*shape, p.shape[-1]) for p in parts], -1)


class ParamNet(nn.Module):
    """Context ``(..., context_features)`` -> parameters ``(..., numel(init))``.

    A network of kind ``net.kind`` (``out_shape``: the parameters' shape as the network
    sees it, e.g. an image for a convolutional decoder; flat values either way), or, with
    ``context_features == 0``, a learned constant starting at ``init``; the context
    (``None`` or shape ``(..., 0)``) then only supplies the batch shape.
    """

    def __init__(self, context_features: int, init: torch.Tensor, net: Net = Net(),
                 out_shape: tuple[int, ...] | None = None):
        super().__init__()
        net = net.over(BASE)
        self.context_features = context_features
        if context_features == 0:
            self.const = nn.Parameter(init.detach().clone().flatten())
        else:
            self.net = NETWORKS.get(net.kind).build(net, (context_features,), out_shape or (init.numel(),))

    def forward(self, context: torch.Tensor | None) -> torch.Tensor:
        if context is not None and context.shape[-1] != self.context_features:
            raise ValueError(
                f"context has {context.shape[-1]} features, expected {self.context_features}"
            )
        if self.context_features == 0:
            return self.const if context is None else self.const.expand(*context.shape[:-1], -1)
        if context is None:
            raise ValueError(f"a context with {self.context_features} features is required")
        return self.net(context)
