"""MLP: shapes, the paper's initialisation, batch-norm placement, activations by name."""

import math

import pytest
import torch
from torch import nn

from hiervae.language.net import Net
from hiervae.nn import ACTIVATIONS, MLP, ParamNet, make_activation


def test_shapes_with_arbitrary_batch_dims():
    mlp = MLP(5, [7, 8], 3, batch_norm=True)
    assert mlp(torch.randn(2, 4, 5)).shape == (2, 4, 3)
    assert mlp(torch.randn(6, 5)).shape == (6, 3)
    assert mlp.out_features == 3


def test_without_out_features_output_is_last_hidden_layer():
    mlp = MLP(5, [7, 8], None, activation="relu")
    y = mlp(torch.randn(10, 5))
    assert mlp.out_features == 8 and y.shape == (10, 8)
    assert (y >= 0).all()  # the hidden activation is applied to the features
    assert isinstance(mlp.net[-1], nn.ReLU)


def test_glorot_normal_weights_and_zero_biases():
    torch.manual_seed(0)
    mlp = MLP(400, [600], 300)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2
    for lin in linears:
        w = lin.weight.detach().flatten()
        fan_out, fan_in = lin.weight.shape
        expected_std = math.sqrt(2.0 / (fan_in + fan_out))
        assert w.std().item() == pytest.approx(expected_std, rel=0.02)
        kurtosis = (((w - w.mean()) / w.std()) ** 4).mean().item()
        assert kurtosis == pytest.approx(3.0, abs=0.1)  # normal, not uniform (1.8)
        assert torch.count_nonzero(lin.bias) == 0


def test_batch_norm_sits_at_the_input_of_every_linear_layer():
    mlp = MLP(5, [7], 3, batch_norm=True)
    kinds = [type(m) for m in mlp.net]
    assert kinds == [nn.BatchNorm1d, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Linear, nn.Identity]
    for bn, lin in zip(mlp.net[0::3], mlp.net[1::3]):
        assert bn.num_features == lin.in_features


def test_batch_norm_at_input_makes_output_invariant_to_per_feature_input_scaling():
    torch.manual_seed(0)
    mlp = MLP(4, [16], 2, batch_norm=True).train()
    x = torch.randn(64, 4)
    rescaled = x * torch.tensor([100.0, 0.5, 3.0, 7.0]) + torch.tensor([5.0, -2.0, 0.0, 1.0])
    torch.testing.assert_close(mlp(rescaled), mlp(x), atol=1e-4, rtol=1e-4)


def test_dropout_after_hidden_activations_only():
    mlp = MLP(5, [7, 8], 3, dropout=0.5)
    kinds = [type(m) for m in mlp.net]
    hidden_layer = [nn.Linear, nn.ReLU, nn.Dropout]
    assert kinds == hidden_layer + hidden_layer + [nn.Linear, nn.Identity]
    mlp.eval()
    x = torch.randn(3, 5)
    torch.testing.assert_close(mlp(x), mlp(x))


def test_out_activation_applies_to_output_layer():
    torch.manual_seed(0)
    y = MLP(3, [4], 2, activation="relu", out_activation="tanh")(torch.randn(100, 3))
    assert y.abs().max() < 1 and (y < 0).any()


def test_out_activation_without_output_layer_is_rejected():
    with pytest.raises(ValueError, match="out_activation"):
        MLP(3, [4], None, out_activation="tanh")


def test_activation_registry_names_and_error_message():
    names = {"relu", "tanh", "elu", "gelu", "softplus", "sigmoid", "none", "identity", "leaky_relu"}
    assert names <= set(ACTIVATIONS.names())
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(make_activation("tanh")(x), torch.tanh(x))
    torch.testing.assert_close(make_activation("none")(x), x)
    torch.testing.assert_close(make_activation(None)(x), x)
    assert (make_activation("leaky_relu")(x)[x < 0] < 0).all()
    with pytest.raises(KeyError, match=r"unknown activation 'swish' \(known: .*relu.*tanh"):
        MLP(3, [4], 2, activation="swish")


def test_paramnet_root_is_a_learned_constant_with_the_context_batch_shape():
    net = ParamNet(0, torch.arange(3.0))
    assert [p.shape for p in net.parameters()] == [(3,)]
    torch.testing.assert_close(net(None), torch.arange(3.0))
    assert net(torch.zeros(4, 2, 0)).shape == (4, 2, 3)


def test_paramnet_checks_the_context():
    net = ParamNet(2, torch.zeros(3), Net(layers=(4,)))
    assert net(torch.randn(5, 2)).shape == (5, 3)
    with pytest.raises(ValueError, match="context has 3 features, expected 2"):
        net(torch.randn(5, 3))
    with pytest.raises(ValueError, match="required"):
        net(None)
