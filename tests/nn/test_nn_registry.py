"""Every registered class honours the uniform contract the compiler relies on."""

import pytest
import torch
from torch.distributions import Distribution, Transform, kl_divergence

import hiervae.nn  # noqa: F401  (importing registers everything)
from hiervae.graph import catalog
from hiervae.nn import (
    FAMILIES,
    TRANSFORMS,
    AffineDiag,
    AffineLowRank,
    ConditionalIAF,
    DiagonalGaussianHead,
    StandardNormal,
)

DIM = 3


def test_importing_the_package_registers_everything():
    assert FAMILIES.get("normal") is DiagonalGaussianHead
    assert FAMILIES.get("std_normal") is StandardNormal
    assert FAMILIES.get("iaf") is ConditionalIAF
    assert TRANSFORMS.get("affine_lowrank") is AffineLowRank
    assert TRANSFORMS.get("affine_diag") is AffineDiag
    message = r"unknown transform 'planar' \(known: affine_diag, affine_lowrank, residual, spline_coupling\)"
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


@pytest.mark.parametrize("context_features", [0, 2])
@pytest.mark.parametrize("name", [n for n in TRANSFORMS.names() if TRANSFORMS.get(n).bijective])
def test_every_transform_builds_from_config_and_conditions(name, context_features):
    module = TRANSFORMS.get(name).from_config(DIM, context_features, {})
    t = module.condition(torch.randn(4, context_features))
    assert isinstance(t, Transform) and t.bijective and t.domain.event_dim == 1
    eps = torch.randn(4, DIM)
    assert t(eps).shape == (4, DIM) and t.log_abs_det_jacobian(eps, t(eps)).shape == (4,)


def test_options_are_read_from_the_constructor():
    assert DiagonalGaussianHead.options()["hidden"] == (256, 256)
    assert StandardNormal.options() == {}
    module = AffineLowRank.from_config(DIM, 2, {"rank": 2, "hidden": [4], "activation": "relu"})
    assert module.rank == 2 and module.nets[0].mlp.net[0].out_features == 4


def test_unknown_option_is_named():
    message = r"AffineLowRank: unknown option\(s\) hiden \(known: rank, hidden"
    with pytest.raises(ValueError, match=message):
        AffineLowRank.from_config(DIM, 2, {"hiden": [4]})


def test_pinned_options_are_not_options_of_the_variant():
    assert "rank" not in AffineDiag.options()
    assert AffineDiag(DIM, 2).rank == 0 and AffineDiag.from_config(DIM, 2, {}).rank == 0
    with pytest.raises(ValueError, match=r"AffineDiag: unknown option\(s\) rank"):
        AffineDiag.from_config(DIM, 2, {"rank": 1})


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_graph_catalog_agrees_on_bijectivity(name):
    t = TRANSFORMS.get(name).from_config(DIM, 0, {}).condition(None)
    assert catalog.TRANSFORMS[name].bijective == t.bijective


def _has_closed_form_kl(q, p):
    try:
        kl_divergence(q, p)
    except NotImplementedError:
        return False
    return True


@pytest.mark.parametrize("name", FAMILIES.names())
def test_graph_catalog_agrees_on_closed_form_kl(name):
    """The faithfulness/ELBO choice in the graph layer trusts ``analytic_kl``."""
    family = FAMILIES.get(name).from_config(DIM, 0, {})
    prior = FAMILIES.get("normal").from_config(DIM, 0, {})
    analytic = _has_closed_form_kl(family.condition(), prior.condition())
    assert catalog.FAMILIES[name].analytic_kl == analytic
