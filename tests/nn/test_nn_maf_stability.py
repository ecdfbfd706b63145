"""A freshly built MAF likelihood is numerically safe in eval mode (issue: NaN at init).

The shipped CIFAR-10 MAF (10 MADEs of 2 x 1024 relu units over 3072 logit-space pixels)
used to overflow to inf/NaN in eval mode on bright pixels: a Glorot-initialised MADE
output grows linearly with |x| (a relu net with zero biases is positively homogeneous),
and ``x exp(-a(x))`` compounds that over the steps.  The MADE output layer now starts at
zero, so every MAF step starts as the identity.
"""

from pathlib import Path

import pytest
import torch

from hiervae.language.net import Net
from hiervae.program import build_program
from hiervae.graph import load_graph
from hiervae.nn.families.maf import MAFLikelihood, MAFStep
from hiervae.nn.logit_space import logit_transform
from hiervae.nn.networks.made import ConditionalMADE

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _shipped_maf() -> MAFLikelihood:
    """The likelihood of specs/maf_cifar10.yaml, built by the compiler, in eval mode."""
    torch.manual_seed(0)
    program = build_program(load_graph(SPECS / "maf_cifar10.yaml"))
    (maf,) = [m for m in program.modules() if isinstance(m, MAFLikelihood)]
    return maf.eval()


def _extreme_pixels(dim: int) -> torch.Tensor:
    """Dequantised v = (k + u) / 256 for k in {0, 255} and u in {0, 0.5, 0.999}: (6, dim)."""
    rows = [(k + u) / 256 for k in (0.0, 255.0) for u in (0.0, 0.5, 0.999)]
    return torch.tensor(rows).unsqueeze(-1).expand(-1, dim).contiguous()


def test_shipped_maf_log_prob_is_finite_in_eval_mode_at_extreme_pixels():
    maf = _shipped_maf()
    assert maf.dim == 3072 and sum(isinstance(s, MAFStep) for s in maf.steps) == 10
    v = _extreme_pixels(maf.dim)
    with torch.no_grad():
        d = maf.condition(None)
        d_validated = type(d)(d.base, d.steps, d.logit_alpha, validate_args=True)
        log_p = d_validated.log_prob(v)  # raised in the base's validation before the fix
        assert torch.isfinite(log_p).all()
        # Independent value: the flow starts as the identity (MADEs output 0, batch
        # norm with fresh running stats 0/1 is x / sqrt(1 + eps)), so log p(v) is the
        # base density of the normalised logits plus both log-Jacobians.
        y, logit_log_det = logit_transform(v, 0.05)
        eps = 1e-5
        n_bn = len(maf.steps) - 10
        u = y * (1 + eps) ** (-n_bn / 2)
        expected = d.base.log_prob(u) + logit_log_det - n_bn * maf.dim * 0.5 * torch.log1p(torch.tensor(eps))
        torch.testing.assert_close(log_p, expected, rtol=1e-5, atol=1e-2)


def test_paper_literal_glorot_output_overflows_which_is_why_it_is_not_the_default():
    """Documents the cause: the same flow with a Glorot MADE output layer is not finite."""
    torch.manual_seed(0)
    maf = MAFLikelihood(3072, 0, Net(layers=(1024, 1024)), logit_alpha=0.05, identity_init=False).eval()
    v = _extreme_pixels(maf.dim)[3:]  # the bright pixels
    with torch.no_grad():
        u, _ = logit_transform(v, 0.05)
        for module, ctx in reversed(maf.condition(None).steps):
            u, _ = module.density(u, ctx)
    assert not torch.isfinite(u).all()


@pytest.mark.parametrize("context", [0, 3])
def test_zero_output_made_starts_at_zero_and_still_learns_autoregressively(context):
    """Zero output layer: outputs 0 at init; gradients reach it; after an update the
    outputs depend exactly on earlier inputs (the masks, not the init, guarantee it)."""
    torch.manual_seed(0)
    D = 5
    made = ConditionalMADE(D, context, hidden=(32, 32), activation="relu", random_order=True, seed=1,
                           output_init="zero")
    x, c = torch.randn(64, D), torch.randn(64, context)
    out = made(x, c if context else None)
    assert out.shape == (64, 2, D) and (out == 0).all()
    opt = torch.optim.SGD(made.parameters(), lr=0.1)
    for _ in range(2):  # step 1 moves the output layer only, step 2 the hidden layers too
        opt.zero_grad()
        target = torch.sin(x).cumsum(-1)  # depends on earlier features
        (made(x, c if context else None)[:, 0] - target).pow(2).mean().backward()
        assert made.net[-1].weight.grad.abs().sum() > 0
        opt.step()
    assert made.net[0].weight.grad.abs().sum() > 0
    xi = torch.randn(D, requires_grad=True)
    ci = torch.randn(context) if context else None
    j = torch.autograd.functional.jacobian(lambda x_: made(x_, ci), xi)  # (2, D, D)
    ordered = j[..., made.order, :][..., made.order]
    upper = ~torch.ones(D, D).tril(-1).bool()
    assert (ordered[:, upper] == 0).all()
    assert (ordered[0].tril(-1) != 0).any()


def test_identity_init_is_an_option_of_the_maf_likelihood():
    assert MAFLikelihood.options()["identity_init"] is True
    torch.manual_seed(0)
    fresh = MAFLikelihood(4, 2, Net(layers=(8, 8)), base_hidden=(8,))
    x, c = torch.randn(7, 4), torch.randn(7, 2)
    for step in fresh.steps:
        if isinstance(step, MAFStep):
            u, log_det = step.density(x, c)
            assert torch.equal(u, x) and (log_det == 0).all()
