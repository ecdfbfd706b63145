"""Eq. (11) scale map and the diagonal Gaussian families."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from hiervae.language.net import Net
from hiervae.nn import (
    DiagonalGaussianHead,
    StandardNormal,
    diag_normal,
    scale_from_raw,
    variance_from_raw,
)
from hiervae.nn.families.normal import raw_of_one

SOFTPLUS_MINUS_ONE = math.log1p(math.exp(-1.0))  # inf of softplus(elu(.))


def test_variance_is_positive_increasing_and_identity_for_large_raw():
    raw = torch.linspace(-20, 50, 1401, dtype=torch.float64)
    var = variance_from_raw(raw, floor=0.0)
    assert (var > 0).all()
    assert (var.diff() > 0).all()
    torch.testing.assert_close(var[raw > 30], raw[raw > 30])  # "large entries left unaffected"


def test_variance_lower_bound_and_floor():
    very_negative = torch.tensor([-1e4], dtype=torch.float64)
    assert variance_from_raw(very_negative, floor=0.0).item() == pytest.approx(SOFTPLUS_MINUS_ONE)
    raw = torch.randn(100, dtype=torch.float64)
    unfloored = variance_from_raw(raw, floor=0.0)
    floored = variance_from_raw(raw, floor=0.25)
    torch.testing.assert_close(floored - unfloored, torch.full_like(raw, 0.25))
    torch.testing.assert_close(variance_from_raw(raw) - unfloored, torch.full_like(raw, 1e-4))


def test_scale_is_sqrt_of_variance_with_finite_gradients():
    raw = torch.tensor([-1e3, -1.0, 0.0, 1.0, 1e3], dtype=torch.float64, requires_grad=True)
    scale = scale_from_raw(raw, floor=1e-3)
    torch.testing.assert_close(scale**2, variance_from_raw(raw, floor=1e-3))
    (grad,) = torch.autograd.grad(scale.sum(), raw)
    assert torch.isfinite(grad).all() and (grad >= 0).all()


@pytest.mark.parametrize("floor", [0.0, 1e-4, 0.3])
def test_raw_of_one_maps_to_unit_variance(floor):
    raw = torch.tensor(raw_of_one(floor), dtype=torch.float64)
    assert variance_from_raw(raw, floor).item() == pytest.approx(1.0)


def test_head_shapes_with_batch_dims():
    head = DiagonalGaussianHead(4, 3, Net(layers=(8,)))
    loc, scale = head(torch.randn(2, 5, 3))
    assert loc.shape == scale.shape == (2, 5, 4)
    assert (scale > 0).all()
    d = head.condition(torch.randn(2, 5, 3))
    assert d.batch_shape == (2, 5) and d.event_shape == (4,)


def test_separate_networks_are_independent():
    head = DiagonalGaussianHead(4, 3, Net(layers=(8,)))
    loc_net, scale_net = head.nets
    loc, _ = head(torch.randn(6, 3))
    loc.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loc_net.parameters())
    assert all(p.grad is None or not p.grad.any() for p in scale_net.parameters())


def test_shared_network_option():
    head = DiagonalGaussianHead(4, 3, Net(layers=(8,), separate=False))
    assert len(head.nets) == 1 and head.nets[0].net.out_features == 8
    loc, scale = head(torch.randn(6, 3))
    assert loc.shape == scale.shape == (6, 4)


def test_root_head_holds_constants_starting_at_standard_normal():
    head = DiagonalGaussianHead(4, 0)
    assert sorted(p.shape for p in head.parameters()) == [(4,), (4,)]
    loc, scale = head(None)
    torch.testing.assert_close(loc, torch.zeros(4))
    torch.testing.assert_close(scale, torch.ones(4))
    assert head.condition(torch.zeros(6, 0)).batch_shape == (6,)


def test_condition_log_prob_matches_product_of_normals():
    head = DiagonalGaussianHead(3, 2, Net(layers=(5,)))
    ctx, x = torch.randn(7, 2), torch.randn(7, 3)
    loc, scale = head(ctx)
    expected = Normal(loc, scale).log_prob(x).sum(-1)
    torch.testing.assert_close(head.condition(ctx).log_prob(x), expected)


def test_standard_normal_has_no_parameters_and_follows_the_context_batch():
    prior = StandardNormal(3, 2).double()
    assert list(prior.parameters()) == [] and prior.state_dict() == {}
    d = prior.condition(torch.zeros(5, 2, dtype=torch.float64))
    assert d.batch_shape == (5,) and d.event_shape == (3,) and d.mean.dtype == torch.float64
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(d.log_prob(x), Normal(0.0, 1.0).log_prob(x).sum(-1))
    assert prior.condition(None).batch_shape == ()


def test_diag_normal_has_closed_form_kl():
    """The point of the paper's design: KL(q(eps)||p(eps)) is analytic for these factors."""
    q = diag_normal(torch.zeros(2, 3), torch.full((2, 3), 2.0))
    p = diag_normal(torch.ones(2, 3), torch.ones(2, 3))
    assert isinstance(q, Independent)
    expected = 3 * (math.log(1 / 2) + (4 + 1) / 2 - 0.5)
    torch.testing.assert_close(kl_divergence(q, p), torch.full((2,), expected))
