"""Evaluation of flow likelihoods: bits/dim against a hand computation, and IW of a
latent-free model equal to its exact log-likelihood."""

from __future__ import annotations

import math

import pytest
import torch

from hiervae.program import build_program
from hiervae.evaluation import evaluate_split
from hiervae.graph import build_graph
from hiervae.nn.networks.made import MaskedLinear
from hiervae.language import parse_spec

GAUSSIAN_MAF = """
name: gaussian-maf
data: {dataset: none, binarize: none, dequantize: uniform}
model:
  - x: {observed: [4], dist: maf, net: {mlp: [16]}, options: {flows: 2, mades_per_flow: 2, batch_norm: false, base: std_normal, logit_alpha: 0.05}}
eval: {importance_samples: 3, chunk_size: 2, batch_size: 2}
"""


def hand_log_density(v: list[float], alpha: float = 0.05) -> float:
    """log p(v) when y = logit(alpha + (1 - alpha) v) ~ N(0, I): Gaussian plus the logit Jacobian."""
    total = 0.0
    for vi in v:
        s = alpha + (1 - alpha) * vi
        y = math.log(s / (1 - s))
        total += -0.5 * y * y - 0.5 * math.log(2 * math.pi) + math.log(1 - alpha) - math.log(s) - math.log(1 - s)
    return total


def test_bits_per_dim_of_a_maf_with_zeroed_mades_match_a_hand_computation():
    """Zeroed MADE outputs make every step the identity: the flow is its N(0, I) base in logit space."""
    graph = build_graph(parse_spec(GAUSSIAN_MAF))
    assert graph.pixel_dims == 4
    program = build_program(graph).double()
    outputs = [m for m in program.modules() if isinstance(m, MaskedLinear) and m.out_features == 8]  # (shift, log-scale) x 4
    assert len(outputs) == 4
    for module in outputs:
        torch.nn.init.zeros_(module.weight)
        torch.nn.init.zeros_(module.bias)
    pixels = torch.tensor([[0, 17, 128, 255], [3, 250, 90, 41], [200, 200, 1, 77]], dtype=torch.float64)
    v = (pixels + torch.tensor([0.5, 0.25, 0.75, 0.1], dtype=torch.float64)) / 256
    result = evaluate_split(program, v, graph.eval, analytic_kl=False, pixel_dims=4)
    logs = [hand_log_density(row) for row in v.tolist()]
    mean = sum(logs) / 3
    assert result.iw_log_likelihood == pytest.approx(mean, rel=1e-12)
    assert result.elbo == pytest.approx(mean, rel=1e-12) and result.kl == {}
    # bits/dim written out: -(log p(v) - D log 256) / (D log 2)
    assert result.iw_bits_per_dim == pytest.approx(-(mean - 4 * math.log(256)) / (4 * math.log(2)), rel=1e-12)
    assert result.elbo_bits_per_dim == pytest.approx(result.iw_bits_per_dim, rel=1e-12)
    sd = math.sqrt(sum((l - mean) ** 2 for l in logs) / 2)
    assert result.iw_log_likelihood_stderr == pytest.approx(sd / math.sqrt(3), rel=1e-9)
    assert result.iw_bits_per_dim_stderr == pytest.approx(sd / math.sqrt(3) / (4 * math.log(2)), rel=1e-9)
    assert "bits/dim" in result.format_table()


def test_no_bits_per_dim_without_dequantised_pixels(lg):
    assert lg.graph.pixel_dims is None
    result = evaluate_split(lg.program(), lg.data(4), lg.graph.eval, importance_samples=2)
    assert result.iw_bits_per_dim is None and "bits/dim" not in result.format_table()
