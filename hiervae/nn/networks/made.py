"""Conditional MADE (Germain et al. 2015) with the paper's mask offset (appendix 9.2).

Degree construction, in the paper's numbering (``C = context_features``,
``D = features``)::

    context inputs      m0 = 1 .. C                 (connected to every hidden unit)
    data inputs         m0 = C+1 .. C+D             (natural order, or a seeded random one)
    hidden units        m  in [lo, C+D-1], "equal": cycled evenly over that range
                        (or "random": uniform in [max(lo, min of the layer below), C+D-1])
    input -> hidden     M[k, d] = 1[m(k) >= m0(d)]            (Germain eq. 12)
    hidden -> hidden    M[k, j] = 1[m(k) >= m'(j)]            (eq. 12)
    hidden -> output    M[i, k] = 1[m0(i) > m(k)]              (eq. 13), data outputs only:
                        the C masks that would belong to context outputs are discarded.

``lo``: the paper says hidden degrees must be *larger* than ``C``, i.e. ``lo = C + 1``.
Taken literally that leaves the first variable in the order without any hidden unit
it may read (a degree ``C+1`` output needs ``m(k) <= C``), so its shift and scale
would be constants that ignore the context.  By default (``context_only_units=True``)
we therefore start at ``lo = C``: units of degree ``C`` read the whole context and no
data (the "degree 0" units of Paige & Wood 2016, also used by Pyro's
``ConditionalAutoRegressiveNN``).  The context is still connected to every hidden
unit, so this is the paper's construction with the range extended by one; the
literal one is ``context_only_units=False``.  (The paper's upper limit "C + D" is a
typo: a degree ``C+D`` unit can feed no output; Germain et al. use ``D - 1``.)  With
``C = 0`` both settings are the plain MADE, hidden degrees in ``[1, D-1]``.

Why not ``nflows.transforms.made.MADE``: it has no input orders other than the
natural one and no seed (its ``random_mask`` draws hidden degrees from the global RNG),
and it does not apply the mask-offset construction: the context enters through a
separate dense layer *after its own activation*, ``act(W x + act(V c))``, instead of
as unmasked inputs of the first layer, ``act(W x + V c)``.  The construction above is
a few lines, so it is built here directly, which also makes the degrees inspectable
(``input_degrees``, ``hidden_degrees``).

Layers: masked linear -> activation for each hidden width, then a masked linear
output of ``params_per_dim * D`` units laid out parameter-major, returned as
``(..., params_per_dim, D)``.  Weights Glorot-normal, biases zero (Table 8), except
that ``output_init="zero"`` zeroes the output layer (weights and biases), so that every
output starts at 0 whatever the input: an affine flow step built on the MADE then starts
as the exact identity (shift 0, log-scale 0).  Why this matters: with zero biases and
relu units the network is positively homogeneous, ``MADE(c x) = c MADE(x)`` for
``c > 0``, so a Glorot-initialised output gives log-scales that grow *linearly* with
``|x|``; chained through ``x exp(-a(x))`` step after step, that growth compounds
until it overflows for bright pixels.  ``output_init="glorot"`` is the paper's literal
initialisation.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hiervae.nn.networks.base import Network
from hiervae.nn.networks.mlp import make_activation

HIDDEN_DEGREES = ("equal", "random")
OUTPUT_INITS = ("glorot", "zero")


class MaskedLinear(nn.Linear):
    """``y = x (W * M)^T + b`` with a fixed 0/1 mask ``M`` of the weight's shape."""

    def __init__(self, mask: torch.Tensor, bias: bool = True):
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", mask.bool())  # bool: a quarter of the memory of a float mask
        nn.init.xavier_normal_(self.weight)
        if bias:
            nn.init.zeros_(self.bias)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, self.masked_weight() if weight is None else weight, self.bias)


