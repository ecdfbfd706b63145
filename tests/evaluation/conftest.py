"""Shared fixtures of the evaluation tests: a linear-Gaussian model with a known log p(x).

z ~ N(0, I_2), x | z ~ N(W z + b, s^2 I_3), so p(x) = N(b, W W^T + s^2 I) exactly.
W has orthogonal columns, so the exact posterior N(A (x - b), Sigma) with
Sigma = (I + W^T W / s^2)^-1 (diagonal) and A = Sigma W^T / s^2 lies in the guide's
family (one linear layer for the loc, a constant scale); all weights are set by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import MultivariateNormal

from hiervae.program import build_program
from hiervae.graph import build_graph
from hiervae.nn.families.normal import VARIANCE_FLOOR
from hiervae.language.load import parse_spec

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"

LINEAR_GAUSSIAN_SPEC = """
name: linear-gaussian
model:
  - z: {latent: 2, dist: std_normal}
  - x: {observed: [3], dist: normal, given: [z], net: {mlp: []}, options: {scale_map: softplus_elu}}
guide:
  - z: {dist: normal, given: [x], net: {mlp: []}, options: {scale_map: softplus_elu}}
"""


def raw_for_variance(v, floor: float = VARIANCE_FLOOR) -> torch.Tensor:
    """Inverse of ``softplus(elu(raw)) + floor`` (float64)."""
    r = torch.log(torch.expm1(torch.as_tensor(v, dtype=torch.float64) - floor))
    return torch.where(r >= 0, r, torch.log1p(r.clamp(min=-1 + 1e-12)))


def set_head(head, weight: torch.Tensor, bias: torch.Tensor, variance: torch.Tensor) -> None:
    """A DiagonalGaussianHead with ``mlp: []``: loc = weight @ c + bias, constant variance."""
    loc_net, scale_net = (net.net.net[0] for net in head.nets)
    with torch.no_grad():
        loc_net.weight.copy_(weight)
        loc_net.bias.copy_(bias)
        scale_net.weight.zero_()
        scale_net.bias.copy_(raw_for_variance(variance))


class LinearGaussian:
    W = torch.tensor([[1.0, 0.5], [1.0, -0.5], [0.0, 0.5]], dtype=torch.float64)  # orthogonal columns
    B = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    S2 = 1.44  # likelihood variance

    def __init__(self):
        self.graph = build_graph(parse_spec(LINEAR_GAUSSIAN_SPEC))

    def exact_posterior(self):
        """(A, c, diag Sigma): q(z | x) = N(A x + c, Sigma) is the exact posterior."""
        sigma = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + self.W.T @ self.W / self.S2)
        assert torch.allclose(sigma, torch.diag(sigma.diagonal()))  # diagonal: in the guide's family
        a = sigma @ self.W.T / self.S2
        return a, -a @ self.B, sigma.diagonal()

    def guide_params(self, guide: str = "exact"):
        a, c, var = self.exact_posterior()
        if guide == "mismatched":  # shrunk loc, offset, over-dispersed: a real gap to close
            a, c, var = 0.6 * a, c + torch.tensor([0.3, -0.2], dtype=torch.float64), 1.8 * var
        return a, c, var

    def program(self, guide: str = "exact"):
        program = build_program(self.graph).double()
        set_head(program.sites["x"], self.W, self.B, torch.full((3,), self.S2, dtype=torch.float64))
        set_head(program.factors["z"].family, *self.guide_params(guide))
        return program.eval()

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.S2 * torch.eye(3, dtype=torch.float64)
        return MultivariateNormal(self.B, covariance_matrix=cov).log_prob(x)

    def data(self, n: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        return z @ self.W.T + self.B + math.sqrt(self.S2) * torch.randn(n, 3, generator=g, dtype=torch.float64)


@pytest.fixture(scope="session")
def lg() -> LinearGaussian:
    return LinearGaussian()


@pytest.fixture(scope="session")
def quickstart_path() -> Path:
    return QUICKSTART
