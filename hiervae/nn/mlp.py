"""Multilayer perceptrons, the building block of every network in the MLP SeRe-VAE.

Evidence encoders, latent encoders, the loc/scale networks of the Gaussian layers,
the shift/scale networks of the bijectors and the decoder are all MLPs (paper,
Table 5), so one class with the paper's conventions lives here:

* weights Glorot-normal, biases zero (Table 4, "kernel/bias initializer");
* optional batch normalisation at the *input* of every linear layer (appendix 7:
  "batch normalization layers were added at the input of each layer");
* activations chosen by name, so a spec can say ``activation: tanh``.

The l2 penalty of Table 4 is the optimiser's ``weight_decay``, not part of the module.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from hiervae.registry import Registry

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
for _name, _factory in {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "none": nn.Identity,
    "identity": nn.Identity,
}.items():
    ACTIVATIONS.register(_name)(_factory)


def make_activation(name: str | None) -> nn.Module:
    """The activation module called ``name``; ``None`` means no activation."""
    return ACTIVATIONS.get("none" if name is None else name)()


class MLP(nn.Module):
    """``(..., in_features) -> (..., out_features)``; any number of leading batch dims.

    Each layer is ``[BatchNorm1d] -> Linear -> activation -> [Dropout]``; the output
    layer (present when ``out_features`` is not None) uses ``out_activation`` and no
    dropout.  With ``out_features=None`` the MLP is a feature extractor whose output
    is its last hidden layer.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int | None,
        activation: str = "relu",
        out_activation: str | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if out_features is None and out_activation is not None:
            raise ValueError("out_activation needs out_features (the output layer it acts on)")
        widths = [in_features, *hidden] + ([] if out_features is None else [out_features])
        if len(widths) < 2:
            raise ValueError("MLP needs at least one hidden layer or an output layer")
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            is_output = out_features is not None and i == len(widths) - 2
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_in))
            linear = nn.Linear(n_in, n_out)
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers += [linear, make_activation(out_activation if is_output else activation)]
            if dropout > 0 and not is_output:
                layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BatchNorm1d only takes (N, C): fold all batch dims into one and back.
        if x.dim() == 2:
            return self.net(x)
        y = self.net(x.reshape(-1, self.in_features))
        return y.reshape(*x.shape[:-1], self.out_features)


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

    A parameter of a conditional layer is a network of its parents, except at the
    root of the hierarchy (``context_features == 0``), where it is a learned constant
    starting at ``init``; the context (``None`` or shape ``(..., 0)``) then only
    supplies the batch shape.  Having both cases behind one interface keeps the
    Gaussian heads and the bijectors free of root special cases.
    """

    def __init__(self, context_features: int, init: torch.Tensor, **mlp_options):
        super().__init__()
        self.context_features = context_features
        if context_features == 0:
            self.const = nn.Parameter(init.detach().clone().flatten())
        else:
            self.mlp = MLP(context_features, out_features=init.numel(), **mlp_options)

    def forward(self, context: torch.Tensor | None) -> torch.Tensor:
        if context is not None and context.shape[-1] != self.context_features:
            raise ValueError(
                f"context has {context.shape[-1]} features, expected {self.context_features}"
            )
        if self.context_features == 0:
            return self.const if context is None else self.const.expand(*context.shape[:-1], -1)
        if context is None:
            raise ValueError(f"a context with {self.context_features} features is required")
        return self.mlp(context)
