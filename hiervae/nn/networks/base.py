""":class:`Network`: the base of every network module (MLP, ResNet, MADE).

Networks are where the matrix products are, so they are what ``train.precision: bf16``
runs in bf16 (:mod:`hiervae.nn.precision` finds them by this base class and casts their
outputs back to float32).  A module outside hiervae that plays the same role (Pyro's
autoregressive network inside the IAF family) is declared with :func:`float32_output`.
"""

from __future__ import annotations

from torch import nn

FOREIGN_NETWORKS: list[type[nn.Module]] = []


class Network(nn.Module):
    """A network module: its matmuls may run in bf16, its output is float32 (see above)."""


def float32_output(cls: type[nn.Module]) -> type[nn.Module]:
    """Declare a network class hiervae does not own as one (its outputs go back to float32)."""
    if cls not in FOREIGN_NETWORKS:
        FOREIGN_NETWORKS.append(cls)
    return cls


def network_types() -> tuple[type[nn.Module], ...]:
    return (Network, *FOREIGN_NETWORKS)
