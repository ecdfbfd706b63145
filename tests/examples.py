"""Examples shared by tests: values of a model's observed nodes (binary pixels, one-hot
labels, values in [0, 1) for dequantised pixels, real vectors otherwise) and small specs."""

from __future__ import annotations

import torch

from hiervae.data.observations import Observations

# A guide factor that reads no data although its exact posterior factor depends on it:
# q(z2) reads nothing, p(z2 | x) depends on x through z2 -> x; the fix adds x.
NO_DATA_FACTOR = """
name: reads-no-data
networks: {g: {mlp: [8], activation: relu}}
model:
  - z1: {latent: 2, dist: normal}
  - z2: {latent: 2, dist: normal, given: [z1], net: g}
  - x:  {observed: [6], dist: bernoulli, given: [z2], net: g}
guide:
  - z2: {dist: normal, given: [], net: g}
  - z1: {dist: normal, given: [z2], net: g}
"""


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
