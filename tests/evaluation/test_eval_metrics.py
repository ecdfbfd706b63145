"""``evaluate_split``: IW mean / stderr, ELBO, KL per latent and active units on known answers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pyro
import pytest
import torch
from pyro import poutine

from hiervae.program import build_program
from hiervae.evaluation import evaluate_split, inference_mode, iw_log_likelihood, log_weights, posterior_means
from hiervae.graph import build_graph, load_graph
from hiervae.language.load import parse_spec
from hiervae.language.schema import EvalSpec


def kl_to_std_normal(loc: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return 0.5 * (var + loc.pow(2) - 1 - var.log()).sum(-1)


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_eval_linear_gaussian_exact_answers(lg, batch_size):
    """Exact guide: IW mean/stderr, KL, E_q[z|x] variance are known in closed form."""
    program = lg.program()
    x = lg.data(53, seed=4)
    lp = lg.log_px(x)
    a, c, var = lg.exact_posterior()
    post_mean = x @ a.T + c
    unit_var = post_mean.var(0)  # unbiased, over x
    threshold = unit_var.mean().item()  # between the two units' variances: exactly one is active
    assert unit_var.min() < threshold < unit_var.max()
    spec = EvalSpec(importance_samples=20, chunk_size=7, batch_size=batch_size, active_units_threshold=threshold)
    pyro.set_rng_seed(0)
    r = evaluate_split(program, x, spec, analytic_kl=True)
    assert r.examples == 53 and r.importance_samples == 20
    assert r.iw_log_likelihood == pytest.approx(lp.mean().item(), abs=1e-9)
    assert r.iw_log_likelihood_stderr == pytest.approx(lp.std().item() / math.sqrt(53), abs=1e-9)
    assert r.kl["z"] == pytest.approx(kl_to_std_normal(post_mean, var).mean().item(), abs=1e-9)
    assert r.kl_total == pytest.approx(r.kl["z"])
    assert r.elbo == pytest.approx(r.reconstruction - r.kl_total, abs=1e-9)
    assert r.elbo < r.iw_log_likelihood + 0.5  # ELBO estimate near log p(x) (noise only)
    torch.testing.assert_close(torch.tensor(r.unit_variance["z"], dtype=torch.float64), unit_var, rtol=1e-9, atol=1e-12)
    assert r.units == {"z": 2} and r.active_units == {"z": 1} and r.active_total == 1
    js = r.to_json()
    assert js["active_units_total"] == 1 and js["units_total"] == 2 and js["kl"] == r.kl
    assert "z" in r.format_table() and "1/2" in r.format_table()


def test_eval_split_limit_and_monte_carlo_kl(lg):
    program = lg.program()
    splits = SimpleNamespace(valid=lg.data(30, seed=1), test=lg.data(40, seed=2))
    spec = EvalSpec(importance_samples=5, chunk_size=5, batch_size=8)
    r = evaluate_split(program, splits, spec, "valid", analytic_kl=False, limit=12)
    assert r.split == "valid" and r.examples == 12
    lp = lg.log_px(splits.valid[:12])
    assert r.iw_log_likelihood == pytest.approx(lp.mean().item(), abs=1e-9)
    # with Monte Carlo KL and the exact posterior, every ELBO sample is log p(x)
    assert r.elbo == pytest.approx(lp.mean().item(), abs=1e-9)
    assert r.elbo_stderr == pytest.approx(lp.std().item() / math.sqrt(12), abs=1e-9)
    assert not r.analytic_kl
    assert evaluate_split(program, splits, spec, "test", importance_samples=3).importance_samples == 3


def test_eval_mismatched_guide_iw_above_elbo(lg):
    pyro.set_rng_seed(1)
    program = lg.program("mismatched")
    x = lg.data(200, seed=6)
    r = evaluate_split(program, x, EvalSpec(importance_samples=200, chunk_size=64, batch_size=64))
    assert r.iw_log_likelihood > r.elbo + 0.2
    assert r.iw_log_likelihood == pytest.approx(lg.log_px(x).mean().item(), abs=0.03)


def test_eval_active_units_of_a_collapsed_layer(quickstart_path):
    """A guide factor whose loc ignores x has 0 active units; the others are active."""
    torch.manual_seed(0)
    program = build_program(load_graph(quickstart_path))
    encoder = program.factors["eps1"].encoders["x"].net
    with torch.no_grad():
        encoder[-2].weight.zero_()  # the last Linear: eps1's context is a constant
    x = torch.bernoulli(torch.full((120, 64), 0.4))
    r = evaluate_split(program, x, EvalSpec(importance_samples=2, chunk_size=2, batch_size=50, active_units_threshold=1e-6))
    assert r.active_units["eps1"] == 0 and max(r.unit_variance["eps1"]) < 1e-10
    assert r.active_units["eps2"] == 4 and r.active_units["eps3"] == 4
    assert r.active_total == 8 and r.units_total == 12


def test_eval_posterior_means_average_the_family_means(quickstart_path):
    """E_q[eps2 | x] = mean over eps1 ~ q of loc(q(eps2 | x, z1)): compare with the loc per sample."""
    torch.manual_seed(1)
    program = build_program(load_graph(quickstart_path)).eval()
    x = torch.bernoulli(torch.full((6, 64), 0.4))
    with inference_mode(program):
        pyro.set_rng_seed(3)
        means = posterior_means(program, x, samples=10)
        pyro.set_rng_seed(3)
        with pyro.plate("particles", 10, dim=-2):
            trace = poutine.trace(program.guide).get_trace(x)
    expected = trace.nodes["eps2"]["fn"].base_dist.loc.mean(0)
    torch.testing.assert_close(means["eps2"], expected)
    assert not torch.allclose(means["eps2"], trace.nodes["eps2"]["value"].mean(0))  # not the samples
    assert means["eps1"].shape == (6, 4)


IAF_SPEC = """
name: tiny-iaf
data: {dataset: digits}
model:
  - z: {latent: 4, dist: std_normal}
  - x: {observed: [64], dist: bernoulli, given: [z], net: {mlp: [16]}}
guide:
  - z: {dist: iaf, given: [x], net: {mlp: [16]}, options: {steps: 2, hidden: [40]}}
"""


def test_eval_iaf_guide_log_density_under_the_particle_plate():
    """The guide's cached log q of its own samples equals a fresh evaluation (sequential inverse)."""
    torch.manual_seed(0)
    program = build_program(build_graph(parse_spec(IAF_SPEC))).double().eval()
    x = torch.bernoulli(torch.full((5, 64), 0.4, dtype=torch.float64))
    with inference_mode(program):
        pyro.set_rng_seed(0)
        lw = log_weights(program, x, 6)
        pyro.set_rng_seed(0)
        with pyro.plate("particles", 6, dim=-2):
            z = poutine.trace(program.guide).get_trace(x).nodes["z"]["value"]
        fresh_q = program.posterior("z", {"x": x}).log_prob(z)  # new transforms: no cache
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_px = program.prior("x", {"z": z}).log_prob(x)
    torch.testing.assert_close(lw, log_px + log_pz - fresh_q, rtol=0, atol=1e-8)
    means = posterior_means(program, x, 4)  # no closed-form mean: the samples are averaged
    assert means["z"].shape == (5, 4) and torch.isfinite(iw_log_likelihood(program, x, 10, 4)).all()
