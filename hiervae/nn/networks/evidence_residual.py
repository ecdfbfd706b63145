"""The residual variational layer of the ResNet SeRe-VAE (paper appendix 8, Figure 8).

In the MLP SeRe-VAE a guide factor's parameters are one network of the concatenated
latent features and evidence features.  With ResNet encoders the two streams are
unbalanced (64 evidence features against the latent codes), so appendix 8 splits the
parameter network in two, connected residually::

    phi(u, e) = phi_1(u) + r(e, h(u))

* ``u``: the latent stream (the encoded ``z^{l-1}``: everything in the context that is
  not evidence); ``phi_1(u)`` is a first estimate of the parameters;
* ``h(u)``: a "hidden feature map that downscales the first estimate": a network with
  the same hyperparameters as ``phi_1`` and ``max(1, floor(D / 3))`` outputs, ``D``
  the latent's dimension (Table 6: 3 for D = 10);
* ``r(e, h(u))``: the residual correction from the evidence features ``e`` (the
  encoded ``D``) and ``h(u)``.

:class:`EvidenceResidualNet` has the interface of :class:`~hiervae.nn.networks.params.ParamNet`
(context -> parameters), so a family uses it wherever it would use a ParamNet and the
compiler's ``condition(context)`` path is unchanged.  The context is still the
concatenation of the factor's encoded inputs in ``given`` order; which slice of it is
the evidence is told by ``evidence = (start, stop)``, computed by the compiler from
the kinds of the inputs (observed nodes are evidence).  At the first layer (no latent
stream) ``phi_1`` is a learned constant and ``h`` is absent, so ``r`` sees the
evidence alone.
"""

from __future__ import annotations

import torch
from torch import nn

from hiervae.language.net import BASE, Net
from hiervae.nn.networks.params import ParamNet, cat_context
from hiervae.nn.registry import NETWORKS


class EvidenceResidualNet(nn.Module):
    """Context ``(..., context_features)`` -> parameters ``phi_1(u) + r(e, h(u))``, ``(..., numel(init))``.

    ``evidence = (start, stop)``: the context slice holding the evidence features ``e``;
    the rest is ``u``.  ``phi_1`` starts at ``init`` at the root (as a ParamNet does);
    every sub-network is a network ``net``.
    """

    def __init__(self, context_features: int, evidence: tuple[int, int], init: torch.Tensor,
                 hidden_features: int, net: Net = Net()):
        super().__init__()
        start, stop = evidence
        if not 0 <= start < stop <= context_features:
            raise ValueError(f"evidence slice [{start}, {stop}) must be a non-empty part of the {context_features} context features")
        self.context_features = context_features
        self.evidence = (start, stop)
        latent = context_features - (stop - start)
        net = net.over(BASE)
        kind = NETWORKS.get(net.kind)
        self.first = ParamNet(latent, init, net)  # phi_1(u), a learned constant without u
        self.hidden = kind.build(net, (latent,), (hidden_features,)) if latent else None  # h(u)
        r_in = (stop - start) + (hidden_features if latent else 0)
        self.residual = kind.build(net, (r_in,), (init.numel(),))  # r(e, h(u))

    def split(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(e, u)``: the evidence slice and the rest (the latent stream) of ``context``."""
        start, stop = self.evidence
        u = torch.cat([context[..., :start], context[..., stop:]], -1)
        return context[..., start:stop], u

    def forward(self, context: torch.Tensor | None) -> torch.Tensor:
        if context is None or context.shape[-1] != self.context_features:
            got = None if context is None else context.shape[-1]
            raise ValueError(f"context has {got} features, expected {self.context_features}")
        e, u = self.split(context)
        first = self.first(u)
        r_in = e if self.hidden is None else cat_context([e, self.hidden(u)])
        return first + self.residual(r_in)
