"""Normalizing-flow layers of the SeRe-MAF (paper section 4, section 5.3, appendix 9).

* :class:`MAFLikelihood` (family ``maf``): ``p(x | context)`` as a conditional masked
  autoregressive flow over a context-dependent base distribution.
* :class:`SplineCoupling` (transform ``spline_coupling``): ``z = f(eps; context)``, a
  stack of rational-quadratic spline coupling layers (Durkan et al. 2019).
* :class:`Residual` (transform ``residual``, NOT bijective): ``h = h_prev + r(context)``.
* Logit-space pre-processing for images: :func:`dequantize`, :func:`logit_transform`,
  :func:`to_logit_space`, :func:`from_logit_space`, and :func:`bits_per_dim`.

Density conventions (all in nats, natural log)
----------------------------------------------
Pixels ``k in {0..255}`` are dequantised to ``v = (k + u) / 256 in [0, 1)``,
``u ~ U[0, 1)`` (:func:`dequantize`), then mapped to logit space
``y = logit(alpha + (1 - alpha) v)`` (the paper's formula, appendix 9.1, alpha = 0.05)::

    log p(v)   = log p(y) + log|dy/dv|,  log|dy/dv| = sum_i log(1 - alpha) - log s_i - log(1 - s_i),
                 s = alpha + (1 - alpha) v                       (density on [0, 1]^D)
    log p(256 v) = log p(v) - D log 256                          (density on [0, 256)^D)
    bits/dim   = -(log p(v) - D log 256) / (D log 2)             (:func:`bits_per_dim`)

:class:`MAFLikelihood` with ``logit_alpha`` set models ``v`` (dequantised values in
[0, 1]) and includes the logit Jacobian in ``log_prob``, so its ``log_prob`` is
``log p(v)`` and :func:`bits_per_dim` applies directly.  The dequantisation noise is
*not* added by the distribution (a ``log_prob`` must be a deterministic function of
its argument): the data pipeline adds it (``data.dequantize: uniform``, see
:mod:`hiervae.data.dequantize`; :func:`dequantize` is re-exported here).
Without ``logit_alpha`` the flow models ``x`` in R^D as given.
"""

from __future__ import annotations

import math
from typing import Sequence

import pyro.distributions as dist
import torch
from nflows.transforms import CompositeTransform, PiecewiseRationalQuadraticCouplingTransform
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn
from torch.distributions import Transform, constraints

from hiervae.data.dequantize import dequantize
from hiervae.nn.gaussian import VARIANCE_FLOOR, diag_normal, raw_of_one, scale_from_raw, variance_from_raw
from hiervae.nn.made import ConditionalMADE
from hiervae.nn.mlp import ParamNet
from hiervae.nn.registry import FAMILIES, TRANSFORMS, Configurable

LOG_256 = math.log(256.0)
BASES = ("unit_rank_normal", "normal", "std_normal")
MADE_CONTEXTS = ("all", "split", "none")


