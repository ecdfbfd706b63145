"""ResNet blocks, encoder and decoder: wiring against a hand computation, exact sizes, batch dims, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hiervae.nn.networks.resnet import ResidualBlock, ResNetDecoder, ResNetEncoder, image_dims, upsampling_plan


def test_down_block_is_the_basic_block_written_out():
    """conv(stride 2) -> relu -> conv, plus a 1x1 stride-2 shortcut, then relu (no batch norm)."""
    torch.manual_seed(0)
    block = ResidualBlock(2, 5, kernel=3, scale="down", batch_norm=False).double()
    x = torch.randn(4, 2, 9, 6, dtype=torch.float64)
    conv1, conv2 = block.main[0], block.main[3]
    sc = block.shortcut[0]
    h = F.relu(F.conv2d(x, conv1.weight, conv1.bias, stride=2, padding=1))
    main = F.conv2d(h, conv2.weight, conv2.bias, padding=1)
    expected = F.relu(main + F.conv2d(x, sc.weight, sc.bias, stride=2))
    out = block(x)
    assert out.shape == (4, 5, 5, 3)  # ceil(9/2), ceil(6/2)
    torch.testing.assert_close(out, expected)


def test_same_size_block_has_an_identity_shortcut():
    torch.manual_seed(0)
    block = ResidualBlock(3, 3, kernel=5, scale=None, batch_norm=False).double()
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        for p in block.main.parameters():
            p.zero_()
    # main path zero: the block is relu(x)
    torch.testing.assert_close(block(x), F.relu(x))


@pytest.mark.parametrize("size, sizes, padding", [(28, [7, 14, 28], [1, 1]), (8, [2, 4, 8], [1, 1]),
                                                  (7, [2, 4, 7], [1, 0]), (9, [3, 5, 9], [0, 0]), (1, [1], [])])
def test_upsampling_plan_lands_on_the_image_size(size, sizes, padding):
    got_sizes, got_padding = upsampling_plan(size, len(sizes) - 1)
    assert (got_sizes, got_padding) == (sizes, padding)
    for n, p, target in zip(sizes[:-1], padding, sizes[1:]):
        assert 2 * n - 1 + p == target and p in (0, 1)  # transposed conv size, valid output_padding


@pytest.mark.parametrize("shape", [(1, 28, 28), (8, 8), (1, 7, 9), (3, 5, 13)])
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_decoder_and_encoder_sizes_are_exact(shape, kernel):
    torch.manual_seed(0)
    c, h, w = image_dims(shape)
    dec = ResNetDecoder(6, shape, [8, 4], kernel=kernel, scale="up", batch_norm=True)
    out = dec(torch.randn(3, 6))
    assert out.shape == (3, c * h * w)
    assert dec.start == (8, math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2))
    enc = ResNetEncoder(shape, [4, 8], None, kernel=kernel, scale="down")
    assert enc(out).shape == (3, enc.out_features)
    assert enc.map_shape == (8, *dec.start[1:])  # ceil halving both ways: the encoder's map is the decoder's start


def test_paper_sizes():
    """Table 6: 28x28 -> [16, 32] halving twice -> 32 x 7 x 7 -> 64; decoder 32 x 7 x 7 -> [32, 16] -> 28x28."""
    enc = ResNetEncoder((1, 28, 28), [16, 32], 64, scale="down")
    dec = ResNetDecoder(100, (1, 28, 28), [32, 16], scale="up")
    assert enc.map_shape == (32, 7, 7) and enc.out_features == 64
    assert dec.start == (32, 7, 7) and dec.out_features == 784


def test_leading_batch_dims_are_folded_and_restored():
    """(K, B, F) inputs (importance-weighted particles) equal K separate (B, F) evaluations."""
    torch.manual_seed(1)
    enc = ResNetEncoder((1, 8, 8), [4, 8], 5, scale="down", batch_norm=True).eval()
    dec = ResNetDecoder(5, (1, 8, 8), [8, 4], scale="up", batch_norm=True).eval()
    x = torch.rand(3, 4, 64)
    feats = enc(x)
    assert feats.shape == (3, 4, 5)
    logits = dec(feats)
    assert logits.shape == (3, 4, 64)
    for k in range(3):
        torch.testing.assert_close(feats[k], enc(x[k]))
        torch.testing.assert_close(logits[k], dec(feats[k]))


def test_every_parameter_gets_a_finite_gradient():
    torch.manual_seed(2)
    enc = ResNetEncoder((1, 28, 28), [4, 8], 16, scale="down", batch_norm=True)
    dec = ResNetDecoder(16, (1, 28, 28), [8, 4], scale="up", batch_norm=True)
    x = torch.bernoulli(torch.rand(5, 784))
    F.binary_cross_entropy_with_logits(dec(enc(x)), x).backward()
    for module in (enc, dec):
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_encoder_without_out_returns_the_flat_map():
    enc = ResNetEncoder((8, 8), [4], None, scale="down")
    assert enc.out_features == 4 * 4 * 4 and enc(torch.rand(2, 64)).shape == (2, 64)


@pytest.mark.parametrize("build, message", [
    (lambda: ResNetEncoder((1, 8, 8), [4], 3, scale="up"), "encoder cannot upsample"),
    (lambda: ResNetDecoder(3, (1, 8, 8), [4], scale="down"), "decoder cannot downsample"),
    (lambda: ResNetEncoder((1, 8, 8), [4], 3, kernel=4), "odd"),
    (lambda: ResNetEncoder((64,), [4], 3), r"image shape \[C, H, W\] or \[H, W\]"),
    (lambda: ResNetDecoder(0, (1, 8, 8), [4], scale="up"), "needs a context"),
    (lambda: ResNetEncoder((1, 8, 8), [], 3), "at least one block"),
])
def test_impossible_networks_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_batch_norm_decoder_is_blind_to_the_scale_of_its_context():
    """Why a KL weight of 0 lets the posterior's scale drift in the ResNet SeRe-VAE: in
    training mode the batch-normalised decoder maps c z to (almost) the logits of z;
    without batch norm the logits scale with c."""
    torch.manual_seed(0)
    z = torch.randn(64, 20)
    for batch_norm, bounded in [(True, True), (False, False)]:
        d = ResNetDecoder(20, [1, 28, 28], [32, 16], batch_norm=batch_norm).train()
        base = d(z)
        change = [((d(c * z) - base).abs().max() / base.abs().max()).item() for c in (10.0, 1e3)]
        if bounded:
            assert max(change) < 1e-2, change
        else:
            assert min(change) > 1.0, change
