"""Every registered class honours the uniform contract the graph builder and the compiler rely on."""

import pytest
import torch
from torch.distributions import Distribution, Transform, kl_divergence

import hiervae.nn  # noqa: F401  (importing registers everything)
from hiervae.language.net import Net
from hiervae.nn import (
    FAMILIES,
    NETWORKS,
    TRANSFORMS,
    AffineDiag,
    AffineLowRank,
    ConditionalIAF,
    DiagonalGaussianHead,
    StandardNormal,
)
from hiervae.nn.precision import network_precision

DIM = 3


def test_importing_the_package_registers_everything():
    assert FAMILIES.get("normal") is DiagonalGaussianHead
    assert FAMILIES.get("std_normal") is StandardNormal
    assert FAMILIES.get("iaf") is ConditionalIAF
    assert TRANSFORMS.get("affine_lowrank") is AffineLowRank
    assert TRANSFORMS.get("affine_diag") is AffineDiag
    assert NETWORKS.names() == ["mlp", "resnet"]
    message = r"unknown transform 'planar' \(known: affine_diag, affine_lowrank, feature, residual, spline_coupling\)"
    with pytest.raises(KeyError, match=message):
        TRANSFORMS.get("planar")


@pytest.mark.parametrize("context_features", [0, 2])
@pytest.mark.parametrize("name", FAMILIES.names())
def test_every_family_builds_from_config_and_conditions(name, context_features):
    family = FAMILIES.get(name).from_config(DIM, context_features, {})
    d = family.condition(torch.randn(4, context_features))
    assert isinstance(d, Distribution) and d.batch_shape == (4,) and d.event_shape == (DIM,)
    x = d.rsample() if d.has_rsample else d.sample()
    assert x.shape == (4, DIM) and d.log_prob(x).shape == (4,)


@pytest.mark.parametrize("name", [n for n in FAMILIES.names() if FAMILIES.get(n).roles & {"prior", "guide"}])
def test_latent_families_say_truly_whether_they_are_reparameterised(name):
    d = FAMILIES.get(name).from_config(DIM, 2, {}).condition(torch.randn(4, 2))
    assert d.has_rsample == FAMILIES.get(name).reparameterized


@pytest.mark.parametrize("context_features", [0, 2])
@pytest.mark.parametrize("name", [n for n in TRANSFORMS.names() if TRANSFORMS.get(n).bijective])
def test_every_transform_builds_from_config_and_conditions(name, context_features):
    module = TRANSFORMS.get(name).from_config(DIM, context_features, {})
    t = module.condition(torch.randn(4, context_features))
    assert isinstance(t, Transform) and t.bijective and t.domain.event_dim == 1
    eps = torch.randn(4, DIM)
    assert t(eps).shape == (4, DIM) and t.log_abs_det_jacobian(eps, t(eps)).shape == (4,)


def test_options_are_read_from_the_constructor_and_the_net_is_one_value():
    assert DiagonalGaussianHead.options() == {"scale_map": "softplus", "variance_floor": 1e-4, "sigma": "network",
                                             "residual": False}
    assert StandardNormal.options() == {}
    net = Net.from_written({"mlp": [4], "activation": "relu"})
    module = AffineLowRank.from_config(DIM, 2, {"rank": 2}, net)
    assert module.rank == 2 and module.nets[0].net.net[0].out_features == 4
    assert module.nets[0].net.net[1].__class__.__name__ == "ReLU"  # written over the tanh default


@pytest.mark.parametrize("options, message", [
    ({"hiden": [4]}, r"unknown option 'hiden' \(known: rank, diag_floor\)"),
    ({"rank": -1}, r"option 'rank': input should be greater than or equal to 0 \(got -1\)"),
    ({"rank": "a"}, r"option 'rank': input should be a valid integer \(got 'a'\)"),
    ({"rank": True}, r"option 'rank': input should be a valid integer \(got True\)"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        AffineLowRank.from_config(DIM, 2, options)


def test_pinned_options_are_not_options_of_the_variant():
    assert "rank" not in AffineDiag.options()
    assert AffineDiag(DIM, 2).rank == 0 and AffineDiag.from_config(DIM, 2, {}).rank == 0
    with pytest.raises(ValueError, match=r"unknown option 'rank'"):
        AffineDiag.from_config(DIM, 2, {"rank": 1})


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_declared_bijectivity_is_the_transforms(name):
    t = TRANSFORMS.get(name).from_config(DIM, 0, {}).condition(None)
    assert TRANSFORMS.get(name).bijective == t.bijective


def _has_closed_form_kl(q, p):
    try:
        kl_divergence(q, p)
    except NotImplementedError:
        return False
    return True


@pytest.mark.parametrize("guide", [n for n in FAMILIES.names() if "guide" in FAMILIES.get(n).roles])
@pytest.mark.parametrize("prior", [n for n in FAMILIES.names() if "prior" in FAMILIES.get(n).roles])
def test_declared_closed_form_kl_partners_are_torchs(guide, prior):
    """The analytic-KL choice of the graph layer trusts ``analytic_kl_with``."""
    q = FAMILIES.get(guide).from_config(DIM, 0, {}).condition()
    p = FAMILIES.get(prior).from_config(DIM, 0, {}).condition()
    assert (prior in FAMILIES.get(guide).analytic_kl_with) == _has_closed_form_kl(q, p)


@pytest.mark.parametrize("guide", [n for n in FAMILIES.names() if FAMILIES.get(n).merges_with])
def test_declared_merges_give_a_distribution_of_the_latent(guide):
    cls = FAMILIES.get(guide)
    for prior in sorted(cls.merges_with):
        q = cls.from_config(DIM, 2, {}).condition(torch.randn(4, 2))
        p = FAMILIES.get(prior).from_config(DIM, 0, {}).condition().expand((4,))
        merged = cls.merge(q, p)
        assert merged.batch_shape == (4,) and merged.event_shape == (DIM,)


def _example_shapes(kind: str):
    """(in_shape, out_shape) pairs a network kind is built for."""
    if kind == "resnet":
        return [((1, 8, 8), (5,)), ((6,), (1, 8, 8))]
    return [((6,), (5,)), ((6,), None)]


@pytest.mark.parametrize("kind", NETWORKS.names())
def test_every_network_kind_returns_float32_under_bf16(kind):
    """``train.precision: bf16`` keeps the objective float32: every network kind's output is."""
    layers = (4, 4) if kind == "resnet" else (8,)
    net = Net(kind=kind, layers=layers, scale=None, batch_norm=True).over(Net())
    for in_shape, out_shape in _example_shapes(kind):
        module = NETWORKS.get(kind).build(net, in_shape, out_shape)
        x = torch.randn(3, torch.Size(in_shape).numel())
        with network_precision(module, "bf16", "cpu"):
            y = module(x)
        assert y.dtype == torch.float32, (kind, in_shape, out_shape, y.dtype)