# ----------------------------------------------------------------------------- logit space
def logit_transform(v: torch.Tensor, alpha: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = logit(alpha + (1 - alpha) v)`` and ``log|dy/dv|`` summed over the last dim."""
    s = alpha + (1 - alpha) * v
    y = torch.log(s) - torch.log1p(-s)
    log_det = (math.log1p(-alpha) - torch.log(s) - torch.log1p(-s)).sum(-1)
    return y, log_det


def from_logit_space(y: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """Inverse of :func:`logit_transform`: ``v = (sigmoid(y) - alpha) / (1 - alpha)``.

    ``v`` lies in ``(-alpha / (1 - alpha), 1)``; clip to [0, 1] only for display.
    """
    return (torch.sigmoid(y) - alpha) / (1 - alpha)


def to_logit_space(
    x: torch.Tensor,
    alpha: float = 0.05,
    noise: float | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels (uint8, or floats ``k/255``) -> ``(y, log|dy/dv|)``: :func:`dequantize` then
    :func:`logit_transform`.  ``log p(v) = log p(y) + log|dy/dv|`` for ``v`` in [0, 1]^D."""
    return logit_transform(dequantize(x, noise, generator), alpha)


def bits_per_dim(log_prob_nats: torch.Tensor | float, D: int) -> torch.Tensor | float:
    """Bits per dimension of 8-bit data from ``log p(v)``, the density on [0, 1]^D (nats).

    ``-(log p(v) - D log 256) / (D log 2)``: the ``- D log 256`` turns the density on
    [0, 1]^D into the density of the 256-level pixel values on [0, 256)^D.
    """
    return -(log_prob_nats - D * LOG_256) / (D * math.log(2.0))


# ----------------------------------------------------------------------------- MAF
def _expand_context(context: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if context is None or context.shape[-1] == 0:
        return None
    return context.expand(*torch.broadcast_shapes(context.shape[:-1], x.shape[:-1]), -1)


class MAFStep(nn.Module):
    """One conditional MAF step (Papamakarios et al. 2017, eq. 3-4).

    Generative direction ``x_i = u_i exp(a_i) + m_i`` with ``(m, a) = MADE(x_<i, context)``;
    density direction ``u = (x - m(x)) exp(-a(x))`` in one pass, ``log|du/dx| = -sum a``.
    ``a`` is the raw MADE output (unbounded), as in the MAF paper.

    ``identity_init`` zeroes the MADE's output layer, so the step starts as the exact
    identity (``m = a = 0``) and learns away from it; otherwise the whole MADE is
    Glorot-initialised (the paper's Table 8, literally).  See :class:`MAFLikelihood`
    for why the identity start is the default.
    """

    def __init__(self, dim: int, context_features: int, identity_init: bool = True, **made_options):
        super().__init__()
        self.made = ConditionalMADE(dim, context_features, params_per_dim=2,
                                    output_init="zero" if identity_init else "glorot", **made_options)

    def density(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = self.made(x, _expand_context(context, x)).unbind(-2)
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(-1)

    def generate(self, u: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Sequential inversion: ``D`` MADE passes, variable ``order[j]`` fixed at pass ``j``."""
        context = _expand_context(context, u)
        if context is not None:
            u = u.expand(*context.shape[:-1], -1)
        x = torch.zeros_like(u)
        weights = self.made.masked_weights()
        for i in self.made.order.tolist():
            shift, log_scale = self.made(x, context, weights).unbind(-2)
            x = x.clone()
            x[..., i] = u[..., i] * torch.exp(log_scale[..., i]) + shift[..., i]
        return x


class BatchNormStep(nn.Module):
    """Batch normalisation as a bijector (MAF paper, appendix B), density direction::

        u = (x - mean) / sqrt(var + eps) * exp(log_gamma) + beta,
        log|du/dx| = sum(log_gamma - 0.5 log(var + eps)).

    In training mode ``mean``/``var`` are the statistics of the batch being scored (all
    leading dims pooled; the log-determinant uses those same statistics, so it is
    exact for the map actually applied) and the running averages are updated with
    ``momentum``; in eval mode, or for fewer than two rows, the running averages are
    used.  The generative direction (sampling) always uses the running averages.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = x.reshape(-1, x.shape[-1])
        if self.training and rows.shape[0] > 1:
            mean, var = rows.mean(0), rows.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(rows.var(0, unbiased=True).detach(), self.momentum)
            return mean, var
        return self.running_mean, self.running_var

    def density(self, x: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = self._stats(x)
        u = (x - mean) * torch.rsqrt(var + self.eps) * self.log_gamma.exp() + self.beta
        log_det = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum(-1)
        return u, log_det.expand(x.shape[:-1])

    def generate(self, u: torch.Tensor, context=None) -> torch.Tensor:
        scale = torch.sqrt(self.running_var + self.eps) * torch.exp(-self.log_gamma)
        return (u - self.beta) * scale + self.running_mean


class FlowDistribution(dist.TorchDistribution):
    """``x = g_T(... g_1(u0))``, ``u0 ~ base``, for steps already bound to their contexts.

    ``steps`` is a list of ``(module, context)`` with ``module.density(x, context) ->
    (u, log|du/dx|)`` and ``module.generate(u, context) -> x``.  ``log_prob`` runs the
    density direction (one pass per step, exact); ``rsample`` the generative direction
    (sequential for MAF steps).  With ``logit_alpha`` the event is ``v`` in [0, 1]^D and
    ``y = logit(alpha + (1 - alpha) v)`` is what the steps model (module docstring).
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, base: dist.TorchDistribution, steps: list, logit_alpha: float | None = None,
                 validate_args: bool | None = False):
        self.base, self.steps, self.logit_alpha = base, list(steps), logit_alpha
        super().__init__(base.batch_shape, base.event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        if self.logit_alpha is None:
            return constraints.real_vector
        return constraints.independent(constraints.interval(-self.logit_alpha / (1 - self.logit_alpha), 1.0), 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self.logit_alpha is None:
            u, total = value, 0.0
        else:
            u, total = logit_transform(value, self.logit_alpha)
        for module, context in reversed(self.steps):
            u, log_det = module.density(u, context)
            total = total + log_det
        return self.base.log_prob(u) + total

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        u = self.base.rsample(sample_shape)
        for module, context in self.steps:
            u = module.generate(u, context)
        return u if self.logit_alpha is None else from_logit_space(u, self.logit_alpha)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)


@FAMILIES.register("maf")
class MAFLikelihood(Configurable, ConditionalDistribution, nn.Module):
    """``p(x | context)``: conditional MAF over a context-dependent base (paper section 4.2).

    ``flows x mades_per_flow`` :class:`MAFStep`\\ s (Table 9: 2 x 5, MADEs of 2 x 1024
    relu units, random input order, "equal" hidden degrees), with a
    :class:`BatchNormStep` between consecutive steps when ``batch_norm``.  Orders: with
    ``random_order`` MADE ``k`` gets its own random order (seed ``seed + k``), which
    replaces explicit permutations; otherwise orders alternate natural / reversed.

    Base (``base``): ``unit_rank_normal`` = ``N(loc, diag(d) + u u^T)`` (Pyro's
    ``LowRankMultivariateNormal``, rank 1; ``d`` through :func:`variance_from_raw`),
    ``normal`` = diagonal, ``std_normal`` = N(0, I).  Its parameters come from three
    separate MLPs (``base_hidden``) of the first ``base_context`` context features
    (``None``: all of them), or are learned constants without context.

    MADE context (``made_context``): ``all`` = every MADE reads the whole context;
    ``split`` = the features after the base's ``base_context`` leading ones are cut
    into ``mades_per_flow`` equal chunks and MADE ``k`` of every flow reads chunk ``k``
    (the paper's "each latent code conditioning its respective MADE layer": with
    ``given: [gamma(L), z1..z(L)]``, ``base_context = dim(gamma)``, MADE ``l`` reads
    ``z(l)`` and the base reads ``gamma(L)``); ``none`` = unconditional MADEs.

    ``logit_alpha``: model ``v`` in [0, 1]^D through ``y = logit(alpha + (1 - alpha) v)``
    (see the module docstring for the convention; the caller dequantises).
    Initialisation (``identity_init``, default on): every MADE's output layer starts at
    zero, so every MAF step starts as the identity; with fresh running statistics the
    batch-norm steps are the identity too in eval mode, so the freshly built flow's
    ``log_prob`` is the base density of ``y`` plus the logit Jacobian, finite for every
    ``v`` in the support.  The paper's literal initialisation (Table 8: Glorot-normal
    everywhere, ``identity_init: false``) is not: a relu MADE with zero biases is
    positively homogeneous, so its raw log-scale grows linearly with ``|x|`` and
    ``x exp(-a(x))`` compounds over the 10 steps; on logit-space pixels near 255
    (``y ~ 6``) the shipped CIFAR-10 flow overflows to inf/NaN in eval mode (test
    ``test_maf_stability``).  Starting flows at the identity is the usual remedy (nflows
    zero-initialises the last layer of its MADE residual blocks, Glow its coupling
    networks' last convolution); only the output layer departs from Table 8, and the
    model family (unbounded affine MAF steps, as in the MAF paper) is unchanged.

    Spec networks: ``mlp``/``activation`` of the ``net`` become the MADE's ``hidden``
    and ``activation``; a network ``batch_norm`` key does not touch ``batch_norm``
    (which is the bijector between steps).
    """

    net_keys = {"mlp": "hidden", "activation": "activation", "batch_norm": "-", "dropout": "-",
                "out_activation": "-", "separate": "-"}

    def __init__(
        self,
        dim: int,
        context_features: int,
        flows: int = 2,
        mades_per_flow: int = 5,
        batch_norm: bool = True,
        base: str = "unit_rank_normal",
        logit_alpha: float | None = None,
        hidden: Sequence[int] = (1024, 1024),
        activation: str = "relu",
        random_order: bool = True,
        seed: int = 0,
        base_context: int | None = None,
        made_context: str = "all",
        base_hidden: Sequence[int] = (512,),
        base_activation: str = "relu",
        variance_floor: float = VARIANCE_FLOOR,
        batch_norm_momentum: float = 0.1,
        identity_init: bool = True,
    ):
        super().__init__()
        if base not in BASES:
            raise ValueError(f"MAFLikelihood: base must be one of {', '.join(BASES)}, got {base!r}")
        if made_context not in MADE_CONTEXTS:
            raise ValueError(f"MAFLikelihood: made_context must be one of {', '.join(MADE_CONTEXTS)}, got {made_context!r}")
        if flows < 1 or mades_per_flow < 1:
            raise ValueError("MAFLikelihood: flows and mades_per_flow must be >= 1")
        if logit_alpha is not None and not 0 <= logit_alpha < 1:
            raise ValueError(f"MAFLikelihood: logit_alpha must be in [0, 1), got {logit_alpha}")
        n_base = context_features if base_context is None else base_context
        if not 0 <= n_base <= context_features:
            raise ValueError(f"MAFLikelihood: base_context must be in [0, {context_features}], got {base_context}")
        self.dim, self.context_features = dim, context_features
        self.base_kind, self.logit_alpha, self.variance_floor = base, logit_alpha, variance_floor
        self.base_features = n_base
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

        # Context slices: base reads [0, n_base); MADE k reads made_slices[k].
        if made_context == "all":
            made_slices = [(0, context_features)] * mades_per_flow
        elif made_context == "none":
            made_slices = [(0, 0)] * mades_per_flow
        else:
            start = 0 if base_context is None else base_context
            rest = context_features - start
            if rest % mades_per_flow:
                raise ValueError(
                    f"MAFLikelihood: made_context 'split' needs the {rest} context features after the base's "
                    f"{start} to divide into {mades_per_flow} equal chunks")
            size = rest // mades_per_flow
            made_slices = [(start + k * size, start + (k + 1) * size) for k in range(mades_per_flow)]
        self.made_slices = made_slices

        if base == "std_normal":
            self.base_nets = nn.ModuleList()
        else:
            mlp = dict(hidden=tuple(base_hidden), activation=base_activation)
            inits = [torch.zeros(dim), torch.full((dim,), raw_of_one(variance_floor))]
            if base == "unit_rank_normal":
                inits.append(nn.init.xavier_normal_(torch.empty(dim, 1)).flatten())
            self.base_nets = nn.ModuleList(ParamNet(n_base, init, **mlp) for init in inits)

        steps: list[nn.Module] = []
        total = flows * mades_per_flow
        for k in range(total):
            lo, hi = made_slices[k % mades_per_flow]
            order = None if random_order else (torch.arange(dim).flip(0) if k % 2 else torch.arange(dim))
            steps.append(MAFStep(dim, hi - lo, hidden=tuple(hidden), activation=activation,
                                 random_order=random_order, seed=seed + k, order=order,
                                 identity_init=identity_init))
            if batch_norm and k < total - 1:
                steps.append(BatchNormStep(dim, momentum=batch_norm_momentum))
        self.steps = nn.ModuleList(steps)
        self._made_index = [i for i, s in enumerate(steps) if isinstance(s, MAFStep)]

    def base_distribution(self, context: torch.Tensor | None) -> dist.TorchDistribution:
        if self.base_kind == "std_normal":
            shape = (*(() if context is None else context.shape[:-1]), self.dim)
            return diag_normal(self._zero.expand(shape), (self._zero + 1).expand(shape))
        base_ctx = None if context is None else context[..., : self.base_features]
        params = [net(base_ctx) for net in self.base_nets]
        if self.base_kind == "normal":
            return diag_normal(params[0], scale_from_raw(params[1], self.variance_floor))
        loc, raw, factor = params
        return dist.LowRankMultivariateNormal(loc, factor.unsqueeze(-1), variance_from_raw(raw, self.variance_floor))

    def condition(self, context: torch.Tensor | None = None) -> FlowDistribution:
        if context is not None and context.shape[-1] != self.context_features:
            raise ValueError(f"context has {context.shape[-1]} features, expected {self.context_features}")
        if context is None and self.context_features:
            raise ValueError(f"a context with {self.context_features} features is required")
        bound = []
        made_k = 0
        for module in self.steps:
            ctx = None
            if isinstance(module, MAFStep):
                lo, hi = self.made_slices[made_k % len(self.made_slices)]
                made_k += 1
                ctx = None if (context is None or hi == lo) else context[..., lo:hi]
            bound.append((module, ctx))
        return FlowDistribution(self.base_distribution(context), bound, self.logit_alpha)


# ----------------------------------------------------------------------------- spline coupling
class _CouplingNet(nn.Module):
    """Parameters of one spline coupling layer from ``(identity half, context)``.

    Three separate MLPs (Table 9: bin widths, bin heights, knot slopes) or one shared
    MLP, laid out as nflows expects: ``(N, transformed * (3 bins - 1))``, per feature
    ``[widths (bins), heights (bins), inner derivatives (bins - 1)]``.
    ``hidden_features = 1`` switches off nflows' ``1/sqrt(width)`` rescaling of the
    width/height logits: with the paper's tanh output they are already bounded.
    """

    hidden_features = 1

    def __init__(self, identity: int, context_features: int, transformed: int, bins: int,
                 separate_networks: bool, **mlp_options):
        super().__init__()
        self.transformed, self.bins = transformed, bins
        sizes = [bins, bins, bins - 1]
        if not separate_networks:
            sizes = [3 * bins - 1]
        self.nets = nn.ModuleList(
            ParamNet(identity + context_features, torch.zeros(transformed * s), **mlp_options) for s in sizes
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
class SplineCoupling(Configurable, nn.Module):
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

    def __init__(
        self,
        dim: int,
        context_features: int,
        bins: int = 32,
        splines: int = 5,
        mask_size: int | None = None,
        bound: float = 20.0,
        hidden: Sequence[int] = (60, 60),
        activation: str = "tanh",
        out_activation: str | None = "tanh",
        batch_norm: bool = False,
        dropout: float = 0.0,
        separate_networks: bool = True,
    ):
        super().__init__()
        if splines < 1 or bins < 1 or bound <= 0:
            raise ValueError("SplineCoupling: splines and bins must be >= 1 and bound > 0")
        if mask_size is not None and not 0 <= mask_size < dim:
            raise ValueError(f"SplineCoupling: mask_size must be in [0, {dim - 1}] (features left unchanged), got {mask_size}")
        self.dim, self.context_features = dim, context_features
        mlp = dict(hidden=tuple(hidden), activation=activation, out_activation=out_activation,
                   batch_norm=batch_norm, dropout=dropout)
        layers = []
        self.masks = []
        for k in range(splines):
            mask = self.layer_mask(dim, k, mask_size)  # 1 = transformed, 0 = unchanged
            self.masks.append(mask)

            def make_net(identity, out, mask=mask):
                return _CouplingNet(identity, context_features, int(mask.sum()), bins, separate_networks, **mlp)

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


# ----------------------------------------------------------------------------- residual
class ResidualUpdate(Transform):
    """``h_prev -> h_prev + r``, with ``r = r(context)`` already computed; ``None -> r``.

    Deterministic and NOT bijective in the sense the graph uses (``h`` also depends on
    the context through ``r``, and it has no density-preserving inverse): ``inv`` and
    ``log_abs_det_jacobian`` are not available.  Subclasses ``Transform`` only so that
    it looks like the other transforms to the compiler (``t(h_prev)``, ``t.bijective``).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = False

    def __init__(self, residual: torch.Tensor):
        super().__init__()
        self.residual = residual

    def __call__(self, h_prev: torch.Tensor | None = None) -> torch.Tensor:
        return self._call(h_prev)

    def _call(self, h_prev: torch.Tensor | None) -> torch.Tensor:
        return self.residual if h_prev is None else h_prev + self.residual

    def log_abs_det_jacobian(self, x, y):
        raise NotImplementedError("a residual update is not a bijection of its input")


@TRANSFORMS.register("residual")
class Residual(Configurable, nn.Module):
    """Deterministic node ``h = h_prev + r(context)`` (paper Fig. 5, section 4.2).

    ``gamma(l) = gamma(l-1) + r(gamma(l-1), z(l))``: ``context`` is the concatenation of
    all ``given`` nodes (``gamma(l-1)`` included), ``r`` an MLP of it with a linear
    output of ``dim`` units (or a learned constant without context), and
    ``condition(context)`` returns a :class:`ResidualUpdate` to call on ``h_prev``
    (``None`` at the first layer, where ``h = r(context)``).  Table 9: 2 x 512 relu
    units, dropout 0.5 in the paper's residual blocks.
    """

    bijective = False

    def __init__(
        self,
        dim: int,
        context_features: int,
        hidden: Sequence[int] = (512, 512),
        activation: str = "relu",
        out_activation: str | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.dim, self.context_features = dim, context_features
        self.net = ParamNet(context_features, torch.zeros(dim), hidden=tuple(hidden), activation=activation,
                            out_activation=out_activation, batch_norm=batch_norm, dropout=dropout)

    def condition(self, context: torch.Tensor | None = None) -> ResidualUpdate:
        return ResidualUpdate(self.net(context))


__all__ = [
    "BatchNormStep", "ConditionedCoupling", "FlowDistribution", "MAFLikelihood", "MAFStep",
    "Residual", "ResidualUpdate", "SplineCoupling", "bits_per_dim", "dequantize", "from_logit_space",
    "logit_transform", "to_logit_space",
]
