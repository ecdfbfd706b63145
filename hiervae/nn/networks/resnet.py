"""Convolutional ResNet encoders and decoders of images (network kind ``resnet``; paper
section 5.2.2, appendix 8).

The ResNet SeRe-VAE replaces the evidence encoders and the decoder of the MLP model
by small ResNets (Table 6): an encoder of two residual blocks with feature maps
``[16, 32]``, each halving the image (28 -> 14 -> 7), then one dense layer to 64
features; a decoder of two blocks with transposed convolutions, ``[32, 16]``, each
doubling the map (7 -> 14 -> 28), then a convolution to the image's channels (the
Bernoulli logits).  Blocks follow He et al.'s design rule (halve the map, double the
filters) with batch normalisation between the convolutions.

The rest of hiervae passes values as FLAT tensors ``(..., C*H*W)`` (data batches,
Pyro sites, the concatenated contexts of the compiler), so these modules take and
return flat tensors and reshape inside; any number of leading batch dims works (the
importance-weighted evaluation feeds ``(particles, batch, features)``).  BatchNorm2d
only takes ``(N, C, H, W)``, so the leading dims are folded into one and back, as
:class:`~hiervae.nn.networks.mlp.MLP` does for BatchNorm1d.

Sizes that do not divide by two are handled exactly, not by luck: a downsampling
convolution with "same" padding maps ``n -> ceil(n / 2)`` (7 -> 4), and the decoder
plans its sizes backwards from the image (``28, 14, 7`` or ``8, 4, 2``; ``ceil`` at
each step) and gives every transposed convolution the ``output_padding`` (0 or 1) that
lands on the planned size, so 7 -> 14 -> 28 and 4 -> 7 are both exact.  Kernels must
be odd, so that "same" padding exists and the shortcut and the main path agree.
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
from torch import nn

from hiervae.language.net import Net
from hiervae.nn.networks.base import Network
from hiervae.nn.networks.mlp import make_activation
from hiervae.nn.registry import NETWORKS, NetworkKind

SCALES = (None, "down", "up")


def image_dims(shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image event shape ``[C, H, W]`` or ``[H, W]`` (one channel)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    raise ValueError(f"a convolutional network needs an image shape [C, H, W] or [H, W], got {list(shape)}")


def _check_kernel(kernel: int) -> None:
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be a positive odd size (same padding), got {kernel}")


def _glorot(module: nn.Module) -> nn.Module:
    """Glorot-normal weights, zero biases (Table 7, as for the MLPs)."""
    nn.init.xavier_normal_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def _fold(x: torch.Tensor, chw: tuple[int, int, int]) -> torch.Tensor:
    """Flat ``(..., C*H*W)`` -> ``(N, C, H, W)`` with all leading dims folded into N."""
    return x.reshape(-1, *chw)


class ResidualBlock(nn.Module):
    """He et al.'s basic block on ``(N, C, H, W)``, optionally resampling by 2.

    ``conv(k, stride s) -> [BN] -> act -> conv(k) -> [BN]`` plus a shortcut, then
    ``act``.  ``scale``: ``None`` keeps the size, ``"down"`` uses stride-2 convolutions
    (``n -> ceil(n/2)``), ``"up"`` stride-2 transposed convolutions with
    ``output_padding`` (``n -> 2n - 1 + output_padding``).  The shortcut is the identity
    when nothing changes, else a 1x1 (transposed) convolution with the same stride and
    output padding, so both paths have the same size by construction.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, scale: str | None = None,
                 output_padding: tuple[int, int] = (0, 0), activation: str = "relu", batch_norm: bool = True):
        super().__init__()
        _check_kernel(kernel)
        if scale not in SCALES:
            raise ValueError(f"scale must be one of down, up or none, got {scale!r}")
        pad, stride = kernel // 2, 1 if scale is None else 2
        bias = not batch_norm  # a bias before batch norm is cancelled by its mean

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

        if scale == "up":
            first = nn.ConvTranspose2d(in_channels, out_channels, kernel, stride, pad, output_padding, bias=bias)
            shortcut = nn.ConvTranspose2d(in_channels, out_channels, 1, stride, 0, output_padding, bias=bias)
        else:
            first = nn.Conv2d(in_channels, out_channels, kernel, stride, pad, bias=bias)
            shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=bias)
        self.main = nn.Sequential(
            _glorot(first), norm(out_channels), make_activation(activation),
            _glorot(nn.Conv2d(out_channels, out_channels, kernel, 1, pad, bias=bias)), norm(out_channels),
        )
        same = scale is None and in_channels == out_channels
        self.shortcut = nn.Identity() if same else nn.Sequential(_glorot(shortcut), norm(out_channels))
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.main(x) + self.shortcut(x))


