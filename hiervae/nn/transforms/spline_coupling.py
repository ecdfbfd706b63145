"""The ``spline_coupling`` bijector: rational-quadratic spline coupling layers (Durkan et al.
2019), the SeRe-MAF's latent transforms (paper section 5.3, Table 9)."""

from __future__ import annotations

from typing import Annotated

import torch
from nflows.transforms import CompositeTransform, PiecewiseRationalQuadraticCouplingTransform
from pydantic import Field
from torch import nn
from torch.distributions import Transform, constraints

from hiervae.language.net import Net
from hiervae.language.schema import MAX_COUNT, MAX_SIZE
from hiervae.nn.families.normal import HEAD_KEYS
from hiervae.nn.networks.params import ParamNet
from hiervae.nn.registry import TRANSFORMS, TransformModule


class _CouplingNet(nn.Module):
    """Parameters of one spline coupling layer from ``(identity half, context)``.

    Three separate MLPs (Table 9: bin widths, bin heights, knot slopes) or one shared
    MLP, laid out as nflows expects: ``(N, transformed * (3 bins - 1))``, per feature
    ``[widths (bins), heights (bins), inner derivatives (bins - 1)]``.
    ``hidden_features = 1`` switches off nflows' ``1/sqrt(width)`` rescaling of the
    width/height logits: with the paper's tanh output they are already bounded.
    """

    hidden_features = 1

    def __init__(self, identity: int, context_features: int, transformed: int, bins: int, net: Net):
        super().__init__()
        self.transformed, self.bins = transformed, bins
        sizes = [bins, bins, bins - 1]
        if not net.separate:
            sizes = [3 * bins - 1]
        self.nets = nn.ModuleList(
            ParamNet(identity + context_features, torch.zeros(transformed * s), net) for s in sizes
        )

    def forward(self, identity: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        inputs = identity if context is None else torch.cat([identity, context], -1)
        parts = [net(inputs).unflatten(-1, (self.transformed, -1)) for net in self.nets]
        return torch.cat(parts, -1).flatten(-2)


class ConditionedCoupling(Transform):
    """A stack of nflows coupling layers bound to a context, as a torch ``Transform``.

    Works on ``(..., dim)``: batch dims (broadcast against the context's) are flattened
    for nflows and restored.  The log-determinant of the last forward or inverse call
    is kept, so ``log_abs_det_jacobian`` right after ``t(x)`` or ``t.inv(y)`` (what
    ``TransformedDistribution`` does) costs nothing; otherwise it is recomputed.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, layers: CompositeTransform, context: torch.Tensor | None, cache_size: int = 0):
        super().__init__(cache_size=cache_size)
        self.layers, self.context = layers, context
        self._last: tuple | None = None

    def with_cache(self, cache_size: int = 1) -> "ConditionedCoupling":
        if cache_size == self._cache_size:
            return self
        return ConditionedCoupling(self.layers, self.context, cache_size)

    def _run(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = self.context
        shape = v.shape[:-1] if ctx is None else torch.broadcast_shapes(v.shape[:-1], ctx.shape[:-1])
        flat = v.expand(*shape, -1).reshape(-1, v.shape[-1])
        flat_ctx = None if ctx is None or ctx.shape[-1] == 0 else ctx.expand(*shape, -1).reshape(-1, ctx.shape[-1])
        out, log_det = (self.layers.inverse if inverse else self.layers)(flat, flat_ctx)
        return out.reshape(*shape, -1), log_det.reshape(shape)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y, log_det = self._run(x, inverse=False)
        self._last = (x, y, log_det)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x, log_det = self._run(y, inverse=True)
        self._last = (x, y, -log_det)
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._last is not None and (self._last[0] is x or self._last[1] is y):
            return self._last[2]
        return self._run(x, inverse=False)[1]


@TRANSFORMS.register("spline_coupling")
class SplineCoupling(TransformModule, nn.Module):
    """``z = f(eps; context)``: ``splines`` rational-quadratic spline coupling layers.

    Each layer (nflows ``PiecewiseRationalQuadraticCouplingTransform``, linear tails
    outside ``[-bound, bound]``, ``bins`` bins) leaves some features unchanged and
    transforms the others with monotone splines whose parameters are MLPs of (the
    unchanged features, the context).  Table 9: 5 splines, 32 bins, B = 20, MLPs of
    2 x 60 tanh units with tanh output, three separate networks.

    Masks: ``mask_size = None`` alternates halves (even features unchanged in even
    layers, odd ones in odd layers); ``mask_size = d`` (Table 9's "mask size, d in
    [23]": TFP's ``num_masked``) keeps ``d`` consecutive features unchanged, a block
    that moves by ``d`` (cyclically) from one layer to the next, so different
    features condition different layers.
    """

    bijective = True
    net_keys = HEAD_KEYS
    net_defaults = Net(layers=(60, 60), activation="tanh", out_activation="tanh")
    doc = "rational-quadratic spline coupling layers (Durkan et al. 2019)"

    @classmethod
    def check_build(cls, dim, context_features, net, options, filled) -> None:
        mask_size = options.get("mask_size")
        if mask_size is not None and not 0 <= mask_size < dim:
            raise ValueError(f"mask_size must be in [0, {dim - 1}] (features left unchanged), got {mask_size}")

    def __init__(
        self,
        dim: int,
        context_features: int,
        net: Net | None = None,
        bins: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 32,
        splines: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 5,
        mask_size: Annotated[int, Field(ge=0, le=MAX_SIZE)] | None = None,
        bound: Annotated[float, Field(gt=0)] = 20.0,
    ):
        super().__init__()
        net = self.network(net)
        self.check_build(dim, context_features, net, {"mask_size": mask_size}, {})
        self.dim, self.context_features = dim, context_features
        layers = []
        self.masks = []
        for k in range(splines):
            mask = self.layer_mask(dim, k, mask_size)  # 1 = transformed, 0 = unchanged
            self.masks.append(mask)

            def make_net(identity, out, mask=mask):
                return _CouplingNet(identity, context_features, int(mask.sum()), bins, net)

            layers.append(PiecewiseRationalQuadraticCouplingTransform(
                mask, make_net, num_bins=bins, tails="linear", tail_bound=bound))
        self.layers = CompositeTransform(layers)

    @staticmethod
    def layer_mask(dim: int, k: int, mask_size: int | None) -> torch.Tensor:
        """1 for the features layer ``k`` transforms, 0 for those it leaves unchanged."""
        idx = torch.arange(dim)
        if mask_size is None:
            keep = idx % 2 == k % 2 if dim > 1 else torch.zeros(dim, dtype=torch.bool)
        else:
            keep = ((idx - k * mask_size) % dim) < mask_size
        return (~keep).long()

    def condition(self, context: torch.Tensor | None = None) -> ConditionedCoupling:
        if context is not None and context.shape[-1] != self.context_features:
            raise ValueError(f"context has {context.shape[-1]} features, expected {self.context_features}")
        if context is None and self.context_features:
            raise ValueError(f"a context with {self.context_features} features is required")
        return ConditionedCoupling(self.layers, context)
