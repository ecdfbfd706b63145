"""AffineLowRank against the dense matrix D + U U^T, in float64."""

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import ComposeTransform

from hiervae.language.net import Net
from hiervae.nn import AffineDiag, AffineLowRank, LowRankAffineTransform, diag_normal

DIM, CTX = 5, 3
f64 = dict(dtype=torch.float64)


def make(rank, context_features=CTX, separate_networks=True):
    torch.manual_seed(rank)
    net = Net(layers=(6,), separate=separate_networks)
    return AffineLowRank(DIM, context_features, net, rank=rank).double()


@pytest.mark.parametrize("separate_networks", [True, False])
@pytest.mark.parametrize("rank", [0, 2])
def test_one_network_per_parameter_or_one_shared(rank, separate_networks):
    module = make(rank, separate_networks=separate_networks)
    widths = [net.net.out_features for net in module.nets]
    expected = [DIM, DIM] + ([DIM * rank] if rank else [])
    assert widths == (expected if separate_networks else [sum(expected)])
    t = module.condition(torch.randn(4, CTX, **f64))
    assert t.shift.shape == t.diag.shape == (4, DIM) and t.factor.shape == (4, DIM, rank)


def test_affine_diag_is_the_rank_zero_map():
    t = AffineDiag(DIM, CTX, Net(layers=(6,))).double().condition(torch.randn(4, CTX, **f64))
    eps = torch.randn(4, DIM, **f64)
    torch.testing.assert_close(t(eps), t.shift + t.diag * eps)
    torch.testing.assert_close(t.log_abs_det_jacobian(eps, t(eps)), t.diag.log().sum(-1))


def dense(t: LowRankAffineTransform) -> torch.Tensor:
    """The transform's matrix, built entry by entry: D + sum_k u_k u_k^T."""
    a = torch.diag_embed(t.diag)
    for k in range(t.factor.shape[-1]):
        u = t.factor[..., k]
        a = a + u.unsqueeze(-1) * u.unsqueeze(-2)
    return a


@pytest.mark.parametrize("rank", [0, 1, 2, 3])  # 0, 1 and >1 take different code paths
def test_forward_matches_dense_matrix(rank):
    t = make(rank).condition(torch.randn(4, CTX, **f64))
    eps = torch.randn(4, DIM, **f64)
    expected = t.shift + torch.einsum("bij,bj->bi", dense(t), eps)
    torch.testing.assert_close(t(eps), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_inverse_is_exact(rank):
    t = make(rank).condition(torch.randn(4, CTX, **f64))
    eps = torch.randn(4, DIM, **f64)
    z = t(eps)
    torch.testing.assert_close(t.inv(z), eps, rtol=0, atol=1e-10)
    torch.testing.assert_close(
        t.inv(z), torch.linalg.solve(dense(t), z - t.shift), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_log_abs_det_matches_slogdet(rank):
    t = make(rank).condition(torch.randn(4, CTX, **f64))
    eps = torch.randn(4, DIM, **f64)
    sign, logabsdet = torch.linalg.slogdet(dense(t))
    assert (sign > 0).all()
    torch.testing.assert_close(t.log_abs_det_jacobian(eps, t(eps)), logabsdet, rtol=0, atol=1e-10)


def test_batch_dims_broadcast_between_context_and_eps():
    module = make(1)
    ctx = torch.randn(4, CTX, **f64)
    eps = torch.randn(6, 4, DIM, **f64)  # e.g. 6 particles of a batch of 4
    t = module.condition(ctx)
    z, ladj = t(eps), t.log_abs_det_jacobian(eps, t(eps))
    assert z.shape == (6, 4, DIM) and ladj.shape == (6, 4)
    for p in range(6):
        for b in range(4):
            single = module.condition(ctx[b])
            torch.testing.assert_close(z[p, b], single(eps[p, b]))
            torch.testing.assert_close(ladj[p, b], single.log_abs_det_jacobian(eps[p, b], z[p, b]))


def test_gradcheck_forward_inverse_and_log_det():
    module = make(2)
    ctx = torch.randn(3, CTX, **f64, requires_grad=True)
    eps = torch.randn(3, DIM, **f64, requires_grad=True)

    def outputs(c, e):
        t = module.condition(c)
        return t(e), t.inv(e), t.log_abs_det_jacobian(e, t(e))

    assert torch.autograd.gradcheck(outputs, (ctx, eps))


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_gradients_reach_every_parameter(rank):
    module = make(rank)
    t = module.condition(torch.randn(8, CTX, **f64))
    eps = torch.randn(8, DIM, **f64)
    z = t(eps)
    (z.square().sum() + t.log_abs_det_jacobian(eps, z).sum()).backward()
    assert len(module.nets) == (3 if rank else 2)
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_root_transform_starts_at_identity_plus_low_rank():
    module = AffineLowRank(DIM, 0, rank=1)
    assert sorted(p.numel() for p in module.parameters()) == [DIM, DIM, DIM]
    t = module.condition(None)
    torch.testing.assert_close(t.shift, torch.zeros(DIM))
    torch.testing.assert_close(t.diag, torch.ones(DIM))
    assert t.factor.shape == (DIM, 1)
    assert t.factor.abs().sum() > 0  # not at U = 0, where grads vanish
    assert t(torch.randn(7, 2, DIM)).shape == (7, 2, DIM)


def test_paper_defaults_bound_network_outputs_with_tanh():
    module = AffineLowRank(DIM, CTX)
    assert AffineLowRank.net_defaults.layers == (20, 20)
    t = module.condition(100 * torch.randn(50, CTX))
    assert t.shift.abs().max() <= 1 and t.factor.abs().max() <= 1
    assert (t.diag > 0).all()


def test_usable_in_pyro_transformed_distribution_and_with_cache():
    t = make(1).condition(torch.randn(4, CTX, **f64))
    base = diag_normal(torch.zeros(4, DIM, **f64), torch.ones(4, DIM, **f64))
    eps = base.sample()
    z = t(eps)
    q = dist.TransformedDistribution(base, [t])
    assert q.event_shape == (DIM,) and q.batch_shape == (4,)
    torch.testing.assert_close(q.log_prob(z), base.log_prob(eps) - t.log_abs_det_jacobian(eps, z))
    cached = ComposeTransform([t, t.inv], cache_size=1)
    torch.testing.assert_close(cached(eps), eps)