class ResNetEncoder(Network):
    """Image ``(..., C*H*W)`` -> features ``(..., out_features)`` (Table 6, evidence encoder).

    One :class:`ResidualBlock` per entry of ``filters``, each halving the map when
    ``scale == "down"``; then one dense layer (no hidden units) to ``out_features``
    with ``out_activation``.  With ``out_features=None`` the flattened last feature map
    is the output.
    """

    def __init__(self, image_shape: Sequence[int], filters: Sequence[int], out_features: int | None,
                 kernel: int = 3, scale: str | None = "down", activation: str = "relu",
                 out_activation: str | None = None, batch_norm: bool = True):
        super().__init__()
        if scale == "up":
            raise ValueError("an encoder cannot upsample (scale: up); use scale: down or none")
        if not filters:
            raise ValueError("a ResNet needs at least one block (resnet: [filters, ...])")
        _check_kernel(kernel)
        self.image = image_dims(image_shape)
        c, h, w = self.image
        blocks = []
        for f in filters:
            blocks.append(ResidualBlock(c, f, kernel, scale, activation=activation, batch_norm=batch_norm))
            c = f
            if scale == "down":
                h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.blocks = nn.Sequential(*blocks)
        self.map_shape = (c, h, w)
        self.in_features = math.prod(self.image)
        if out_features is None:
            if out_activation is not None:
                raise ValueError("out_activation needs out (the dense output layer it acts on)")
            self.head = nn.Identity()
            self.out_features = c * h * w
        else:
            self.head = nn.Sequential(_glorot(nn.Linear(c * h * w, out_features)), make_activation(out_activation))
            self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.blocks(_fold(x, self.image))
        return self.head(maps.flatten(1)).reshape(*x.shape[:-1], self.out_features)


def upsampling_plan(size: int, blocks: int) -> tuple[list[int], list[int]]:
    """Map sizes ``[s_0, ..., s_blocks = size]`` and each block's ``output_padding``.

    Planned backwards, ``s_{i-1} = ceil(s_i / 2)``; a stride-2 transposed convolution
    with odd kernel and same padding gives ``2 s - 1 + p``, so ``p = s_i - 2 s_{i-1} + 1``
    (0 for odd targets, 1 for even ones) lands exactly on ``s_i``: 7 -> 14 -> 28, 4 -> 7.
    """
    sizes = [size]
    for _ in range(blocks):
        sizes.insert(0, math.ceil(sizes[0] / 2))
    padding = [sizes[i + 1] - 2 * sizes[i] + 1 for i in range(blocks)]
    return sizes, padding


