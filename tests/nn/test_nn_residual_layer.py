"""The residual variational layer phi = phi_1(u) + r(e, h(u)) (paper appendix 8)."""

from __future__ import annotations

import pytest
import torch

from hiervae.language.net import Net
from hiervae.nn import FAMILIES
from hiervae.nn.families.normal import DiagonalGaussianHead, scale_from_raw
from hiervae.nn import EvidenceResidualNet

NET = Net(layers=(16, 16), activation="relu")


def zero_output_layer(net: EvidenceResidualNet) -> None:
    last = net.residual.net[-2]  # Linear before the (identity) output activation
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


def test_with_r_zeroed_the_layer_is_the_first_estimate():
    """Evidence in the middle of the context: u is the columns around it, in order."""
    torch.manual_seed(0)
    net = EvidenceResidualNet(9, evidence=(3, 7), init=torch.zeros(4), hidden_features=2, net=NET).double()
    zero_output_layer(net)
    ctx = torch.randn(5, 9, dtype=torch.float64)
    u = ctx[:, [0, 1, 2, 7, 8]]
    torch.testing.assert_close(net(ctx), net.first(u))
    # ... and then the evidence has no influence at all
    other = ctx.clone()
    other[:, 3:7] = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(net(other), net(ctx))


def test_output_is_first_estimate_plus_residual_of_evidence_and_hidden_map():
    torch.manual_seed(1)
    net = EvidenceResidualNet(6, evidence=(0, 4), init=torch.zeros(3), hidden_features=1, net=NET).double()
    ctx = torch.randn(2, 5, 6, dtype=torch.float64)  # leading particle dim
    e, u = ctx[..., :4], ctx[..., 4:]
    expected = net.first.net(u) + net.residual(torch.cat([e, net.hidden(u)], -1))
    torch.testing.assert_close(net(ctx), expected)
    assert net.hidden.out_features == 1 and net.residual.in_features == 4 + 1


def test_gradients_reach_both_parts():
    torch.manual_seed(2)
    head = DiagonalGaussianHead(10, 64 + 20, NET, residual=True, evidence=(0, 64))
    ctx = torch.randn(8, 84)
    q = head.condition(ctx)
    q.rsample().pow(2).sum().backward()
    for net in head.nets:
        for part in (net.first, net.hidden, net.residual):
            grads = [p.grad for p in part.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert sum(g.abs().sum() for g in grads) > 0


def test_gaussian_head_with_residual_nets():
    """loc and scale come from the two residual networks as from the two ParamNets (Table 5/6)."""
    torch.manual_seed(3)
    head = DiagonalGaussianHead(10, 30, NET, scale_map="softplus_elu", residual=True, evidence=(0, 20)).double()
    ctx = torch.randn(4, 30, dtype=torch.float64)
    loc, scale = head(ctx)
    loc_net, raw_net = head.nets
    torch.testing.assert_close(loc, loc_net(ctx))
    torch.testing.assert_close(scale, scale_from_raw(raw_net(ctx)))
    assert loc_net.hidden.out_features == 3  # floor(10 / 3): "hidden feature size 3" of Table 6


def test_root_layer_first_estimate_is_a_learned_constant():
    """First layer: no latent stream; phi_1 starts at N(0, I) and r sees the evidence alone."""
    torch.manual_seed(4)
    head = DiagonalGaussianHead(4, 7, NET, residual=True, evidence=(0, 7))
    for net in head.nets:
        assert net.hidden is None and net.residual.in_features == 7
        zero_output_layer(net)
    loc, scale = head(torch.randn(3, 7))
    torch.testing.assert_close(loc, torch.zeros(3, 4))
    torch.testing.assert_close(scale, torch.ones(3, 4))


def test_residual_needs_the_evidence_slice():
    with pytest.raises(ValueError, match="needs evidence"):
        DiagonalGaussianHead(4, 7, residual=True)
    with pytest.raises(ValueError, match="non-empty part"):
        EvidenceResidualNet(7, evidence=(5, 9), init=torch.zeros(2), hidden_features=1, net=NET)


def test_registered_as_an_option_of_the_normal_family():
    options = FAMILIES.get("normal").options()
    assert options["residual"] is False and "evidence" not in options  # the compiler fills it, a spec cannot