class ConditionalMADE(Network):
    """``(x, context) -> (..., params_per_dim, D)``, autoregressive in ``x``.

    Output ``[..., p, i]`` depends only on the data inputs that come before ``i`` in
    :attr:`order` (and on every context input; see the module docstring for
    ``context_only_units``).  ``order`` (a permutation of ``range(D)``, the first
    element generated first) may be given explicitly; otherwise it is natural, or a
    random permutation drawn from a generator seeded with ``seed`` when
    ``random_order`` is set.  ``seed`` also seeds random hidden degrees.
    ``output_init``: ``"glorot"`` (Table 8) or ``"zero"`` (every output starts at 0;
    see the module docstring).
    """

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        hidden: Sequence[int] = (1024, 1024),
        activation: str = "relu",
        random_order: bool = False,
        seed: int = 0,
        params_per_dim: int = 2,
        hidden_degrees: str = "equal",
        context_only_units: bool = True,
        order: Sequence[int] | torch.Tensor | None = None,
        output_init: str = "glorot",
    ):
        super().__init__()
        if features < 1 or context_features < 0 or params_per_dim < 1:
            raise ValueError("ConditionalMADE needs features >= 1, context_features >= 0, params_per_dim >= 1")
        if not hidden:
            raise ValueError("ConditionalMADE needs at least one hidden layer")
        if hidden_degrees not in HIDDEN_DEGREES:
            raise ValueError(f"hidden_degrees must be one of {', '.join(HIDDEN_DEGREES)}, got {hidden_degrees!r}")
        if output_init not in OUTPUT_INITS:
            raise ValueError(f"output_init must be one of {', '.join(OUTPUT_INITS)}, got {output_init!r}")
        C, D = context_features, features
        self.features, self.context_features, self.params_per_dim = D, C, params_per_dim
        gen = torch.Generator().manual_seed(seed)
        if order is None:
            order = torch.randperm(D, generator=gen) if random_order else torch.arange(D)
        order = torch.as_tensor(order, dtype=torch.long)
        if sorted(order.tolist()) != list(range(D)):
            raise ValueError(f"order must be a permutation of range({D})")
        self.register_buffer("order", order)

        # m0: context 1..C, data input order[j] gets C + 1 + j.
        data_degrees = torch.empty(D, dtype=torch.long)
        data_degrees[order] = torch.arange(C + 1, C + D + 1)
        self.register_buffer("input_degrees", torch.cat([torch.arange(1, C + 1), data_degrees]))

        lo = C if (context_only_units and C > 0) else C + 1
        hi = C + D - 1
        degrees, layers = self.input_degrees, []
        hidden_degs = []
        for width in hidden:
            if hi < lo:  # D == 1: no data input may be read; units see the context (if any)
                m = torch.full((width,), hi, dtype=torch.long)
            elif hidden_degrees == "equal":
                m = lo + torch.arange(width) % (hi - lo + 1)
            else:
                low = max(lo, int(degrees.min()))
                m = torch.randint(low, hi + 1, (width,), generator=gen) if low <= hi else torch.full((width,), hi)
            layers += [MaskedLinear(m[:, None] >= degrees[None, :]), make_activation(activation)]
            hidden_degs.append(m)
            degrees = m
        out_degrees = data_degrees.repeat(params_per_dim)
        output = MaskedLinear(out_degrees[:, None] > degrees[None, :])
        if output_init == "zero":
            nn.init.zeros_(output.weight)  # the bias is already zero
        layers.append(output)
        self.net = nn.Sequential(*layers)
        self.hidden_degrees = hidden_degs  # per hidden layer, for inspection

    def masked_weights(self) -> list[torch.Tensor]:
        """``W * M`` of every masked layer, to pass to repeated :meth:`forward` calls.

        Sequential sampling calls the MADE ``D`` times with the same weights; masking
        them once per sample instead of once per call saves ``D - 1`` elementwise
        products of every weight matrix (and keeps the autograd graph small).
        """
        return [layer.masked_weight() for layer in self.net if isinstance(layer, MaskedLinear)]

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, weights: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``(..., D)`` and ``(..., C)`` (broadcast) -> ``(..., params_per_dim, D)``.

        ``weights``: the result of :meth:`masked_weights`, to skip re-masking.
        """
        if x.shape[-1] != self.features:
            raise ValueError(f"x has {x.shape[-1]} features, expected {self.features}")
        if self.context_features:
            if context is None or context.shape[-1] != self.context_features:
                got = None if context is None else context.shape[-1]
                raise ValueError(f"context has {got} features, expected {self.context_features}")
            shape = torch.broadcast_shapes(x.shape[:-1], context.shape[:-1])
            inputs = torch.cat([context.expand(*shape, -1), x.expand(*shape, -1)], -1)
        else:
            inputs = x
        weights = iter(self.masked_weights() if weights is None else weights)
        out = inputs
        for layer in self.net:
            out = layer(out, next(weights)) if isinstance(layer, MaskedLinear) else layer(out)
        return out.unflatten(-1, (self.params_per_dim, self.features))
