"""Flow layers: the ``maf`` likelihood, ``spline_coupling`` and ``residual`` transforms,
and the logit-space / bits-per-dimension conventions."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.autograd.functional import jacobian

import hiervae.nn  # noqa: F401  (importing registers everything)
from hiervae.data.dequantize import bits_per_dim, dequantize
from hiervae.language.net import Net
from hiervae.nn import FAMILIES, TRANSFORMS, Residual, SplineCoupling
from hiervae.nn.families.maf import BatchNormStep, MAFLikelihood, MAFStep
from hiervae.nn.logit_space import from_logit_space, logit_transform, to_logit_space

# identity_init=False: the density tests need generic (non-identity) MADE steps; a
# fresh identity-initialised flow would pass them trivially (test_nn_maf_stability.py).
SMALL = dict(net=Net(layers=(16, 16)), base_hidden=(8,), identity_init=False)


def _maf(dim=3, context=2, **options):
    torch.manual_seed(0)
    return MAFLikelihood(dim, context, **{**SMALL, **options})


def _density_map(d):
    """x -> u0 (base space) through every bound step of a FlowDistribution."""

    def u_of(x):
        u = x
        for module, ctx in reversed(d.steps):
            u, _ = module.density(u, ctx)
        return u

    return u_of


def _randomise_batch_norm(maf):
    g = torch.Generator().manual_seed(1)
    for step in maf.steps:
        if isinstance(step, BatchNormStep):
            step.running_mean.normal_(generator=g)
            step.running_var.uniform_(0.5, 2.0, generator=g)
            with torch.no_grad():
                step.log_gamma.normal_(0, 0.3, generator=g)
                step.beta.normal_(generator=g)


# ----------------------------------------------------------------------------- maf
def test_maf_is_registered_with_the_spec_option_names():
    assert FAMILIES.get("maf") is MAFLikelihood
    options = MAFLikelihood.options()
    assert {"flows", "mades_per_flow", "batch_norm", "base", "logit_alpha"} <= set(options)
    assert options["mades_per_flow"] == 5 and options["flows"] == 2


@pytest.mark.parametrize("base", ["unit_rank_normal", "normal", "std_normal"])
def test_maf_log_prob_is_the_change_of_variables_density(base):
    """log p(x) = log pi(u(x)) + log|det du/dx|, the determinant taken by autograd."""
    maf = _maf(base=base).eval()
    _randomise_batch_norm(maf)
    c = torch.randn(2)
    d = maf.condition(c)
    x = torch.randn(3)
    u_of = _density_map(d)
    log_det = torch.linalg.slogdet(jacobian(u_of, x))[1]
    expected = d.base.log_prob(u_of(x)) + log_det
    assert torch.allclose(d.log_prob(x), expected, atol=1e-5)


def test_maf_density_integrates_to_one():
    maf = _maf(dim=2, context=1, flows=1, mades_per_flow=2).eval()
    _randomise_batch_norm(maf)
    n, half = 301, 9.0
    grid = torch.linspace(-half, half, n)
    xs = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        p = maf.condition(torch.tensor([0.7])).log_prob(xs).exp()
    assert p.sum().item() * (2 * half / (n - 1)) ** 2 == pytest.approx(1.0, abs=1e-2)


def test_maf_in_logit_space_is_a_density_on_the_unit_square():
    alpha = 0.05
    maf = _maf(dim=2, context=0, flows=1, mades_per_flow=2, logit_alpha=alpha).eval()
    lo = -alpha / (1 - alpha)
    n = 600
    grid = lo + (torch.arange(n) + 0.5) * (1 - lo) / n  # midpoints of the support
    with torch.no_grad():
        p = maf.condition().log_prob(torch.cartesian_prod(grid, grid)).exp()
    assert p.sum().item() * ((1 - lo) / n) ** 2 == pytest.approx(1.0, abs=1e-2)


def test_maf_logit_space_adds_the_logit_jacobian():
    plain = _maf(logit_alpha=None).eval()
    logit = _maf(logit_alpha=0.05).eval()
    c, v = torch.randn(4, 2), torch.rand(4, 3)
    y, log_det = logit_transform(v, 0.05)
    expected = plain.condition(c).log_prob(y) + log_det
    assert torch.allclose(logit.condition(c).log_prob(v), expected, atol=1e-5)
    sample = logit.condition(c).sample()
    assert ((sample > -0.05 / 0.95) & (sample < 1)).all()


@pytest.mark.parametrize("random_order", [False, True])
def test_maf_sample_inverts_log_prob_step_by_step(random_order):
    maf = _maf(random_order=random_order).eval()
    _randomise_batch_norm(maf)
    c = torch.randn(5, 2)
    for module in maf.steps:
        ctx = c if isinstance(module, MAFStep) else None
        u = torch.randn(5, 3)
        with torch.no_grad():
            back, _ = module.density(module.generate(u, ctx), ctx)
        assert torch.allclose(back, u, atol=1e-5)


def test_maf_sample_then_log_prob_recovers_the_base_draw():
    maf = _maf().eval()
    _randomise_batch_norm(maf)
    d = maf.condition(torch.randn(4, 2))
    torch.manual_seed(7)
    x = d.sample()
    torch.manual_seed(7)
    u0 = d.base.sample()
    with torch.no_grad():
        assert torch.allclose(_density_map(d)(x), u0, atol=1e-4)


def test_maf_shapes_follow_the_context():
    maf = _maf()
    d = maf.condition(torch.randn(6, 2))
    assert d.batch_shape == (6,) and d.event_shape == (3,)
    assert d.sample().shape == (6, 3) and d.sample((2,)).shape == (2, 6, 3)
    assert d.log_prob(torch.randn(2, 6, 3)).shape == (2, 6)
    root = _maf(context=0).condition()
    assert root.batch_shape == () and root.log_prob(torch.randn(5, 3)).shape == (5,)


def test_maf_context_changes_the_density():
    d = _maf().eval()
    x = torch.randn(3)
    assert not torch.allclose(d.condition(torch.zeros(2)).log_prob(x), d.condition(torch.ones(2)).log_prob(x))


def test_maf_root_works_in_a_pyro_plate():
    maf = _maf(context=0)
    x = torch.randn(4, 3)

    def model():
        with pyro.plate("data", 4):
            pyro.sample("x", maf.condition(), obs=x)

    trace = pyro.poutine.trace(model).get_trace()
    trace.compute_log_prob()
    assert trace.nodes["x"]["log_prob"].shape == (4,)


def test_maf_structure_steps_orders_and_batch_norm():
    maf = _maf(flows=2, mades_per_flow=3, random_order=False)
    kinds = [type(s).__name__ for s in maf.steps]
    assert kinds == ["MAFStep", "BatchNormStep"] * 5 + ["MAFStep"]
    orders = [s.made.order.tolist() for s in maf.steps if isinstance(s, MAFStep)]
    assert orders[0] == [0, 1, 2] and orders[1] == [2, 1, 0] and orders[2] == [0, 1, 2]
    no_bn = _maf(flows=1, mades_per_flow=3, batch_norm=False, random_order=True, seed=4)
    assert all(isinstance(s, MAFStep) for s in no_bn.steps) and len(no_bn.steps) == 3
    random_orders = {tuple(s.made.order.tolist()) for s in _maf(dim=6, random_order=True).steps
                     if isinstance(s, MAFStep)}
    assert len(random_orders) > 1


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_in_eval():
    torch.manual_seed(0)
    bn = BatchNormStep(3, momentum=0.5)
    with torch.no_grad():
        bn.log_gamma.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = torch.randn(50, 3) * 2 + 1
    u_train, ld_train = bn.density(x)
    assert torch.allclose(u_train.mean(0), bn.beta, atol=1e-5)  # normalised by its own statistics
    assert torch.allclose(bn.running_mean, 0.5 * x.mean(0))
    # the same map with those statistics frozen, in eval mode: same u, same log|det|
    frozen = BatchNormStep(3)
    frozen.load_state_dict(bn.state_dict())
    frozen.running_mean.copy_(x.mean(0))
    frozen.running_var.copy_(x.var(0, unbiased=False))
    frozen.eval()
    u_eval, ld_eval = frozen.density(x)
    assert torch.allclose(u_train, u_eval, atol=1e-5) and torch.allclose(ld_train, ld_eval, atol=1e-5)
    log_det = torch.linalg.slogdet(jacobian(lambda r: frozen.density(r)[0], x[0]))[1]
    assert torch.allclose(ld_eval[0], log_det, atol=1e-5)
    before = frozen.running_mean.clone()
    frozen.density(x)
    assert torch.equal(frozen.running_mean, before)


def test_batch_norm_with_a_single_row_uses_running_statistics():
    bn = BatchNormStep(3)
    u, log_det = bn.density(torch.ones(1, 3))
    assert torch.isfinite(log_det).all() and torch.allclose(u, torch.ones(1, 3), atol=1e-4)


def test_maf_split_context_feeds_each_made_its_own_chunk():
    # given: [gamma (4 features), z1, z2 (2 each)] -> base reads gamma, MADE k reads z_k
    maf = _maf(dim=3, context=8, flows=2, mades_per_flow=2, base_context=4, made_context="split").eval()
    assert maf.made_slices == [(4, 6), (6, 8)]
    mades = [s for s in maf.steps if isinstance(s, MAFStep)]
    assert [m.made.context_features for m in mades] == [2, 2, 2, 2]
    c = torch.randn(8)
    x = torch.randn(3)
    base = maf.base_distribution(c)
    c2 = c.clone()
    c2[4:] += 1.0  # only the MADEs' part changes
    assert torch.allclose(maf.base_distribution(c2).loc, base.loc)
    assert not torch.allclose(maf.condition(c2).log_prob(x), maf.condition(c).log_prob(x))
    with pytest.raises(ValueError, match="equal chunks"):
        _maf(context=7, mades_per_flow=2, base_context=4, made_context="split")


def test_maf_unit_rank_base_is_a_low_rank_gaussian():
    base = _maf(base="unit_rank_normal").base_distribution(torch.randn(2, 2))
    assert isinstance(base, dist.LowRankMultivariateNormal)
    assert base.cov_factor.shape == (2, 3, 1) and (base.cov_diag > 0).all()


def test_maf_builds_from_the_spec_options_and_net():
    options = {"flows": 2, "batch_norm": True, "base": "unit_rank_normal", "logit_alpha": 0.05, "base_hidden": [8]}
    net = Net.from_written({"mlp": [16, 16], "activation": "relu"}, {})
    maf = FAMILIES.get("maf").from_config(4, 6, options, net)
    assert maf.steps[0].made.net[0].out_features == 16  # the net's widths are the MADEs'
    assert maf.base_nets[0].net.net[0].out_features == 8  # base_hidden: the base's
    assert sum(isinstance(s, MAFStep) for s in maf.steps) == 10
    assert sum(isinstance(s, BatchNormStep) for s in maf.steps) == 9
    assert sum(isinstance(s, MAFStep) for s in maf.steps) == 10
    assert sum(isinstance(s, BatchNormStep) for s in maf.steps) == 9


@pytest.mark.parametrize(
    "options, message",
    [({"base": "laplace"}, "base must be one of"), ({"made_context": "some"}, "made_context"),
     ({"logit_alpha": 1.0}, "logit_alpha"), ({"base_context": 3}, "base_context")],
)
def test_maf_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        _maf(**options)


# ----------------------------------------------------------------------------- logit space
def test_dequantize_accepts_pixels_or_unit_floats():
    pixels = torch.tensor([[0, 17, 255]], dtype=torch.uint8)
    assert torch.allclose(dequantize(pixels, noise=0.5), (pixels.float() + 0.5) / 256)
    assert torch.allclose(dequantize(pixels.float() / 255, noise=0.5), dequantize(pixels, noise=0.5))
    v = dequantize(pixels.expand(1000, 3), generator=torch.Generator().manual_seed(0))
    assert ((v >= pixels / 256) & (v < (pixels.float() + 1) / 256)).all()
    assert v[:, 0].std() > 0  # noise actually drawn


def test_logit_transform_log_det_is_the_autograd_one_and_inverts():
    v = torch.rand(5) * 0.98 + 0.01
    y, log_det = logit_transform(v, 0.05)
    assert torch.allclose(y, torch.logit(0.05 + 0.95 * v))
    assert torch.allclose(log_det, torch.linalg.slogdet(jacobian(lambda t: logit_transform(t, 0.05)[0], v))[1])
    assert torch.allclose(from_logit_space(y, 0.05), v, atol=1e-6)
    y2, log_det2 = to_logit_space((v * 255).round().to(torch.uint8), 0.05, noise=0.25)
    expected = logit_transform(((v * 255).round() + 0.25) / 256, 0.05)
    assert torch.allclose(y2, expected[0]) and torch.allclose(log_det2, expected[1])


def test_logit_convention_gives_the_uniform_density_on_the_unit_cube():
    """If v ~ U[0,1]^D then log p(y) = -log|dy/dv|: log p(v) = log p(y) + log|dy/dv| = 0."""
    v = torch.rand(7, 4)
    y, log_det = logit_transform(v, 0.05)
    s = 0.05 + 0.95 * v  # y = logit(s), s uniform on [alpha, 1]: density of y = s(1-s)/(1-alpha)
    log_p_y = (torch.log(s) + torch.log1p(-s) - math.log(0.95)).sum(-1)
    assert torch.allclose(log_p_y + log_det, torch.zeros(7), atol=1e-5)


def test_bits_per_dim_of_the_uniform_density_is_eight():
    assert bits_per_dim(0.0, 3072) == pytest.approx(8.0)
    # 3072 * log(2) nats more likely on [0, 1]^D = one bit per dimension fewer
    assert bits_per_dim(3072 * math.log(2), 3072) == pytest.approx(7.0)
    assert torch.allclose(bits_per_dim(torch.zeros(2), 10), torch.full((2,), 8.0))


# ----------------------------------------------------------------------------- spline coupling
def _spline(dim=4, context=2, **options):
    torch.manual_seed(0)
    return SplineCoupling(dim, context, Net(layers=(16,), activation="tanh", out_activation="tanh"),
                          **{"bins": 6, "splines": 3, "bound": 3.0, **options})


def test_spline_coupling_is_registered_and_bijective():
    assert TRANSFORMS.get("spline_coupling") is SplineCoupling
    assert {"bins", "splines", "mask_size", "bound"} <= set(SplineCoupling.options())
    t = _spline().condition(torch.randn(2))
    assert t.bijective and t.domain.event_dim == 1 and TRANSFORMS.get("spline_coupling").bijective


@pytest.mark.parametrize("mask_size", [None, 1])
def test_spline_coupling_inverse_undoes_forward(mask_size):
    t = _spline(mask_size=mask_size).condition(torch.randn(10, 2))
    eps = torch.randn(10, 4) * 3  # inside and outside [-bound, bound]
    z = t(eps)
    assert not torch.allclose(z, eps)
    assert torch.allclose(t.inv(z), eps, atol=1e-4)
    assert torch.allclose(t.log_abs_det_jacobian(eps, z), -t.inv.log_abs_det_jacobian(z, eps), atol=1e-4)


def test_spline_coupling_log_det_is_the_autograd_one():
    t = _spline(mask_size=1).condition(torch.randn(2))
    for eps in (torch.tensor([0.3, -1.2, 2.5, 0.1]), torch.tensor([4.0, -0.5, -3.5, 1.0])):
        log_det = torch.linalg.slogdet(jacobian(t, eps))[1]
        fresh = t.log_abs_det_jacobian(eps.clone(), t(eps).clone())  # recomputed, not cached
        assert torch.allclose(t.log_abs_det_jacobian(eps, t(eps)), log_det, atol=1e-4)
        assert torch.allclose(fresh, log_det, atol=1e-4)


def test_spline_coupling_context_changes_the_output():
    module = _spline()
    eps = torch.randn(4)
    assert not torch.allclose(module.condition(torch.zeros(2))(eps), module.condition(torch.ones(2))(eps))


def test_spline_coupling_masks_leave_mask_size_features_unchanged():
    assert SplineCoupling.layer_mask(40, 0, 5).tolist() == [0] * 5 + [1] * 35
    assert SplineCoupling.layer_mask(40, 1, 5)[5:10].tolist() == [0] * 5
    assert SplineCoupling.layer_mask(6, 1, 4).tolist() == [0, 0, 1, 1, 0, 0]  # wraps around
    assert SplineCoupling.layer_mask(4, 0, None).tolist() == [0, 1, 0, 1]
    assert SplineCoupling.layer_mask(4, 1, None).tolist() == [1, 0, 1, 0]
    one_layer = _spline(dim=6, splines=1, mask_size=2).condition(torch.randn(2))
    eps = torch.randn(6)
    z = one_layer(eps)
    assert torch.equal(z[:2], eps[:2]) and not torch.allclose(z[2:], eps[2:])


def test_spline_coupling_in_a_transformed_distribution():
    t = _spline().condition(torch.randn(5, 2))
    base = dist.Normal(torch.zeros(5, 4), 1.0).to_event(1)
    q = dist.TransformedDistribution(base, [t])
    z = q.rsample()
    eps = t.inv(z.clone())
    assert torch.allclose(q.log_prob(z), base.log_prob(eps) - t.log_abs_det_jacobian(eps, z), atol=1e-4)


def test_spline_coupling_paper_options_and_root():
    module = TRANSFORMS.get("spline_coupling").from_config(40, 40, {"bins": 32, "splines": 5, "mask_size": 5, "bound": 20})
    z = module.condition(torch.randn(3, 40))(torch.randn(3, 40))
    assert z.shape == (3, 40)
    root = _spline(context=0).condition(None)
    assert root(torch.randn(4)).shape == (4,)
    with pytest.raises(ValueError, match="mask_size"):
        _spline(mask_size=4)


# ----------------------------------------------------------------------------- residual
def test_residual_adds_a_network_of_the_context_to_h_prev():
    assert TRANSFORMS.get("residual") is Residual and not Residual.bijective
    torch.manual_seed(0)
    module = Residual(3, 5, Net(layers=(8,)))
    c = torch.randn(4, 5)
    step = module.condition(c)
    assert not step.bijective and step.domain.event_dim == 1
    r = module.net(c)
    h_prev = torch.randn(4, 3)
    assert torch.allclose(step(h_prev), h_prev + r)
    assert torch.allclose(step(None), r) and torch.allclose(step(), r)
    assert not torch.allclose(module.condition(c + 1)(h_prev), step(h_prev))
    # h_prev passes straight through: dh/dh_prev = I
    assert torch.allclose(jacobian(lambda h: module.condition(c[0])(h), h_prev[0]), torch.eye(3))


def test_residual_root_and_spec_net():
    root = Residual(3, 0).condition(None)
    assert root().shape == (3,) and not root.bijective
    module = TRANSFORMS.get("residual").from_config(300, 340, {}, Net.from_written({"mlp": [16, 16]}))
    assert module.net.net.net[0].out_features == 16
    assert module.condition(torch.randn(2, 340))(torch.randn(2, 300)).shape == (2, 300)
    with pytest.raises(NotImplementedError):
        root.log_abs_det_jacobian(torch.zeros(3), torch.zeros(3))
