"""ConditionalIAF: autoregressive structure, exact log-density, reparameterised samples."""

import pytest
import torch
from torch.autograd.functional import jacobian

from hiervae.language.net import Net
from hiervae.nn import ConditionalIAF

DIM, CTX = 4, 3


@pytest.fixture
def float64_default():
    """Pyro's IAF inverse allocates with the default dtype: score float64 values under it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def make(steps=2, context_features=CTX):
    torch.manual_seed(steps)
    return ConditionalIAF(DIM, context_features, Net(layers=(8,)), steps=steps, hidden=[8]).double()


def flow(dist, eps):
    for t in dist.transforms:
        eps = t(eps)
    return eps


def test_each_step_is_autoregressive_in_its_order_and_orders_alternate():
    iaf = make(steps=3)
    ctx = torch.randn(CTX, dtype=torch.float64)
    x = torch.randn(DIM, dtype=torch.float64)
    orders = [step.nn.permutation for step in iaf.steps]
    torch.testing.assert_close(orders[0], torch.arange(DIM))
    torch.testing.assert_close(orders[1], orders[0].flip(0))
    torch.testing.assert_close(orders[2], orders[0])
    for step, order in zip(iaf.steps, orders):
        jac = jacobian(step.condition(ctx), x)[order][:, order]
        assert torch.count_nonzero(jac.triu(1)) == 0
        assert torch.count_nonzero(jac.tril(-1)) > 0  # the steps do mix variables
        assert (jac.diagonal() > 0).all()


def test_reversed_orders_make_the_whole_flow_dense():
    iaf = make(steps=2)
    d = iaf.condition(torch.randn(CTX, dtype=torch.float64))
    jac = jacobian(lambda e: flow(d, e), torch.randn(DIM, dtype=torch.float64))
    assert torch.count_nonzero(jac.triu(1)) > 0 and torch.count_nonzero(jac.tril(-1)) > 0


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("steps", [1, 2])
def test_log_prob_is_base_log_prob_minus_dense_log_det(steps):
    iaf = make(steps=steps)
    ctx = torch.randn(CTX)
    eps = iaf.condition(ctx).base_dist.sample()
    d = iaf.condition(ctx)
    x = flow(d, eps)
    _, logabsdet = torch.linalg.slogdet(jacobian(lambda e: flow(d, e), eps))
    expected = d.base_dist.log_prob(eps) - logabsdet
    torch.testing.assert_close(d.log_prob(x), expected)  # cached inverse (the guide's path)
    torch.testing.assert_close(iaf.condition(ctx).log_prob(x.clone()), expected)  # inverted afresh


def test_rsample_is_differentiable_in_every_parameter():
    iaf = make(steps=2)
    ctx = torch.randn(16, CTX, dtype=torch.float64, requires_grad=True)
    d = iaf.condition(ctx)
    x = d.rsample()
    (x.square().sum() + d.log_prob(x).sum()).backward()
    assert ctx.grad.abs().sum() > 0
    for name, p in iaf.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_batch_dims_and_sample_shape():
    d = make().condition(torch.randn(2, 5, CTX, dtype=torch.float64))
    assert d.batch_shape == (2, 5) and d.event_shape == (DIM,)
    x = d.rsample((3,))
    assert x.shape == (3, 2, 5, DIM) and d.log_prob(x).shape == (3, 2, 5)


def test_root_flow_without_context():
    iaf = make(context_features=0)
    d = iaf.condition(None)
    x = d.rsample((7,))
    assert x.shape == (7, DIM) and d.log_prob(x).shape == (7,)
    assert iaf.condition(torch.zeros(5, 0, dtype=torch.float64)).rsample().shape == (5, DIM)
