"""Example values of a model's observed nodes for tests: binary pixels, one-hot labels,
values in [0, 1) for dequantised pixels, real vectors otherwise."""

from __future__ import annotations

import torch

from hiervae.data.observations import Observations


def random_observations(graph, n: int, seed: int = 1, dtype: torch.dtype = torch.float64) -> Observations:
    gen = torch.Generator().manual_seed(seed)
    out = Observations()
    for name in graph.observed:
        node = graph.nodes[name]
        if node.family == "categorical":
            value = torch.nn.functional.one_hot(torch.randint(node.dim, (n,), generator=gen), node.dim)
        elif node.family == "bernoulli":
            value = torch.bernoulli(torch.rand(n, node.dim, generator=gen))
        elif graph.data.dequantize != "none":
            value = torch.rand(n, node.dim, generator=gen) * 0.9
        else:
            value = torch.randn(n, node.dim, generator=gen)
        out[name] = value.to(dtype)
    return out