class ResNetDecoder(Network):
    """Context ``(..., context_features)`` -> image-shaped outputs ``(..., C*H*W)`` (Table 6 decoder).

    A dense layer (with ``activation``) maps the context to the smallest feature map,
    ``filters[0]`` channels at the planned size (7x7 for 28x28 and two upsampling
    blocks); one :class:`ResidualBlock` per entry of ``filters`` doubles it when
    ``scale == "up"``; a final "same" convolution maps to the image's ``C`` channels,
    linear (the Bernoulli logits).  The planned output paddings make the last map
    exactly ``(H, W)`` (no crop needed; an assertion guards the plan).

    With ``batch_norm`` (the paper's choice) the first block normalises the dense
    layer's feature map over the batch, so in training mode the logits barely change
    when every latent code is scaled up (the dense layer and relu are positively
    homogeneous up to the bias): the likelihood does not bound the posterior's scale,
    only the KL term does.  Training should therefore not run long at beta = 0 unless
    that is the intent (:mod:`hiervae.train.schedules`).
    """

    def __init__(self, context_features: int, image_shape: Sequence[int], filters: Sequence[int],
                 kernel: int = 3, scale: str | None = "up", activation: str = "relu", batch_norm: bool = True):
        super().__init__()
        if scale == "down":
            raise ValueError("a decoder cannot downsample (scale: down); use scale: up or none")
        if not filters:
            raise ValueError("a ResNet needs at least one block (resnet: [filters, ...])")
        if context_features < 1:
            raise ValueError("a ResNet decoder needs a context (the decoded node has no parents)")
        _check_kernel(kernel)
        self.image = image_dims(image_shape)
        c, h, w = self.image
        ups = len(filters) if scale == "up" else 0
        heights, pad_h = upsampling_plan(h, ups)
        widths, pad_w = upsampling_plan(w, ups)
        self.start = (filters[0], heights[0], widths[0])
        self.dense = nn.Sequential(_glorot(nn.Linear(context_features, math.prod(self.start))), make_activation(activation))
        blocks, channels = [], filters[0]
        for i, f in enumerate(filters):
            padding = (pad_h[i], pad_w[i]) if scale == "up" else (0, 0)
            blocks.append(ResidualBlock(channels, f, kernel, scale, padding, activation, batch_norm))
            channels = f
        self.blocks = nn.Sequential(*blocks)
        self.out = _glorot(nn.Conv2d(channels, c, kernel, 1, kernel // 2))
        self.context_features = context_features
        self.out_features = c * h * w

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image
        maps = self.dense(context.reshape(-1, self.context_features)).reshape(-1, *self.start)
        logits = self.out(self.blocks(maps))
        assert logits.shape[-2] == h and logits.shape[-1] == w, "upsampling plan missed the image size"
        return logits.reshape(*context.shape[:-1], self.out_features)


@NETWORKS.register("resnet")
class ResNetKind(NetworkKind):
    """``resnet: [filters]``: an image to features (:class:`ResNetEncoder`, an encoder of an
    image-shaped observed node) or features to an image (:class:`ResNetDecoder`, the
    parameters of an image likelihood)."""

    keys: ClassVar[frozenset[str]] = frozenset({"resnet", "scale", "kernel", "activation", "out", "out_activation",
                                                "batch_norm"})

    @classmethod
    def check(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None) -> None:
        image_in = len(in_shape) in (2, 3)
        image_out = out_shape is not None and len(out_shape) in (2, 3)
        if image_in == image_out:
            raise ValueError(
                "a resnet network maps an image to features (an encoder of an image-shaped observed node, "
                "[C, H, W] or [H, W]) or features to an image (an image likelihood's decoder); here it would map "
                f"{list(in_shape)} to {list(out_shape) if out_shape else 'features'}")
        if image_in and net.scale == "up":
            raise ValueError("an encoder cannot upsample (scale: up); use scale: down or none")
        if image_out and net.scale == "down":
            raise ValueError("a decoder cannot downsample (scale: down); use scale: up or none")
        if net.kernel < 1 or net.kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd size (same padding), got {net.kernel}")
        if not net.layers:
            raise ValueError("a ResNet needs at least one block (resnet: [filters, ...])")
        if image_in and out_shape is None and net.out_activation is not None:
            raise ValueError("out_activation needs out (the dense output layer it acts on)")
        if image_out and math.prod(in_shape) < 1:
            raise ValueError("a ResNet decoder needs a context (the decoded node has no parents)")

    @classmethod
    def out_features(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None) -> int:
        cls.check(net, in_shape, out_shape)
        if out_shape is not None:
            return math.prod(out_shape)
        _, h, w = image_dims(in_shape)
        for _ in net.layers if net.scale == "down" else ():
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return net.layers[-1] * h * w

    @classmethod
    def build(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None) -> nn.Module:
        cls.check(net, in_shape, out_shape)
        if len(in_shape) in (2, 3):
            out = None if out_shape is None else math.prod(out_shape)
            return ResNetEncoder(in_shape, net.layers, out, kernel=net.kernel, scale=net.scale,
                                 activation=net.activation, out_activation=net.out_activation, batch_norm=net.batch_norm)
        return ResNetDecoder(math.prod(in_shape), out_shape, net.layers, kernel=net.kernel, scale=net.scale,
                             activation=net.activation, batch_norm=net.batch_norm)
