"""IW log-likelihood against a model whose exact log-likelihood is known (see conftest)."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from hiervae.program import elbo_terms
from hiervae.evaluation import inference_mode, iw_log_likelihood, log_weights


def test_eval_heads_are_set_as_intended(lg):
    program = lg.program()
    z = torch.randn(5, 2, dtype=torch.float64)
    p = program.sites["x"].condition(z).base_dist
    assert torch.allclose(p.loc, z @ lg.W.T + lg.B)
    assert torch.allclose(p.scale, torch.full_like(p.scale, math.sqrt(lg.S2)))
    a, c, var = lg.exact_posterior()
    x = lg.data(5)
    q = program.factors["z"].family.condition(x).base_dist
    assert torch.allclose(q.scale.pow(2), var.expand(5, 2))
    assert torch.allclose(q.loc, x @ a.T + c)


@pytest.mark.parametrize("samples,chunk", [(1, 1), (7, 3), (250, 100), (1000, 1000)])
def test_eval_exact_posterior_gives_exact_log_likelihood(lg, samples, chunk):
    pyro.set_rng_seed(samples)
    program = lg.program()
    x = lg.data(64)
    iw = iw_log_likelihood(program, x, samples=samples, chunk=chunk)
    assert iw.shape == (64,) and iw.dtype == torch.float64
    torch.testing.assert_close(iw, lg.log_px(x), rtol=0, atol=1e-10)


def test_eval_exact_posterior_elbo(lg):
    pyro.set_rng_seed(1)
    program = lg.program()
    x = lg.data(64)
    lp = lg.log_px(x)
    with inference_mode(program):
        # Monte Carlo KL: log p(x|z) + log p(z) - log q(z|x) = log p(x) for every z
        torch.testing.assert_close(elbo_terms(program, x, analytic_kl=False).elbo, lp, rtol=0, atol=1e-10)
        # analytic KL: equal in expectation only (log p(x|z) still depends on z)
        reps = torch.stack([elbo_terms(program, x, analytic_kl=True).elbo for _ in range(400)])
    err = (reps.mean(0) - lp).abs() / (reps.std(0) / 20)
    assert err.max() < 5.0  # each point's mean ELBO within 5 standard errors of log p(x)
    assert (reps.mean() - lp.mean()).abs() < 0.02


def test_eval_mismatched_guide_converges(lg):
    pyro.set_rng_seed(2)
    program = lg.program("mismatched")
    x = lg.data(300, seed=3)
    lp = lg.log_px(x)
    with inference_mode(program):
        elbo = torch.stack([elbo_terms(program, x, analytic_kl=True).elbo for _ in range(20)]).mean(0)
    iw = {k: iw_log_likelihood(program, x, samples=k, chunk=100) for k in (1, 10, 100, 1000)}
    gap = {k: (lp - v).mean().item() for k, v in iw.items()}
    assert gap[1] > 0.3  # the guide really is mismatched
    assert abs(gap[1000]) < 0.02 * gap[1]  # converged
    # per point too: mean absolute error ~0.02 at K=1000, ~1 at K=1
    assert (iw[1000] - lp).abs().mean() < 0.05 * (iw[1] - lp).abs().mean()
    assert (iw[1000] - lp).abs().max() < 0.3
    assert iw[1000].mean() >= elbo.mean()
    assert abs(iw[1].mean() - elbo.mean()) < 0.1  # IW(1) is a one-sample ELBO estimate
    ks = sorted(iw)
    for k1, k2 in zip(ks, ks[1:]):
        assert iw[k2].mean() >= iw[k1].mean() - 0.01
    assert all(gap[k] >= -0.01 for k in ks)  # a lower bound on average


def test_eval_chunks_accumulate_every_particle(lg, monkeypatch):
    """IW(chunk c) == logsumexp of exactly the K log weights drawn, whatever c."""
    import hiervae.evaluation.iw as iw_module

    program = lg.program("mismatched")
    x = lg.data(16)
    drawn = []

    def recording(program, x, particles):
        lw = log_weights(program, x, particles)
        drawn.append(lw)
        return lw

    monkeypatch.setattr(iw_module, "log_weights", recording)
    for chunk in (1, 7, 100, 250, 1000):
        drawn.clear()
        est = iw_module.iw_log_likelihood(program, x, samples=250, chunk=chunk)
        sizes = [lw.shape[0] for lw in drawn]
        assert sum(sizes) == 250 and max(sizes) <= chunk
        allw = torch.cat(drawn)
        torch.testing.assert_close(est, torch.logsumexp(allw, 0) - math.log(250), rtol=0, atol=1e-12)


def test_eval_chunk_size_does_not_change_the_estimate(lg):
    """Statistically: per-point estimates with chunk 50 vs 7 agree within their noise."""
    program = lg.program("mismatched")
    x = lg.data(300, seed=5)
    pyro.set_rng_seed(10)
    a = iw_log_likelihood(program, x, samples=50, chunk=50)
    pyro.set_rng_seed(11)
    b = iw_log_likelihood(program, x, samples=50, chunk=7)
    pyro.set_rng_seed(12)
    c = iw_log_likelihood(program, x, samples=50, chunk=50)
    diff, noise = (a - b), (a - c)
    # a biased accumulation (e.g. a wrong log K) shifts the mean by >> the noise
    assert diff.mean().abs() < 4 * noise.std() / math.sqrt(300) + 1e-3
    assert diff.std() < 1.5 * noise.std()


def test_eval_same_seed_same_result(lg):
    program = lg.program("mismatched")
    x = lg.data(10)
    pyro.set_rng_seed(3)
    a = iw_log_likelihood(program, x, samples=30, chunk=8)
    pyro.set_rng_seed(3)
    b = iw_log_likelihood(program, x, samples=30, chunk=8)
    assert torch.equal(a, b)
    pyro.set_rng_seed(4)
    assert not torch.equal(a, iw_log_likelihood(program, x, samples=30, chunk=8))


def test_eval_restores_training_mode_and_grad(lg):
    program = lg.program().train()
    x = lg.data(4)
    iw_log_likelihood(program, x, samples=3, chunk=2)
    assert program.training
    assert torch.is_grad_enabled()


def test_eval_rejects_bad_arguments(lg):
    program = lg.program()
    with pytest.raises(ValueError):
        iw_log_likelihood(program, lg.data(3), samples=0)
    with pytest.raises(ValueError):
        iw_log_likelihood(program, lg.data(3)[0], samples=3)
