"""Multilayer perceptrons (network kind ``mlp``), the building block of the MLP SeRe-VAE.

Evidence encoders, latent encoders, the loc/scale networks of the Gaussian layers,
the shift/scale networks of the bijectors and the decoder are all MLPs (paper,
Table 5), so one class with the paper's conventions lives here:

* weights Glorot-normal, biases zero (Table 4, "kernel/bias initializer");
* optional batch normalisation at the *input* of every linear layer (appendix 7:
  "batch normalization layers were added at the input of each layer");
* activations chosen by name (:data:`ACTIVATIONS`), so a spec can say ``activation: tanh``.

An ``mlp`` network maps flat features to flat features of any size (the input and output
shapes are flattened); ``out`` sets an encoder's output size, a head's is fixed by its
consumer.

The l2 penalty of Table 4 is the optimiser's ``weight_decay``, not part of the module.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Sequence

import torch
from torch import nn

from hiervae.language.net import Net
from hiervae.nn.networks.base import Network
from hiervae.nn.registry import NETWORKS, NetworkKind
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


class MLP(Network):
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


@NETWORKS.register("mlp")
class MLPKind(NetworkKind):
    """``mlp: [widths]``: :class:`MLP` from the flattened input to the flattened output."""

    keys: ClassVar[frozenset[str]] = frozenset({"mlp", "activation", "out", "out_activation", "batch_norm",
                                                "dropout", "separate"})

    @classmethod
    def check(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None) -> None:
        if out_shape is None and not net.layers:
            raise ValueError("an mlp with no hidden layers needs an output size (out)")
        if out_shape is None and net.out_activation is not None:
            raise ValueError("out_activation needs out (the output layer it acts on)")

    @classmethod
    def out_features(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None) -> int:
        cls.check(net, in_shape, out_shape)
        return math.prod(out_shape) if out_shape is not None else net.layers[-1]

    @classmethod
    def build(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None) -> MLP:
        cls.check(net, in_shape, out_shape)
        return MLP(math.prod(in_shape), net.layers, None if out_shape is None else math.prod(out_shape),
                   activation=net.activation, out_activation=net.out_activation, batch_norm=net.batch_norm,
                   dropout=net.dropout)
